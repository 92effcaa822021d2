//! Starting the runbooks an incident matches.
//!
//! [`Trigger::start`] is the one place an incident turns into an execution. By
//! default it dry-runs (plan only, nothing executed, nothing journaled);
//! `alerting.runbooks: live` hands the request to [`Automation::handle`] as an
//! automatic one: kill switch, guardrails, the plan's blast radius and the Rhai
//! escalation policy decide whether it runs, waits for approval, pages or is ignored.

use super::{Incident, Triggered};
use crate::exec::action::ActionCatalog;
use crate::exec::automation::{Automation, Origin, Outcome};
use crate::exec::render::resolve_params;
use crate::exec::{Request, dry_run::dry_run};
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
    automation: Option<Arc<Automation>>,
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
    /// The executor live runs go through, for approvals over the API.
    pub fn executor(&self) -> Option<crate::exec::Executor> {
        self.automation.as_ref().map(|a| a.executor.clone())
    }

    /// `automation` is needed for `live`; without it, live requests fall back to dry-run.
    pub fn new(
        runbooks: Vec<Candidate>,
        catalog: Arc<dyn ActionCatalog>,
        automation: Option<Arc<Automation>>,
        mode: TriggerMode,
    ) -> Trigger {
        Trigger {
            runbooks,
            catalog,
            exprs: Arc::new(ExprEngine::new()),
            automation,
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
        let mut req = Request::manual(c.runbook.clone(), c.source.clone(), params, incident);
        req.origin = "automatic".into();
        match (&self.automation, self.mode) {
            (Some(auto), TriggerMode::Live) => {
                t.mode = "live".into();
                match auto
                    .handle(self.catalog.as_ref(), req, Origin::Automatic)
                    .await
                {
                    Ok(Outcome::Executed { report, decision }) => {
                        t.status = report.status.as_str().into();
                        t.execution = Some(report.id.clone());
                        t.reason = report.reason.clone().or_else(|| {
                            decision.map(|d| format!("policy {}: {}", d.policy, d.reason))
                        });
                    }
                    Ok(Outcome::DryRunOnly { report, reason }) => {
                        t.mode = "dry_run".into();
                        t.status = report.status.as_str().into();
                        t.reason = Some(reason);
                        t.report = serde_json::to_value(&report).ok();
                    }
                    Ok(Outcome::Paged { reason, .. }) => {
                        t.status = "paged".into();
                        t.reason = Some(reason);
                    }
                    Ok(Outcome::Ignored { reason }) => {
                        t.status = "ignored".into();
                        t.reason = Some(reason);
                    }
                    Ok(Outcome::Blocked { reason }) => {
                        t.status = "blocked".into();
                        t.reason = Some(reason);
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
