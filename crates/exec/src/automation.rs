//! From "this incident matches that runbook" to an execution — or to a page.
//!
//! Order of checks: the kill switch, the runbook's guardrails (circuit breaker,
//! rate and concurrency limits, dry-run-first), the plan (a dry-run) and its blast
//! radius, then the escalation policy. Every decision lands in the audit log.

use super::dry_run::dry_run;
use super::executor::{ExecError, ExecutionReport, Executor, Request};
use crate::record::ExecutionStore;
use crate::record::{AuditEntry, ExecStatus};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use vigil_bundle::model::{Config, RunbookGuardrails};
use vigil_core::action::ActionCatalog;
use vigil_core::audit::AuditAction;
use vigil_core::now_ms;
use vigil_core::story::{Narrator, Story};
use vigil_policy::decide::{Decision, Facts, History, PolicyEngine, Verdict};
use vigil_policy::expr::ExprEngine;
use vigil_store::{Store, StoreError};

/// What automation did with a request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// An execution ran (or waits for approval).
    Executed {
        report: ExecutionReport,
        decision: Option<Decision>,
    },
    /// Only a dry-run happened (dry-run-first guardrail).
    DryRunOnly {
        report: ExecutionReport,
        reason: String,
    },
    /// Nothing ran; a human should look.
    Paged { reason: String, notify: Vec<String> },
    /// The policy said to do nothing.
    Ignored { reason: String },
    /// A guardrail stopped it.
    Blocked { reason: String },
}

/// Where a request comes from: guardrails and the kill switch apply to automatic ones.
pub use crate::record::Origin;

/// The store's executions, as facts for policies and guardrails.
#[derive(Debug, Clone)]
pub struct StoreHistory(pub Store);

impl StoreHistory {
    fn count(&self, f: impl Fn(&crate::record::ExecutionRecord) -> bool) -> i64 {
        self.0
            .executions()
            .map(|v| v.iter().filter(|r| f(r)).count() as i64)
            .unwrap_or(0)
    }
}

impl History for StoreHistory {
    fn executions_since(&self, runbook: &str, since_ms: i64) -> i64 {
        self.count(|r| r.runbook == runbook && r.created_ms >= since_ms)
    }
    fn failures_since(&self, runbook: &str, since_ms: i64) -> i64 {
        self.count(|r| {
            r.runbook == runbook
                && r.updated_ms >= since_ms
                && matches!(
                    r.status,
                    ExecStatus::Failed | ExecStatus::TimedOut | ExecStatus::InDoubt
                )
        })
    }
    fn incidents_since(&self, label: &str, value: &str, since_ms: i64) -> i64 {
        self.count(|r| {
            r.created_ms >= since_ms && r.incident["labels"][label].as_str() == Some(value)
        })
    }
}

/// Runs runbooks for incidents, under guardrails and policies.
#[derive(Clone)]
pub struct Automation {
    pub executor: Executor,
    pub policies: Option<Arc<PolicyEngine>>,
    pub config: Config,
    pub exprs: Arc<ExprEngine>,
    /// Told every audit entry as it is written.
    pub narrator: Option<Narrator>,
    /// Who asked, for the audit log (an API principal); otherwise the user running
    /// this process.
    pub requested_by: Option<String>,
}

