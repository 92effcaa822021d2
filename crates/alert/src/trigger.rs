//! Starting the runbooks an incident matches.
//!
//! [`Trigger::start`] is the one place an incident turns into an execution. By
//! default it dry-runs (plan only, nothing executed, nothing journaled);
//! `alerting.runbooks: live` hands the request to [`Automation::handle`] as an
//! automatic one: kill switch, guardrails, the plan's blast radius and the Rhai
//! escalation policy decide whether it runs, waits for approval, pages or is ignored.

use super::{Incident, RunMode, RunOutcome, Triggered};
use std::sync::Arc;
use vigil_bundle::model::Notifier;
use vigil_bundle::model::{Runbook, TriggerMode};
use vigil_core::action::{ActionCall, ActionCatalog, ActionError};
use vigil_core::now_ms;
use vigil_exec::automation::{Automation, Origin, Outcome};
use vigil_exec::render::resolve_params;
use vigil_exec::render::{Unknowns, render};
use vigil_exec::{Request, dry_run::dry_run};
use vigil_policy::expr::Bindings;
use vigil_policy::expr::{ExprEngine, ExprError};

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
    notifiers: Vec<Notifier>,
}

/// What a notifier said when told.
#[derive(Clone, Debug, PartialEq)]
pub struct Notified {
    pub notifier: String,
    pub result: Result<serde_json::Value, NotifyError>,
}

/// Why a notifier could not be told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// Its `with:` did not render against the incident and the outcome.
    #[error(transparent)]
    Render(#[from] ExprError),
    /// Its `uses:` names no action that is loaded.
    #[error("no action `{0}` (is its plugin loaded?)")]
    NoAction(String),
    /// The action refused the input, could not plan, or failed.
    #[error(transparent)]
    Action(#[from] ActionError),
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
    pub fn executor(&self) -> Option<vigil_exec::Executor> {
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
            notifiers: Vec::new(),
        }
    }

    /// Shares an expression engine (and its compiled-expression cache) with others.
    pub fn with_exprs(mut self, exprs: Arc<ExprEngine>) -> Trigger {
        self.exprs = exprs;
        self
    }

    /// Tells these notifiers about outcomes they are `on`.
    pub fn with_notifiers(mut self, notifiers: Vec<Notifier>) -> Trigger {
        self.notifiers = notifiers;
        self
    }

    /// Sends `t` (what happened for `inc`) to every notifier that listens for its
    /// status: its `with:` rendered against `incident` and `outcome`, planned, then
    /// executed with that plan (the host lets it do only what the plan declared).
    pub async fn notify(&self, inc: &Incident, t: &Triggered) -> Vec<Notified> {
        let mut out = Vec::new();
        for n in self.notifiers.iter().filter(|n| n.on.contains(&t.status)) {
            let result = self.notify_one(n, inc, t).await;
            out.push(Notified {
                notifier: n.name.clone(),
                result,
            });
        }
        out
    }

    async fn notify_one(
        &self,
        n: &Notifier,
        inc: &Incident,
        t: &Triggered,
    ) -> Result<serde_json::Value, NotifyError> {
        let mut b = Bindings::new();
        b.set("incident", &inc.context());
        b.set(
            "outcome",
            &serde_json::json!({
                "runbook": t.runbook, "status": t.status, "mode": t.mode,
                "reason": t.reason, "execution": t.execution,
                "notify": t.notify, "approvers": t.approvers,
            }),
        );
        b.set_int("now", now_ms() / 1000);
        let input = render(&n.with, &self.exprs, &b, Unknowns::Error)?;
        let action = self
            .catalog
            .resolve(&n.uses)
            .ok_or_else(|| NotifyError::NoAction(n.uses.clone()))?;
        action.validate(&input)?;
        let plan = action.plan(&input).await?;
        Ok(action
            .execute(ActionCall {
                execution_id: format!("notify-{}", inc.id),
                step_id: n.name.clone(),
                attempt: 1,
                input,
                plan,
                deadline: None,
            })
            .await?)
    }

    /// A candidate runbook by name.
    pub fn runbook(&self, name: &str) -> Option<&Arc<Runbook>> {
        self.runbooks
            .iter()
            .find(|c| c.runbook.name == name)
            .map(|c| &c.runbook)
    }

    /// Whether runbooks started here act: live mode with automation to decide.
    pub fn acts(&self) -> bool {
        self.mode == TriggerMode::Live && self.automation.is_some()
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

    /// Starts one runbook for an incident and says what happened; `at_ms` is the
    /// time on the service's clock (which incidents keep, compressed or not).
    pub async fn start(&self, c: &Candidate, inc: &Incident, at_ms: i64) -> Triggered {
        let incident = inc.context();
        let mut t = Triggered {
            runbook: c.runbook.name.clone(),
            mode: RunMode::DryRun,
            status: RunOutcome::Failed,
            execution: None,
            reason: None,
            at_ms,
            report: None,
            verified: false,
            notify: Vec::new(),
            approvers: Vec::new(),
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
        req.origin = vigil_exec::record::Origin::Automatic;
        match (&self.automation, self.mode) {
            (Some(auto), TriggerMode::Live) => {
                t.mode = RunMode::Live;
                match auto
                    .handle(self.catalog.as_ref(), req, Origin::Automatic)
                    .await
                {
                    Ok(Outcome::Executed { report, decision }) => {
                        t.verified = vigil_exec::verified(&c.runbook, &report);
                        if let Some(d) = &decision {
                            t.notify = d.notify.clone();
                            t.approvers = d.approvers.clone();
                        }
                        t.status = report.status.into();
                        t.execution = Some(report.id.clone());
                        t.reason = report.reason.clone().or_else(|| {
                            decision.map(|d| format!("policy {}: {}", d.policy, d.reason))
                        });
                    }
                    Ok(Outcome::DryRunOnly { report, reason }) => {
                        t.mode = RunMode::DryRun;
                        t.status = report.status.into();
                        t.reason = Some(reason);
                        t.report = serde_json::to_value(&report).ok();
                    }
                    Ok(Outcome::Paged { reason, notify }) => {
                        t.status = RunOutcome::Paged;
                        t.reason = Some(reason);
                        t.notify = notify;
                    }
                    Ok(Outcome::Ignored { reason }) => {
                        t.status = RunOutcome::Ignored;
                        t.reason = Some(reason);
                    }
                    Ok(Outcome::Blocked { reason }) => {
                        t.status = RunOutcome::Blocked;
                        t.reason = Some(reason);
                    }
                    Err(e) => t.reason = Some(e.to_string()),
                }
            }
            _ => {
                let report = dry_run(self.catalog.as_ref(), &self.exprs, &req).await;
                t.status = report.status.into();
                t.reason = report.reason.clone();
                t.report = serde_json::to_value(&report).ok();
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_errors_read_as_the_text_they_replaced() {
        let render = ExprError {
            message: "unknown variable `incident.nope`".into(),
            hint: None,
            line: 1,
            col: 1,
        };
        assert_eq!(
            NotifyError::from(render).to_string(),
            "unknown variable `incident.nope`"
        );
        assert_eq!(
            NotifyError::NoAction("slack/post".into()).to_string(),
            "no action `slack/post` (is its plugin loaded?)"
        );
        assert_eq!(
            NotifyError::from(ActionError::InvalidInput("no channel".into())).to_string(),
            "invalid input: no channel"
        );
    }
}
