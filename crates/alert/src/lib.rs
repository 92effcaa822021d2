//! Alerts and events → fingerprints, groups, silences, inhibition, incidents.
//!
//! - [`payload`] parses Alertmanager's webhook (version 4) and generic events, naming
//!   the offending field on every error;
//! - [`engine`] is the pipeline proper — dedup, grouping with Alertmanager's
//!   `group_wait`/`group_interval`/`repeat_interval`, silences, inhibition and the
//!   correlation of groups into incidents — pure and synchronous, no I/O;
//! - [`service`] puts the engine, the store, metrics and runbook triggering together
//!   (what `vigil serve` runs);
//! - [`trigger`] starts the runbooks an incident matches (dry-run by default);
//! - [`store`] alerts, groups, incidents and silences in the store.

pub mod engine;
pub mod payload;
pub mod service;
pub mod store;
pub mod trigger;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vigil_bundle::model::Matcher;
pub use vigil_core::fingerprint::Fingerprint;
use vigil_core::fingerprint::Fnv1a;
pub use vigil_core::outcome::RunOutcome;

pub use engine::{Engine, TickResult};
pub use service::{AlertService, ServiceError};

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert as received, after parsing.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub status: AlertStatus,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
}

/// One alert as tracked: duplicates fold into it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub fingerprint: Fingerprint,
    pub labels: Labels,
    pub annotations: Labels,
    pub status: AlertStatus,
    pub starts_at_ms: i64,
    #[serde(default)]
    pub ends_at_ms: Option<i64>,
    #[serde(default)]
    pub generator_url: String,
    /// How many times it was received.
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Silences muting it at the last evaluation.
    #[serde(default)]
    pub silenced_by: Vec<String>,
    #[serde(default)]
    pub inhibited: bool,
    #[serde(default)]
    pub incident: Option<String>,
}

impl AlertRecord {
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the labels sorted by
/// name, each name and value followed by the byte 0xff.
pub fn fingerprint(labels: &Labels) -> u64 {
    hash_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// FNV-1a 64 over name/value pairs in the given order, each followed by 0xff: the
/// shape of Alertmanager's fingerprint, also used for group keys.
pub fn hash_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = Fnv1a::new();
    for (k, v) in pairs {
        h.write(k.as_bytes())
            .write_u8(0xff)
            .write(v.as_bytes())
            .write_u8(0xff);
    }
    h.finish()
}

/// A fingerprint as text, as [`Fingerprint`] writes it (group keys are kept so).
pub fn fingerprint_hex(fp: u64) -> String {
    Fingerprint(fp).to_string()
}

/// A silence, as in Alertmanager: alerts matching every matcher are muted between
/// `starts_at` and `ends_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub created_ms: i64,
}

impl Silence {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    pub fn state(&self, now_ms: i64) -> &'static str {
        if now_ms < self.starts_at_ms {
            "pending"
        } else if now_ms < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.matchers.is_empty() && self.matchers.iter().all(|m| m.matches(labels))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Remediating,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Remediating => "remediating",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    RootCause,
    Symptom,
}

/// An alert as a member of an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub fingerprint: Fingerprint,
    pub alertname: String,
    #[serde(default)]
    pub service: Option<String>,
    pub status: AlertStatus,
    pub role: Role,
    pub starts_at_ms: i64,
    pub severity: String,
}

/// A past incident like this one, and the runbooks that ran for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similar {
    pub id: String,
    pub score: f64,
    pub title: String,
    pub runbooks: Vec<String>,
}

