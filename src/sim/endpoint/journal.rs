//! Durable shadow storage: an append-only journal with group commit.
//!
//! Every accepted update or delete appends one line, the shadow's whole record as JSON, and
//! the caller waits until that line has been written and `fsync`ed before it answers 200. A
//! single writer thread takes every line that is pending at that moment and commits them with
//! one write and one `fsync`, so concurrent clients share the cost of a disk flush (group
//! commit). Lines are full records, so replay is "last line per shadow wins"; a torn last line
//! (a crash mid-write) was never acknowledged and is skipped. When the journal grows past a
//! threshold the writer rewrites it with one line per shadow (write to a temporary file,
//! `fsync`, rename over the journal, `fsync` the directory).
//!
//! A line also carries the `clientToken` of the update that wrote it, so that the journal is
//! a request log of applied updates: [`applied_by_client_token`] counts how often each
//! token's update was applied (tests prove with it that no update is applied twice).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::shadow::{ShadowKey, ShadowRecord};

/// Journal file name inside the shadow directory.
pub const JOURNAL_FILE: &str = "shadows.jsonl";
/// Size past which the journal is compacted, unless told otherwise.
pub const DEFAULT_COMPACT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    key: ShadowKey,
    record: ShadowRecord,
    /// The `clientToken` of the update that produced this record, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Lines appended but not yet handed to the writer.
    pending: Vec<u8>,
    /// The latest line per shadow among `pending`, for compaction.
    pending_latest: Vec<(String, Arc<str>)>,
    /// Sequence number of the last appended line.
    appended: u64,
    /// Sequence number of the last line known to be on disk.
    durable: u64,
    /// Set when a write or fsync failed: nothing after it can be acknowledged.
    failed: Option<String>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when lines are pending.
    work: Condvar,
    /// Wakes waiters when `durable` advances.
    done: Condvar,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic elsewhere must not take durability down with it; the state stays consistent
    // because every critical section only appends or bumps counters.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or syncing the journal file failed.
    #[error("shadow journal {path}: {cause}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// An earlier write failed, so no later update can be made durable.
    #[error("shadow journal is unusable after an earlier failure: {0}")]
    Failed(String),
}

