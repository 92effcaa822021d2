//! The closed loop, as `vigil serve` and `vigil demo` run it: the detector
//! scheduler, the connectors it queries, the alert pipeline, policies and the
//! executor in one tokio runtime, joined by bounded channels.
//!
//! ```text
//! schedule::runner ──(RunReport, bounded)──► forwarder ──► AlertService::ingest_detections
//!                                                            │ tick: group, correlate
//!                                                            ▼
//!                                              Trigger → Automation (policy) → Executor
//! ```
//!
//! At start every unfinished execution in the store is resumed (the executor decides
//! what is safe to re-run); at shutdown the detectors stop first, then the pipeline,
//! then in-flight executions get a grace period to finish or pause. Whatever is still
//! running after it stays journaled as running and resumes at the next start.

use crate::compose::Composition;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vigil_alert::service::{AlertService, Options, ServiceError};
use vigil_bundle::model::TriggerMode;
use vigil_core::Clock;
use vigil_exec::record::ExecStatus;
use vigil_exec::record::ExecutionStore;
use vigil_plugin_host::{Connector, TimeRange};
use vigil_runtime::detectors::Series;
use vigil_runtime::evaluate::Truth;
use vigil_runtime::runner::{
    self, FetchFuture, RunReport, RunnerConfig, RunnerStats, Source, Sources, TruthFuture,
};
use vigil_runtime::store::DetectorStore;
use vigil_telemetry::Metrics;

/// How the loop runs.
#[derive(Clone, Default)]
pub struct DaemonOptions {
    pub clock: Clock,
    pub runner: RunnerConfig,
    /// Overrides `alerting.runbooks` (e.g. the demo runs live).
    pub trigger_mode: Option<TriggerMode>,
    /// How often the alert pipeline ticks (default: from `group_wait`/`group_interval`).
    pub tick: Option<Duration>,
}

impl std::fmt::Debug for DaemonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonOptions")
            .field("clock", &self.clock)
            .field("runner", &self.runner)
            .field("trigger_mode", &self.trigger_mode)
            .finish_non_exhaustive()
    }
}

/// A connector instance as a detector source: the plugin call runs on tokio's
/// blocking pool; its samples become `(unix seconds, value)` points.
#[derive(Debug, Clone)]
pub struct ConnectorSource(pub Connector);

impl Source for ConnectorSource {
    fn fetch(&self, query: &str, start_ms: i64, end_ms: i64) -> FetchFuture {
        let connector = self.0.clone();
        let query = query.to_string();
        Box::pin(async move {
            let batch = connector
                .fetch_async(query, TimeRange::range(start_ms, end_ms, 0))
                .await
                .map_err(|e| e.to_string())?;
            Ok(batch
                .series
                .into_iter()
                .map(|s| Series {
                    labels: s.labels,
                    points: s
                        .samples
                        .iter()
                        .map(|p| (p.timestamp.div_euclid(1000), p.value))
                        .collect(),
                })
                .collect())
        })
    }

    fn anomalies(&self, query: &str, start_ms: i64, end_ms: i64) -> TruthFuture {
        let connector = self.0.clone();
        let query = query.to_string();
        Box::pin(async move {
            // A coarse step: only the events matter here, not the samples.
            let batch = connector
                .fetch_async(query, TimeRange::range(start_ms, end_ms, 60_000))
                .await
                .map_err(|e| e.to_string())?;
            Ok(batch
                .events
                .iter()
                .filter_map(|e| Truth::from_event(e.timestamp, &e.labels))
                .collect())
        })
    }
}

/// What one evaluation reads: the store's predictions, forecasts and incidents.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub predictions: &'a [vigil_runtime::detectors::Detection],
    pub forecasts: &'a [vigil_runtime::detectors::ForecastRecord],
    pub incidents: &'a [vigil_alert::Incident],
}

