//! The auth directory (one credential file per account) and the pool state file.
//!
//! [`AuthDir`] reads and writes `cursor.<key>.json` files (names from
//! [`AccountRecord::file_name`]; other files are ignored) atomically with mode 0600, and
//! [`AuthDir::watch`] polls the directory so accounts added, edited or removed by another
//! process (`cursorpool login`, an editor, a config tool) reach the running pool without a
//! restart. The poller compares names, sizes, modification times and inodes, reads only what
//! changed, and stays quiet about this process's own writes: every file it has loaded or
//! written is remembered by a hash of its content, and an unchanged hash is no change.
//!
//! Invalid credential files are logged (by name and JSON position, never content: they hold
//! tokens) and skipped; an account whose file turns invalid keeps its last good record.
//!
//! [`PoolStateFile`] saves and loads [`PoolState`] as JSON, atomically.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::tasks::{self, Stopped};
use crate::upstream::Platform;
use cursorpool_core::conductor::account::{AccountError, key_of_file_name};
use cursorpool_core::conductor::{AccountRecord, PoolState};
use sha2::{Digest as _, Sha256};

use super::atomic::{ensure_private_dir, read_limited, remove_durable, write_atomic};

/// Largest credential file read (a real one is well under 8 KiB).
pub const MAX_CREDENTIAL_FILE_BYTES: u64 = 1024 * 1024;
/// Largest pool state file read.
pub const MAX_POOL_STATE_BYTES: u64 = 64 * 1024 * 1024;
/// Capacity of the watcher's channel (changes are rare; the poller waits when it is full).
const CHANGE_CHANNEL: usize = 64;

/// A change in the auth directory made by someone other than this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// A credential file appeared or changed: add or replace the account
    /// (`Pool::upsert`).
    Upserted(AccountRecord),
    /// The credential file of the account with this key disappeared (`Pool::find` +
    /// `Pool::remove`).
    Removed(String),
}

/// The auth directory (see the module docs). Clones share what has been loaded and written, so
/// a clone can write while another watches.
#[derive(Debug, Clone)]
pub struct AuthDir {
    path: PathBuf,
    known: Arc<Mutex<HashMap<String, Seen>>>,
}

/// What this process last knew of one file.
#[derive(Debug, Clone)]
struct Seen {
    /// SHA-256 of the content last read or written (never the content: it holds tokens).
    hash: [u8; 32],
    /// The account key of the last valid record in the file.
    key: Option<String>,
}

