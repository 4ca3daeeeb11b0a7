//! Conversations on disk: a [`ConversationStorage`] keeping one file per conversation, so a
//! restart loses no checkpoint.
//!
//! The store calls its storage from inside a `std::sync::Mutex` on the request path, so
//! [`FileStorage`] never touches the disk there: an in-memory map answers reads, and writes go
//! to a background thread through a queue that keeps only the latest operation per key (ten
//! checkpoints of one conversation recorded while the disk is slow cost one write). Each file is
//! replaced atomically ([`super::atomic::write_atomic`]) and holds [`Entry::encode`].
//!
//! File names are the hex of the conversation id (`<32 hex>.cpce`): the id is derived from a
//! hash salted with the client's API key, so the key itself never reaches the disk, and two
//! clients never share a file.
//!
//! [`FileStorage::load`] is the restart: it drops files older than the TTL (by modification
//! time, i.e. the last write), files that do not decode and stray temporary files, skips files
//! above a size bound, and hands the rest to [`ConversationStore::with_storage`]
//! (`cursorpool_core::conversation::ConversationStore::with_storage`), which counts them as used
//! at load time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cursorpool_core::conversation::{ConversationKey, ConversationStorage, Entry};

use super::atomic::{ensure_private_dir, is_temp_name, read_limited, remove_durable, write_atomic};

/// Extension of conversation files.
const EXTENSION: &str = "cpce";

/// Default bound on one conversation file read at load time (larger files are skipped).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How long [`FileStorage::flush`] waits between checks that the writer is still alive.
const FLUSH_CHECK: Duration = Duration::from_millis(200);

/// The file name of conversation `key`: the hex of its id (never the client's API key).
pub fn file_name(key: &ConversationKey) -> String {
    let hex: String = key.id().chars().filter(|c| *c != '-').collect();
    format!("{hex}.{EXTENSION}")
}

/// Bounds applied by [`FileStorage::load_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Files not written within this long are deleted (the store's TTL).
    pub ttl: Duration,
    /// Files larger than this are skipped (left on disk, not loaded).
    pub max_file_bytes: u64,
}

/// Conversation entries in memory, written through to one file per key by a background thread
/// (see the module docs). Dropping it writes what is still queued.
pub struct FileStorage {
    dir: PathBuf,
    /// A B-tree, like `MemoryStorage`'s: no whole-table rehash stall as it grows.
    entries: BTreeMap<ConversationKey, Entry>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// State shared with the writer thread.
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when work is queued or the storage closes.
    work: Condvar,
    /// Signalled when a batch reached the disk.
    done: Condvar,
}

/// Pending writes, latest operation per key.
#[derive(Default)]
struct Queue {
    pending: HashMap<ConversationKey, Op>,
    /// Operations queued so far.
    queued: u64,
    /// Operations whose effect is on disk (written or superseded by one that is).
    written: u64,
    closing: bool,
}

enum Op {
    Put(Entry),
    Remove,
}

impl fmt::Debug for FileStorage {
    /// Counts only: entries hold prompt-derived checkpoints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("entries", &self.entries.len())
            .field("pending", &lock(&self.shared.queue).pending.len())
            .finish()
    }
}

impl FileStorage {
    /// Loads every conversation under `dir` (created with mode 0700 when missing) with the
    /// default size bound; see [`FileStorage::load_with`].
    pub fn load(
        dir: impl Into<PathBuf>,
        ttl: Duration,
        now: SystemTime,
    ) -> io::Result<(FileStorage, Vec<Entry>)> {
        let options = LoadOptions {
            ttl,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        };
        Self::load_with(dir, options, now)
    }

