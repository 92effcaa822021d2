//! Cron triggers: runs jobs (detectors, later anything periodic) on `cron`
//! expressions with seconds, never overlapping a job with itself, with a
//! deterministic per-job jitter, and a policy for runs missed while the process
//! was busy or asleep. Work is handed over a channel; the scheduler does none.

use vigil_core::Clock;

use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// What to do about fire times that passed while nothing could fire them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Forget them; wait for the next fire time.
    Skip,
    /// Run once now to catch up, then keep to the schedule.
    RunOnce,
}

/// A periodic job.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub schedule: cron::Schedule,
    /// Spreads jobs sharing a schedule: each fires up to this much late, by a fixed
    /// per-job offset (so a job keeps its rhythm).
    pub jitter: std::time::Duration,
    pub missed: Missed,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid cron schedule `{text}`: {reason}")]
pub struct ScheduleError {
    pub text: String,
    pub reason: String,
}

impl Job {
    /// A job from a cron expression with seconds (`*/30 * * * * *`), or the usual five
    /// fields (then it fires at second 0).
    pub fn new(name: &str, cron_text: &str) -> Result<Job, ScheduleError> {
        let trimmed = cron_text.trim();
        let six = if trimmed.split_whitespace().count() == 5 {
            format!("0 {trimmed}")
        } else {
            trimmed.to_string()
        };
        let schedule = cron::Schedule::from_str(&six).map_err(|e| ScheduleError {
            text: cron_text.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Job {
            name: name.to_string(),
            schedule,
            jitter: std::time::Duration::ZERO,
            missed: Missed::Skip,
        })
    }

    pub fn with_jitter(mut self, jitter: std::time::Duration) -> Job {
        self.jitter = jitter;
        self
    }

    pub fn with_missed(mut self, missed: Missed) -> Job {
        self.missed = missed;
        self
    }

    /// This job's fixed offset within its jitter window.
    pub fn jitter_offset(&self) -> chrono::Duration {
        let window = self.jitter.as_millis() as u64;
        if window == 0 {
            return chrono::Duration::zero();
        }
        let h = vigil_core::fingerprint::fnv1a64(self.name.as_bytes());
        chrono::Duration::milliseconds((h % window) as i64)
    }

    /// The first fire time strictly after `after` (jitter included).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = self.jitter_offset();
        self.schedule
            .after(&(after - offset))
            .next()
            .map(|t| t + offset)
    }
}

/// What the scheduler decides at a moment, for one job. Pure, so it is testable
/// without waiting for real time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet; wake at this time.
    Wait(DateTime<Utc>),
    /// Fire the run scheduled at this time.
    Fire(DateTime<Utc>),
    /// `missed` fire times passed unserved; with [`Missed::Skip`] they are dropped and
    /// the job waits for `next`; with [`Missed::RunOnce`] one catch-up run fires now.
    Missed {
        missed: u64,
        catch_up: bool,
        next: DateTime<Utc>,
    },
}

/// How late a fire may be and still count as on time.
const GRACE: chrono::Duration = chrono::Duration::seconds(1);

/// Decides what `job`, whose next fire time is `next`, should do at `now`.
pub fn due(job: &Job, next: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    due_within(job, next, now, GRACE)
}

