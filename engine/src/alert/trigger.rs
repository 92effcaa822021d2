//! Starting the runbooks an incident matches.
//!
//! [`Trigger::start`] is the one place an incident turns into an execution: the
//! policy layer (Rhai `decide(incident, plan)`) goes in front of it. By default it
//! dry-runs (plan only, nothing executed, nothing journaled); `alerting.runbooks: live`
//! starts a real, journaled execution.

use super::{Incident, Triggered};
use crate::exec::action::ActionCatalog;
use crate::exec::render::resolve_params;
use crate::exec::{Executor, Request, dry_run::dry_run};
use crate::policy::expr::ExprEngine;
use crate::runbook::model::{Runbook, TriggerMode};
use crate::store::now_ms;
use std::sync::Arc;

/// A runbook with the text it was loaded from (journaled with live executions).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub runbook: Arc<Runbook>,
    pub source: String,
}

pub struct Trigger {
    runbooks: Vec<Candidate>,
    catalog: Arc<dyn ActionCatalog>,
    exprs: Arc<ExprEngine>,
    executor: Option<Executor>,
    mode: TriggerMode,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("runbooks", &self.runbooks.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Trigger {
    /// `executor` is needed for `live`; without one, live requests fall back to dry-run.
    pub fn new(
        runbooks: Vec<Candidate>,
        catalog: Arc<dyn ActionCatalog>,
        executor: Option<Executor>,
        mode: TriggerMode,
    ) -> Trigger {
        Trigger {
            runbooks,
            catalog,
            exprs: Arc::new(ExprEngine::new()),
            executor,
            mode,
        }
    }

    pub fn mode(&self) -> TriggerMode {
        self.mode
    }

    /// Runbooks whose `trigger` matches the incident (its root-cause alert's labels)
    /// and that have not been started for it yet.
    pub fn matching(&self, inc: &Incident) -> Vec<Candidate> {
        if self.mode == TriggerMode::Off || inc.labels.is_empty() {
            return Vec::new();
        }
        self.runbooks
            .iter()
            .filter(|c| {
                !c.runbook.trigger.is_empty()
                    && c.runbook.trigger.iter().all(|m| m.matches(&inc.labels))
                    && !inc.executions.iter().any(|e| e.runbook == c.runbook.name)
            })
            .cloned()
            .collect()
    }

    /// Starts one runbook for an incident and says what happened.
    pub async fn start(&self, c: &Candidate, inc: &Incident) -> Triggered {
        let incident = inc.context();
        let mut t = Triggered {
            runbook: c.runbook.name.clone(),
            mode: "dry_run".into(),
            status: "failed".into(),
            execution: None,
            reason: None,
            at_ms: now_ms(),
            report: None,
        };
        let params = match resolve_params(
            &c.runbook,
            &Default::default(),
            &incident,
            &self.exprs,
            now_ms() / 1000,
        ) {
            Ok(p) => p,
            Err(e) => {
                t.reason = Some(e.message);
                return t;
            }
        };
        let req = Request {
            runbook: c.runbook.clone(),
            source: c.source.clone(),
            params,
            incident,
        };
        match (&self.executor, self.mode) {
            (Some(ex), TriggerMode::Live) => {
                t.mode = "live".into();
                match ex.start(req).await {
                    Ok(report) => {
                        t.status = report.status.as_str().into();
                        t.execution = Some(report.id.clone());
                        t.reason = report.reason.clone();
                    }
                    Err(e) => t.reason = Some(e.to_string()),
                }
            }
            _ => {
                let report = dry_run(self.catalog.as_ref(), &self.exprs, &req).await;
                t.status = report.status.as_str().into();
                t.reason = report.reason.clone();
                t.report = serde_json::to_value(&report).ok();
            }
        }
        t
    }
}
