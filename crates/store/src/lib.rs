//! The durable store: the only home of sled. It knows tables, journals, counters
//! and durability; it knows no record of any domain. Each domain (executions,
//! alerts, models) owns its record types and reaches its tables through here.
//!
//! Writes are applied without waiting; [`Store::sync`] makes everything written so
//! far durable. Concurrent `sync` calls share one flush (group commit), which is
//! what makes tens of thousands of durable transitions per second possible.

mod log;

pub use log::RedoLog;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another vigil process")]
    Locked { path: String },
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
    /// The record a domain asked for by key is not there (`what` names the record).
    #[error("no {what} `{key}`")]
    NotFound { what: &'static str, key: String },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// Counts writes and flushes, so that a `sync` waits only for writes made before it.
#[derive(Debug, Default)]
struct GroupCommit {
    written: AtomicU64,
    durable: AtomicU64,
    flushing: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    fn mark_written(&self) {
        self.written.fetch_add(1, Ordering::SeqCst);
    }
}

/// The durable store. Cheap to clone; all clones share one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    commit: Arc<GroupCommit>,
    dir: PathBuf,
    /// Redo logs in front of the tables, by name: each sync checkpoints them.
    logs: Arc<std::sync::Mutex<Vec<(String, Arc<RedoLog>)>>>,
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
            meta: db.open_tree("meta")?,
            db,
            commit: Arc::new(GroupCommit::default()),
            dir: dir.to_path_buf(),
            logs: Arc::default(),
        })
    }

    /// The redo log `name` in front of this store's tables (see [`RedoLog`]), with
    /// the records a crash left to redo. Each [`Store::sync`] checkpoints it. Asked
    /// again (a reloaded service), the same log comes back, with nothing to redo.
    pub fn redo_log(&self, name: &str) -> Result<(Arc<RedoLog>, Vec<Vec<u8>>), StoreError> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, log)) = logs.iter().find(|(n, _)| n == name) {
            return Ok((log.clone(), Vec::new()));
        }
        let (log, redo) = RedoLog::open(&self.dir.join(name))?;
        let log = Arc::new(log);
        logs.push((name.to_string(), log.clone()));
        Ok((log, redo))
    }

    /// What each redo log has appended so far, before a flush.
    fn logs_appended(&self) -> Vec<(Arc<RedoLog>, u64)> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| (l.clone(), l.appended()))
            .collect()
    }

    /// After a flush: the records appended before it are in the tables.
    fn checkpoint(&self, upto: Vec<(Arc<RedoLog>, u64)>) -> Result<(), StoreError> {
        for (log, seq) in upto {
            log.checkpoint(seq)?;
        }
        Ok(())
    }

    /// How many records each table holds, by table name (each a walk of its table).
    pub fn table_sizes(&self) -> Vec<(String, usize)> {
        self.db
            .tree_names()
            .into_iter()
            .filter(|n| n.as_ref() != b"__sled__default")
            .filter_map(|n| {
                let tree = self.db.open_tree(&n).ok()?;
                Some((String::from_utf8_lossy(&n).into_owned(), tree.len()))
            })
            .collect()
    }

    /// Bytes the redo logs hold on disk.
    pub fn log_bytes(&self) -> u64 {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, l)| l.disk_bytes())
            .sum()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// The table `name` of records `V`, keyed by bytes the caller chooses.
    pub fn table<V>(&self, name: &'static str) -> Result<Table<V>, StoreError> {
        Ok(Table {
            tree: self.db.open_tree(name)?,
            name,
            commit: self.commit.clone(),
            _records: PhantomData,
        })
    }

    /// The table `name` of opaque byte strings (serialized models).
    pub fn blobs(&self, name: &'static str) -> Result<Blobs, StoreError> {
        Ok(Blobs {
            tree: self.db.open_tree(name)?,
            commit: self.commit.clone(),
        })
    }

    /// The journal `name`: records `E` appended under an owner's id, read back in order.
    pub fn journal<E>(&self, name: &'static str) -> Result<Journal<E>, StoreError> {
        Ok(Journal {
            tree: self.db.open_tree(name)?,
            name,
            db: self.db.clone(),
            commit: self.commit.clone(),
            _records: PhantomData,
        })
    }

    /// A number no earlier call returned, unique within this store and increasing.
    pub fn unique_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// The next value (from 1) of the persistent counter `name`: dense across restarts.
    pub fn next_in(&self, name: &str) -> Result<u64, StoreError> {
        let next = self.meta.update_and_fetch(name.as_bytes(), |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        self.commit.mark_written();
        Ok(next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes))
    }

    /// The single value stored under `key` (settings such as the kill switch).
    pub fn setting<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>, StoreError> {
        match self.meta.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("setting {key}: {e}"))),
        }
    }

    /// Sets (or with `None`, clears) the value under `key`; durable at the next sync.
    pub fn set_setting<V: Serialize>(&self, key: &str, v: Option<&V>) -> Result<(), StoreError> {
        match v {
            Some(v) => {
                self.meta.insert(key.as_bytes(), encode(v)?)?;
            }
            None => {
                self.meta.remove(key.as_bytes())?;
            }
        }
        self.commit.mark_written();
        Ok(())
    }

    /// Makes every write made before this call durable. Concurrent callers share flushes.
    pub async fn sync(&self) -> Result<(), StoreError> {
        // Log records appended so far had their table writes made before: once those
        // writes are durable, the records can go.
        let logs = self.logs_appended();
        let target = self.commit.written.load(Ordering::SeqCst);
        if self.commit.durable.load(Ordering::SeqCst) >= target {
            return self.checkpoint(logs);
        }
        let _guard = self.commit.flushing.lock().await;
        if self.commit.durable.load(Ordering::SeqCst) >= target {
            return self.checkpoint(logs);
        }
        let covered = self.commit.written.load(Ordering::SeqCst);
        self.db.flush_async().await?;
        self.commit.durable.fetch_max(covered, Ordering::SeqCst);
        self.checkpoint(logs)
    }

    /// Blocking flush, for code outside the async runtime.
    pub fn sync_blocking(&self) -> Result<(), StoreError> {
        let covered = self.commit.written.load(Ordering::SeqCst);
        let logs = self.logs_appended();
        self.db.flush()?;
        self.commit.durable.fetch_max(covered, Ordering::SeqCst);
        self.checkpoint(logs)
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// How many removals a prune applies at once.
const PRUNE_BATCH: usize = 1000;

/// A table of records `V` (JSON on disk) in key order.
pub struct Table<V> {
    tree: sled::Tree,
    name: &'static str,
    commit: Arc<GroupCommit>,
    _records: PhantomData<fn() -> V>,
}

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        Table {
            tree: self.tree.clone(),
            name: self.name,
            commit: self.commit.clone(),
            _records: PhantomData,
        }
    }
}