/// Scores the stored predictions of every detector against what its source says
/// happened, from the first prediction's time minus `window` to `until_ms`; the
/// stored forecasts against what the series then did; and failure predictions
/// against the failures that came or that a verified remediation averted.
pub async fn evaluate(
    detectors: &[vigil_bundle::model::Detector],
    sources: &Sources,
    record: Record<'_>,
    window_ms: i64,
    from_ms: i64,
    until_ms: i64,
) -> Vec<Result<vigil_runtime::evaluate::Evaluation, String>> {
    let (predictions, forecasts) = (record.predictions, record.forecasts);
    let mut out = Vec::new();
    for d in detectors {
        let mine: Vec<_> = predictions
            .iter()
            .filter(|p| p.detector == d.name)
            .cloned()
            .collect();
        let Some(source) = sources.get(&d.source) else {
            out.push(Err(format!("{}: no source `{}`", d.name, d.source)));
            continue;
        };
        if !d.features.is_empty() {
            out.push(
                evaluate_failure_predictions(
                    d,
                    source.as_ref(),
                    &mine,
                    record.incidents,
                    from_ms,
                    until_ms,
                )
                .await,
            );
            continue;
        }
        let made: Vec<_> = forecasts
            .iter()
            .filter(|f| f.detector == d.name)
            .cloned()
            .collect();
        let accuracy = if made.is_empty() {
            Vec::new()
        } else {
            // What the series did, from the first forecast's time to now.
            let first = made.iter().map(|f| f.t).min().unwrap_or(0) * 1000;
            match source.fetch(&d.query, first - 3_600_000, until_ms).await {
                Ok(series) => {
                    vigil_runtime::evaluate::forecast_accuracy(&made, |labels, t| {
                        let points = &series.iter().find(|s| &s.labels == labels)?.points;
                        // The observation nearest to `t`, if one is close (a sample apart).
                        let i = points.partition_point(|p| p.0 < t);
                        let near = [i.checked_sub(1), Some(i)]
                            .into_iter()
                            .flatten()
                            .filter_map(|i| points.get(i))
                            .min_by_key(|p| (p.0 - t).abs())?;
                        ((near.0 - t).abs() <= 600).then_some(near.1)
                    })
                }
                Err(e) => {
                    out.push(Err(format!("{}: reading `{}`: {e}", d.name, d.source)));
                    continue;
                }
            }
        };
        match source.anomalies(&d.query, from_ms, until_ms).await {
            Ok(truths) => {
                let mut e =
                    vigil_runtime::evaluate::evaluate(&d.name, &mine, &truths, window_ms, until_ms);
                e.forecasts = accuracy;
                out.push(Ok(e));
            }
            Err(e) => out.push(Err(format!(
                "{}: asking `{}` what happened: {e}",
                d.name, d.source
            ))),
        }
    }
    out
}

/// A classifier detector's predictions against the failures of its hosts: those
/// its source labelled, and those a verified remediation averted.
async fn evaluate_failure_predictions(
    d: &vigil_bundle::model::Detector,
    source: &dyn Source,
    mine: &[vigil_runtime::detectors::Detection],
    incidents: &[vigil_alert::Incident],
    from_ms: i64,
    until_ms: i64,
) -> Result<vigil_runtime::evaluate::Evaluation, String> {
    let training = d
        .model
        .classifier()
        .map(|c| c.training.clone())
        .unwrap_or_default();
    let mut failures: Vec<Truth> = Vec::new();
    for q in d.features.values() {
        let found = source
            .anomalies(q, from_ms, until_ms)
            .await
            .map_err(|e| format!("{}: asking `{}` what happened: {e}", d.name, d.source))?;
        for mut t in found
            .into_iter()
            .filter(|t| t.kind == training.failure_kind)
        {
            // Each metric of a host reports its failure: keep one per host and time.
            t.labels.remove("__name__");
            if !failures.contains(&t) {
                failures.push(t);
            }
        }
    }
    for o in crate::learn::outcomes(incidents, &d.name) {
        if let Some(at_ms) = o.averted_ms {
            // The incident's labels are its alert's: the prediction matches them.
            failures.push(Truth {
                at_ms,
                labels: o.labels,
                kind: vigil_runtime::evaluate::AVERTED.into(),
            });
        }
    }
    // How far ahead a prediction may come: twice what the alerts say they look ahead
    // (an early warning still counts), by default twice the training horizon in minutes.
    let ahead_ms = 2
        * mine
            .iter()
            .filter_map(|p| p.annotations.get("lead_seconds")?.parse::<i64>().ok())
            .max()
            .unwrap_or(training.horizon as i64 * 60)
        * 1000;
    Ok(vigil_runtime::evaluate::evaluate_predictions(
        &d.name, mine, &failures, ahead_ms, until_ms,
    ))
}

