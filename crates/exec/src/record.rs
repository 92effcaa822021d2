//! What the executor keeps in the store: each execution's header and journal, the
//! audit log (append-only: who or what decided or did what), and the automation
//! switch (`vigil pause` / `vigil resume`). The store keeps them as JSON; these types
//! are their schema, owned here.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_core::now_ms;
use vigil_store::{Sequenced, Store, StoreError, Table};

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Running,
    AwaitingApproval,
    Succeeded,
    Failed,
    /// A non-idempotent step was started but its outcome is unknown after a crash.
    InDoubt,
    Cancelled,
    TimedOut,
}

impl ExecStatus {
    /// Finished for good: nothing will resume it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ExecStatus::Succeeded
                | ExecStatus::Failed
                | ExecStatus::Cancelled
                | ExecStatus::TimedOut
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Running => "running",
            ExecStatus::AwaitingApproval => "awaiting_approval",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::InDoubt => "in_doubt",
            ExecStatus::Cancelled => "cancelled",
            ExecStatus::TimedOut => "timed_out",
        }
    }
}

impl From<ExecStatus> for vigil_core::outcome::RunOutcome {
    fn from(s: ExecStatus) -> Self {
        use vigil_core::outcome::RunOutcome as O;
        match s {
            ExecStatus::Running => O::Running,
            ExecStatus::AwaitingApproval => O::AwaitingApproval,
            ExecStatus::Succeeded => O::Succeeded,
            ExecStatus::Failed => O::Failed,
            ExecStatus::InDoubt => O::InDoubt,
            ExecStatus::Cancelled => O::Cancelled,
            ExecStatus::TimedOut => O::TimedOut,
        }
    }
}

/// An execution's header: what runs, with which inputs, and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub id: String,
    pub runbook: String,
    pub runbook_file: String,
    /// The runbook's YAML as it was when the execution started, so a resume runs the
    /// same definition even if the file changed since.
    pub source: String,
    /// Identifies "the same run" (runbook text + inputs), to find one to resume.
    pub inputs_key: String,
    pub params: Value,
    pub incident: Value,
    pub status: ExecStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default)]
    pub reason: Option<String>,
    /// Who started it: guardrails count automatic runs.
    #[serde(default)]
    pub origin: Origin,
    /// A policy asked for approval before the execution acts.
    #[serde(default)]
    pub gate: bool,
    /// How long a wait for approval may last.
    #[serde(default)]
    pub approval_timeout_ms: Option<i64>,
    /// What a policy decided on without a human: no step may go past it unapproved.
    #[serde(default)]
    pub ceiling: Option<vigil_core::action::Ceiling>,
    /// Who may approve or reject its steps: the names a policy's `approvers` gave.
    /// Empty: anyone allowed to approve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

/// Who started an execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A person (`vigil run`, the API).
    #[default]
    Manual,
    /// Automation: a policy's decision on an incident.
    Automatic,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Automatic => "automatic",
        }
    }
}

pub use vigil_core::audit::AuditAction;
pub use vigil_core::journal::EventKind;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub kind: EventKind,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

impl Event {
    /// An event at `ts_ms`; its `seq` is assigned when it is appended.
    pub fn at(
        ts_ms: i64,
        step: Option<&str>,
        kind: EventKind,
        attempt: u32,
        detail: Option<String>,
        output: Option<Value>,
    ) -> Event {
        Event {
            seq: 0,
            ts_ms,
            step: step.map(str::to_string),
            kind,
            attempt,
            detail,
            output,
        }
    }
}

