//! Familiar: a deviation the series made at the same time of day on most of the last days.
//!
//! The false alarm every operator knows: the nightly backup lifts a host's CPU from 0.07
//! to 1.5 at about three every morning, a few minutes earlier or later each day. Against
//! a median baseline that is a robust z of 500 every night. The seasonal member does not
//! see it as a season: one point a day, never at the same sample, makes no
//! autocorrelation. Here the ensemble asks what a person reading the graph would: did
//! the series go this far, the same way, at about this time, on most of the last days?
//! If so, the value members' deviation is damped (`damping`) before the ensemble
//! calibrates it. What is damped is only the value members' judgement: a pattern never
//! seen (context), a value beyond the recent range (breach) or beyond the weeks' lowest
//! or highest (extreme) still speak.
//!
//! The time of day is UTC's. A job scheduled in local time moves by an hour when the
//! clocks change, which the default tolerance of an hour and a half absorbs.
//!
//! Like the extreme member, it knows what the series showed it: a scheduled detector
//! needs three days of history (`history: 3d` or more in its YAML, or three days of
//! running) before a nightly job becomes familiar.
//!
//! State: the lowest and highest value of each `bin` of the last `days` days (plus the
//! tolerance), in a ring indexed by bin: for the defaults (15-minute bins, a week, an
//! hour and a half's tolerance) 679 slots of 24 bytes, 16.3 kB, allocated once. The
//! ensemble keeps two, for the values and for their moving average.

use serde::{Deserialize, Serialize};

use super::{ModelConfigError, require};
use vigil_core::duration::Duration;

const DAY_SECS: i64 = 86_400;

/// Parameters of the ensemble's familiarity check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FamiliarConfig {
    /// Days looked back on.
    pub days: usize,
    /// Of those, how many must have gone as far at about this time.
    pub min_days: usize,
    /// How far from this time of day a past day's value may be (e.g. `1h`).
    pub tolerance: Duration,
    /// The time of day is kept in bins this long (e.g. `15m`); it divides a day.
    pub bin: Duration,
    /// Share of the deviation (from the member's expected value to the point) a past
    /// day may fall short by and still count: 0.1 means it reached 90% of the way.
    pub slack: f64,
    /// Factor on a familiar deviation; 1 turns the check off.
    pub damping: f64,
}

impl Default for FamiliarConfig {
    /// Measured on NAB (docs/research/nab.md, "Familiar at this time of day"), one at a time: three
    /// of the last seven days, within an hour and a half, 90% of the way, 15-minute bins.
    /// Each sits on a plateau: two days, one or two hours, 85% or 95%, five or ten days,
    /// 5- or 30-minute bins all score within 0.3 of it on the shared files; four days
    /// (−0.6), three hours (−0.8) and 80% (−0.8) fall off. A familiar deviation is no
    /// news at all: damping 0.1 scores the same, 0.3 loses 0.7.
    fn default() -> Self {
        Self {
            days: 7,
            min_days: 3,
            tolerance: Duration::from_secs(5400),
            bin: Duration::from_secs(900),
            slack: 0.1,
            damping: 0.0,
        }
    }
}

impl FamiliarConfig {
    pub(crate) fn is_on(&self) -> bool {
        self.damping < 1.0
    }

    pub(crate) fn validate(&self) -> Result<(), ModelConfigError> {
        require(
            (1..=60).contains(&self.days),
            "familiar.days",
            "must be in 1..=60",
        )?;
        require(
            (1..=self.days).contains(&self.min_days),
            "familiar.min_days",
            "must be in 1..=days",
        )?;
        let bin = self.bin.as_std().as_secs() as i64;
        require(
            bin >= 60 && DAY_SECS % bin == 0,
            "familiar.bin",
            "must divide a day and be at least a minute (e.g. `15m`)",
        )?;
        require(
            (self.tolerance.as_std().as_secs() as i64) < DAY_SECS / 2,
            "familiar.tolerance",
            "must be shorter than half a day (e.g. `1h`)",
        )?;
        require(
            self.slack.is_finite() && (0.0..1.0).contains(&self.slack),
            "familiar.slack",
            "must be in 0..1",
        )?;
        require(
            self.damping.is_finite() && (0.0..=1.0).contains(&self.damping),
            "familiar.damping",
            "must be in 0..=1",
        )
    }
}

