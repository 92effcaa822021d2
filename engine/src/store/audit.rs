//! The audit log (append-only: who or what decided or did what) and the persisted
//! automation switch (`vigil pause` / `vigil resume`).

use super::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_core::now_ms;

/// One audit entry. Entries are never updated or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(default)]
    pub seq: u64,
    pub ts_ms: i64,
    /// Who or what: `policy:escalation`, `user:alice`, `token:ci`, `guardrail:circuit-breaker`.
    pub actor: String,
    /// What: `decide`, `approve`, `reject`, `run`, `pause`, `resume`, `block`, `page`.
    pub action: String,
    /// What it concerns: an execution id, a runbook name.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub inputs: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    pub outcome: String,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        AuditEntry {
            seq: 0,
            ts_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            inputs: Value::Null,
            plan_hash: None,
            outcome: outcome.into(),
        }
    }

    pub fn with_inputs(mut self, inputs: Value) -> Self {
        self.inputs = inputs;
        self
    }

    pub fn with_plan_hash(mut self, hash: Option<String>) -> Self {
        self.plan_hash = hash;
        self
    }
}

/// Whether automation is paused, by whom and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    pub by: String,
    pub reason: String,
    pub since_ms: i64,
}

const PAUSE_KEY: &[u8] = b"automation_paused";
const CLOCK_KEY: &[u8] = b"compressed_clock";

impl Store {
    fn audit_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree("audit")?)
    }

    /// Appends an audit entry (made durable with the next `sync`).
    pub fn audit(&self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        entry.seq = self.db.generate_id()?;
        let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.audit_tree()?.insert(entry.seq.to_be_bytes(), bytes)?;
        self.mark_written();
        Ok(entry)
    }

    /// Audit entries, oldest first.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_tree()?
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
            })
            .collect()
    }

    /// The compressed clock a server ran on (`vigil serve --speed`), so that a restart
    /// continues it instead of jumping back.
    pub fn clock(&self) -> Result<Option<vigil_core::Clock>, StoreError> {
        match self.meta.get(CLOCK_KEY)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("stored clock: {e}"))),
        }
    }

    /// Records the compressed clock in use (durably).
    pub fn set_clock(&self, clock: &vigil_core::Clock) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(clock).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.meta.insert(CLOCK_KEY, bytes)?;
        self.sync_blocking()
    }

    /// The kill switch: when set, no automatic run starts.
    pub fn paused(&self) -> Result<Option<PauseState>, StoreError> {
        match self.meta.get(PAUSE_KEY)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("pause state: {e}"))),
        }
    }

    pub fn set_paused(&self, state: Option<&PauseState>) -> Result<(), StoreError> {
        match state {
            Some(s) => {
                let bytes =
                    serde_json::to_vec(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                self.meta.insert(PAUSE_KEY, bytes)?;
            }
            None => {
                self.meta.remove(PAUSE_KEY)?;
            }
        }
        self.mark_written();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn audit_is_append_only_and_pause_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .audit(AuditEntry::new(
                    "policy:escalation",
                    "decide",
                    "restart",
                    "auto",
                ))
                .unwrap();
            store
                .audit(AuditEntry::new(
                    "user:alice",
                    "approve",
                    "ex-000001",
                    "approved",
                ))
                .unwrap();
            store
                .set_paused(Some(&PauseState {
                    by: "alice".into(),
                    reason: "incident review".into(),
                    since_ms: 1,
                }))
                .unwrap();
            store.sync().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let entries = store.audit_entries().unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| e.action.as_str())
                .collect::<Vec<_>>(),
            vec!["decide", "approve"]
        );
        assert!(entries[0].seq < entries[1].seq);
        assert_eq!(store.paused().unwrap().unwrap().by, "alice");
        store.set_paused(None).unwrap();
        assert!(store.paused().unwrap().is_none());
    }
}