/// One audit entry. Entries are never updated or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(default)]
    pub seq: u64,
    pub ts_ms: i64,
    /// Who or what: `policy:escalation`, `user:alice`, `token:ci`, `guardrail:circuit-breaker`.
    pub actor: String,
    pub action: AuditAction,
    /// What it concerns: an execution id, a runbook name.
    pub subject: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub inputs: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    pub outcome: String,
    /// SHA-256 over the previous entry's `hash` and this entry: a chain, so an entry
    /// changed or removed in the middle shows (`vigil audit --verify`). Absent on
    /// entries written before the chain existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: AuditAction,
        subject: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Self {
        AuditEntry {
            seq: 0,
            ts_ms: now_ms(),
            actor: actor.into(),
            action,
            subject: subject.into(),
            inputs: Value::Null,
            plan_hash: None,
            outcome: outcome.into(),
            hash: None,
        }
    }

    /// This entry's link in the chain after `prev` (the previous entry's hash).
    pub fn chained_hash(&self, prev: Option<&str>) -> String {
        let mut unlinked = self.clone();
        unlinked.hash = None;
        let body = serde_json::to_string(&unlinked).unwrap_or_default();
        vigil_core::digest::sha256_hex(format!("{}\n{body}", prev.unwrap_or("")).as_bytes())
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

/// What checking the audit log's chain found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerdict {
    pub entries: usize,
    /// Entries from before the chain existed (at the start of the log).
    pub unchained: usize,
    /// The first entry that does not hold: its seq and what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<(u64, String)>,
}

/// Walks the audit log and checks every link of its chain.
pub fn verify_audit(entries: &[AuditEntry]) -> AuditVerdict {
    let mut v = AuditVerdict {
        entries: entries.len(),
        unchained: 0,
        broken: None,
    };
    let mut prev: Option<&str> = None;
    let mut chained = false;
    for e in entries {
        match &e.hash {
            None if !chained => v.unchained += 1,
            None => {
                v.broken = Some((e.seq, "has no hash after the chain began: inserted".into()));
                return v;
            }
            Some(h) => {
                if *h != e.chained_hash(prev) {
                    v.broken = Some((
                        e.seq,
                        "does not match its hash: it was changed, or the entry before it was changed or removed".into(),
                    ));
                    return v;
                }
                chained = true;
                prev = Some(h);
            }
        }
    }
    v
}

/// Whether automation is paused, by whom and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    pub by: String,
    pub reason: String,
    pub since_ms: i64,
}

impl Sequenced for Event {
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

const EXECUTIONS: &str = "executions";
const JOURNAL: &str = "journal";
const AUDIT: &str = "audit";
const PAUSE_KEY: &str = "automation_paused";
const NEXT_EXECUTION: &str = "next_execution";

/// Executions, their journals, the audit log and the kill switch in a [`Store`].
///
/// Writes are applied without waiting; [`Store::sync`] makes them durable.
pub trait ExecutionStore {
    /// A new execution id: short, sortable, dense across restarts.
    fn next_execution_id(&self) -> Result<String, StoreError>;
    fn put_execution(&self, rec: &ExecutionRecord) -> Result<(), StoreError>;
    fn execution(&self, id: &str) -> Result<ExecutionRecord, StoreError>;
    /// All executions, newest first.
    fn executions(&self) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// Appends an event to an execution's journal (its `seq` is assigned here).
    fn append(&self, exec_id: &str, event: Event) -> Result<Event, StoreError>;
    /// Appends several events at once, in order.
    fn append_batch(&self, exec_id: &str, events: Vec<Event>) -> Result<(), StoreError>;
    /// An execution's journal, in order.
    fn events(&self, exec_id: &str) -> Result<Vec<Event>, StoreError>;
    /// Appends an audit entry (its `seq` is assigned here).
    fn audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError>;
    /// Audit entries, oldest first.
    fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError>;
    /// Removes executions that finished before `before_ms`, with their journals;
    /// returns how many. The audit log keeps what was decided about them.
    fn prune_executions(&self, before_ms: i64) -> Result<usize, StoreError>;
    /// The kill switch: when set, no automatic run starts.
    fn paused(&self) -> Result<Option<PauseState>, StoreError>;
    fn set_paused(&self, state: Option<&PauseState>) -> Result<(), StoreError>;
}

fn audit_table(store: &Store) -> Result<Table<AuditEntry>, StoreError> {
    store.table(AUDIT)
}

impl ExecutionStore for Store {
    fn next_execution_id(&self) -> Result<String, StoreError> {
        Ok(format!("ex-{:06}", self.next_in(NEXT_EXECUTION)?))
    }