impl std::fmt::Debug for Automation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automation")
            .field("executor", &self.executor)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl Automation {
    fn store(&self) -> &Store {
        self.executor.store()
    }

    fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let entry = self.store().audit(entry)?;
        if let Some(n) = &self.narrator {
            n(Story::Decision {
                at_ms: entry.ts_ms,
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                subject: entry.subject.clone(),
                outcome: entry.outcome.clone(),
                reason: entry.inputs["reason"].as_str().map(String::from),
            });
        }
        Ok(())
    }

    fn guardrails(&self, runbook: &str) -> RunbookGuardrails {
        let g = &self.config.guardrails;
        g.runbooks
            .get(runbook)
            .cloned()
            .unwrap_or_default()
            .or(&g.defaults)
    }

    /// Facts for a policy decision at `now_ms`.
    pub fn facts(&self, now_ms: i64) -> Facts {
        Facts {
            now_ms,
            oncall: self.config.oncall.clone(),
            freeze: self.config.guardrails.freeze.clone(),
            history: Some(Arc::new(StoreHistory(self.store().clone()))),
        }
    }

    /// Handles one request to run `req.runbook`.
    pub async fn handle(
        &self,
        catalog: &dyn ActionCatalog,
        mut req: Request,
        origin: Origin,
    ) -> Result<Outcome, ExecError> {
        let name = req.runbook.name.clone();
        let now = now_ms();
        req.origin = origin;
        let actor_guard = |rule: &str| format!("guardrail:{rule}");

        if origin == Origin::Automatic {
            if let Some(p) = self.store().paused()? {
                let reason = format!(
                    "automation is paused by {} ({}); `vigil resume` to re-enable",
                    p.by, p.reason
                );
                self.audit(AuditEntry::new(
                    actor_guard("kill-switch"),
                    AuditAction::Block,
                    &name,
                    &reason,
                ))?;
                return Ok(Outcome::Blocked { reason });
            }
            let g = self.guardrails(&name);
            let history = StoreHistory(self.store().clone());
            if let Some(cb) = &g.circuit_breaker {
                let since = now - cb.window.as_std().as_millis() as i64;
                let failures = history.failures_since(&name, since);
                if failures >= i64::from(cb.failures) {
                    let reason = format!(
                        "circuit breaker open: {failures} failed runs of `{name}` in the last {}; paging instead of running again",
                        cb.window
                    );
                    self.audit(AuditEntry::new(
                        actor_guard("circuit-breaker"),
                        AuditAction::Page,
                        &name,
                        &reason,
                    ))?;
                    return Ok(Outcome::Paged {
                        reason,
                        notify: Vec::new(),
                    });
                }
            }
            if let Some(max) = g.max_per_hour {
                let recent = history.count(|r| {
                    r.runbook == name
                        && r.origin == Origin::Automatic
                        && r.created_ms >= now - 3_600_000
                });
                if recent >= i64::from(max) {
                    let reason = format!(
                        "rate limit: `{name}` already ran {recent} times automatically in the last hour (max {max})"
                    );
                    self.audit(AuditEntry::new(
                        actor_guard("rate-limit"),
                        AuditAction::Block,
                        &name,
                        &reason,
                    ))?;
                    return Ok(Outcome::Blocked { reason });
                }
            }
            if let Some(max) = g.max_concurrent {
                let running = history.count(|r| {
                    r.runbook == name
                        && matches!(r.status, ExecStatus::Running | ExecStatus::AwaitingApproval)
                });
                if running >= i64::from(max) {
                    let reason = format!(
                        "concurrency limit: {running} execution(s) of `{name}` already in progress (max {max})"
                    );
                    self.audit(AuditEntry::new(
                        actor_guard("concurrency"),
                        AuditAction::Block,
                        &name,
                        &reason,
                    ))?;
                    return Ok(Outcome::Blocked { reason });
                }
            }
            if let Some(k) = g.dry_run_first {
                let entries = self.store().audit_entries()?;
                let promoted = entries
                    .iter()
                    .any(|e| e.subject == name && e.action == AuditAction::Promote);
                let seen = if promoted {
                    usize::MAX
                } else {
                    entries
                        .iter()
                        .filter(|e| e.subject == name && e.action == AuditAction::Match)
                        .count()
                };
                if !promoted {
                    self.audit(
                        AuditEntry::new(
                            "automation",
                            AuditAction::Match,
                            &name,
                            format!("match #{}", seen + 1),
                        )
                        .with_inputs(req.incident.clone()),
                    )?;
                }
                if seen < k as usize {
                    let report = dry_run(catalog, &self.exprs, &req).await;
                    let reason = format!(
                        "dry-run-first: match {} of the first {k} only dry-runs; `vigil promote {name}` lets it act",
                        seen + 1
                    );
                    self.audit(AuditEntry::new(
                        actor_guard("dry-run-first"),
                        AuditAction::DryRun,
                        &name,
                        &reason,
                    ))?;
                    return Ok(Outcome::DryRunOnly { report, reason });
                }
            }
        }

        // The plan: what would happen, for the blast radius and the policy.
        let plan = dry_run(catalog, &self.exprs, &req).await;
        let plan_json = plan_summary(&plan, origin);
        let plan_hash = format!(
            "{:016x}",
            vigil_core::fingerprint::fnv1a64(plan_json.to_string().as_bytes())
        );
        if origin == Origin::Automatic
            && let Some(max) = self.guardrails(&name).max_targets_per_step
            && let Some(step) = plan
                .steps
                .iter()
                .find(|s| s.plan.as_ref().is_some_and(|p| targets(p) > max as usize))
        {
            let n = step.plan.as_ref().map_or(0, targets);
            let reason = format!(
                "blast radius: step `{}` would act on {n} targets (max {max})",
                step.id
            );
            self.audit(
                AuditEntry::new(
                    actor_guard("blast-radius"),
                    AuditAction::Page,
                    &name,
                    &reason,
                )
                .with_plan_hash(Some(plan_hash)),
            )?;
            return Ok(Outcome::Paged {
                reason,
                notify: Vec::new(),
            });
        }

        let decision = match (&req.runbook.policy, &self.policies) {
            (Some(policy), Some(engine)) => {
                // A run without an incident still gives the policy a map to look into.
                let incident = if req.incident.is_null() {
                    json!({})
                } else {
                    req.incident.clone()
                };
                let (d, trace) = engine.decide(policy, &incident, &plan_json, &self.facts(now));
                let entry = AuditEntry::new(format!("policy:{policy}"), AuditAction::Decide, &name, d.action.as_str())
                    .with_inputs(json!({ "incident": req.incident, "plan": plan_json, "reason": d.reason, "host_calls": trace }))
                    .with_plan_hash(Some(plan_hash.clone()));
                self.audit(entry)?;
                Some(d)
            }
            (Some(policy), None) => Some(Decision {
                policy: policy.clone(),
                action: Verdict::Page,
                reason: format!(
                    "policy `{policy}` could not be loaded; paging a human as the safe default"
                ),
                notify: Vec::new(),
                approvers: Vec::new(),
                timeout: None,
                fallback: true,
            }),
            (None, _) => None,
        };
        if let Some(d) = &decision {
            match d.action {
                Verdict::Page => {
                    return Ok(Outcome::Paged {
                        reason: d.reason.clone(),
                        notify: d.notify.clone(),
                    });
                }
                Verdict::Ignore => {
                    return Ok(Outcome::Ignored {
                        reason: d.reason.clone(),
                    });
                }
                // Either way the decision was made on this dry-run: a later step whose
                // plan goes past it waits for a human, even after the first approval.
                Verdict::Approve => {
                    req.gate = true;
                    req.approval_timeout = d.timeout.map(|t| t.as_std());
                    req.approvers = d.approvers.clone();
                    req.ceiling = Some(ceiling(&plan));
                }
                Verdict::Auto => {
                    req.ceiling = Some(ceiling(&plan));
                    req.approvers = d.approvers.clone();
                }
            }
        }
        let report = self.executor.start(req).await?;
        self.audit(
            AuditEntry::new(
                format!(
                    "{}:{}",
                    origin.as_str(),
                    self.requested_by.clone().unwrap_or_else(whoami)
                ),
                AuditAction::Run,
                &report.id,
                report.status.as_str(),
            )
            .with_inputs(json!({ "runbook": name }))
            .with_plan_hash(Some(plan_hash)),
        )?;
        self.store().sync().await?;
        Ok(Outcome::Executed { report, decision })
    }
}

