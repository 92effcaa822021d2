//! The contract between the executor and whatever performs a step: built-in
//! `core/*` actions and WASM plugin actions alike implement [`Action`].
//!
//! The executor never trusts an action to honour dry-run: in a dry-run it calls
//! [`Action::plan`] only, and [`Action::execute`] is unreachable.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, so `Action` stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an action says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// `<plugin>/<action>`, as written in a step's `uses:`.
    pub name: String,
    pub description: String,
    /// Running it twice has the same effect as running it once, so after a crash a
    /// started-but-unfinished step may be re-run.
    pub idempotent: bool,
    /// It changes nothing outside vigil (no I/O with effects), so the journal need
    /// not be flushed before it runs.
    pub pure: bool,
}

pub use vigil_plugin_types::{PlannedEffect, Risk};

/// What an action would do with a given input. In a live run, `execute` may use only
/// the effects its plan declared; an approval is bound to the plan's hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPlan {
    pub summary: String,
    pub steps: Vec<PlannedEffect>,
    /// The output the step is known to produce without running (pure actions such as
    /// `core/set`), so a dry-run can evaluate later `when`s against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Value>,
}

impl ActionPlan {
    /// The highest risk among the planned effects.
    pub fn risk(&self) -> Risk {
        self.steps
            .iter()
            .map(|s| s.risk)
            .max()
            .unwrap_or(Risk::None)
    }

    /// Whether the plan declares anything that acts outside vigil. An action whose
    /// plan does is never treated as pure, whatever it says about itself.
    pub fn declares_effects(&self) -> bool {
        !self.steps.is_empty()
    }

    /// A stable hash of the plan (hex SHA-256 of its summary and effects).
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_string(&(&self.summary, &self.steps)).unwrap_or_default();
        crate::digest::sha256_hex(canonical.as_bytes())
    }

    /// What an approval binds to: this plan for exactly this input. Collision
    /// resistant, since the plugin that computes the plan is not trusted to keep it.
    pub fn approval_hash(&self, input: &Value) -> String {
        crate::digest::sha256_hex(format!("{}|{input}", self.hash()).as_bytes())
    }
}

/// The most a policy let an execution do without a human: the highest risk and
/// whether every effect could be undone, as the dry-run it decided on showed them.
/// A plugin's plan may differ at execution; a step whose plan goes past this waits
/// for approval instead of running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceiling {
    pub risk: Risk,
    pub reversible: bool,
}

impl Ceiling {
    /// Why `plan` goes past the ceiling, if it does.
    pub fn exceeded_by(&self, plan: &ActionPlan) -> Option<String> {
        if plan.risk() > self.risk {
            return Some(format!(
                "its plan is {} risk, more than the {} the policy decided on",
                plan.risk(),
                self.risk
            ));
        }
        if self.reversible && plan.steps.iter().any(|e| !e.reversible) {
            return Some(
                "its plan is irreversible, and the policy decided on a reversible one".into(),
            );
        }
        None
    }
}

/// Everything an action gets for one attempt of a step.
#[derive(Clone, Debug)]
pub struct ActionCall {
    pub execution_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub input: Value,
    pub plan: ActionPlan,
    /// When the step's own timeout ends, if it has one: the action stops its work by
    /// then (a plugin's sandbox deadline and its processes' time limits included).
    pub deadline: Option<std::time::Instant>,
}

/// Why an action failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ActionError {
    /// The input is wrong; retrying will not help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The action ran and failed; a retry may succeed.
    #[error("{0}")]
    Failed(String),
    /// The sandbox stopped it (CPU, memory, output size, capability).
    #[error("sandbox: {0}")]
    Sandbox(String),
}

impl ActionError {
    /// Whether a retry could change the outcome.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ActionError::Failed(_))
    }
}

/// A step's performer.
pub trait Action: Send + Sync + fmt::Debug {
    fn info(&self) -> &ActionInfo;

    /// Whether this particular input is safe to repeat; defaults to the action's
    /// declaration (`core/write` with `append: false` is, with `append: true` is not).
    fn idempotent(&self, _input: &Value) -> bool {
        self.info().idempotent
    }

    /// Checks the input without side effects.
    fn validate(&self, input: &Value) -> Result<(), ActionError>;

    /// Describes what `execute` would do. May read (read-only grants), never writes.
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>>;

    /// Does it. Only ever called in a live run, after the journal recorded the start.
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>>;
}

/// Finds the action a step `uses:`.
pub trait ActionCatalog: Send + Sync + fmt::Debug {
    fn resolve(&self, uses: &str) -> Option<Arc<dyn Action>>;
    /// Every action name this catalog knows, for "did you mean" hints.
    fn names(&self) -> Vec<String>;
}
