//! The alert service: the [`Engine`] behind a lock, the store, metrics and runbook
//! triggering. What `vigil serve` runs; the HTTP layer only calls into it.

use super::trigger::Trigger;
use super::*;
use crate::store::AlertStore;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use vigil_core::Clock;
use vigil_core::story::{Narrator, Story};
use vigil_exec::record::ExecutionStore;
use vigil_runtime::detectors::Detection;
use vigil_runtime::store::DetectorStore;
use vigil_store::{Store, StoreError};
use vigil_telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no {what} `{id}`")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub received: usize,
    pub new: usize,
    pub deduplicated: usize,
}

pub struct AlertService {
    /// Shared with the blocking threads that run ingests and ticks.
    engine: Arc<Mutex<Engine>>,
    store: Store,
    trigger: Trigger,
    metrics: Arc<Metrics>,
    started: Mutex<HashSet<(String, String)>>,
    last_stats: Mutex<engine::Stats>,
    /// The pipeline's time: the wall clock, or a compressed one (`--speed`).
    clock: Clock,
    narrator: Option<Narrator>,
    /// Executions started for incidents and not finished yet (graceful shutdown waits).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Ingested alerts' new state, durable before the answer; the tables catch up at
    /// the next store sync.
    ingest_log: Arc<vigil_store::RedoLog>,
}

impl std::fmt::Debug for AlertService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertService")
            .field("trigger", &self.trigger)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// How many executions may run for incidents at once; more wait their turn.
pub const MAX_IN_FLIGHT: usize = 64;

/// The redo log acknowledged alerts go to (a directory in the store's).
const INGEST_LOG: &str = "ingest-log";

/// Most alerts taken in under one hold of the engine's lock: a large POST lets other
/// callers (the ticker, the incidents API) in between its chunks.
const INGEST_CHUNK: usize = 1024;
/// Batches up to this size are ingested on the request's own task when the engine is free.
const INLINE_INGEST: usize = 16;

/// Work done by one turn of the pipeline under the engine's lock (see
/// [`Engine::tick_bounded`]); a tick with more due takes several turns.
const TICK_BUDGET: usize = 4096;

/// Runs engine and store work on tokio's blocking pool, so that an async worker
/// (and with it `/healthz`) is never held by it. A panic there is the caller's.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Corrupt(format!("alert pipeline task: {e}"))),
    }
}

/// Ingests `alerts` into a locked engine: what was new, and the records to store
/// (each alert once, in its state after the batch).
fn ingest_into(
    e: &mut Engine,
    alerts: Vec<IncomingAlert>,
    now: i64,
) -> (Ingested, Vec<AlertRecord>) {
    let mut out = Ingested {
        received: alerts.len(),
        ..Default::default()
    };
    let mut fps: Vec<u64> = alerts.into_iter().map(|a| e.ingest(a, now)).collect();
    fps.sort_unstable();
    fps.dedup();
    let records: Vec<AlertRecord> = fps.iter().filter_map(|fp| e.alert(*fp)).cloned().collect();
    out.new = records.iter().filter(|r| r.count == 1).count();
    out.deduplicated = out.received - out.new;
    (out, records)
}

/// Writes alerts' new state to the tables and to the ingest log; returns the log
/// record to wait for before acknowledging.
fn persist(
    store: &Store,
    log: &vigil_store::RedoLog,
    records: &[AlertRecord],
) -> Result<u64, StoreError> {
    store.put_alerts(records)?;
    let bytes = serde_json::to_vec(records).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    log.append(&bytes)
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the service reads time and tells what it does.
#[derive(Clone, Default)]
pub struct Options {
    pub clock: Clock,
    pub narrator: Option<Narrator>,
    /// Overrides `alerting.runbooks` (the demo runs live).
    pub trigger_mode: Option<vigil_bundle::model::TriggerMode>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("clock", &self.clock)
            .field("narrator", &self.narrator.is_some())
            .finish()
    }
}