/// The lowest and highest value of each time bin of the last days.
#[derive(Debug, Clone)]
pub(crate) struct DailyProfile {
    bin_secs: i64,
    bins_per_day: i64,
    tolerance_bins: i64,
    days: usize,
    min_days: usize,
    /// `(bin, low, high)`, at `bin mod len`; a slot whose bin is not the one asked for
    /// is stale (that bin saw no point).
    slots: Vec<(i64, f64, f64)>,
    /// The bin last learnt, the time it starts and its slot: the clock moves forward a
    /// bin at a time, so the next point's bin is found without a division (two a point
    /// were a tenth of the ensemble's time).
    last: Option<(i64, i64, usize)>,
}

impl DailyProfile {
    pub(crate) fn new(cfg: &FamiliarConfig) -> Self {
        let bin_secs = cfg.bin.as_std().as_secs().max(1) as i64;
        let bins_per_day = DAY_SECS / bin_secs;
        let tolerance_bins = cfg.tolerance.as_std().as_secs() as i64 / bin_secs;
        let len = cfg.days as i64 * bins_per_day + tolerance_bins + 1;
        Self {
            bin_secs,
            bins_per_day,
            tolerance_bins,
            days: cfg.days,
            min_days: cfg.min_days,
            slots: vec![(i64::MIN, 0.0, 0.0); len as usize],
            last: None,
        }
    }

    /// The bin of `t` and its slot.
    fn locate(&self, t: i64) -> (i64, usize) {
        if let Some((bin, start, slot)) = self.last
            && let Some(into) = t.checked_sub(start)
        {
            if (0..self.bin_secs).contains(&into) {
                return (bin, slot);
            }
            if (self.bin_secs..2 * self.bin_secs).contains(&into) {
                let next = if slot + 1 == self.slots.len() {
                    0
                } else {
                    slot + 1
                };
                return (bin + 1, next);
            }
        }
        let bin = t.div_euclid(self.bin_secs);
        (bin, bin.rem_euclid(self.slots.len() as i64) as usize)
    }

    /// Learns `x` at `t`.
    pub(crate) fn push(&mut self, t: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        let (bin, at) = self.locate(t);
        // Not kept when the bin's start is beyond i64 (a timestamp near its end).
        self.last = bin.checked_mul(self.bin_secs).map(|start| (bin, start, at));
        let slot = &mut self.slots[at];
        if slot.0 == bin {
            slot.1 = slot.1.min(x);
            slot.2 = slot.2.max(x);
        } else {
            *slot = (bin, x, x);
        }
    }

    /// Whether, on at least `min_days` of the last `days` days, the series reached
    /// `level` (at or above it when `above`, else at or below) within the tolerance of
    /// `t`'s time of day.
    pub(crate) fn is_familiar(&self, t: i64, level: f64, above: bool) -> bool {
        let (bin, at) = self.locate(t);
        let len = self.slots.len();
        let mut days = 0;
        for day in 1..=self.days as i64 {
            let back = day * self.bins_per_day + self.tolerance_bins;
            let first = bin.saturating_sub(back);
            // Fewer bins back than the ring holds: at most one turn round it. The
            // slots of consecutive bins are consecutive.
            let back = back as usize;
            let mut slot = if at >= back {
                at - back
            } else {
                at + len - back
            };
            let mut reached = false;
            for b in first..=first.saturating_add(2 * self.tolerance_bins) {
                let (held, low, high) = self.slots[slot];
                if held == b && if above { high >= level } else { low <= level } {
                    reached = true;
                    break;
                }
                slot += 1;
                if slot == len {
                    slot = 0;
                }
            }
            if reached {
                days += 1;
                if days >= self.min_days {
                    return true;
                }
            }
        }
        false
    }