    /// Loads every conversation under `dir` and starts the writer thread. Files last written
    /// more than `options.ttl` before `now`, files that do not decode (or whose name does not
    /// match their entry) and leftover temporary files are deleted with a warning; larger
    /// files than `options.max_file_bytes` and foreign files are left alone.
    ///
    /// The storage already holds the returned entries: pass it to
    /// `ConversationStore::with_storage`; the list is for the caller's own bookkeeping (counts,
    /// conversation → account bindings). Fails only when the directory cannot be created or
    /// listed, or the writer thread cannot start.
    pub fn load_with(
        dir: impl Into<PathBuf>,
        options: LoadOptions,
        now: SystemTime,
    ) -> io::Result<(FileStorage, Vec<Entry>)> {
        let dir = dir.into();
        ensure_private_dir(&dir)?;
        let mut entries = BTreeMap::new();
        let mut dropped = 0usize;
        for item in fs::read_dir(&dir)? {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot list conversation");
                    continue;
                }
            };
            let path = item.path();
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match load_file(&path, &name, options, now) {
                Loaded::Entry(entry) => {
                    entries.insert(*entry.key(), entry);
                }
                Loaded::Drop => {
                    dropped += 1;
                    if let Err(e) = remove_durable(&path) {
                        tracing::warn!(file = %path.display(), error = %e, "cannot delete conversation file");
                    }
                }
                Loaded::Skip => {}
            }
        }
        tracing::info!(
            dir = %dir.display(),
            loaded = entries.len(),
            dropped,
            "conversations loaded"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = {
            let (dir, shared) = (dir.clone(), shared.clone());
            std::thread::Builder::new()
                .name("cursorpool-conversations".to_owned())
                .spawn(move || write_loop(&dir, &shared))?
        };
        let list = entries.values().cloned().collect();
        let storage = FileStorage {
            dir,
            entries,
            shared,
            writer: Some(writer),
        };
        Ok((storage, list))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until every put and remove made so far is on disk (or failed and was logged).
    /// For graceful shutdown and tests; never call it while holding the store's lock on a
    /// request path.
    pub fn flush(&self) {
        let mut queue = lock(&self.shared.queue);
        let target = queue.queued;
        while queue.written < target {
            if self.writer.as_ref().is_none_or(JoinHandle::is_finished) {
                tracing::error!("conversation writer stopped; pending writes are lost");
                return;
            }
            queue = self
                .shared
                .done
                .wait_timeout(queue, FLUSH_CHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn enqueue(&self, key: ConversationKey, op: Op) {
        let mut queue = lock(&self.shared.queue);
        queue.pending.insert(key, op);
        queue.queued += 1;
        self.shared.work.notify_one();
    }
}

impl ConversationStorage for FileStorage {
    fn get(&self, key: &ConversationKey) -> Option<Entry> {
        self.entries.get(key).cloned()
    }

    fn put(&mut self, entry: Entry) {
        let key = *entry.key();
        self.entries.insert(key, entry.clone());
        self.enqueue(key, Op::Put(entry));
    }

    fn remove(&mut self, key: &ConversationKey) -> bool {
        let had = self.entries.remove(key).is_some();
        if had {
            self.enqueue(*key, Op::Remove);
        }
        had
    }

    fn keys(&self) -> Vec<ConversationKey> {
        self.entries.keys().copied().collect()
    }
}

impl Drop for FileStorage {
    /// Writes what is still queued, then stops the writer thread.
    fn drop(&mut self) {
        lock(&self.shared.queue).closing = true;
        self.shared.work.notify_one();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("conversation writer panicked");
        }
    }
}

/// What loading one directory entry found.
enum Loaded {
    Entry(Entry),
    /// Expired, corrupt or a leftover temporary file: delete it.
    Drop,
    /// Not ours, or too large: leave it.
    Skip,
}

fn load_file(path: &Path, name: &str, options: LoadOptions, now: SystemTime) -> Loaded {
    if is_temp_name(name) {
        return Loaded::Drop;
    }
    if !name.ends_with(&format!(".{EXTENSION}")) {
        return Loaded::Skip;
    }
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Loaded::Skip,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot stat conversation file");
            return Loaded::Skip;
        }
    };
    // A modification time in the future (clock changes) counts as now.
    let age = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or_default();
    if age > options.ttl {
        tracing::debug!(file = %path.display(), "conversation expired while stopped");
        return Loaded::Drop;
    }
    let data = match read_limited(path, options.max_file_bytes) {
        Ok(Some(data)) => data,
        Ok(None) => {
            tracing::warn!(
                file = %path.display(),
                max_bytes = options.max_file_bytes,
                "conversation file too large; skipped"
            );
            return Loaded::Skip;
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read conversation file");
            return Loaded::Skip;
        }
    };
    match Entry::decode(&Bytes::from(data)) {
        Ok(entry) if file_name(entry.key()) == name => Loaded::Entry(entry),
        Ok(_) => {
            tracing::warn!(file = %path.display(), "conversation file under a wrong name; deleted");
            Loaded::Drop
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "corrupt conversation file; deleted");
            Loaded::Drop
        }
    }
}

/// The writer thread: takes every pending operation at once, applies them, reports progress;
/// returns once the storage is closing and nothing is pending.
fn write_loop(dir: &Path, shared: &Shared) {
    loop {
        let (batch, upto) = {
            let mut queue = lock(&shared.queue);
            while queue.pending.is_empty() && !queue.closing {
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if queue.pending.is_empty() {
                return;
            }
            (mem::take(&mut queue.pending), queue.queued)
        };
        for (key, op) in batch {
            apply(dir, &key, op);
        }
        lock(&shared.queue).written = upto;
        shared.done.notify_all();
    }
}

/// One operation on disk; failures are logged (the conversation then costs one flattened turn
/// after a restart, nothing more).
fn apply(dir: &Path, key: &ConversationKey, op: Op) {
    let path = dir.join(file_name(key));
    let result = match op {
        Op::Put(entry) => write_atomic(&path, &entry.encode()),
        Op::Remove => remove_durable(&path).map(drop),
    };
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot update conversation file");
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}