/// A detection as an alert: its labels, the finding as annotations (`value`, the
/// score, the explanation), and the moment it applies on the detector's clock.
pub fn detection_alert(d: &Detection) -> IncomingAlert {
    let mut annotations = d.annotations.clone();
    annotations.insert("value".into(), format!("{}", d.value));
    annotations.insert("score".into(), format!("{:.3}", d.score));
    let at_ms = d.at.saturating_mul(1000);
    IncomingAlert {
        labels: d.labels.clone(),
        annotations,
        status: if d.resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        starts_at_ms: (!d.resolved).then_some(at_ms),
        ends_at_ms: d.resolved.then_some(at_ms),
        generator_url: format!("vigil://detectors/{}", d.detector),
    }
}

impl AlertService {
    /// Builds the service and restores alerts, incidents and silences from the store.
    pub fn open(
        store: Store,
        engine: Engine,
        trigger: Trigger,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<AlertService>, ServiceError> {
        Self::open_with(store, engine, trigger, metrics, Options::default())
    }

    /// [`AlertService::open`] on a given clock, telling its story to a narrator.
    pub fn open_with(
        store: Store,
        engine: Engine,
        trigger: Trigger,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Result<Arc<AlertService>, ServiceError> {
        let mut engine = engine;
        // Alerts acknowledged after the tables' last flush are redone from the log
        // first: each record is alerts' whole state, so redoing one twice is harmless.
        let (ingest_log, redo) = store.redo_log(INGEST_LOG)?;
        if !redo.is_empty() {
            for bytes in &redo {
                let records: Vec<AlertRecord> = serde_json::from_slice(bytes).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{INGEST_LOG}: a record that does not read back: {e}"
                    ))
                })?;
                store.put_alerts(&records)?;
            }
            store.sync_blocking()?;
            tracing::info!(records = redo.len(), "alerts redone from the ingest log");
        }
        let incidents = store.incidents()?;
        let started = incidents
            .iter()
            .flat_map(|i| {
                i.executions
                    .iter()
                    .map(|e| (i.id.clone(), e.runbook.clone()))
            })
            .collect();
        engine.restore(
            store.alerts()?,
            incidents,
            store.silences()?,
            options.clock.now_ms(),
        );
        engine.restore_groups(store.groups()?);
        let svc = AlertService {
            engine: Arc::new(Mutex::new(engine)),
            store,
            trigger,
            metrics,
            started: Mutex::new(started),
            last_stats: Mutex::new(engine::Stats::default()),
            clock: options.clock,
            narrator: options.narrator,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            ingest_log,
        };
        svc.reconcile_starting()?;
        svc.update_metrics();
        Ok(Arc::new(svc))
    }

    /// Open incidents, for [`AlertService::start_matching`] at start.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.engine()
            .incidents()
            .filter(|i| i.is_open())
            .cloned()
            .collect()
    }

    /// After a restart: ties runbooks recorded as starting to the executions they
    /// became (the daemon resumes those), or marks them as never started.
    fn reconcile_starting(&self) -> Result<(), StoreError> {
        let mut found = std::collections::HashMap::new();
        for rec in self.store.executions()? {
            if let Some(inc) = rec.incident["id"].as_str() {
                found.insert(
                    (inc.to_string(), rec.runbook.clone()),
                    (rec.id.clone(), RunOutcome::from(rec.status)),
                );
            }
        }
        let changed = self.engine().reconcile_starting(&found);
        // What counts as started is what the incidents say now: a dropped `starting`
        // entry is free to start again.
        let started: HashSet<(String, String)> = self
            .engine()
            .incidents()
            .flat_map(|i| {
                i.executions
                    .iter()
                    .map(|e| (i.id.clone(), e.runbook.clone()))
            })
            .collect();
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = started;
        for inc in &changed {
            self.store.put_incident(inc)?;
        }
        if !changed.is_empty() {
            self.store.sync_blocking()?;
        }
        Ok(())
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The pipeline's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Appends a change to an incident's journal (not yet durable) and tells it.
    fn journal_incident(&self, id: &str, ev: IncidentEvent) -> Result<(), StoreError> {
        self.tell(Story::Incident {
            at_ms: ev.ts_ms,
            id: id.to_string(),
            change: ev.kind.clone(),
            detail: ev.detail.clone(),
        });
        self.store.append_incident_event(id, ev).map(|_| ())
    }

    fn tell(&self, story: Story) {
        if let Some(n) = &self.narrator {
            n(story);
        }
    }

    /// Takes detector findings in as alerts (durably), telling each one.
    pub async fn ingest_detections(
        &self,
        detections: &[Detection],
    ) -> Result<Ingested, ServiceError> {
        for d in detections {
            let state = if d.resolved { "resolved" } else { "firing" };
            Metrics::count(
                &self.metrics.detections,
                &[("detector", &d.detector), ("state", state)],
            );
            self.tell(Story::Detection {
                at_ms: d.at.saturating_mul(1000),
                detector: d.detector.clone(),
                alertname: d.alertname.clone(),
                labels: d.labels.clone(),
                score: d.score,
                value: d.value,
                summary: d
                    .annotations
                    .get("description")
                    .or_else(|| d.annotations.get("summary"))
                    .cloned()
                    .unwrap_or_default(),
                resolved: d.resolved,
            });
        }
        // Stored with the alerts (made durable by the same flush), for `vigil evaluate`.
        self.store.put_predictions(detections)?;
        self.ingest(detections.iter().map(detection_alert).collect())
            .await
    }

    /// Approves or rejects what an execution waits on (bound to `expected_hash` when
    /// given) and, when the execution belongs to an incident, records how it ended
    /// there — a verified remediation resolves the incident.
    pub async fn decide_approval(
        self: &Arc<Self>,
        id: &str,
        approve: bool,
        actor: &str,
        comment: Option<&str>,
        expected_hash: Option<&str>,
    ) -> Result<Option<vigil_exec::ExecutionReport>, vigil_exec::ExecError> {
        let Some(executor) = self.executor() else {
            return Err(vigil_exec::ExecError::NotAwaiting {
                id: id.to_string(),
                status: "not run by this server",
            });
        };
        let (id, actor) = (id.to_string(), actor.to_string());
        let (comment, expected) = (comment.map(String::from), expected_hash.map(String::from));
        let exec_id = id.clone();
        // A task of its own: the run goes on if whoever asked stops waiting.
        let report = tokio::spawn(async move {
            executor
                .decide_approval(
                    &exec_id,
                    approve,
                    &actor,
                    comment.as_deref(),
                    expected.as_deref(),
                )
                .await
        })
        .await
        .map_err(|e| {
            vigil_exec::ExecError::Store(StoreError::Corrupt(format!("approval task: {e}")))
        })??;
        let reason = if approve { "approved" } else { "rejected" };
        self.record_execution(&id, report.as_ref(), reason).await?;
        Ok(report)
    }

    /// Records on its incident (if it has one) how execution `id` ended or paused —
    /// after an approval, or a resume at start; a verified remediation resolves it.
    pub async fn record_execution(
        &self,
        id: &str,
        report: Option<&vigil_exec::ExecutionReport>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let rec = self.store.execution(id)?;
        let Some(incident) = rec.incident["id"].as_str() else {
            return Ok(());
        };
        let verified = match (report, self.trigger.runbook(&rec.runbook)) {
            (Some(r), Some(rb)) => vigil_exec::verified(rb, r),
            _ => false,
        };
        let t = Triggered {
            runbook: rec.runbook.clone(),
            mode: RunMode::Live,
            status: rec.status.into(),
            execution: Some(rec.id.clone()),
            reason: Some(
                rec.reason
                    .clone()
                    .map_or(reason.to_string(), |r| format!("{reason}: {r}")),
            ),
            at_ms: self.now_ms(),
            report: None,
            verified,
            notify: Vec::new(),
            approvers: rec.approvers.clone(),
        };
        if let Err(e) = self.record(incident, t).await {
            tracing::error!(incident, "recording how {id} ended: {e}");
        }
        Ok(())
    }

    /// Waits (up to `grace`) for the executions started for incidents to finish or
    /// pause; says whether they all did.
    pub async fn drain(&self, grace: std::time::Duration) -> bool {
        let all = MAX_IN_FLIGHT as u32;
        matches!(
            tokio::time::timeout(grace, self.in_flight.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }

    /// The executor that runs (and resumes) triggered executions.
    pub fn executor(&self) -> Option<vigil_exec::Executor> {
        self.trigger.executor()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Takes alerts in and returns once their state is durable.
    pub async fn ingest(&self, alerts: Vec<IncomingAlert>) -> Result<Ingested, ServiceError> {
        let now = self.now_ms();
        let out = match self.ingest_inline(alerts, now) {
            Ok(done) => done?,
            Err(alerts) => {
                let engine = self.engine.clone();
                let store = self.store.clone();
                let log = self.ingest_log.clone();
                blocking(move || {
                    let mut out = Ingested {
                        received: alerts.len(),
                        ..Default::default()
                    };
                    let mut records: Vec<AlertRecord> = Vec::with_capacity(alerts.len());
                    let mut alerts = alerts.into_iter().peekable();
                    while alerts.peek().is_some() {
                        let chunk: Vec<IncomingAlert> =
                            alerts.by_ref().take(INGEST_CHUNK).collect();
                        let (o, r) = ingest_into(&mut lock(&engine), chunk, now);
                        out.new += o.new;
                        records.extend(r);
                    }
                    out.deduplicated = out.received - out.new;
                    let seq = persist(&store, &log, &records)?;
                    Ok((out, seq))
                })
                .await?
            }
        };
        let (out, seq) = out;
        self.ingest_log.sync_to(seq).await?;
        self.update_metrics();
        Ok(out)
    }

    /// A small batch is a few microseconds of work: done on the request's own task
    /// when the engine is free, it saves two thread hand-offs per request. A large
    /// batch, or a busy engine, is handed back for the blocking pool, so no async
    /// worker ever waits on the engine's lock.
    fn ingest_inline(
        &self,
        alerts: Vec<IncomingAlert>,
        now: i64,
    ) -> Result<Result<(Ingested, u64), StoreError>, Vec<IncomingAlert>> {
        if alerts.len() > INLINE_INGEST {
            return Err(alerts);
        }
        let Ok(mut e) = self.engine.try_lock() else {
            return Err(alerts);
        };
        let (out, records) = ingest_into(&mut e, alerts, now);
        drop(e);
        Ok(persist(&self.store, &self.ingest_log, &records).map(|seq| (out, seq)))
    }

    fn update_metrics(&self) {
        // The last snapshot is locked before the engine is read, so two concurrent
        // callers count each stretch of the stats once, in order.
        let mut last = self.last_stats.lock().unwrap_or_else(|p| p.into_inner());
        let (stats, active, open) = {
            let e = self.engine();
            (e.stats, e.alert_count(), e.open_incidents())
        };
        let m = &self.metrics;
        m.alerts_received
            .inc_by(stats.received.saturating_sub(last.received));
        m.alerts_deduplicated
            .inc_by(stats.deduplicated.saturating_sub(last.deduplicated));
        m.alerts_silenced
            .inc_by(stats.silenced.saturating_sub(last.silenced));
        m.alerts_inhibited
            .inc_by(stats.inhibited.saturating_sub(last.inhibited));
        m.groups_flushed
            .inc_by(stats.groups_flushed.saturating_sub(last.groups_flushed));
        m.incidents_opened
            .inc_by(stats.incidents_opened.saturating_sub(last.incidents_opened));
        m.alerts_active.set(active as i64);
        m.incidents_open.set(open as i64);
        if stats.received > 0 {
            m.dedup_ratio
                .set(stats.deduplicated as f64 / stats.received as f64);
        }
        *last = stats;
    }

    /// One turn of the pipeline: flush due groups, correlate, persist what changed,
    /// and start the runbooks new or changed incidents match.
    ///
    /// The engine works on a blocking thread, in turns of bounded work: the lock is let
    /// go between turns, each turn's changes are durable before the next.
    pub async fn tick(self: &Arc<Self>) -> Result<(), ServiceError> {
        let now = self.now_ms();
        loop {
            let svc = self.clone();
            let (more, changed) = blocking(move || {
                let (result, changed) = {
                    let mut e = svc.engine();
                    let result = e.tick_bounded(now, TICK_BUDGET);
                    let changed: Vec<Incident> = result
                        .changed_incidents
                        .iter()
                        .filter_map(|id| e.incident(id).cloned())
                        .collect();
                    (result, changed)
                };
                if result.changed_alerts.is_empty()
                    && changed.is_empty()
                    && result.changed_groups.is_empty()
                    && result.removed_groups.is_empty()
                {
                    return Ok((result.more, None));
                }
                svc.store.put_alerts(&result.changed_alerts)?;
                svc.store
                    .put_groups(&result.changed_groups, &result.removed_groups)?;
                for inc in &changed {
                    svc.store.put_incident(inc)?;
                }
                for (id, ev) in result.events {
                    tracing::info!(incident = %id, kind = %ev.kind, "{}", ev.detail);
                    svc.journal_incident(&id, ev)?;
                }
                Ok((result.more, Some(changed)))
            })
            .await?;
            if let Some(changed) = changed {
                self.store.sync().await?;
                self.update_metrics();
                self.start_matching(&changed).await?;
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Starts every runbook that open incidents match and that has not been started
    /// for them yet — after a tick, and at start for incidents a crash left untriggered.
    pub async fn start_matching(
        self: &Arc<Self>,
        changed: &[Incident],
    ) -> Result<(), ServiceError> {
        let mut starts = Vec::new();
        for inc in changed.iter().filter(|i| i.is_open()) {
            for c in self.trigger.matching(inc) {
                let key = (inc.id.clone(), c.runbook.name.clone());
                if !self
                    .started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key)
                {
                    continue;
                }
                // A live run is durable before it starts: after a crash the incident
                // shows it as started (the executor resumes it) instead of starting it
                // again. A dry run changes nothing, so running it again is harmless.
                if self.trigger.acts() {
                    let starting = Triggered {
                        runbook: c.runbook.name.clone(),
                        mode: RunMode::Live,
                        status: RunOutcome::Starting,
                        execution: None,
                        reason: None,
                        at_ms: self.now_ms(),
                        report: None,
                        verified: false,
                        notify: Vec::new(),
                        approvers: Vec::new(),
                    };
                    let updated = self.engine().record_trigger(&inc.id, starting);
                    if let Some(updated) = updated {
                        self.store.put_incident(&updated)?;
                    }
                }
                starts.push((c, inc.clone()));
            }
        }
        if starts.is_empty() {
            return Ok(());
        }
        // One flush for the whole turn's starts.
        self.store.sync().await?;
        for (c, inc) in starts {
            let svc = self.clone();
            let permits = self.in_flight.clone();
            tokio::spawn(async move {
                // At most MAX_IN_FLIGHT run at once; the rest wait here, in order.
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let t = svc.trigger.start(&c, &inc, svc.now_ms()).await;
                if let Err(e) = svc.record(&inc.id, t).await {
                    tracing::error!(incident = %inc.id, "recording a triggered runbook: {e}");
                }
            });
        }
        Ok(())
    }

    async fn record(&self, id: &str, t: Triggered) -> Result<(), ServiceError> {
        self.metrics.execution(t.mode.as_str(), t.status.as_str());
        let remediated = t.mode == RunMode::Live && t.status == RunOutcome::Succeeded && t.verified;
        let runbook = t.runbook.clone();
        let execution = t.execution.clone().unwrap_or_default();
        let ev = IncidentEvent {
            seq: 0,
            ts_ms: self.now_ms(),
            kind: "runbook".into(),
            detail: format!(
                "{} {} ({}){}",
                t.runbook,
                t.status,
                t.mode.as_str(),
                t.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        let inc = self.engine().record_trigger(id, t.clone());
        if let Some(inc) = &inc {
            for n in self.trigger.notify(inc, &t).await {
                let (ok, detail) = match &n.result {
                    Ok(v) => (true, format!("{} for {}: {v}", t.status, t.runbook)),
                    Err(e) => (false, e.to_string()),
                };
                if !ok {
                    tracing::warn!(incident = %id, notifier = %n.notifier, "notification failed: {detail}");
                }
                Metrics::count(
                    &self.metrics.notifications,
                    &[
                        ("notifier", &n.notifier),
                        ("outcome", if ok { "sent" } else { "failed" }),
                    ],
                );
                self.tell(Story::Notification {
                    at_ms: self.now_ms(),
                    notifier: n.notifier.clone(),
                    incident: id.to_string(),
                    ok,
                    detail,
                });
            }
            self.store.put_incident(inc)?;
            self.journal_incident(id, ev)?;
            self.store.sync().await?;
        }
        // A remediation that ran to the end, its assertions holding, resolves the
        // incident; alerts that keep firing afterwards open a new one.
        if remediated {
            let why = format!("remediated by {runbook} (execution {execution}), verified");
            self.set_status(id, IncidentStatus::Resolved, &why).await?;
        }
        Ok(())
    }

    /// Runs [`AlertService::tick`] every `period` until the task is dropped.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        period: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                if let Err(e) = svc.tick().await {
                    tracing::error!("alert pipeline tick: {e}");
                }
                // Alerts that changed nothing a tick persists (duplicates) are in the
                // tables unflushed: flushing them lets the ingest log drop its records.
                if svc.ingest_log.appended() > svc.ingest_log.checkpointed()
                    && let Err(e) = svc.store.sync().await
                {
                    tracing::error!("flushing the store: {e}");
                }
            }
        })
    }

    /// Retention: forgets incidents resolved before `incidents_before_ms` (memory and
    /// store) and removes alerts resolved before `alerts_before_ms` from the store,
    /// on the blocking pool; returns (alerts, incidents) removed.
    pub async fn prune(
        &self,
        alerts_before_ms: Option<i64>,
        incidents_before_ms: Option<i64>,
    ) -> Result<(usize, usize), ServiceError> {
        let engine = self.engine.clone();
        let store = self.store.clone();
        let done = blocking(move || {
            let incidents = match incidents_before_ms {
                Some(before) => {
                    let ids = lock(&engine).forget_resolved(before);
                    store.forget_incidents(&ids)?;
                    ids.len()
                }
                None => 0,
            };
            let alerts = match alerts_before_ms {
                Some(before) => store.prune_alerts(before)?,
                None => 0,
            };
            Ok((alerts, incidents))
        })
        .await?;
        self.store.sync().await?;
        self.update_metrics();
        Ok(done)
    }

    /// Incidents, newest first; `open_only` leaves out resolved ones.
    pub fn incidents(&self, open_only: bool, limit: usize) -> Vec<Incident> {
        self.engine()
            .incidents()
            .rev()
            .filter(|i| !open_only || i.is_open())
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn incident(&self, id: &str) -> Result<(Incident, Vec<IncidentEvent>), ServiceError> {
        let inc = self
            .engine()
            .incident(id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound {
                what: "incident",
                id: id.to_string(),
            })?;
        Ok((inc, self.store.incident_events(id)?))
    }

    /// Acknowledges (or otherwise moves) an incident, journaled.
    pub async fn set_status(
        &self,
        id: &str,
        status: IncidentStatus,
        why: &str,
    ) -> Result<Incident, ServiceError> {
        let (inc, ev) = self
            .engine()
            .set_status(id, status, why, self.now_ms())
            .ok_or_else(|| ServiceError::NotFound {
                what: "incident",
                id: id.to_string(),
            })?;
        self.store.put_incident(&inc)?;
        self.journal_incident(id, ev)?;
        self.store.sync().await?;
        self.update_metrics();
        Ok(inc)
    }

    /// Current alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Vec<AlertRecord> {
        let e = self.engine();
        // Sorted by reference and only `limit` cloned, to keep the lock's hold short.
        let mut v: Vec<&AlertRecord> = e.alerts().collect();
        let order = |a: &&AlertRecord, b: &&AlertRecord| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then(a.fingerprint.cmp(&b.fingerprint))
        };
        if limit < v.len() {
            v.select_nth_unstable_by(limit, order);
            v.truncate(limit);
        }
        v.sort_by(order);
        v.into_iter().cloned().collect()
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.engine().silences().to_vec()
    }

    /// Adds a silence (durably). `id` is assigned when empty.
    pub async fn add_silence(&self, mut s: Silence) -> Result<Silence, ServiceError> {
        if s.matchers.is_empty() {
            return Err(ServiceError::Invalid(
                "a silence needs at least one matcher".into(),
            ));
        }
        if s.ends_at_ms <= s.starts_at_ms {
            return Err(ServiceError::Invalid(
                "a silence must end after it starts".into(),
            ));
        }
        if s.id.is_empty() {
            s.id = self.store.next_silence_id()?;
        }
        s.created_ms = self.now_ms();
        self.store.put_silence(&s)?;
        self.store.sync().await?;
        self.engine().add_silence(s.clone());
        Ok(s)
    }

    pub async fn expire_silence(&self, id: &str) -> Result<Silence, ServiceError> {
        let s = self
            .engine()
            .expire_silence(id, self.now_ms())
            .ok_or_else(|| ServiceError::NotFound {
                what: "silence",
                id: id.to_string(),
            })?;
        self.store.put_silence(&s)?;
        self.store.sync().await?;
        Ok(s)
    }
}