/// The writer side of the journal: append lines, wait for them to be durable.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// A ticket for an appended line: wait on it before acknowledging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, replays it, and starts the writer.
    /// Returns the journal and the records it held.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<(ShadowKey, ShadowRecord)>), JournalError> {
        Journal::open_with_compaction(dir, DEFAULT_COMPACT_BYTES)
    }

    /// [`Journal::open`] with the size past which the journal is compacted.
    pub fn open_with_compaction(
        dir: &Path,
        compact_bytes: u64,
    ) -> Result<(Journal, Vec<(ShadowKey, ShadowRecord)>), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |cause| JournalError::Io {
            path: path.clone(),
            cause,
        };
        crate::files::create_dir_all(dir, crate::files::PRIVATE_DIR_MODE).map_err(io_err)?;
        let mut latest: HashMap<String, Arc<str>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut records: HashMap<ShadowKey, ShadowRecord> = HashMap::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(io_err)?;
                // A torn tail (crash mid-append) is a line that does not parse; it was never
                // acknowledged, so it is dropped.
                let Ok(parsed) = serde_json::from_slice::<Line>(&line) else {
                    continue;
                };
                let id = key_id(&parsed.key);
                if !latest.contains_key(&id) {
                    order.push(id.clone());
                }
                latest.insert(id, Arc::from(String::from_utf8_lossy(&line).as_ref()));
                records.insert(parsed.key, parsed.record);
            }
        }
        // Start from a compacted copy: it drops superseded lines and any torn tail, so later
        // appends never follow a partial line.
        let compacted: Vec<Arc<str>> = order
            .iter()
            .filter_map(|id| latest.get(id).cloned())
            .collect();
        rewrite(&path, &compacted).map_err(io_err)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("shadow-journal".into())
            .spawn(move || writer_loop(writer_shared, file, path, latest, compact_bytes))
            .map_err(|cause| JournalError::Io {
                path: dir.join(JOURNAL_FILE),
                cause,
            })?;
        Ok((
            Journal {
                shared,
                writer: Some(writer),
            },
            records.into_iter().collect(),
        ))
    }

    /// Appends the record of `key`. Call this while holding the store lock, so lines reach
    /// the journal in the order the updates were applied.
    pub fn append(&self, key: &ShadowKey, record: &ShadowRecord) -> Ticket {
        self.append_update(key, record, None)
    }

    /// [`Journal::append`] for a change made by a request with `client_token`.
    pub fn append_update(
        &self,
        key: &ShadowKey,
        record: &ShadowRecord,
        client_token: Option<&str>,
    ) -> Ticket {
        let line = serde_json::to_string(&Line {
            key: key.clone(),
            record: record.clone(),
            client_token: client_token.map(str::to_string),
        })
        // Serializing plain records (string keys, JSON values) cannot fail.
        .unwrap_or_default();
        let mut st = lock(&self.shared.state);
        st.pending.extend_from_slice(line.as_bytes());
        st.pending.push(b'\n');
        st.pending_latest.push((key_id(key), Arc::from(line)));
        st.appended += 1;
        let ticket = Ticket(st.appended);
        self.shared.work.notify_one();
        ticket
    }

    /// Blocks until the line behind `ticket` is on disk.
    pub fn wait(&self, ticket: Ticket) -> Result<(), JournalError> {
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(e) = &st.failed {
                return Err(JournalError::Failed(e.clone()));
            }
            if st.durable >= ticket.0 {
                return Ok(());
            }
            st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.work.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn key_id(key: &ShadowKey) -> String {
    match &key.shadow {
        None => format!("{}\u{0}", key.thing),
        Some(s) => format!("{}\u{0}{s}", key.thing),
    }
}

fn writer_loop(
    shared: Arc<Shared>,
    mut file: File,
    path: PathBuf,
    mut latest: HashMap<String, Arc<str>>,
    compact_bytes: u64,
) {
    let mut written: u64 = file.metadata().map(|m| m.len()).unwrap_or(0);
    loop {
        let (batch, batch_latest, upto) = {
            let mut st = lock(&shared.state);
            while st.pending.is_empty() && !st.stop {
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.pending.is_empty() {
                return;
            }
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.pending_latest),
                st.appended,
            )
        };
        let result = file.write_all(&batch).and_then(|()| file.sync_data());
        let mut st = lock(&shared.state);
        match result {
            Ok(()) => {
                written += batch.len() as u64;
                st.durable = upto;
            }
            Err(e) => {
                log::error!("shadow journal {}: {e}", path.display());
                st.failed = Some(e.to_string());
            }
        }
        shared.done.notify_all();
        drop(st);
        for (id, line) in batch_latest {
            latest.insert(id, line);
        }
        if written > compact_bytes {
            let lines: Vec<Arc<str>> = latest.values().cloned().collect();
            match rewrite(&path, &lines).and_then(|()| OpenOptions::new().append(true).open(&path))
            {
                Ok(f) => {
                    file = f;
                    written = file.metadata().map(|m| m.len()).unwrap_or(0);
                }
                Err(e) => log::warn!("compacting {}: {e}", path.display()),
            }
        }
    }
}

/// How many journal lines in the shadow directory `dir` each `clientToken` wrote: the
/// number of times an update with that token was applied. Exact until the journal is
/// compacted (at start-up, or past its size threshold), which keeps only the last line of
/// each shadow.
pub fn applied_by_client_token(dir: &Path) -> Result<HashMap<String, usize>, JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let io_err = |cause| JournalError::Io {
        path: path.clone(),
        cause,
    };
    let mut counts = HashMap::new();
    let file = File::open(&path).map_err(io_err)?;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(io_err)?;
        if let Ok(Line {
            client_token: Some(token),
            ..
        }) = serde_json::from_slice::<Line>(&line)
        {
            *counts.entry(token).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Atomically replaces `path` with `lines`: temporary file, fsync, rename, fsync directory.
fn rewrite(path: &Path, lines: &[Arc<str>]) -> io::Result<()> {
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    crate::files::write_atomic(path, &buf, false)
}
