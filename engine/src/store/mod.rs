//! The durable store: executions, their journals, and (later) incidents, audit and
//! models. The only home of sled; everything else goes through [`Store`].
//!
//! Journal writes are appended without waiting; [`Store::sync`] makes everything
//! appended so far durable. Concurrent `sync` calls share one flush (group commit),
//! which is what makes tens of thousands of durable transitions per second possible.

mod audit;
mod models;
pub use audit::{AuditEntry, PauseState};
pub use models::ModelMeta;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod alerts;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another vigil process")]
    Locked { path: String },
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    #[error("no execution `{0}`")]
    NotFound(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

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
    /// `manual` or `automatic`: guardrails count automatic runs.
    #[serde(default = "manual")]
    pub origin: String,
    /// A policy asked for approval before the execution acts.
    #[serde(default)]
    pub gate: bool,
    /// How long a wait for approval may last.
    #[serde(default)]
    pub approval_timeout_ms: Option<i64>,
    /// What a policy decided on without a human: no step may go past it unapproved.
    #[serde(default)]
    pub ceiling: Option<vigil_core::action::Ceiling>,
}

fn manual() -> String {
    "manual".into()
}

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

/// Tracks which writes a flush has made durable, so concurrent syncs share flushes.
#[derive(Debug, Default)]
struct GroupCommit {
    written: AtomicU64,
    durable: AtomicU64,
    flushing: tokio::sync::Mutex<()>,
}

/// The durable store. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    executions: sled::Tree,
    journal: sled::Tree,
    meta: sled::Tree,
    commit: Arc<GroupCommit>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        // A store released a moment ago (a process exiting, sled's flusher thread
        // winding down) can still hold the lock briefly: wait a little before
        // reporting it as in use.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .flush_every_ms(Some(1000))
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(io))
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: dir.display().to_string(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(e) => return Err(StoreError::Io(format!("{}: {e}", dir.display()))),
            }
        };
        Ok(Store {
            executions: db.open_tree("executions")?,
            journal: db.open_tree("journal")?,
            meta: db.open_tree("meta")?,
            db,
            commit: Arc::new(GroupCommit::default()),
        })
    }

    /// A new execution id: short, sortable, unique within this store (a persistent
    /// counter, so ids stay dense across restarts).
    pub fn next_execution_id(&self) -> Result<String, StoreError> {
        let next = self.meta.update_and_fetch(b"next_execution", |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let n = next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        Ok(format!("ex-{n:06}"))
    }

    pub fn put_execution(&self, rec: &ExecutionRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.executions.insert(rec.id.as_bytes(), bytes)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn execution(&self, id: &str) -> Result<ExecutionRecord, StoreError> {
        let bytes = self
            .executions
            .get(id.as_bytes())?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("execution {id}: {e}")))
    }

    /// All executions, newest first.
    pub fn executions(&self) -> Result<Vec<ExecutionRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.executions.iter().rev() {
            let (k, v) = item?;
            let rec: ExecutionRecord = serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("execution {}: {e}", String::from_utf8_lossy(&k)))
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    fn journal_key(exec_id: &str, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(exec_id.len() + 9);
        key.extend_from_slice(exec_id.as_bytes());
        key.push(b'/');
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Appends an event (its `seq` is assigned here). Not yet durable: see [`Store::sync`].
    pub fn append(&self, exec_id: &str, mut event: Event) -> Result<Event, StoreError> {
        event.seq = self.db.generate_id()?;
        let bytes = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.journal
            .insert(Self::journal_key(exec_id, event.seq), bytes)?;
        self.commit.written.fetch_add(1, Ordering::SeqCst);
        Ok(event)
    }

    /// Appends several events at once (one batch write), in order.
    ///
    /// The batch is one journal record (a JSON array) under the first event's key:
    /// one tree insert instead of one per event.
    pub fn append_batch(&self, exec_id: &str, mut events: Vec<Event>) -> Result<(), StoreError> {
        let Some(first) = events.first().map(|_| self.db.generate_id()).transpose()? else {
            return Ok(());
        };
        for (i, event) in events.iter_mut().enumerate() {
            event.seq = first + i as u64;
        }
        // Later ids must not collide with the ones given out here.
        for _ in 1..events.len() {
            self.db.generate_id()?;
        }
        let bytes = serde_json::to_vec(&events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.journal
            .insert(Self::journal_key(exec_id, first), bytes)?;
        self.mark_written();
        Ok(())
    }

    /// An execution's journal, in order.
    pub fn events(&self, exec_id: &str) -> Result<Vec<Event>, StoreError> {
        let mut prefix = exec_id.as_bytes().to_vec();
        prefix.push(b'/');
        let mut out = Vec::new();
        for item in self.journal.scan_prefix(prefix) {
            let (_, v) = item?;
            let corrupt =
                |e: serde_json::Error| StoreError::Corrupt(format!("journal of {exec_id}: {e}"));
            // A record is one event, or a batch of them (see `append_batch`).
            if v.first() == Some(&b'[') {
                out.extend(serde_json::from_slice::<Vec<Event>>(&v).map_err(corrupt)?);
            } else {
                out.push(serde_json::from_slice(&v).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    /// Notes a write, so the next `sync` flushes it.
    fn mark_written(&self) {
        self.commit.written.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every write made before this call durable. Concurrent callers share flushes.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let target = self.commit.written.load(Ordering::SeqCst);
        if self.commit.durable.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let _guard = self.commit.flushing.lock().await;
        if self.commit.durable.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        let covered = self.commit.written.load(Ordering::SeqCst);
        self.db.flush_async().await?;
        self.commit.durable.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// Blocking flush, for code outside the async runtime.
    pub fn sync_blocking(&self) -> Result<(), StoreError> {
        let covered = self.commit.written.load(Ordering::SeqCst);
        self.db.flush()?;
        self.commit.durable.fetch_max(covered, Ordering::SeqCst);
        Ok(())
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
            origin: "manual".into(),
            gate: false,
            approval_timeout_ms: None,
            ceiling: None,
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
            Err(StoreError::NotFound(_))
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
}
