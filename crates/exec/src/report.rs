//! What a run reports and how it can fail: the vocabulary shared by the executor,
//! the walk and the execution context (a leaf, so they depend on it, not on each other).

use crate::record::{Event, ExecStatus, ExecutionRecord};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use vigil_core::action::ActionPlan;
use vigil_store::StoreError;

/// Called with every journal event as it happens (live progress).
pub type Observer = Arc<dyn Fn(&ExecutionRecord, &Event) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("execution `{0}` is already finished ({1})")]
    Finished(String, &'static str),
    #[error("execution `{id}` is {status}, not awaiting approval")]
    NotAwaiting { id: String, status: &'static str },
    #[error(
        "execution `{id}`: the plan changed since you reviewed it (you approved {expected}, it is now {current}); review it again"
    )]
    StalePlan {
        id: String,
        expected: String,
        current: String,
    },
    #[error(
        "execution `{id}` waited too long for approval and was handed to a human (the policy's fallback)"
    )]
    ApprovalExpired { id: String },
    #[error(
        "execution `{id}`: `{who}` may not decide its approval; the policy named {} as approvers",
        approvers.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
    )]
    NotAnApprover {
        id: String,
        who: String,
        approvers: Vec<String>,
    },
    #[error("the journal of execution `{id}` holds a runbook that no longer parses: {detail}")]
    BadSource { id: String, detail: String },
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Compensated,
    AwaitingApproval,
    InDoubt,
    /// Dry-run: would run.
    WouldRun,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub uses: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ActionPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExecutionReport {
    pub id: String,
    pub runbook: String,
    pub dry_run: bool,
    pub status: ExecStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Steps in execution order.
    pub steps: Vec<StepReport>,
    pub duration_ms: u64,
}
