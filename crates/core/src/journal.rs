//! The transitions an execution's journal records, told as they happen in the story.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened to an execution or one of its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ExecutionStarted,
    ExecutionResumed,
    Queued,
    Started,
    Succeeded,
    /// An attempt failed and another will follow.
    Retrying,
    Failed,
    Skipped,
    AwaitingApproval,
    Approved,
    Rejected,
    Cancelled,
    Compensated,
    InDoubt,
    ExecutionFinished,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ExecutionStarted => "execution_started",
            EventKind::ExecutionResumed => "execution_resumed",
            EventKind::Queued => "queued",
            EventKind::Started => "started",
            EventKind::Succeeded => "succeeded",
            EventKind::Retrying => "retrying",
            EventKind::Failed => "failed",
            EventKind::Skipped => "skipped",
            EventKind::AwaitingApproval => "awaiting_approval",
            EventKind::Approved => "approved",
            EventKind::Rejected => "rejected",
            EventKind::Cancelled => "cancelled",
            EventKind::Compensated => "compensated",
            EventKind::InDoubt => "in_doubt",
            EventKind::ExecutionFinished => "execution_finished",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