/// The user running this process, for the audit log.
pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".into())
}

/// What the dry-run a policy decided on showed: its highest risk, and whether
/// every effect could be undone.
fn ceiling(report: &ExecutionReport) -> vigil_core::action::Ceiling {
    let plans = || report.steps.iter().filter_map(|s| s.plan.as_ref());
    vigil_core::action::Ceiling {
        risk: plans()
            .map(|p| p.risk())
            .max()
            .unwrap_or(vigil_core::action::Risk::None),
        reversible: plans().all(|p| p.steps.iter().all(|e| e.reversible)),
    }
}

fn targets(plan: &vigil_core::action::ActionPlan) -> usize {
    plan.steps
        .iter()
        .map(|e| e.target.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// What a policy sees of the plan: the runbook, the highest risk, whether every
/// effect is reversible, the steps with their targets.
pub fn plan_summary(report: &ExecutionReport, origin: Origin) -> Value {
    let steps: Vec<Value> = report
        .steps
        .iter()
        .map(|s| {
            let plan = s.plan.as_ref();
            json!({
                "id": s.id,
                "uses": s.uses,
                "would_run": s.status == super::executor::StepStatus::WouldRun,
                "risk": plan.map_or("none".to_string(), |p| p.risk().to_string()),
                "reversible": plan.is_none_or(|p| p.steps.iter().all(|e| e.reversible)),
                "targets": plan.map(|p| p.steps.iter().map(|e| e.target.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "summary": plan.map(|p| p.summary.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let risk = report
        .steps
        .iter()
        .filter_map(|s| s.plan.as_ref())
        .map(|p| p.risk())
        .max()
        .unwrap_or(vigil_core::action::Risk::None);
    let targets: BTreeSet<String> = report
        .steps
        .iter()
        .filter_map(|s| s.plan.as_ref())
        .flat_map(|p| p.steps.iter().map(|e| e.target.clone()))
        .collect();
    json!({
        "runbook": report.runbook,
        "origin": origin.as_str(),
        "risk": risk.to_string(),
        "reversible": steps.iter().all(|s| s["reversible"] == true),
        "targets": targets.len(),
        "steps": steps,
    })
}
