//! The executor: walks a runbook's DAG, runs steps through
//! [`Action`](vigil_core::action::Action)s, and journals every transition before the
//! next side effect. Automation (incident → guardrails → plan → policy → execution)
//! is here too, because it decides what the executor may do without a human.

pub mod automation;
mod context;
pub mod core;
pub mod dry_run;
pub mod executor;
pub mod record;
pub mod render;
pub mod report;
mod walk;

pub use executor::{
    Cancelled, ExecError, ExecutionReport, Executor, InFlight, Request, StepReport, StepStatus,
};

/// Whether a run proved it worked: the runbook checks something (a step with an
/// `assert`) and every such check ran and held. A run that skipped its checks, or
/// has none, succeeded without showing that the world is fixed.
pub fn verified(runbook: &vigil_bundle::model::Runbook, report: &ExecutionReport) -> bool {
    let mut checks = runbook
        .steps
        .iter()
        .filter(|s| s.assert.is_some())
        .peekable();
    checks.peek().is_some()
        && checks.all(|s| {
            report
                .steps
                .iter()
                .any(|r| r.id == s.id && r.status == StepStatus::Succeeded)
        })
}

use vigil_bundle::Bundle;
use vigil_core::diag::Diagnostic;
use vigil_core::{action, suggest};

/// Checks every step's `uses:` against the actions available, and literal inputs
/// against the action's own validation.
pub fn check_actions(bundle: &Bundle, catalog: &dyn action::ActionCatalog) -> Vec<Diagnostic> {
    let names = catalog.names();
    let mut out = Vec::new();
    for rb in &bundle.runbooks {
        for step in &rb.steps {
            match catalog.resolve(&step.uses) {
                None => {
                    let plugin = step.uses.split('/').next().unwrap_or_default();
                    let hint = match suggest::closest(&step.uses, names.iter().map(String::as_str))
                    {
                        Some(c) => format!("did you mean `{c}`?"),
                        None if names.iter().any(|n| n.starts_with(&format!("{plugin}/"))) => {
                            format!(
                                "plugin `{plugin}` offers: {}",
                                names
                                    .iter()
                                    .filter(|n| n.starts_with(&format!("{plugin}/")))
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                        None => format!(
                            "no plugin `{plugin}` is installed; available actions: {}",
                            names.join(", ")
                        ),
                    };
                    out.push(
                        Diagnostic::error(
                            &rb.file,
                            step.uses_span,
                            format!("unknown action `{}`", step.uses),
                        )
                        .with_hint(hint),
                    );
                }
                Some(action) if step.with.is_literal() => {
                    let input = render::render(
                        &step.with,
                        &vigil_policy::expr::ExprEngine::new(),
                        &Default::default(),
                        render::Unknowns::Error,
                    )
                    .unwrap_or(serde_json::Value::Null);
                    if let Err(e) = action.validate(&input) {
                        out.push(
                            Diagnostic::error(
                                &rb.file,
                                step.span,
                                format!("step `{}`: {e}", step.id),
                            )
                            .with_hint(format!("check the `with:` inputs of `{}`", step.uses)),
                        );
                    }
                }
                Some(_) => {}
            }
        }
    }
    out
}

/// Every run future is `Send`, so a run is a task on the runtime's workers and never
/// holds a blocking thread; this fails to compile if one stops being `Send`.
#[allow(dead_code)]
fn runs_are_send(
    executor: &Executor,
    automation: &automation::Automation,
    catalog: &dyn vigil_core::action::ActionCatalog,
    req: Request,
) {
    fn send<T: Send>(_: T) {}
    send(executor.start(req.clone()));
    send(executor.resume("ex-000001"));
    send(executor.decide_approval("ex-000001", true, "alice", None, None));
    send(executor.expire_approvals(0));
    send(automation.handle(catalog, req, automation::Origin::Manual));
}
