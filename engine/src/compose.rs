//! The composition root: everything a command builds from a loaded bundle, built
//! once and in one place — the expression engine (one compiled-expression cache),
//! the compiled policies, the executor, automation and the alert service. `serve`
//! and `demo` (through the daemon), `trigger` and `run` all start here.

use std::sync::Arc;
use vigil_alert::engine::Engine;
use vigil_alert::service::{AlertService, Options, ServiceError};
use vigil_alert::trigger::{Candidate, Trigger};
use vigil_bundle::Bundle;
use vigil_core::action::ActionCatalog;
use vigil_core::story::{Narrator, Story};
use vigil_exec::Executor;
use vigil_exec::automation::Automation;
use vigil_exec::executor::Observer;
use vigil_policy::decide::{PolicyEngine, PolicyError};
use vigil_policy::expr::ExprEngine;
use vigil_store::Store;
use vigil_telemetry::Metrics;

/// The bundle's policies did not compile; each error names its file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<PolicyError>);

/// The parts of a running vigil that a bundle determines, shared by every command.
pub struct Composition {
    bundle: Arc<Bundle>,
    store: Store,
    catalog: Arc<dyn ActionCatalog>,
    exprs: Arc<ExprEngine>,
    policies: Option<Arc<PolicyEngine>>,
    metrics: Arc<Metrics>,
    narrator: Option<Narrator>,
    in_flight: vigil_exec::InFlight,
}

impl std::fmt::Debug for Composition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composition")
            .field("runbooks", &self.bundle.runbooks.len())
            .field("policies", &self.policies.is_some())
            .finish_non_exhaustive()
    }
}

impl Composition {
    /// Compiles the bundle's policies (once) and prepares the shared parts.
    pub fn new(
        bundle: Arc<Bundle>,
        store: Store,
        catalog: Arc<dyn ActionCatalog>,
        metrics: Arc<Metrics>,
    ) -> Result<Composition, PolicyErrors> {
        let policies = if bundle.policies.is_empty() {
            None
        } else {
            Some(Arc::new(
                PolicyEngine::load(&bundle.policies).map_err(PolicyErrors)?,
            ))
        };
        Ok(Composition {
            bundle,
            store,
            catalog,
            exprs: Arc::new(ExprEngine::new()),
            policies,
            metrics,
            narrator: None,
            in_flight: vigil_exec::InFlight::default(),
        })
    }

    /// Tells `narrator` every detection, incident change, decision and step.
    pub fn with_narrator(mut self, narrator: Option<Narrator>) -> Composition {
        self.narrator = narrator;
        self
    }

    /// Shares the executions in flight with the executors of another composition of
    /// the same store (a reload's): they are not resumed twice, and cancels reach them.
    pub fn with_in_flight(mut self, in_flight: vigil_exec::InFlight) -> Composition {
        self.in_flight = in_flight;
        self
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The bundle, shared.
    pub fn bundle_arc(&self) -> Arc<Bundle> {
        self.bundle.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalog(&self) -> &Arc<dyn ActionCatalog> {
        &self.catalog
    }

    pub fn exprs(&self) -> &Arc<ExprEngine> {
        &self.exprs
    }

    pub fn policies(&self) -> Option<&Arc<PolicyEngine>> {
        self.policies.as_ref()
    }

    /// The executor with the config's concurrency and environment allowlist, its
    /// transitions counted in the metrics and told to the narrator.
    pub fn executor(&self) -> Executor {
        let cfg = &self.bundle.config;
        Executor::new(self.catalog.clone(), self.store.clone())
            .with_exprs(self.exprs.clone())
            .with_max_concurrency(cfg.executor.max_concurrency.unwrap_or(8) as usize)
            .with_env_allowlist(&cfg.executor.env)
            .with_in_flight(self.in_flight.clone())
            .with_observer(self.observer())
    }

    fn observer(&self) -> Observer {
        let metrics = self.metrics.clone();
        let narrator = self.narrator.clone();
        Arc::new(move |rec, ev| {
            Metrics::count(&metrics.step_transitions, &[("kind", ev.kind.as_str())]);
            if let Some(n) = &narrator {
                n(Story::Step {
                    at_ms: ev.ts_ms,
                    execution: rec.id.clone(),
                    runbook: rec.runbook.clone(),
                    step: ev.step.clone(),
                    transition: ev.kind,
                    detail: ev.detail.clone(),
                    output: ev.output.clone(),
                });
            }
        })
    }

    /// Automation over `executor`: kill switch, guardrails, the bundle's policies.
    pub fn automation(&self, executor: Executor) -> Automation {
        Automation {
            executor,
            policies: self.policies.clone(),
            config: self.bundle.config.clone(),
            exprs: self.exprs.clone(),
            narrator: self.narrator.clone(),
            requested_by: None,
        }
    }

    /// The alert service: the engine from `alerting:` and `services:`, the bundle's
    /// runbooks as trigger candidates (dry-run unless `alerting.runbooks: live`, which
    /// goes through automation), and its notifiers.
    pub fn alert_service(&self, options: Options) -> Result<Arc<AlertService>, ServiceError> {
        let cfg = &self.bundle.config;
        let candidates = self
            .bundle
            .runbooks
            .iter()
            .map(|rb| Candidate {
                runbook: Arc::new(rb.clone()),
                source: self
                    .bundle
                    .sources
                    .get(&rb.file)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let automation = self.automation(self.executor());
        let trigger = Trigger::new(
            candidates,
            self.catalog.clone(),
            Some(Arc::new(automation)),
            options.trigger_mode.unwrap_or(cfg.alerting.runbooks),
        )
        .with_exprs(self.exprs.clone())
        .with_notifiers(cfg.notifiers.clone());
        let engine = Engine::new(cfg.alerting.clone(), &cfg.services);
        let options = Options {
            narrator: options.narrator.or_else(|| self.narrator.clone()),
            ..options
        };
        AlertService::open_with(
            self.store.clone(),
            engine,
            trigger,
            self.metrics.clone(),
            options,
        )
    }
}
