//! Runs the bundle's detectors on their schedules: each fire fetches the new
//! points from the detector's source, scores them ([`DetectorRun`]) and sends
//! what it found over a bounded channel. The scheduler never overlaps a detector
//! with itself; a full channel makes the next fire wait (backpressure).

use super::detectors::{Detection, DetectorRun, Series};
use crate::schedule::{Job, Missed, Stats, Tick};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, watch};
use vigil_bundle::model::Detector;
use vigil_core::Clock;

/// A fetch in flight.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Vec<Series>, String>> + Send>>;

/// Labelled events in flight: what happened, for evaluations.
pub type TruthFuture =
    Pin<Box<dyn Future<Output = Result<Vec<super::evaluate::Truth>, String>> + Send>>;

/// Where a detector's data comes from: a connector instance, by name.
pub trait Source: Send + Sync {
    /// The series of `query` with points in `[start_ms, end_ms]`.
    fn fetch(&self, query: &str, start_ms: i64, end_ms: i64) -> FetchFuture;

    /// The anomalies the source knows happened in `[start_ms, end_ms]` (labelled
    /// events); none by default.
    fn anomalies(&self, _query: &str, _start_ms: i64, _end_ms: i64) -> TruthFuture {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Sources by the names detectors use in `source:`.
pub type Sources = HashMap<String, Arc<dyn Source>>;

/// What one detector run did, for narration and metrics.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub detector: String,
    /// The clock's time the run covered up to (ms).
    pub at_ms: i64,
    pub series: usize,
    pub points: usize,
    pub detections: Vec<Detection>,
    /// What forecast detectors forecast this run (for `vigil evaluate`).
    pub forecasts: Vec<super::detectors::ForecastRecord>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How much history a detector's first run loads to learn from (never alerts on),
    /// unless the detector says (`history:`).
    pub warmup: std::time::Duration,
    /// Longest range one fetch asks a source for: a longer one (weeks of history) is
    /// read in spans of this length, since sources cap the points of a query
    /// (Prometheus: 11,000 a series, 7.6 days at a 60 s step).
    pub fetch_span: std::time::Duration,
    /// The window a forecast fits on, every run.
    pub forecast_window: std::time::Duration,
    /// Jitter spread over detectors sharing a schedule.
    pub jitter: std::time::Duration,
    /// Detector runs in flight at once.
    pub workers: usize,
    /// Where classifier detectors find the model versions they serve.
    pub models: Option<super::models::ModelShelf>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            warmup: std::time::Duration::from_secs(6 * 3600),
            fetch_span: std::time::Duration::from_secs(86_400),
            forecast_window: std::time::Duration::from_secs(6 * 3600),
            jitter: std::time::Duration::ZERO,
            workers: 2,
            models: None,
        }
    }
}

/// Counters of the detector side, for `/metrics`.
#[derive(Debug, Default)]
pub struct RunnerStats {
    pub schedule: Arc<Stats>,
    pub runs: AtomicU64,
    pub failed_runs: AtomicU64,
    pub points: AtomicU64,
    pub detections: AtomicU64,
    /// Each detector's most recent run, for `vigil status`.
    pub last: std::sync::Mutex<std::collections::BTreeMap<String, LastRun>>,
}

/// How a detector's most recent run went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastRun {
    /// When it finished, on the wall clock.
    pub at_ms: i64,
    pub points: u64,
    pub detections: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Slot {
    run: DetectorRun,
    /// The clock time (ms) the last successful run covered up to.
    covered_ms: Option<i64>,
    /// A classifier's model was missing and that was reported (once, not every run).
    reported_no_model: bool,
}

/// Checks every detector can run here: its schedule parses and its source exists
/// (loading checked its model). Returns one message per problem.
pub fn check(detectors: &[Detector], sources: &Sources) -> Vec<String> {
    let mut problems = Vec::new();
    for d in detectors {
        if let Err(e) = Job::new(&d.name, &d.schedule) {
            problems.push(format!("{}: detector `{}`: {e}", d.file.display(), d.name));
        }
        if !sources.contains_key(&d.source) {
            problems.push(format!(
                "{}: detector `{}`: no source named `{}` (add it under `sources:` in vigil.yaml)",
                d.file.display(),
                d.name,
                d.source
            ));
        }
    }
    problems
}