    pub(crate) fn state_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(i64, f64, f64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    fn profile(cfg: FamiliarConfig) -> DailyProfile {
        cfg.validate().expect("valid");
        DailyProfile::new(&cfg)
    }

    /// Five-minute points at `base` over `days` days, with a spike of `height` each day
    /// at 03:00 plus `jitter(day)` minutes.
    fn nightly(p: &mut DailyProfile, days: i64, height: f64, jitter: impl Fn(i64) -> i64) {
        for i in 0..days * 288 {
            let t = i * 300;
            let day = t / DAY_SECS;
            let spike_at = day * DAY_SECS + 3 * HOUR + jitter(day) * 60;
            let x = if (t - spike_at).abs() < 150 {
                height
            } else {
                0.1
            };
            p.push(t, x);
        }
    }

    #[test]
    fn a_nightly_job_at_a_wandering_minute_is_familiar() {
        let mut p = profile(FamiliarConfig::default());
        // 03:00, 03:40, 02:25, 03:10, ...: within the tolerance of each other.
        nightly(&mut p, 7, 1.5, |day| {
            [0, 40, -35, 10, 25, -20, 5][day as usize]
        });
        let tonight = 7 * DAY_SECS + 3 * HOUR + 15 * 60;
        assert!(p.is_familiar(tonight, 1.4, true));
        // Higher than any night, or at noon: news.
        assert!(!p.is_familiar(tonight, 2.0, true));
        assert!(!p.is_familiar(7 * DAY_SECS + 12 * HOUR, 1.4, true));
        // Below: the series sat at 0.1 every night, and never at -1.
        assert!(p.is_familiar(tonight, 0.1, false));
        assert!(!p.is_familiar(tonight, -1.0, false));
    }

    #[test]
    fn it_takes_min_days_of_the_last_days() {
        let cfg = FamiliarConfig::default();
        let mut p = profile(cfg.clone());
        // Two nights with the job, then a week without it.
        nightly(&mut p, 2, 1.5, |_| 0);
        let third = 2 * DAY_SECS + 3 * HOUR;
        assert!(!p.is_familiar(third, 1.4, true), "two nights are not three");
        let mut p = profile(cfg);
        nightly(&mut p, 3, 1.5, |_| 0);
        assert!(p.is_familiar(3 * DAY_SECS + 3 * HOUR, 1.4, true));
        // Eight days on, the three nights have left the week.
        for i in 0..8 * 288 {
            p.push(3 * DAY_SECS + i * 300, 0.1);
        }
        assert!(!p.is_familiar(11 * DAY_SECS + 3 * HOUR, 1.4, true));
    }

    #[test]
    fn the_tolerance_reaches_across_midnight() {
        let mut p = profile(FamiliarConfig::default());
        // A job at 23:50 each night, judged at 00:20: the bins of the day before.
        for day in 0..5 {
            p.push(day * DAY_SECS + 23 * HOUR + 50 * 60, 9.0);
        }
        assert!(p.is_familiar(5 * DAY_SECS + 20 * 60, 8.0, true));
    }

    #[test]
    fn after_a_gap_old_slots_never_count() {
        let mut p = profile(FamiliarConfig::default());
        nightly(&mut p, 7, 1.5, |_| 0);
        let tonight = 7 * DAY_SECS + 3 * HOUR;
        assert!(p.is_familiar(tonight, 1.4, true));
        // A gap of exactly the ring's length (a week, the tolerance and a bin): each day
        // asked for maps onto the slot of a night long gone, which must not count.
        let ring = (7 * 96 + 6 + 1) * 900;
        assert!(!p.is_familiar(tonight + ring, 1.4, true));
    }

    /// The cached bin is the bin: forward a second, a bin, two bins, a day, back again.
    #[test]
    fn the_cached_bin_is_the_divided_one() {
        let mut p = profile(FamiliarConfig::default());
        let mut r = crate::anomaly::noise(5);
        let mut t = -3 * DAY_SECS;
        for _ in 0..20_000 {
            let step = match (r() * 6.0) as u32 {
                0 => 0,
                1 => 1,
                2 => 900,
                3 => 1799,
                4 => 86_400,
                _ => -(r() * 5000.0) as i64,
            };
            t += step;
            let bin = t.div_euclid(900);
            assert_eq!(p.locate(t), (bin, bin.rem_euclid(679) as usize), "at {t}");
            p.push(t, r());
        }
    }

    #[test]
    fn any_timestamp_is_safe() {
        let mut p = profile(FamiliarConfig::default());
        for t in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
            p.push(t, 1.0);
            let _ = p.is_familiar(t, 1.0, true);
            let _ = p.is_familiar(t, 1.0, false);
        }
        p.push(0, f64::NAN);
        assert!(!p.is_familiar(DAY_SECS, f64::NAN, true));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |f: fn(&mut FamiliarConfig)| {
            let mut cfg = FamiliarConfig::default();
            f(&mut cfg);
            cfg.validate().expect_err("invalid").to_string()
        };
        assert!(bad(|c| c.days = 0).contains("familiar.days"));
        assert!(bad(|c| c.min_days = 8).contains("familiar.min_days"));
        assert!(bad(|c| c.bin = Duration::from_secs(7 * 60)).contains("familiar.bin"));
        assert!(bad(|c| c.tolerance = Duration::from_secs(13 * 3600)).contains("tolerance"));
        assert!(bad(|c| c.slack = 1.0).contains("familiar.slack"));
        assert!(bad(|c| c.damping = f64::NAN).contains("familiar.damping"));
    }
}