    fn put_execution(&self, rec: &ExecutionRecord) -> Result<(), StoreError> {
        self.table(EXECUTIONS)?.put(rec.id.as_bytes(), rec)
    }

    fn execution(&self, id: &str) -> Result<ExecutionRecord, StoreError> {
        self.table(EXECUTIONS)?
            .get(id.as_bytes())?
            .ok_or_else(|| StoreError::NotFound {
                what: "execution",
                key: id.to_string(),
            })
    }

    fn executions(&self) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.table(EXECUTIONS)?.all_rev()
    }

    fn append(&self, exec_id: &str, event: Event) -> Result<Event, StoreError> {
        self.journal(JOURNAL)?.append(exec_id, event)
    }

    fn append_batch(&self, exec_id: &str, events: Vec<Event>) -> Result<(), StoreError> {
        self.journal(JOURNAL)?.append_batch(exec_id, events)
    }

    fn events(&self, exec_id: &str) -> Result<Vec<Event>, StoreError> {
        self.journal(JOURNAL)?.entries(exec_id)
    }

    fn audit(&self, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        // One writer at a time links to the last entry, so the chain never forks.
        static CHAIN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CHAIN.lock().unwrap_or_else(|p| p.into_inner());
        let table = audit_table(self)?;
        let prev = table.last()?.and_then(|e| e.hash);
        entry.seq = self.unique_id()?;
        entry.hash = None;
        entry.hash = Some(entry.chained_hash(prev.as_deref()));
        table.put(&entry.seq.to_be_bytes(), &entry)?;
        Ok(entry)
    }

    fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        audit_table(self)?.all()
    }

    fn prune_executions(&self, before_ms: i64) -> Result<usize, StoreError> {
        let gone = self
            .table::<ExecutionRecord>(EXECUTIONS)?
            .prune(|r| r.status.is_final() && r.updated_ms < before_ms)?;
        let journal = self.journal::<Event>(JOURNAL)?;
        for r in &gone {
            journal.forget(&r.id)?;
        }
        Ok(gone.len())
    }

    fn paused(&self) -> Result<Option<PauseState>, StoreError> {
        self.setting(PAUSE_KEY)
    }

    fn set_paused(&self, state: Option<&PauseState>) -> Result<(), StoreError> {
        self.set_setting(PAUSE_KEY, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ExecutionRecord {
        ExecutionRecord {
            id: id.into(),
            runbook: "rb".into(),
            runbook_file: "rb.yaml".into(),
            source: String::new(),
            inputs_key: "k".into(),
            params: Value::Null,
            incident: Value::Null,
            status: ExecStatus::Running,
            created_ms: 1,
            updated_ms: 1,
            reason: None,
            origin: Origin::Manual,
            gate: false,
            approval_timeout_ms: None,
            ceiling: None,
            approvers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn journal_survives_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_execution(&record("ex-1")).unwrap();
            for kind in [
                EventKind::ExecutionStarted,
                EventKind::Started,
                EventKind::Succeeded,
            ] {
                store
                    .append(
                        "ex-1",
                        Event {
                            seq: 0,
                            ts_ms: 1,
                            step: Some("a".into()),
                            kind,
                            attempt: 1,
                            detail: None,
                            output: None,
                        },
                    )
                    .unwrap();
            }
            store
                .append(
                    "ex-10",
                    Event {
                        seq: 0,
                        ts_ms: 1,
                        step: None,
                        kind: EventKind::Queued,
                        attempt: 0,
                        detail: None,
                        output: None,
                    },
                )
                .unwrap();
            store.sync().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let kinds: Vec<EventKind> = store
            .events("ex-1")
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::ExecutionStarted,
                EventKind::Started,
                EventKind::Succeeded
            ]
        );
        assert_eq!(store.execution("ex-1").unwrap().runbook, "rb");
        assert!(matches!(
            store.execution("nope"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn batched_records_read_back_in_order_between_single_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ev = |step: &str, kind| Event::at(1, Some(step), kind, 0, None, None);
        store.append("ex-1", ev("a", EventKind::Started)).unwrap();
        store
            .append_batch(
                "ex-1",
                vec![ev("b", EventKind::Succeeded), ev("c", EventKind::Skipped)],
            )
            .unwrap();
        store.append_batch("ex-1", Vec::new()).unwrap();
        store.append("ex-1", ev("d", EventKind::Failed)).unwrap();
        let events = store.events("ex-1").unwrap();
        let steps: Vec<&str> = events.iter().map(|e| e.step.as_deref().unwrap()).collect();
        assert_eq!(steps, vec!["a", "b", "c", "d"]);
        assert!(
            events.windows(2).all(|w| w[0].seq < w[1].seq),
            "sequence numbers stay increasing"
        );
    }

    #[test]
    fn the_audit_chain_shows_a_changed_or_removed_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // An entry from before the chain: tolerated at the start only.
        let legacy = AuditEntry {
            seq: store.unique_id().unwrap(),
            ..AuditEntry::new("user:old", AuditAction::Pause, "automation", "x")
        };
        audit_table(&store)
            .unwrap()
            .put(&legacy.seq.to_be_bytes(), &legacy)
            .unwrap();
        let written: Vec<AuditEntry> = (0..5)
            .map(|i| {
                store
                    .audit(AuditEntry::new(
                        format!("user:u{i}"),
                        AuditAction::Approve,
                        format!("ex-{i}"),
                        "approved",
                    ))
                    .unwrap()
            })
            .collect();
        let ok = verify_audit(&store.audit_entries().unwrap());
        assert_eq!(
            (ok.entries, ok.unchained, ok.broken.clone()),
            (6, 1, None),
            "{ok:?}"
        );

        // A changed outcome breaks that entry's link.
        let mut changed = written[2].clone();
        changed.outcome = "rejected".into();
        audit_table(&store)
            .unwrap()
            .put(&changed.seq.to_be_bytes(), &changed)
            .unwrap();
        let v = verify_audit(&store.audit_entries().unwrap());
        assert_eq!(
            v.broken.as_ref().map(|b| b.0),
            Some(written[2].seq),
            "{v:?}"
        );
        audit_table(&store)
            .unwrap()
            .put(&written[2].seq.to_be_bytes(), &written[2])
            .unwrap();
        assert_eq!(verify_audit(&store.audit_entries().unwrap()).broken, None);

        // A removed entry breaks the next one's.
        audit_table(&store)
            .unwrap()
            .remove(&written[1].seq.to_be_bytes())
            .unwrap();
        let v = verify_audit(&store.audit_entries().unwrap());
        assert_eq!(
            v.broken.as_ref().map(|b| b.0),
            Some(written[2].seq),
            "{v:?}"
        );

        // An entry slipped in without a hash after the chain began is caught.
        audit_table(&store)
            .unwrap()
            .put(&written[1].seq.to_be_bytes(), &written[1])
            .unwrap();
        let sneaky = AuditEntry {
            seq: written[4].seq + 1,
            ..AuditEntry::new("user:x", AuditAction::Promote, "rb", "ok")
        };
        audit_table(&store)
            .unwrap()
            .put(&sneaky.seq.to_be_bytes(), &sneaky)
            .unwrap();
        let v = verify_audit(&store.audit_entries().unwrap());
        assert_eq!(v.broken.as_ref().map(|b| b.0), Some(sneaky.seq), "{v:?}");
    }

    #[tokio::test]
    async fn audit_is_append_only_and_pause_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .audit(AuditEntry::new(
                    "policy:escalation",
                    AuditAction::Decide,
                    "restart",
                    "auto",
                ))
                .unwrap();
            store
                .audit(AuditEntry::new(
                    "user:alice",
                    AuditAction::Approve,
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
