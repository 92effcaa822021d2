//! An append-only log in front of the tables: a write is acknowledged once it is in
//! the log and the log is on disk (one `fdatasync` shared by every writer waiting,
//! much cheaper than flushing the tables), and the tables catch up at the next
//! [`crate::Store::sync`], which then drops the log records they now hold.
//!
//! The contract for a writer: write the tables first, then append to the log what
//! those writes were (enough to redo them), then wait for [`RedoLog::sync_to`]. After
//! a crash, [`RedoLog::open`] hands back the records not yet known to be in the
//! tables, in order; the owner redoes them (they must be idempotent: redone writes
//! of state, not increments) and syncs.
//!
//! On disk: segment files `<first seq>.log` of records `[len u32][crc32 u32][bytes]`
//! (little-endian). A torn record at the end (a crash mid-write) ends the log there.

use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A segment is closed once it holds this much; closed segments whose records the
/// tables hold are deleted at the next sync.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The largest record the log accepts (and believes when reading back).
const MAX_RECORD: usize = 64 * 1024 * 1024;

#[derive(Debug)]
struct Tail {
    /// Bytes appended and not yet written to the file.
    pending: Vec<u8>,
    /// Sequence number of the last record appended (records count from 1).
    appended: u64,
    file: File,
    /// First sequence number of the open segment, and its size on disk.
    segment_first: u64,
    segment_bytes: u64,
    /// Closed segments: (first seq, path), oldest first.
    closed: Vec<(u64, PathBuf)>,
}

/// The log. Share it behind an `Arc`.
#[derive(Debug)]
pub struct RedoLog {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Every record up to this one is on disk.
    durable: AtomicU64,
    /// Every record up to this one is in the tables (durably).
    checkpointed: AtomicU64,
    /// One flush at a time; writers arriving meanwhile wait for the next.
    flushing: tokio::sync::Mutex<()>,
}

fn io(what: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{}: {e}", what.display()))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

impl RedoLog {
    /// Opens (or creates) the log in `dir` and returns the records after the last
    /// checkpoint, oldest first, for the owner to redo.
    pub fn open(dir: &Path) -> Result<(RedoLog, Vec<Vec<u8>>), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let first = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse::<u64>()
                    .ok()?;
                Some((first, p))
            })
            .collect();
        segments.sort();
        let mut records = Vec::new();
        let mut next = segments.first().map_or(1, |(first, _)| *first);
        for (i, (first, path)) in segments.iter().enumerate() {
            let (found, valid_len) = read_segment(path)?;
            next = first + found.len() as u64;
            records.extend(found);
            // A torn tail is cut off, so that appends after it are read back.
            let len = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
            if valid_len < len {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io(path, e))?;
                f.set_len(valid_len).map_err(|e| io(path, e))?;
                f.sync_data().map_err(|e| io(path, e))?;
                // Whatever followed a torn record in later segments cannot be trusted
                // to be in order: stop here.
                for (_, later) in &segments[i + 1..] {
                    let _ = std::fs::remove_file(later);
                }
                segments.truncate(i + 1);
                break;
            }
        }
        let first_kept = segments.first().map_or(1, |(first, _)| *first);
        // The records handed back are redone and then checkpointed by the owner; the
        // log starts a fresh segment after them.
        let path = segment_path(dir, next);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let segment_bytes = file.metadata().map_err(|e| io(&path, e))?.len();
        segments.retain(|(first, _)| *first != next);
        let log = RedoLog {
            dir: dir.to_path_buf(),
            tail: Mutex::new(Tail {
                pending: Vec::new(),
                appended: next - 1,
                file,
                segment_first: next,
                segment_bytes,
                closed: segments,
            }),
            durable: AtomicU64::new(next - 1),
            checkpointed: AtomicU64::new(first_kept.saturating_sub(1)),
            flushing: tokio::sync::Mutex::new(()),
        };
        Ok((log, records))
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record (in memory until the next flush); returns its sequence number.
    pub fn append(&self, bytes: &[u8]) -> Result<u64, StoreError> {
        if bytes.len() > MAX_RECORD {
            return Err(StoreError::Io(format!(
                "a log record of {} bytes is over the limit of {MAX_RECORD}",
                bytes.len()
            )));
        }
        let mut t = self.tail();
        t.pending
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        t.pending
            .extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        t.pending.extend_from_slice(bytes);
        t.appended += 1;
        Ok(t.appended)
    }

    /// The last record appended.
    pub fn appended(&self) -> u64 {
        self.tail().appended
    }

    /// The last record known to be in the tables.
    pub fn checkpointed(&self) -> u64 {
        self.checkpointed.load(Ordering::Acquire)
    }

    /// Returns once record `seq` (and every one before it) is on disk. Concurrent
    /// callers share one write and one `fdatasync`.
    pub async fn sync_to(&self, seq: u64) -> Result<(), StoreError> {
        if self.durable.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _flush = self.flushing.lock().await;
        if self.durable.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        // Take what is pending and write it on this task: the writer here waits for
        // the fdatasync in any case, and a hop to the blocking pool and back costs more
        // than the sync itself at this size (BENCHMARKS.md); the other workers go on.
        let (bytes, upto, file) = {
            let mut t = self.tail();
            let bytes = std::mem::take(&mut t.pending);
            t.segment_bytes += bytes.len() as u64;
            let file = t.file.try_clone().map_err(|e| io(&self.dir, e))?;
            (bytes, t.appended, file)
        };
        let mut file = file;
        file.write_all(&bytes).map_err(|e| io(&self.dir, e))?;
        file.sync_data().map_err(|e| io(&self.dir, e))?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Records up to `seq` are in the tables, durably (the owner synced them): the
    /// closed segments holding only such records are deleted, and a full open segment
    /// is closed so that it can be, later.
    pub fn checkpoint(&self, seq: u64) -> Result<(), StoreError> {
        self.checkpointed.fetch_max(seq, Ordering::AcqRel);
        let seq = self.checkpointed.load(Ordering::Acquire);
        let durable = self.durable.load(Ordering::Acquire);
        let mut t = self.tail();
        // Rotate a segment that is full, or one wholly checkpointed, once what it holds
        // is on disk (nothing pending, nothing newer than the checkpoint unwritten).
        let all_done = t.appended <= seq && t.appended > t.segment_first.saturating_sub(1);
        if t.pending.is_empty()
            && durable >= t.appended
            && (t.segment_bytes >= SEGMENT_BYTES || all_done)
        {
            let next = t.appended + 1;
            let path = segment_path(&self.dir, next);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            let old = (t.segment_first, segment_path(&self.dir, t.segment_first));
            t.closed.push(old);
            t.file = file;
            t.segment_first = next;
            t.segment_bytes = 0;
        }
        // A closed segment ends where the next one begins.
        let mut keep = Vec::new();
        let closed = std::mem::take(&mut t.closed);
        let mut ends: Vec<u64> = closed.iter().skip(1).map(|(f, _)| *f).collect();
        ends.push(t.segment_first);
        for ((first, path), next_first) in closed.into_iter().zip(ends) {
            if next_first.saturating_sub(1) <= seq {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            } else {
                keep.push((first, path));
            }
        }
        t.closed = keep;
        Ok(())
    }

    /// Bytes the log holds on disk (closed and open segments).
    pub fn disk_bytes(&self) -> u64 {
        let t = self.tail();
        t.closed
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum::<u64>()
            + t.segment_bytes
    }
}