/// Runs `detectors` until `shutdown` turns true. Reports go to `out`; the runner
/// stops early if `out` is closed.
pub async fn run(
    detectors: Vec<Detector>,
    sources: Sources,
    clock: Clock,
    cfg: RunnerConfig,
    out: mpsc::Sender<RunReport>,
    shutdown: watch::Receiver<bool>,
    stats: Arc<RunnerStats>,
) {
    let mut jobs = Vec::new();
    let mut slots = Vec::new();
    for d in &detectors {
        let Ok(job) = Job::new(&d.name, &d.schedule) else {
            tracing::error!(detector = %d.name, "detector cannot run (see `vigil validate`)");
            continue;
        };
        let Some(source) = sources.get(&d.source).cloned() else {
            tracing::error!(detector = %d.name, source = %d.source, "no such source");
            continue;
        };
        jobs.push(job.with_jitter(cfg.jitter).with_missed(Missed::RunOnce));
        slots.push((
            source,
            Arc::new(Mutex::new(Slot {
                run: DetectorRun::new(d),
                covered_ms: None,
                reported_no_model: false,
            })),
        ));
    }
    if jobs.is_empty() {
        return;
    }
    // The bound is the backpressure: at most `workers` runs wait to be picked up.
    let (tx, rx) = mpsc::channel::<Tick>(cfg.workers.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let scheduler = tokio::spawn(crate::schedule::run(
        jobs,
        clock,
        tx,
        shutdown.clone(),
        stats.schedule.clone(),
    ));
    let slots = Arc::new(slots);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.workers.max(1) {
        let (rx, slots, out, stats, cfg) = (
            rx.clone(),
            slots.clone(),
            out.clone(),
            stats.clone(),
            cfg.clone(),
        );
        workers.spawn(async move {
            loop {
                let tick = { rx.lock().await.recv().await };
                let Some(tick) = tick else { return };
                let (source, slot) = &slots[tick.job];
                let report = run_once(source.as_ref(), slot, &clock, &cfg).await;
                stats.runs.fetch_add(1, Ordering::Relaxed);
                stats
                    .points
                    .fetch_add(report.points as u64, Ordering::Relaxed);
                stats
                    .detections
                    .fetch_add(report.detections.len() as u64, Ordering::Relaxed);
                stats.last.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    report.detector.clone(),
                    LastRun {
                        at_ms: vigil_core::now_ms(),
                        points: report.points as u64,
                        detections: report.detections.len() as u64,
                        error: report.error.as_ref().map(ToString::to_string),
                    },
                );
                if let Some(e) = &report.error {
                    stats.failed_runs.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(detector = %report.detector, "detector run failed: {e}");
                }
                // The guard is held until the report is handed over: a detector
                // whose findings cannot be delivered does not fire again meanwhile.
                let delivered = out.send(report).await.is_ok();
                drop(tick.guard);
                if !delivered {
                    return;
                }
            }
        });
    }
    let _ = scheduler.await;
    // The scheduler stopped: the channel closes and the workers finish their run.
    while workers.join_next().await.is_some() {}
}