/// [`due`] with the lateness that still counts as on time. A compressed clock needs
/// more: a quarter of a wall second at 60× is 15 simulated seconds.
pub fn due_within(
    job: &Job,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Due {
    if now < next {
        return Due::Wait(next);
    }
    if now - next <= grace {
        return Due::Fire(next);
    }
    let mut missed = 0u64;
    let mut t = next;
    while t <= now && missed < 1_000_000 {
        missed += 1;
        match job.next_after(t) {
            Some(n) => t = n,
            None => break,
        }
    }
    Due::Missed {
        missed,
        catch_up: job.missed == Missed::RunOnce,
        next: t,
    }
}

/// One run handed to a worker.
#[derive(Debug)]
pub struct Tick {
    pub job: usize,
    pub name: String,
    pub scheduled: DateTime<Utc>,
    pub fired: DateTime<Utc>,
    /// A catch-up run for missed fire times.
    pub catch_up: bool,
    /// Drop it (or call `done`) when the run is over: until then the job will not fire again.
    pub guard: RunGuard,
}

/// Marks a job as running until dropped.
#[derive(Debug)]
pub struct RunGuard {
    running: Arc<AtomicBool>,
}

impl RunGuard {
    pub fn done(self) {}
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

/// Counters, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub fired: AtomicU64,
    pub skipped_overlap: AtomicU64,
    pub missed: AtomicU64,
}

/// Runs `jobs` on `clock` until `shutdown` turns true, sending each run to `tx`.
/// When the receiver is full, the tick waits (backpressure): the job simply runs late.
pub async fn run(
    jobs: Vec<Job>,
    clock: Clock,
    tx: mpsc::Sender<Tick>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (idx, job) in jobs.into_iter().enumerate() {
        let (tx, mut shutdown, stats) = (tx.clone(), shutdown.clone(), stats.clone());
        tasks.spawn(async move {
            let running = Arc::new(AtomicBool::new(false));
            let grace = GRACE.max(chrono::Duration::milliseconds((clock.speed() * 250.0) as i64));
            let Some(mut next) = job.next_after(clock.now()) else { return };
            loop {
                let now = clock.now();
                let scheduled = match due_within(&job, next, now, grace) {
                    Due::Wait(at) => {
                        let wait = clock.wall_duration((at - now).to_std().unwrap_or_default());
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => continue,
                            _ = shutdown.changed() => if *shutdown.borrow() { return } else { continue },
                        }
                    }
                    Due::Fire(at) => {
                        next = match job.next_after(at) { Some(n) => n, None => return };
                        (at, false)
                    }
                    Due::Missed { missed, catch_up, next: n } => {
                        stats.missed.fetch_add(missed, Ordering::Relaxed);
                        tracing::warn!(job = %job.name, missed, catch_up, "missed scheduled runs");
                        next = n;
                        if !catch_up {
                            continue;
                        }
                        (now, true)
                    }
                };
                if running.swap(true, Ordering::SeqCst) {
                    stats.skipped_overlap.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job = %job.name, "previous run still going; skipping this one");
                    continue;
                }
                stats.fired.fetch_add(1, Ordering::Relaxed);
                let tick = Tick {
                    job: idx,
                    name: job.name.clone(),
                    scheduled: scheduled.0,
                    fired: clock.now(),
                    catch_up: scheduled.1,
                    guard: RunGuard { running: running.clone() },
                };
                if tx.send(tick).await.is_err() {
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_field_schedules() {
        let j = Job::new("a", "*/15 * * * * *").unwrap();
        assert_eq!(
            j.next_after(at("2026-11-24T10:00:01Z")),
            Some(at("2026-11-24T10:00:15Z"))
        );
        let j = Job::new("b", "*/5 * * * *").unwrap();
        assert_eq!(
            j.next_after(at("2026-11-24T10:01:00Z")),
            Some(at("2026-11-24T10:05:00Z"))
        );
        assert!(Job::new("c", "every minute").is_err());
    }

    #[test]
    fn jitter_is_fixed_per_job_and_within_the_window() {
        let a = Job::new("disk-forecast", "0 * * * * *")
            .unwrap()
            .with_jitter(std::time::Duration::from_secs(10));
        let off = a.jitter_offset();
        assert!(off >= chrono::Duration::zero() && off < chrono::Duration::seconds(10));
        let t1 = a.next_after(at("2026-11-24T10:00:30Z")).unwrap();
        let t2 = a.next_after(t1).unwrap();
        assert_eq!(
            t2 - t1,
            chrono::Duration::minutes(1),
            "jitter keeps the rhythm"
        );
        assert_eq!(t1, at("2026-11-24T10:01:00Z") + off);
    }

    #[test]
    fn decides_wait_fire_and_missed() {
        let skip = Job::new("s", "*/10 * * * * *").unwrap();
        let next = at("2026-11-24T10:00:10Z");
        assert_eq!(
            due(&skip, next, at("2026-11-24T10:00:05Z")),
            Due::Wait(next)
        );
        assert_eq!(
            due(&skip, next, at("2026-11-24T10:00:10.500Z")),
            Due::Fire(next)
        );
        // Asleep for a minute: 6 fire times (10s … 60s) passed.
        assert_eq!(
            due(&skip, next, at("2026-11-24T10:01:05Z")),
            Due::Missed {
                missed: 6,
                catch_up: false,
                next: at("2026-11-24T10:01:10Z")
            }
        );
        let once = skip.clone().with_missed(Missed::RunOnce);
        assert!(matches!(
            due(&once, next, at("2026-11-24T10:01:05Z")),
            Due::Missed { catch_up: true, .. }
        ));
    }

    #[tokio::test]
    async fn fires_every_second_and_never_overlaps_a_slow_run() {
        let (tx, mut rx) = mpsc::channel(16);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let job = Job::new("every-second", "* * * * * *").unwrap();
        let runner = tokio::spawn(run(vec![job], Clock::wall(), tx, stop_rx, stats.clone()));
        // The first run holds its guard for ~2.2 s: the ticks in between are skipped.
        let first = tokio::time::timeout(std::time::Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
        drop(first.guard);
        let second = tokio::time::timeout(std::time::Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(second.scheduled > first.scheduled);
        stop_tx.send(true).unwrap();
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(3), runner)
            .await
            .unwrap()
            .unwrap();
        assert!(
            stats.skipped_overlap.load(Ordering::Relaxed) >= 1,
            "{stats:?}"
        );
        assert_eq!(stats.fired.load(Ordering::Relaxed), 2);
    }
}