/// What the poller compares between two scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl AuthDir {
    /// The auth directory at `path` (nothing is read or created yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AuthDir {
            path: path.into(),
            known: Arc::default(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every valid credential file, as (file name, record), sorted by name. Creates the
    /// directory (mode 0700) when missing; invalid files are logged and skipped.
    pub fn load(&self) -> Vec<(String, AccountRecord)> {
        if let Err(e) = ensure_private_dir(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "cannot create the auth directory");
        }
        let mut known = self.known();
        let mut out = Vec::new();
        for name in self.list().unwrap_or_default().into_keys() {
            if let Some(record) = self.read(&name, &mut known).1 {
                if record.file_name() != name {
                    tracing::warn!(
                        file = name,
                        expected = record.file_name(),
                        "credential file name does not match its account; updates will be written to the expected name"
                    );
                }
                out.push((name, record));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Writes `record` to `record.file_name()` atomically with mode 0600 (creating the
    /// directory when missing). The watcher does not report this write.
    pub fn write(&self, record: &AccountRecord) -> io::Result<()> {
        ensure_private_dir(&self.path)?;
        let name = record.file_name();
        let bytes = record.to_json();
        let mut known = self.known();
        write_atomic(&self.path.join(&name), &bytes)?;
        known.insert(
            name,
            Seen {
                hash: hash(&bytes),
                key: Some(record.key()),
            },
        );
        Ok(())
    }

    /// Deletes `record`'s credential file; whether there was one. The watcher does not report
    /// this removal.
    pub fn remove(&self, record: &AccountRecord) -> io::Result<bool> {
        let name = record.file_name();
        let mut known = self.known();
        let removed = remove_durable(&self.path.join(&name))?;
        known.remove(&name);
        Ok(removed)
    }

    /// Starts a loop that scans the directory every `interval` and sends the changes made by
    /// other processes since the last [`AuthDir::load`] or [`AuthDir::write`] (without a prior
    /// load, every existing file is reported once). The loop ends when the receiver is dropped
    /// or `stop` fires.
    pub fn watch(
        &self,
        platform: &Arc<dyn Platform>,
        stop: Stopped,
        interval: Duration,
    ) -> async_channel::Receiver<AuthChange> {
        let (tx, rx) = async_channel::bounded(CHANGE_CHANNEL);
        let dir = self.clone();
        let listing = Arc::new(Mutex::new(Some(HashMap::new())));
        tasks::every(platform, stop, Duration::ZERO, interval, move || {
            let (dir, tx, listing) = (dir.clone(), tx.clone(), listing.clone());
            async move {
                if tx.is_closed() {
                    return false;
                }
                let previous = listing
                    .lock()
                    .ok()
                    .and_then(|mut l| l.take())
                    .unwrap_or_default();
                let (next, changes) = blocking::unblock(move || dir.scan(previous)).await;
                if let Ok(mut l) = listing.lock() {
                    *l = Some(next);
                }
                for change in changes {
                    if tx.send(change).await.is_err() {
                        return false;
                    }
                }
                true
            }
        });
        rx
    }

    /// One poll: the new listing and the changes since `previous`. Holds the lock on what is
    /// known for the whole scan, so a concurrent [`AuthDir::write`] or [`AuthDir::remove`] is
    /// either entirely before it or entirely after it.
    fn scan(&self, previous: HashMap<String, Stamp>) -> (HashMap<String, Stamp>, Vec<AuthChange>) {
        let mut known = self.known();
        let listing = match self.list() {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(dir = %self.path.display(), error = %e, "cannot list the auth directory");
                return (previous, Vec::new());
            }
        };
        let mut changes = Vec::new();
        for (name, stamp) in &listing {
            if previous.get(name) == Some(stamp) {
                continue;
            }
            let old_key = known.get(name).and_then(|s| s.key.clone());
            let (changed, record) = self.read(name, &mut known);
            if let Some(record) = record.filter(|_| changed) {
                if let Some(old) = old_key.filter(|k| *k != record.key()) {
                    changes.push(AuthChange::Removed(old));
                }
                changes.push(AuthChange::Upserted(record));
            }
        }
        let gone: Vec<String> = known
            .keys()
            .filter(|name| !listing.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(key) = known.remove(&name).and_then(|s| s.key) {
                changes.push(AuthChange::Removed(key));
            }
        }
        (listing, changes)
    }

    /// Reads credential file `name` and records its hash in `known`: whether the content
    /// differs from what was known, and the record when it is valid (changed or not). An
    /// invalid file is logged once per content.
    fn read(&self, name: &str, known: &mut HashMap<String, Seen>) -> (bool, Option<AccountRecord>) {
        let path = self.path.join(name);
        let bytes = match read_limited(&path, MAX_CREDENTIAL_FILE_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(file = %path.display(), "credential file too large; skipped");
                return (false, None);
            }
            // Vanished between listing and reading: the next scan reports it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (false, None),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read credential file");
                return (false, None);
            }
        };
        let hash = hash(&bytes);
        let seen = known.get(name);
        let changed = seen.is_none_or(|s| s.hash != hash);
        match AccountRecord::from_json(&bytes) {
            Ok(record) => {
                let key = Some(record.key());
                known.insert(name.to_owned(), Seen { hash, key });
                (changed, Some(record))
            }
            Err(_) if !changed => (false, None),
            Err(e) => {
                let reason = match e {
                    AccountError::InvalidFile(_) => invalid_reason(&bytes),
                    other => other.to_string(),
                };
                tracing::warn!(file = %path.display(), reason, "invalid credential file; skipped");
                // Keep the last good record's key: its account stays until the file goes.
                let key = seen.and_then(|s| s.key.clone());
                known.insert(name.to_owned(), Seen { hash, key });
                (true, None)
            }
        }
    }

    /// The credential files in the directory and their stamps.
    fn list(&self) -> io::Result<HashMap<String, Stamp>> {
        let items = match fs::read_dir(&self.path) {
            Ok(items) => items,
            // A deleted directory holds no accounts.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(e),
        };
        let mut out = HashMap::new();
        for item in items {
            let item = item?;
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if key_of_file_name(&name).is_none() {
                continue;
            }
            // Follows symlinks: a credential file may link elsewhere.
            let Ok(meta) = fs::metadata(item.path()) else {
                continue;
            };
            if meta.is_file() {
                let stamp = Stamp {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                    inode: meta.ino(),
                };
                out.insert(name, stamp);
            }
        }
        Ok(out)
    }

    fn known(&self) -> MutexGuard<'_, HashMap<String, Seen>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pool's saved state (cooldowns, usage, sticky bindings) as one JSON file.
#[derive(Debug, Clone)]
pub struct PoolStateFile {
    path: PathBuf,
}

impl PoolStateFile {
    /// The state file at `path` (see `super::pool_state_path`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PoolStateFile { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; `None` when there is none or it cannot be read (logged: the pool then
    /// starts fresh rather than not at all).
    pub fn load(&self) -> Option<PoolState> {
        let bytes = match read_limited(&self.path, MAX_POOL_STATE_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(file = %self.path.display(), "pool state file too large; ignored");
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read pool state");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(state) => Some(state),
            Err(_) => {
                tracing::warn!(
                    file = %self.path.display(),
                    reason = invalid_reason(&bytes),
                    "invalid pool state file; ignored"
                );
                None
            }
        }
    }

    /// Saves `state` atomically with mode 0600, creating the directory (0700) when missing.
    pub fn save(&self, state: &PoolState) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_private_dir(dir)?;
        }
        let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)
    }
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Why `bytes` are not the expected JSON, without quoting any of it (serde's messages can echo
/// values, and these files hold tokens): the error category and position only.
fn invalid_reason(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
        Ok(_) => "valid JSON without the expected fields or values".to_owned(),
    }
}
