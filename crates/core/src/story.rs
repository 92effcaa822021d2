//! The story of what vigil does, as it happens: detections, incidents, decisions,
//! steps and notifications, in one stream. `vigil demo` narrates it and `vigil serve`
//! logs it; parts of the engine that have something to tell take a [`Narrator`].
//! Telling never blocks or fails the work that is told.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Story {
    /// A detector found something (or a firing series went back to normal).
    Detection {
        at_ms: i64,
        detector: String,
        alertname: String,
        labels: BTreeMap<String, String>,
        score: f64,
        value: f64,
        summary: String,
        resolved: bool,
    },
    /// A change in an incident's life: opened, grouped, resolved, runbook, ….
    Incident {
        at_ms: i64,
        id: String,
        change: String,
        detail: String,
    },
    /// A decision or act of automation, as it lands in the audit log.
    Decision {
        at_ms: i64,
        actor: String,
        action: crate::audit::AuditAction,
        subject: String,
        outcome: String,
        reason: Option<String>,
    },
    /// A journaled transition of an execution.
    Step {
        at_ms: i64,
        execution: String,
        runbook: String,
        step: Option<String>,
        transition: crate::journal::EventKind,
        detail: Option<String>,
        output: Option<Value>,
    },
    /// A notification sent (or that failed) through a notifier.
    Notification {
        at_ms: i64,
        notifier: String,
        incident: String,
        ok: bool,
        detail: String,
    },
}

impl Story {
    pub fn at_ms(&self) -> i64 {
        match self {
            Story::Detection { at_ms, .. }
            | Story::Incident { at_ms, .. }
            | Story::Decision { at_ms, .. }
            | Story::Step { at_ms, .. }
            | Story::Notification { at_ms, .. } => *at_ms,
        }
    }
}

/// Receives the story. Must be cheap: it is called on the engine's paths.
pub type Narrator = Arc<dyn Fn(Story) + Send + Sync>;

/// A narrator that tells every one of `narrators`.
pub fn tee(narrators: Vec<Narrator>) -> Narrator {
    Arc::new(move |s: Story| {
        for n in &narrators {
            n(s.clone());
        }
    })
}