/// Whether a runbook started for an incident acted or only planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Planned only: nothing was executed.
    DryRun,
    /// Executed.
    Live,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::DryRun => "dry_run",
            RunMode::Live => "live",
        }
    }
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was started (or would have been) for an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Triggered {
    pub runbook: String,
    pub mode: RunMode,
    /// The execution's final (or current) status, or what automation decided instead.
    pub status: RunOutcome,
    #[serde(default)]
    pub execution: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub at_ms: i64,
    /// The dry-run report (what would run), when dry-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// A live run whose every `assert` held (see [`vigil_exec::verified`]).
    #[serde(default)]
    pub verified: bool,
    /// Whom the policy said to tell (its `notify`, e.g. the on-call of a rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Who may approve, when the run waits for approval (the policy's `approvers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub status: IncidentStatus,
    pub severity: String,
    pub title: String,
    pub opened_ms: i64,
    pub updated_ms: i64,
    #[serde(default)]
    pub resolved_ms: Option<i64>,
    /// The labels of its probable root-cause alert (what runbook triggers match).
    pub labels: Labels,
    /// Labels every member alert shares.
    pub common_labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    /// The root-cause alert's `value` annotation, when numeric.
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub root_cause: Option<Fingerprint>,
    #[serde(default)]
    pub root_service: Option<String>,
    pub services: Vec<String>,
    pub alerts: Vec<Member>,
    /// Group keys folded into it.
    pub groups: Vec<String>,
    #[serde(default)]
    pub merged_into: Option<String>,
    #[serde(default)]
    pub similar: Vec<Similar>,
    #[serde(default)]
    pub recommended_runbooks: Vec<String>,
    #[serde(default)]
    pub executions: Vec<Triggered>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }

    /// When its probable root-cause alert started (when it joined, if another alert
    /// opened the incident first); its opening if no member is marked root cause.
    pub fn root_started_ms(&self) -> i64 {
        self.alerts
            .iter()
            .filter(|m| m.role == Role::RootCause)
            .map(|m| m.starts_at_ms)
            .min()
            .unwrap_or(self.opened_ms)
    }

    /// The incident as runbook expressions see it (`incident.labels.service`, …).
    pub fn context(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "labels": self.labels,
            "common_labels": self.common_labels,
            "annotations": self.annotations,
            "root_cause": self.root_cause,
            "root_service": self.root_service,
            "services": self.services,
            "alerts": self.alerts.len(),
            "opened_ms": self.opened_ms,
        });
        if let (Some(val), Some(obj)) = (self.value, v.as_object_mut()) {
            obj.insert("value".into(), serde_json::json!(val));
        }
        v
    }
}

/// One change in an incident's life, journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    #[serde(default)]
    pub seq: u64,
    pub ts_ms: i64,
    pub kind: String,
    pub detail: String,
}

/// Severity rank: higher is worse.
pub fn severity_rank(s: &str) -> u8 {
    match s.to_ascii_lowercase().as_str() {
        "critical" | "page" | "emergency" | "fatal" => 5,
        "high" | "error" | "major" => 4,
        "warning" | "warn" | "medium" => 3,
        "low" | "minor" => 2,
        "info" | "informational" => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_alertmanagers() {
        // Alertmanager's fingerprint of {alertname="A"}: fnv64a("alertname\xffA\xff").
        let mut l = Labels::new();
        l.insert("alertname".into(), "A".into());
        let h = vigil_core::fingerprint::fnv1a64(b"alertname\xffA\xff");
        assert_eq!(fingerprint(&l), h);
        let mut l2 = l.clone();
        l2.insert("b".into(), "".into());
        assert_ne!(fingerprint(&l), fingerprint(&l2));
    }

    #[test]
    fn silences_match_and_expire() {
        let mut l = Labels::new();
        l.insert("service".into(), "db".into());
        let s = Silence {
            id: "s1".into(),
            matchers: vec![Matcher::parse("service", "=~d.*").unwrap()],
            starts_at_ms: 10,
            ends_at_ms: 20,
            created_by: "me".into(),
            comment: "maint".into(),
            created_ms: 0,
        };
        assert!(s.matches(&l));
        assert!(!s.is_active(5) && s.is_active(10) && !s.is_active(20));
        assert_eq!(s.state(25), "expired");
    }
}
