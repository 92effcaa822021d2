//! Dry-run: what a runbook would do, executing nothing. Plans run with read-only
//! capabilities (HTTP GET/HEAD without a body or method override, kv get, secrets);
//! a server that changes state on a plain GET is the one thing a read cannot rule out.
//!
//! Enforced here, not trusted to actions: only `validate` and `plan` are called,
//! never `execute`, and nothing is journaled.

use super::executor::{ExecutionReport, Request, StepReport, StepStatus};
use super::render::{Unknowns, render};
use crate::record::ExecStatus;
use serde_json::{Map, Value, json};
use vigil_bundle::graph::Dag;
use vigil_core::action::ActionCatalog;
use vigil_core::now_ms;
use vigil_policy::expr::{Bindings, ExprEngine};

/// Plans every step in order. Outputs of steps that would run are taken from their
/// plan's preview when the action can tell (pure actions), otherwise unknown.
pub async fn dry_run(
    catalog: &dyn ActionCatalog,
    exprs: &ExprEngine,
    req: &Request,
) -> ExecutionReport {
    let rb = &req.runbook;
    let needs: Vec<Vec<usize>> = rb.steps.iter().map(|s| s.needs.clone()).collect();
    let order: Vec<usize> = Dag::build(&needs)
        .map(|d| d.order().to_vec())
        .unwrap_or_else(|_| (0..rb.steps.len()).collect());
    let mut outputs = Map::new();
    let mut statuses: Vec<Option<StepStatus>> = vec![None; rb.steps.len()];
    let mut reports: Vec<StepReport> = Vec::new();
    let mut problems = Vec::new();

    for idx in order {
        let step = &rb.steps[idx];
        let mut report = StepReport {
            id: step.id.clone(),
            uses: step.uses.clone(),
            status: StepStatus::WouldRun,
            attempts: 0,
            input: None,
            output: None,
            plan: None,
            reason: None,
            duration_ms: 0,
        };
        let mut b = Bindings::new();
        b.set("params", &Value::Object(req.params.clone()));
        b.set("incident", &req.incident);
        b.set("steps", &Value::Object(outputs.clone()));
        b.set("env", &json!({}));
        b.set_int("now", now_ms() / 1000);

        if step.compensation {
            report.status = StepStatus::Pending;
            report.reason = Some("compensation: runs only if the step naming it fails".into());
        } else if let Some(&n) = step.needs.iter().find(|&&n| {
            statuses[n] == Some(StepStatus::Skipped) || statuses[n] == Some(StepStatus::Failed)
        }) {
            report.status = StepStatus::Skipped;
            report.reason = Some(format!("`{}` would not succeed", rb.steps[n].id));
        } else if let Some(when) = &step.when {
            match exprs.eval_bool(&when.source, &b) {
                Ok(true) => report.reason = Some(format!("condition `{}` holds", when.source)),
                Ok(false) => {
                    report.status = StepStatus::Skipped;
                    report.reason = Some(format!("condition `{}` is false", when.source));
                }
                Err(_) => {
                    report.reason = Some(format!(
                        "condition `{}` is decided at run time",
                        when.source
                    ))
                }
            }
        }
        if report.status != StepStatus::Skipped {
            let input = render(&step.with, exprs, &b, Unknowns::Placeholder);
            match (input, catalog.resolve(&step.uses)) {
                (Err(e), _) => {
                    report.status = StepStatus::Failed;
                    report.reason = Some(format!("inputs: {e}"));
                }
                (Ok(_), None) => {
                    report.status = StepStatus::Failed;
                    report.reason = Some(format!("unknown action `{}`", step.uses));
                }
                (Ok(input), Some(action)) => {
                    let has_placeholders = input.to_string().contains("known at run time⟩");
                    let checked = if has_placeholders {
                        Ok(())
                    } else {
                        action.validate(&input)
                    };
                    match checked {
                        Err(e) => {
                            report.status = StepStatus::Failed;
                            report.reason = Some(e.to_string());
                        }
                        Ok(()) => match action.plan(&input).await {
                            Ok(plan) => {
                                report.output = plan.preview.clone();
                                report.plan = Some(plan);
                            }
                            Err(e) if has_placeholders => {
                                report.reason = Some(format!(
                                    "planned at run time (inputs depend on earlier steps): {e}"
                                ));
                            }
                            Err(e) => {
                                report.status = StepStatus::Failed;
                                report.reason = Some(format!("plan: {e}"));
                            }
                        },
                    }
                    report.input = Some(input);
                }
            }
        }
        if report.status == StepStatus::Failed {
            problems.push(format!(
                "{}: {}",
                step.id,
                report.reason.clone().unwrap_or_default()
            ));
        }
        let status_name = match report.status {
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            _ => "succeeded",
        };
        if !step.compensation {
            outputs.insert(step.id.clone(), json!({ "output": report.output.clone().unwrap_or(Value::Null), "status": status_name }));
        }
        statuses[idx] = Some(report.status.clone());
        reports.push(report);
    }
    let (status, reason) = if problems.is_empty() {
        (ExecStatus::Succeeded, None)
    } else {
        (
            ExecStatus::Failed,
            Some(format!("would fail: {}", problems.join("; "))),
        )
    };
    ExecutionReport {
        id: "dry-run".into(),
        runbook: rb.name.clone(),
        dry_run: true,
        status,
        reason,
        steps: reports,
        duration_ms: 0,
    }
}