/// One run of one detector: fetch what is new, score, report.
async fn run_once(
    source: &dyn Source,
    slot: &Mutex<Slot>,
    clock: &Clock,
    cfg: &RunnerConfig,
) -> RunReport {
    let mut slot = slot.lock().await;
    let now = clock.now_ms();
    let name = slot.run.name().to_string();
    let query = slot.run.detector().query.clone();
    let forecast = slot.run.is_forecast();
    let start = match slot.covered_ms {
        _ if forecast => now.saturating_sub(millis(cfg.forecast_window)),
        Some(covered) => covered + 1,
        None => {
            // The first run: the history is for learning; only what comes after alerts.
            slot.run.alert_from(now.div_euclid(1000));
            let history = slot
                .run
                .detector()
                .history
                .map_or(cfg.warmup, |h| h.as_std());
            now.saturating_sub(millis(history))
        }
    };
    let mut report = RunReport {
        detector: name,
        at_ms: now,
        series: 0,
        points: 0,
        detections: Vec::new(),
        forecasts: Vec::new(),
        error: None,
    };
    if forecast && slot.covered_ms.is_none() {
        slot.run.alert_from(now.div_euclid(1000));
    }
    if start > now {
        // Fired again within the same instant (a fast clock): nothing new to read.
        return report;
    }
    if let Some(spec) = slot.run.classifier().cloned() {
        let served = match cfg.models.as_ref().map(|m| m.serving(&spec.model)) {
            Some(Ok(Some(served))) => served,
            Some(Ok(None)) | None => {
                // Nothing to serve yet: say so once, then wait quietly for a promotion.
                if !slot.reported_no_model {
                    slot.reported_no_model = true;
                    report.error = Some(format!(
                        "model `{}` has no promoted version yet; train one with `vigil model retrain {}` (it serves from the next run)",
                        spec.model, spec.model
                    ));
                }
                return report;
            }
            Some(Err(e)) => {
                report.error = Some(format!("loading model `{}`: {e}", spec.model));
                return report;
            }
        };
        slot.reported_no_model = false;
        let mut by_feature = std::collections::BTreeMap::new();
        for (feature, q) in &slot.run.detector().features {
            match fetch_in_spans(source, q, start, now, cfg.fetch_span).await {
                Ok(series) => {
                    report.series += series.len();
                    report.points += series.iter().map(|s| s.points.len()).sum::<usize>();
                    by_feature.insert(feature.clone(), series);
                }
                Err(e) => {
                    report.error = Some(format!("feature `{feature}` ({q}): {e}"));
                    return report;
                }
            }
        }
        report.detections = slot.run.observe_features(&served, &by_feature);
        slot.covered_ms = Some(now);
        return report;
    }
    match fetch_in_spans(source, &query, start, now, cfg.fetch_span).await {
        Ok(series) => {
            report.series = series.len();
            report.points = series.iter().map(|s| s.points.len()).sum();
            report.detections = slot.run.observe(&series);
            report.forecasts = slot.run.take_forecasts();
            slot.covered_ms = Some(now);
        }
        Err(e) => report.error = Some(e),
    }
    report
}

