//! What an audit entry records someone or something did.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The action of an audit entry (who did it and to what are beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A policy decided what to do with an incident.
    Decide,
    Approve,
    Reject,
    /// An execution started.
    Run,
    /// A human was paged instead of acting.
    Page,
    /// The kill switch or a guardrail stopped a run.
    Block,
    /// A runbook under `dry_run_first` matched an incident.
    Match,
    /// A run was planned only.
    #[serde(rename = "dry-run")]
    DryRun,
    /// A runbook (or a model) was promoted.
    Promote,
    Pause,
    Resume,
    Retrain,
    /// A person asked for something they may not do (e.g. approve without being
    /// among the policy's approvers); nothing changed.
    Refuse,
    /// A person cancelled an execution.
    Cancel,
    /// The bundle was reloaded (or a reload refused).
    Reload,
    /// A silence was added or expired.
    Silence,
    /// An incident was acknowledged or resolved by hand.
    Incident,
    /// An action written by a newer vigil.
    #[serde(other)]
    Other,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Decide => "decide",
            AuditAction::Approve => "approve",
            AuditAction::Reject => "reject",
            AuditAction::Run => "run",
            AuditAction::Page => "page",
            AuditAction::Block => "block",
            AuditAction::Match => "match",
            AuditAction::DryRun => "dry-run",
            AuditAction::Promote => "promote",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Retrain => "retrain",
            AuditAction::Refuse => "refuse",
            AuditAction::Cancel => "cancel",
            AuditAction::Reload => "reload",
            AuditAction::Silence => "silence",
            AuditAction::Incident => "incident",
            AuditAction::Other => "other",
        }
    }
}

impl AuditAction {
    /// Every action an entry can record (`Other` aside).
    pub const ALL: [AuditAction; 17] = [
        AuditAction::Decide,
        AuditAction::Approve,
        AuditAction::Reject,
        AuditAction::Run,
        AuditAction::Page,
        AuditAction::Block,
        AuditAction::Match,
        AuditAction::DryRun,
        AuditAction::Promote,
        AuditAction::Pause,
        AuditAction::Resume,
        AuditAction::Retrain,
        AuditAction::Refuse,
        AuditAction::Cancel,
        AuditAction::Reload,
        AuditAction::Silence,
        AuditAction::Incident,
    ];
}

impl std::str::FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown audit action `{}`; {}",
                    crate::text::visible(s),
                    crate::suggest::hint(s, names.iter().copied())
                )
            })
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_written_as_before_and_unknown_ones_still_read() {
        for (a, text) in [
            (AuditAction::DryRun, "\"dry-run\""),
            (AuditAction::Decide, "\"decide\""),
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap_or_default(), text);
        }
        let later: Result<AuditAction, _> = serde_json::from_str("\"escalate\"");
        assert_eq!(later.ok(), Some(AuditAction::Other));
    }
}