impl<V> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl<V: Serialize + DeserializeOwned> Table<V> {
    fn decode(&self, key: &[u8], v: &[u8]) -> Result<V, StoreError> {
        serde_json::from_slice(v).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} {}: {e}",
                self.name,
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// The record with the greatest key, if any.
    pub fn last(&self) -> Result<Option<V>, StoreError> {
        match self.tree.last()? {
            Some((k, v)) => self.decode(&k, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `v` under `key`; durable at the next sync.
    pub fn put(&self, key: &[u8], v: &V) -> Result<(), StoreError> {
        self.tree.insert(key, encode(v)?)?;
        self.commit.mark_written();
        Ok(())
    }

    /// Stores and removes several records as one atomic batch.
    pub fn apply<'a, K: AsRef<[u8]> + 'a>(
        &self,
        put: impl IntoIterator<Item = (K, &'a V)>,
        remove: impl IntoIterator<Item = K>,
    ) -> Result<(), StoreError>
    where
        V: 'a,
    {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for (k, v) in put {
            batch.insert(k.as_ref(), encode(v)?);
            any = true;
        }
        for k in remove {
            batch.remove(k.as_ref());
            any = true;
        }
        if any {
            self.tree.apply_batch(batch)?;
            self.commit.mark_written();
        }
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<V>, StoreError> {
        self.tree
            .get(key)?
            .map(|v| self.decode(key, &v))
            .transpose()
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        self.commit.mark_written();
        Ok(())
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<V>, StoreError> {
        self.scan_prefix(b"")
    }

    /// Every record, in reverse key order.
    pub fn all_rev(&self) -> Result<Vec<V>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter().rev() {
            let (k, v) = item?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Removes every record `drop` says to, in batches of at most `PRUNE_BATCH` (so
    /// writers are never held back long); returns the records removed. Durable at the
    /// next sync.
    pub fn prune(&self, mut drop: impl FnMut(&V) -> bool) -> Result<Vec<V>, StoreError> {
        let mut removed = Vec::new();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in self.tree.iter() {
            let (k, v) = item?;
            let record = self.decode(&k, &v)?;
            if drop(&record) {
                batch.remove(k);
                in_batch += 1;
                removed.push(record);
                if in_batch == PRUNE_BATCH {
                    self.tree.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
        }
        if in_batch > 0 {
            self.tree.apply_batch(batch)?;
        }
        if !removed.is_empty() {
            self.commit.mark_written();
        }
        Ok(removed)
    }

    /// How many records the table holds (a walk of the table).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The records whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<V>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }
}

/// A table of opaque byte strings.
#[derive(Clone)]
pub struct Blobs {
    tree: sled::Tree,
    commit: Arc<GroupCommit>,
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

impl Blobs {
    pub fn put(&self, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, bytes)?;
        self.commit.mark_written();
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }
}

/// A record that takes its place in a journal from the store.
pub trait Sequenced {
    fn set_seq(&mut self, seq: u64);
}

/// Append-only records under an owner's id (an execution, an incident), read back in
/// the order they were appended.
pub struct Journal<E> {
    tree: sled::Tree,
    name: &'static str,
    db: sled::Db,
    commit: Arc<GroupCommit>,
    _records: PhantomData<fn() -> E>,
}

impl<E> fmt::Debug for Journal<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("name", &self.name).finish()
    }
}

impl<E: Serialize + DeserializeOwned + Sequenced> Journal<E> {
    fn key(owner: &str, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(owner.len() + 9);
        key.extend_from_slice(owner.as_bytes());
        key.push(b'/');
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Removes every entry of `owner` (its records are being pruned); durable at the
    /// next sync.
    pub fn forget(&self, owner: &str) -> Result<(), StoreError> {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(b'/');
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.tree.apply_batch(batch)?;
        self.commit.mark_written();
        Ok(())
    }

    /// Appends `entry` (its `seq` is assigned here); durable at the next sync.
    pub fn append(&self, owner: &str, mut entry: E) -> Result<E, StoreError> {
        let seq = self.db.generate_id()?;
        entry.set_seq(seq);
        self.tree.insert(Self::key(owner, seq), encode(&entry)?)?;
        self.commit.mark_written();
        Ok(entry)
    }

    /// Appends several entries at once, in order: one record (a JSON array) under the
    /// first entry's key, one tree insert instead of one per entry.
    pub fn append_batch(&self, owner: &str, mut entries: Vec<E>) -> Result<(), StoreError> {
        let Some(first) = entries.first().map(|_| self.db.generate_id()).transpose()? else {
            return Ok(());
        };
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.set_seq(first + i as u64);
        }
        // Later ids must not collide with the ones given out here.
        for _ in 1..entries.len() {
            self.db.generate_id()?;
        }
        self.tree
            .insert(Self::key(owner, first), encode(&entries)?)?;
        self.commit.mark_written();
        Ok(())
    }

    /// An owner's entries, in order.
    pub fn entries(&self, owner: &str) -> Result<Vec<E>, StoreError> {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(b'/');
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (_, v) = item?;
            let corrupt = |e: serde_json::Error| {
                StoreError::Corrupt(format!("{} of {owner}: {e}", self.name))
            };
            // A record is one entry, or a batch of them (see `append_batch`).
            if v.first() == Some(&b'[') {
                out.extend(serde_json::from_slice::<Vec<E>>(&v).map_err(corrupt)?);
            } else {
                out.push(serde_json::from_slice(&v).map_err(corrupt)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        seq: u64,
        text: String,
    }

    impl Sequenced for Note {
        fn set_seq(&mut self, seq: u64) {
            self.seq = seq;
        }
    }

    fn note(text: &str) -> Note {
        Note {
            seq: 0,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn tables_journals_counters_and_settings_survive_reopen() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let store = Store::open(dir.path())?;
            let notes = store.table::<Note>("notes")?;
            notes.put(b"b", &note("two"))?;
            notes.apply([(b"a", &note("one")), (b"c", &note("three"))], [b"b"])?;
            let journal = store.journal::<Note>("log")?;
            journal.append("x", note("first"))?;
            journal.append_batch("x", vec![note("second"), note("third")])?;
            journal.append("y", note("elsewhere"))?;
            assert_eq!((store.next_in("n")?, store.next_in("n")?), (1, 2));
            store.set_setting("mode", Some(&"paused"))?;
            store.sync().await?;
        }
        let store = Store::open(dir.path())?;
        let notes = store.table::<Note>("notes")?;
        let texts = |v: Vec<Note>| v.into_iter().map(|n| n.text).collect::<Vec<_>>();
        assert_eq!(texts(notes.all()?), ["one", "three"]);
        assert_eq!(texts(notes.all_rev()?), ["three", "one"]);
        assert_eq!(notes.get(b"b")?, None);
        let entries = store.journal::<Note>("log")?.entries("x")?;
        assert_eq!(texts(entries.clone()), ["first", "second", "third"]);
        assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(store.next_in("n")?, 3, "counters stay dense across reopen");
        assert_eq!(store.setting::<String>("mode")?.as_deref(), Some("paused"));
        store.set_setting::<String>("mode", None)?;
        assert_eq!(store.setting::<String>("mode")?, None);
        Ok(())
    }

    #[test]
    fn a_record_of_the_wrong_shape_is_a_corrupt_error_naming_table_and_key()
    -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io(e.to_string()))?;
        let store = Store::open(dir.path())?;
        store
            .table::<String>("notes")?
            .put(b"k1", &"not a note".to_string())?;
        let err = store.table::<Note>("notes")?.get(b"k1");
        match err {
            Err(StoreError::Corrupt(why)) => assert!(why.starts_with("notes k1:"), "{why}"),
            other => panic!("expected a corrupt record, got {other:?}"),
        }
        Ok(())
    }
}