/// What a start found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    pub detectors: usize,
    /// Unfinished executions handed back to the executor.
    pub resumed: Vec<String>,
}

/// The running loop.
pub struct Daemon {
    svc: Arc<AlertService>,
    stop: watch::Sender<bool>,
    runner: Option<JoinHandle<()>>,
    forwarder: Option<JoinHandle<()>>,
    ticker: JoinHandle<()>,
    pruner: JoinHandle<()>,
    resumes: Vec<JoinHandle<()>>,
    pub stats: Arc<RunnerStats>,
    pub started: Started,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// What a shutdown managed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Every execution started for an incident finished or paused within the grace period.
    pub drained: bool,
}

impl Daemon {
    /// Starts the loop for the composition's bundle inside the current tokio runtime.
    /// `sources` are the connectors detectors may name.
    pub async fn start(
        comp: &Composition,
        sources: Sources,
        metrics: Arc<Metrics>,
        opts: DaemonOptions,
    ) -> Result<Daemon, ServiceError> {
        let (bundle, store) = (comp.bundle(), comp.store().clone());
        let svc = comp.alert_service(Options {
            clock: opts.clock,
            narrator: None,
            trigger_mode: opts.trigger_mode,
        })?;
        let mut started = Started::default();

        // Resume what a previous process left unfinished, before anything new starts.
        let mut resumes = Vec::new();
        if let Some(executor) = svc.executor() {
            let driven = executor.in_flight();
            for rec in store.executions()? {
                // One this process still drives (a reload's predecessor) is not resumed.
                if rec.status != ExecStatus::Running || driven.contains(&rec.id) {
                    continue;
                }
                started.resumed.push(rec.id.clone());
                metrics.executions_resumed.inc();
                let executor = executor.clone();
                resumes.push(tokio::spawn(async move {
                    match executor.resume(&rec.id).await {
                        Ok(r) => {
                            tracing::info!(execution = %r.id, status = r.status.as_str(), "resumed")
                        }
                        Err(e) => tracing::error!(execution = %rec.id, "resume: {e}"),
                    }
                }));
            }
        }

        // Open incidents a crash left before their runbooks were started.
        svc.start_matching(&svc.open_incidents()).await?;

        let a = &bundle.config.alerting;
        let period = opts.tick.unwrap_or_else(|| {
            let sim = a.group_wait.as_std().min(a.group_interval.as_std()) / 4;
            opts.clock
                .wall_duration(sim)
                .clamp(Duration::from_millis(20), Duration::from_secs(1))
        });
        let ticker = svc.spawn_ticker(period);
        let pruner = tokio::spawn(prune_every(svc.clone(), bundle.config.retention.clone()));

        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(RunnerStats::default());
        let (runner, forwarder) = if bundle.detectors.is_empty() {
            (None, None)
        } else {
            started.detectors = bundle.detectors.len();
            // Reports wait here for the pipeline; a full queue holds the detectors back.
            let (tx, rx) = mpsc::channel::<RunReport>(16);
            let mut runner_cfg = opts.runner.clone();
            // Classifier detectors serve the store's promoted models.
            runner_cfg
                .models
                .get_or_insert_with(|| vigil_runtime::models::ModelShelf::new(store.clone()));
            let runner = tokio::spawn(runner::run(
                bundle.detectors.clone(),
                sources,
                opts.clock,
                runner_cfg,
                tx,
                stop_rx,
                stats.clone(),
            ));
            let forwarder = tokio::spawn(forward(rx, svc.clone(), metrics));
            (Some(runner), Some(forwarder))
        };
        Ok(Daemon {
            svc,
            stop,
            runner,
            forwarder,
            ticker,
            pruner,
            resumes,
            stats,
            started,
        })
    }

    pub fn service(&self) -> &Arc<AlertService> {
        &self.svc
    }