/// The whole records of a segment, and how many bytes they take (a torn record
/// after them is not counted).
fn read_segment(path: &Path) -> Result<(Vec<Vec<u8>>, u64), StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io(path, e))?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let end = at + 8 + len;
        if len > MAX_RECORD || end > bytes.len() {
            break;
        }
        let body = &bytes[at + 8..end];
        if crc32fast::hash(body) != crc {
            break;
        }
        records.push(body.to_vec());
        at = end;
    }
    Ok((records, at as u64))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn records_come_back_after_a_crash_until_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, old) = RedoLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            let a = log.append(b"one").unwrap();
            let b = log.append(b"two").unwrap();
            assert_eq!((a, b), (1, 2));
            log.sync_to(b).await.unwrap();
            // Appended but never synced: not promised, and here not written either.
            log.append(b"three").unwrap();
        }
        let (log, again) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(again, vec![b"one".to_vec(), b"two".to_vec()]);
        // The owner redoes them, syncs its tables, and checkpoints.
        log.checkpoint(2).unwrap();
        let c = log.append(b"four").unwrap();
        assert_eq!(c, 3);
        log.sync_to(c).await.unwrap();
        drop(log);
        let (log, after) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(after, vec![b"four".to_vec()]);
        log.checkpoint(3).unwrap();
        drop(log);
        let (_, none) = RedoLog::open(dir.path()).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[tokio::test]
    async fn a_torn_record_ends_the_log_and_later_appends_read_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = RedoLog::open(dir.path()).unwrap();
            log.append(b"whole").unwrap();
            log.append(b"torn record").unwrap();
            log.sync_to(2).await.unwrap();
        }
        let seg = dir.path().join(names(dir.path())[0].clone());
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        {
            let (log, back) = RedoLog::open(dir.path()).unwrap();
            assert_eq!(back, vec![b"whole".to_vec()]);
            let s = log.append(b"after").unwrap();
            assert_eq!(s, 2);
            log.sync_to(s).await.unwrap();
        }
        let (_, back) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![b"whole".to_vec(), b"after".to_vec()]);
    }

    #[tokio::test]
    async fn a_flipped_byte_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = RedoLog::open(dir.path()).unwrap();
            log.append(b"good").unwrap();
            log.append(b"bad!").unwrap();
            log.sync_to(2).await.unwrap();
        }
        let seg = dir.path().join(names(dir.path())[0].clone());
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&seg, bytes).unwrap();
        let (_, back) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(back, vec![b"good".to_vec()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes_and_checkpoints_delete_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RedoLog::open(dir.path()).unwrap();
        let log = std::sync::Arc::new(log);
        let big = vec![7u8; 1024 * 1024];
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (log, big) = (log.clone(), big.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let s = log.append(&big).unwrap();
                    log.sync_to(s).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(log.appended(), 20);
        // 20 MiB: the open segment is full; a checkpoint of everything closes it and
        // deletes it, leaving an empty open segment.
        log.checkpoint(20).unwrap();
        log.checkpoint(20).unwrap();
        assert!(log.disk_bytes() < 1024, "{}", log.disk_bytes());
        assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
        drop(log);
        let (_, back) = RedoLog::open(dir.path()).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn an_oversized_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RedoLog::open(dir.path()).unwrap();
        assert!(log.append(&vec![0u8; MAX_RECORD + 1]).is_err());
        assert_eq!(log.appended(), 0);
    }
}