/// A duration in milliseconds, saturating (a century-long `history:` stays a number).
fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Fetches `[start_ms, end_ms]` in consecutive spans of at most `span`, one at a time,
/// and joins each series' points across them (in time order, as each span's are). A
/// range within one span is one fetch, as before.
async fn fetch_in_spans(
    source: &dyn Source,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    span: std::time::Duration,
) -> Result<Vec<Series>, String> {
    let span_ms = millis(span).max(1);
    let mut joined: Vec<Series> = Vec::new();
    let mut index: HashMap<std::collections::BTreeMap<String, String>, usize> = HashMap::new();
    let mut from = start_ms;
    loop {
        let to = from.saturating_add(span_ms - 1).min(end_ms);
        for series in source.fetch(query, from, to).await? {
            match index.get(&series.labels) {
                Some(&i) => joined[i].points.extend(series.points),
                None => {
                    index.insert(series.labels.clone(), joined.len());
                    joined.push(series);
                }
            }
        }
        if to >= end_ms {
            return Ok(joined);
        }
        from = to + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;
    use vigil_bundle::Bundle;

    /// A source that computes a step function of time: 100 until `step_at`, 1000 after.
    struct Step {
        step_at_ms: i64,
        calls: Arc<AtomicU64>,
    }

    impl Source for Step {
        fn fetch(&self, _query: &str, start_ms: i64, end_ms: i64) -> FetchFuture {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let step_at = self.step_at_ms;
            Box::pin(async move {
                let minute = 60_000;
                let first = start_ms.div_euclid(minute) * minute + minute;
                let points = (first..=end_ms)
                    .step_by(minute as usize)
                    .map(|t| {
                        let jitter = ((t / minute) % 5) as f64;
                        (t / 1000, if t >= step_at { 1000.0 } else { 100.0 + jitter })
                    })
                    .collect();
                Ok(vec![Series {
                    labels: BTreeMap::from([("service".into(), "api".into())]),
                    points,
                }])
            })
        }
    }

    fn detector() -> Detector {
        let text = "apiVersion: vigil/v1\nkind: Detector\nname: step\nschedule: \"* * * * * *\"\nsource: src\nquery: q\nmodel: { anomaly: { method: robust }, threshold: 0.9 }\nalert: { name: Stepped }\n";
        let b = Bundle::from_source(Path::new("d.yaml"), text);
        assert!(!b.has_errors(), "{:?}", b.diagnostics);
        b.detectors[0].clone()
    }

    /// A source that remembers the ranges it was asked for, and gives one point a
    /// minute in each, for two series.
    struct Recording {
        asked: Arc<std::sync::Mutex<Vec<(i64, i64)>>>,
    }

    impl Source for Recording {
        fn fetch(&self, _query: &str, start_ms: i64, end_ms: i64) -> FetchFuture {
            self.asked.lock().expect("lock").push((start_ms, end_ms));
            Box::pin(async move {
                let minute = 60_000;
                let first = start_ms.div_euclid(minute) * minute;
                let points: Vec<(i64, f64)> = (first..=end_ms)
                    .step_by(minute as usize)
                    .filter(|&t| t >= start_ms)
                    .map(|t| (t / 1000, 1.0))
                    .collect();
                Ok(["api", "db"]
                    .iter()
                    .map(|service| Series {
                        labels: BTreeMap::from([("service".into(), service.to_string())]),
                        points: points.clone(),
                    })
                    .collect())
            })
        }
    }

    /// A detector's `history:` sets how far back its first run reads; a range longer
    /// than a fetch span is read span by span, each series joined across them with no
    /// point lost or read twice. Later runs read only what is new, in one fetch.
    #[tokio::test]
    async fn a_long_history_is_read_in_spans_and_joined() {
        let text = "apiVersion: vigil/v1\nkind: Detector\nname: weeks\nschedule: \"* * * * * *\"\nsource: src\nquery: q\nhistory: 3d\nmodel: { anomaly: { method: extreme } }\nalert: { name: Extreme }\n";
        let b = Bundle::from_source(Path::new("d.yaml"), text);
        assert!(!b.has_errors(), "{:?}", b.diagnostics);
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let source = Recording {
            asked: asked.clone(),
        };
        let now = 1_700_000_000_000;
        let clock = Clock::scaled(now, 0.0);
        let cfg = RunnerConfig::default();
        let slot = Mutex::new(Slot {
            run: DetectorRun::new(&b.detectors[0]),
            covered_ms: None,
            reported_no_model: false,
        });
        let first = run_once(&source, &slot, &clock, &cfg).await;
        assert_eq!(first.error, None);
        let day = 86_400_000;
        let start = now - 3 * day;
        // `[now - 3d, now]` holds three days and one millisecond: four spans.
        assert_eq!(
            *asked.lock().expect("lock"),
            vec![
                (start, start + day - 1),
                (start + day, start + 2 * day - 1),
                (start + 2 * day, start + 3 * day - 1),
                (now, now),
            ]
        );
        // Two series, a point a minute over three days (`now` is not on a minute).
        assert_eq!(first.series, 2);
        assert_eq!(first.points, 2 * 3 * 24 * 60);
        assert!(first.detections.is_empty(), "history never alerts");
        asked.lock().expect("lock").clear();
        let later = Clock::scaled(now + 60_000, 0.0);
        let next = run_once(&source, &slot, &later, &cfg).await;
        assert_eq!(*asked.lock().expect("lock"), vec![(now + 1, now + 60_000)]);
        assert_eq!(next.points, 2);
    }

    #[test]
    fn check_names_a_missing_source() {
        let problems = check(&[detector()], &Sources::new());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("no source named `src`"),
            "{problems:?}"
        );
    }

    /// At 600× a wall second is ten minutes: the history loads quietly, the step
    /// (five simulated minutes ahead) alerts once, and the runner stops on shutdown.
    #[tokio::test]
    async fn learns_from_history_then_alerts_on_what_is_new() {
        let clock = Clock::scaled(vigil_core::now_ms(), 600.0);
        let calls = Arc::new(AtomicU64::new(0));
        let mut sources = Sources::new();
        sources.insert(
            "src".into(),
            Arc::new(Step {
                step_at_ms: clock.now_ms() + 5 * 60_000,
                calls: calls.clone(),
            }),
        );
        let (tx, mut rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(RunnerStats::default());
        let runner = tokio::spawn(run(
            vec![detector()],
            sources,
            clock,
            RunnerConfig::default(),
            tx,
            stop_rx,
            stats.clone(),
        ));
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("a first run")
            .expect("report");
        assert!(
            first.points >= 300,
            "six hours of history: {}",
            first.points
        );
        assert!(first.detections.is_empty(), "history never alerts");
        let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let r = rx.recv().await.expect("report");
                if let Some(d) = r.detections.first() {
                    return d.clone();
                }
            }
        })
        .await
        .expect("the step is detected");
        assert_eq!(found.alertname, "Stepped");
        assert!(!found.resolved);
        stop_tx.send(true).expect("stop");
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(5), runner)
            .await
            .expect("the runner stops")
            .expect("no panic");
        assert!(stats.runs.load(Ordering::Relaxed) >= 2);
    }
}
