//! The clock detectors and the alert pipeline read: the wall clock, or a
//! compressed one (`vigil serve --speed 60`: one wall second is a simulated minute)
//! so that a demo or a soak test lives through hours of metrics in minutes.
//!
//! Only *observed* time is compressed — cron fire times, the range a detector
//! queries, alert timestamps and grouping. Remediation runs in real time: a step's
//! timeout or backoff is what the runbook says.

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Clock {
    /// Wall time (ms) at which the simulated clock read `origin_ms`.
    wall_origin_ms: i64,
    origin_ms: i64,
    speed: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::wall()
    }
}

impl Clock {
    /// Real time.
    pub fn wall() -> Clock {
        Clock {
            wall_origin_ms: 0,
            origin_ms: 0,
            speed: 1.0,
        }
    }

    /// A clock that reads `origin_ms` now and runs `speed` times faster than the wall.
    /// `speed` is clamped to [1, 100000] (a clock never runs backwards or stops).
    pub fn scaled(origin_ms: i64, speed: f64) -> Clock {
        let speed = if speed.is_finite() {
            speed.clamp(1.0, 100_000.0)
        } else {
            1.0
        };
        Clock {
            wall_origin_ms: now_ms(),
            origin_ms,
            speed,
        }
    }

    /// A compressed clock for a store that may have run one before: it continues the
    /// stored clock (time on it never goes back, the downtime counts compressed),
    /// or starts a new one at the later of now and the old clock's reading.
    pub fn continuing(stored: Option<Clock>, speed: f64) -> Clock {
        let now = now_ms();
        match stored {
            Some(c) if c.speed == Clock::scaled(0, speed).speed && !c.is_wall() => c,
            Some(c) => Clock::scaled(c.now_ms().max(now), speed),
            None => Clock::scaled(now, speed),
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn is_wall(&self) -> bool {
        self.speed == 1.0 && self.origin_ms == self.wall_origin_ms
    }

    /// The clock's time for a wall time.
    pub fn at_wall(&self, wall_ms: i64) -> i64 {
        let elapsed = (wall_ms - self.wall_origin_ms) as f64 * self.speed;
        self.origin_ms + elapsed as i64
    }

    /// Milliseconds since the Unix epoch, on this clock.
    pub fn now_ms(&self) -> i64 {
        self.at_wall(now_ms())
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }

    /// How long to really wait for `d` of this clock's time to pass.
    pub fn wall_duration(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_reads_real_time() {
        let c = Clock::wall();
        let before = now_ms();
        let t = c.now_ms();
        assert!(t >= before && t - before < 1000);
        assert!(c.is_wall());
    }

    #[test]
    fn scaled_runs_faster_from_its_origin() {
        let c = Clock::scaled(1_000_000, 60.0);
        let w = c.wall_origin_ms;
        assert_eq!(c.at_wall(w), 1_000_000);
        assert_eq!(c.at_wall(w + 1000), 1_060_000, "a wall second is a minute");
        assert_eq!(
            c.wall_duration(std::time::Duration::from_secs(60)),
            std::time::Duration::from_secs(1)
        );
        assert!(!c.is_wall());
        assert_eq!(Clock::scaled(0, f64::NAN).speed(), 1.0);
        assert_eq!(Clock::scaled(0, 0.0).speed(), 1.0);
    }

    #[test]
    fn a_continued_clock_never_goes_back() {
        let first = Clock::scaled(now_ms(), 600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let reading = first.now_ms();
        let again = Clock::continuing(Some(first), 600.0);
        assert_eq!(again, first, "same speed: the same clock");
        assert!(again.now_ms() >= reading);
        let faster = Clock::continuing(Some(first), 1200.0);
        assert!(
            faster.now_ms() >= reading,
            "a new speed starts where the old clock was"
        );
        assert_eq!(faster.speed(), 1200.0);
    }
}