    /// Stops detectors, then the pipeline, then waits up to `grace` for executions.
    pub async fn shutdown(mut self, grace: Duration) -> Result<Stopped, ServiceError> {
        let _ = self.stop.send(true);
        if let Some(r) = self.runner.take() {
            let _ = r.await;
        }
        // The runner dropped its sender: the forwarder delivers what is queued, then ends.
        if let Some(f) = self.forwarder.take() {
            let _ = f.await;
        }
        // One last turn so that what the detectors said is grouped and persisted.
        self.svc.tick().await?;
        self.ticker.abort();
        self.pruner.abort();
        let deadline = tokio::time::Instant::now() + grace;
        let mut drained = self.svc.drain(grace).await;
        for r in self.resumes.drain(..) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            drained &= tokio::time::timeout(left, r).await.is_ok();
        }
        self.svc.store().sync().await?;
        Ok(Stopped { drained })
    }
}

/// Retention: every `r.every`, removes what is older than each kind's keep, on the
/// pipeline's clock (alerts, incidents, detections and forecasts carry its time) or
/// the wall clock (executions).
async fn prune_every(svc: Arc<AlertService>, r: vigil_bundle::model::RetentionDoc) {
    let every = r.every.as_std().max(Duration::from_secs(1));
    let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        match prune_once(&svc, &r).await {
            Ok(p) => tracing::info!(
                alerts = p.alerts,
                incidents = p.incidents,
                executions = p.executions,
                detections = p.detections,
                forecasts = p.forecasts,
                "retention: pruned"
            ),
            Err(e) => tracing::error!("retention: {e}"),
        }
    }
}

/// How many records of each kind a pruning removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    pub alerts: usize,
    pub incidents: usize,
    pub executions: usize,
    pub detections: usize,
    pub forecasts: usize,
}

/// One pruning pass (see [`vigil_bundle::model::RetentionDoc`]).
pub async fn prune_once(
    svc: &Arc<AlertService>,
    r: &vigil_bundle::model::RetentionDoc,
) -> Result<Pruned, ServiceError> {
    use vigil_bundle::model::RetentionDoc as R;
    let now = svc.clock().now_ms();
    let before = |keep| R::keep(keep).map(|d| now - d.as_millis() as i64);
    let (alerts, incidents) = svc.prune(before(r.alerts), before(r.incidents)).await?;
    let store = svc.store().clone();
    let wall = vigil_core::now_ms();
    let (executions, detections, forecasts) = (
        R::keep(r.executions).map(|d| wall - d.as_millis() as i64),
        before(r.detections).map(|ms| ms / 1000),
        before(r.forecasts).map(|ms| ms / 1000),
    );
    let counts = tokio::task::spawn_blocking(move || {
        Ok::<_, vigil_store::StoreError>((
            executions
                .map(|b| store.prune_executions(b))
                .transpose()?
                .unwrap_or(0),
            detections
                .map(|b| store.prune_predictions(b))
                .transpose()?
                .unwrap_or(0),
            forecasts
                .map(|b| store.prune_forecasts(b))
                .transpose()?
                .unwrap_or(0),
        ))
    })
    .await
    .map_err(|e| ServiceError::from(vigil_store::StoreError::Io(format!("pruning: {e}"))))??;
    svc.store().sync().await?;
    Ok(Pruned {
        alerts,
        incidents,
        executions: counts.0,
        detections: counts.1,
        forecasts: counts.2,
    })
}

/// Hands detector findings to the pipeline, one run's worth at a time.
async fn forward(mut rx: mpsc::Receiver<RunReport>, svc: Arc<AlertService>, metrics: Arc<Metrics>) {
    while let Some(report) = rx.recv().await {
        let outcome = if report.error.is_some() {
            "failed"
        } else {
            "ok"
        };
        Metrics::count(
            &metrics.detector_runs,
            &[("detector", &report.detector), ("outcome", outcome)],
        );
        metrics.detector_points.inc_by(report.points as u64);
        if let Err(e) = svc.store().put_forecasts(&report.forecasts) {
            tracing::error!(detector = %report.detector, "storing forecasts: {e}");
        }
        if report.detections.is_empty() {
            continue;
        }
        if let Err(e) = svc.ingest_detections(&report.detections).await {
            tracing::error!(detector = %report.detector, "ingesting detections: {e}");
        }
    }
}

/// Every connector instance of `catalog`, by name, as a detector source.
pub fn sources(catalog: &vigil_plugin_host::PluginCatalog) -> Sources {
    catalog
        .instances()
        .filter_map(|i| catalog.connector(i.name()))
        .map(|c| {
            let name = c.name().to_string();
            (name, Arc::new(ConnectorSource(c)) as Arc<dyn Source>)
        })
        .collect()
}
