//! Where conversation entries live, behind a small trait so that persistence is an adapter's
//! choice: [`MemoryStorage`] here; an adapter adds a file-backed one (e.g. one atomically
//! written file per key holding [`Entry::encode`]) so a restart loses no conversation.
//!
//! The policy ([`super::ConversationStore`]) decides what is stored, for how long and within
//! which byte budget; a storage only keeps what it is given. Its methods cannot fail: a storage
//! that cannot write reports it itself (logs) and behaves as if the entry were gone, which only
//! costs that conversation one flattened turn.

use std::collections::BTreeMap;
use std::fmt;

use super::entry::Entry;
use super::id::ConversationKey;

/// Entries by key (see the module docs).
pub trait ConversationStorage {
    /// The entry stored under `key`, if any.
    fn get(&self, key: &ConversationKey) -> Option<Entry>;
    /// Stores `entry` under its key, replacing any previous one.
    fn put(&mut self, entry: Entry);
    /// Removes the entry under `key`; whether there was one.
    fn remove(&mut self, key: &ConversationKey) -> bool;
    /// The keys of every stored entry, in no particular order.
    fn keys(&self) -> Vec<ConversationKey>;
}

/// Entries in an ordered map: lost on restart unless copied out with [`Entry::encode`].
///
/// A B-tree rather than a hash map: it grows a node at a time, where a hash map doubles its
/// table and moves every entry at once, stalling the request that crossed the threshold
/// (~40 ms at ~29k conversations) and every request waiting on the store meanwhile.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    entries: BTreeMap<ConversationKey, Entry>,
}

impl fmt::Debug for MemoryStorage {
    /// The number of entries (thousands of them, with prompt-derived blobs, are not for logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}

impl FromIterator<Entry> for MemoryStorage {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Self {
        let mut s = Self::new();
        for e in iter {
            s.put(e);
        }
        s
    }
}

impl ConversationStorage for MemoryStorage {
    fn get(&self, key: &ConversationKey) -> Option<Entry> {
        self.entries.get(key).cloned()
    }

    fn put(&mut self, entry: Entry) {
        self.entries.insert(*entry.key(), entry);
    }

    fn remove(&mut self, key: &ConversationKey) -> bool {
        self.entries.remove(key).is_some()
    }

    fn keys(&self) -> Vec<ConversationKey> {
        self.entries.keys().copied().collect()
    }
}
