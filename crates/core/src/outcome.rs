//! What became of a runbook started for an incident, as the incident records it and
//! notifiers are told: an execution's status, or what automation decided instead.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The outcome of one runbook started (or considered) for an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Recorded durably before a live run starts, so a crash never starts it twice.
    Starting,
    Running,
    AwaitingApproval,
    Succeeded,
    Failed,
    /// A non-idempotent step started and its outcome is unknown after a crash.
    InDoubt,
    Cancelled,
    TimedOut,
    /// The policy paged a human instead of acting.
    Paged,
    /// The policy decided nothing needs doing.
    Ignored,
    /// The kill switch or a guardrail stopped it.
    Blocked,
    /// The incident resolved (a notifier may ask to hear it).
    Resolved,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 12] = [
        RunOutcome::Starting,
        RunOutcome::Running,
        RunOutcome::AwaitingApproval,
        RunOutcome::Succeeded,
        RunOutcome::Failed,
        RunOutcome::InDoubt,
        RunOutcome::Cancelled,
        RunOutcome::TimedOut,
        RunOutcome::Paged,
        RunOutcome::Ignored,
        RunOutcome::Blocked,
        RunOutcome::Resolved,
    ];

    /// The outcomes a notifier can ask to be told about.
    pub const NOTIFIABLE: [RunOutcome; 8] = [
        RunOutcome::Paged,
        RunOutcome::AwaitingApproval,
        RunOutcome::Failed,
        RunOutcome::InDoubt,
        RunOutcome::Blocked,
        RunOutcome::Succeeded,
        RunOutcome::Ignored,
        RunOutcome::Resolved,
    ];

    /// What a notifier hears when its `on:` is not given: everything a person may
    /// need to act on.
    pub const NOTIFIED_BY_DEFAULT: [RunOutcome; 5] = [
        RunOutcome::Paged,
        RunOutcome::AwaitingApproval,
        RunOutcome::Failed,
        RunOutcome::InDoubt,
        RunOutcome::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Starting => "starting",
            RunOutcome::Running => "running",
            RunOutcome::AwaitingApproval => "awaiting_approval",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::InDoubt => "in_doubt",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Paged => "paged",
            RunOutcome::Ignored => "ignored",
            RunOutcome::Blocked => "blocked",
            RunOutcome::Resolved => "resolved",
        }
    }

    /// Still under way: a restart must find out how it ended.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            RunOutcome::Starting | RunOutcome::Running | RunOutcome::AwaitingApproval
        )
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunOutcome {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for o in RunOutcome::ALL {
            assert_eq!(o.as_str().parse::<RunOutcome>(), Ok(o));
            let json = serde_json::to_string(&o).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", o.as_str()));
        }
        assert!("Paged".parse::<RunOutcome>().is_err());
    }
}
