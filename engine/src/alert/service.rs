//! The alert service: the [`Engine`] behind a lock, the store, metrics and runbook
//! triggering. What `vigil serve` runs; the HTTP layer only calls into it.

use super::trigger::Trigger;
use super::*;
use crate::store::{Store, StoreError, now_ms};
use crate::telemetry::Metrics;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

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

#[derive(Debug)]
pub struct AlertService {
    engine: Mutex<Engine>,
    store: Store,
    trigger: Trigger,
    metrics: Arc<Metrics>,
    started: Mutex<HashSet<(String, String)>>,
    last_stats: Mutex<engine::Stats>,
}

impl AlertService {
    /// Builds the service and restores alerts, incidents and silences from the store.
    pub fn open(
        store: Store,
        engine: Engine,
        trigger: Trigger,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<AlertService>, ServiceError> {
        let mut engine = engine;
        let incidents = store.incidents()?;
        let started = incidents
            .iter()
            .flat_map(|i| {
                i.executions
                    .iter()
                    .map(|e| (i.id.clone(), e.runbook.clone()))
            })
            .collect();
        engine.restore(store.alerts()?, incidents, store.silences()?, now_ms());
        let svc = AlertService {
            engine: Mutex::new(engine),
            store,
            trigger,
            metrics,
            started: Mutex::new(started),
            last_stats: Mutex::new(engine::Stats::default()),
        };
        svc.update_metrics();
        Ok(Arc::new(svc))
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The executor that runs (and resumes) triggered executions.
    pub fn executor(&self) -> Option<crate::exec::Executor> {
        self.trigger.executor()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Takes alerts in and returns once their state is durable.
    pub async fn ingest(&self, alerts: Vec<IncomingAlert>) -> Result<Ingested, ServiceError> {
        let now = now_ms();
        let mut out = Ingested {
            received: alerts.len(),
            ..Default::default()
        };
        let records: Vec<AlertRecord> = {
            let mut e = self.engine();
            let mut fps = Vec::with_capacity(alerts.len());
            for a in alerts {
                let fp = e.ingest(a, now);
                fps.push(fp);
            }
            fps.sort_unstable();
            fps.dedup();
            fps.iter()
                .filter_map(|fp| e.alert(*fp))
                .inspect(|r| {
                    if r.count == 1 {
                        out.new += 1;
                    }
                })
                .cloned()
                .collect()
        };
        out.deduplicated = out.received - out.new;
        self.store.put_alerts(&records)?;
        self.store.sync().await?;
        self.update_metrics();
        Ok(out)
    }

    fn update_metrics(&self) {
        let (stats, active, open) = {
            let e = self.engine();
            (e.stats, e.alert_count(), e.open_incidents())
        };
        let mut last = self.last_stats.lock().unwrap_or_else(|p| p.into_inner());
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
    pub async fn tick(self: &Arc<Self>) -> Result<(), ServiceError> {
        let now = now_ms();
        let (result, changed) = {
            let mut e = self.engine();
            let result = e.tick(now);
            let changed: Vec<Incident> = result
                .changed_incidents
                .iter()
                .filter_map(|id| e.incident(id).cloned())
                .collect();
            (result, changed)
        };
        if result.changed_alerts.is_empty() && changed.is_empty() {
            return Ok(());
        }
        self.store.put_alerts(&result.changed_alerts)?;
        for inc in &changed {
            self.store.put_incident(inc)?;
        }
        for (id, ev) in result.events {
            tracing::info!(incident = %id, kind = %ev.kind, "{}", ev.detail);
            self.store.append_incident_event(&id, ev)?;
        }
        self.store.sync().await?;
        self.update_metrics();
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
                let svc = self.clone();
                let inc = inc.clone();
                // The executor's futures are not `Send`: run each start on a blocking
                // thread of the same runtime.
                let handle = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    handle.block_on(async move {
                        let t = svc.trigger.start(&c, &inc).await;
                        if let Err(e) = svc.record(&inc.id, t).await {
                            tracing::error!(incident = %inc.id, "recording a triggered runbook: {e}");
                        }
                    })
                });
            }
        }
        Ok(())
    }

    async fn record(&self, id: &str, t: Triggered) -> Result<(), ServiceError> {
        self.metrics.execution(&t.mode, &t.status);
        let ev = IncidentEvent {
            seq: 0,
            ts_ms: now_ms(),
            kind: "runbook".into(),
            detail: format!(
                "{} {} ({}){}",
                t.runbook,
                t.status,
                t.mode,
                t.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        };
        let inc = self.engine().record_trigger(id, t);
        if let Some(inc) = inc {
            self.store.put_incident(&inc)?;
            self.store.append_incident_event(id, ev)?;
            self.store.sync().await?;
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
            }
        })
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
            .set_status(id, status, why, now_ms())
            .ok_or_else(|| ServiceError::NotFound {
                what: "incident",
                id: id.to_string(),
            })?;
        self.store.put_incident(&inc)?;
        self.store.append_incident_event(id, ev)?;
        self.store.sync().await?;
        self.update_metrics();
        Ok(inc)
    }

    /// Current alerts, newest first.
    pub fn alerts(&self, limit: usize) -> Vec<AlertRecord> {
        let mut v: Vec<AlertRecord> = self.engine().alerts().cloned().collect();
        v.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        v.truncate(limit);
        v
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
        s.created_ms = now_ms();
        self.store.put_silence(&s)?;
        self.store.sync().await?;
        self.engine().add_silence(s.clone());
        Ok(s)
    }

    pub async fn expire_silence(&self, id: &str) -> Result<Silence, ServiceError> {
        let s =
            self.engine()
                .expire_silence(id, now_ms())
                .ok_or_else(|| ServiceError::NotFound {
                    what: "silence",
                    id: id.to_string(),
                })?;
        self.store.put_silence(&s)?;
        self.store.sync().await?;
        Ok(s)
    }
}

/// Assembles the alert service for a loaded bundle: the engine from `alerting:` and
/// `services:`, the bundle's runbooks as trigger candidates (dry-run unless
/// `alerting.runbooks: live`, which goes through [`crate::exec::automation::Automation`]:
/// guardrails and the bundle's Rhai policies), and `catalog` for their actions.
pub fn build(
    bundle: &crate::runbook::Bundle,
    store: Store,
    catalog: Arc<dyn crate::exec::action::ActionCatalog>,
    metrics: Arc<Metrics>,
) -> Result<Arc<AlertService>, ServiceError> {
    let cfg = &bundle.config;
    let candidates = bundle
        .runbooks
        .iter()
        .map(|rb| trigger::Candidate {
            runbook: Arc::new(rb.clone()),
            source: bundle.sources.get(&rb.file).cloned().unwrap_or_default(),
        })
        .collect();
    let policies = if bundle.policies.is_empty() {
        None
    } else {
        let engine =
            crate::policy::decide::PolicyEngine::load(&bundle.policies).map_err(|errors| {
                ServiceError::Invalid(
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        Some(Arc::new(engine))
    };
    let automation = crate::exec::automation::Automation {
        executor: crate::exec::Executor::new(catalog.clone(), store.clone()),
        policies,
        config: cfg.clone(),
        exprs: Arc::new(crate::policy::expr::ExprEngine::new()),
    };
    let trigger = Trigger::new(
        candidates,
        catalog,
        Some(Arc::new(automation)),
        cfg.alerting.runbooks,
    );
    let engine = Engine::new(cfg.alerting.clone(), &cfg.services);
    AlertService::open(store, engine, trigger, metrics)
}
