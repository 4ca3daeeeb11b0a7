//! The checkpoint policy: whether a request can continue its conversation's stored checkpoint,
//! and what is kept after a run.
//!
//! Per [`ConversationKey`] (client + conversation) the store keeps one [`Entry`]: the last
//! checkpoint byte-for-byte, the account that produced it, the blobs it references and the
//! fingerprint of the client transcript it covers.
//!
//! - [`ConversationStore::plan`] before a new run: [`Plan::Replay`] when the entry exists, is
//!   fresh, was produced on the account the run will use, and the request's messages start with
//!   exactly the covered transcript; the run then carries the checkpoint (with its blobs
//!   pre-fetched) and only the messages after it ([`crate::turn::prompt::continuation_input`]).
//!   Anything else is a [`Plan::Fallback`] and the caller flattens the whole request
//!   ([`TurnParams::from_chat`]) — never an error.
//! - [`ConversationStore::record`] after a run finished with a checkpoint: the request that
//!   carried the run's last input plus the reply the client got become the covered transcript.
//!
//! Entries expire [`StoreConfig::ttl`] after their last use (a replay or a record) and the
//! least recently used are evicted beyond [`StoreConfig::max_bytes`]. The store keeps its own
//! index (last use, size, LRU order) in memory; the entries themselves live in a
//! [`ConversationStorage`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;

use super::entry::Entry;
use super::id::ConversationKey;
use super::storage::{ConversationStorage, MemoryStorage};
use super::transcript::Transcript;
use crate::chat::{ChatMessage, ChatRequest, Role};
use crate::turn::prompt::{self, RunInput};
use crate::turn::{BlobStore, TurnParams};

/// Default time an entry is kept after its last use.
pub const DEFAULT_CONVERSATION_TTL: Duration = Duration::from_secs(30 * 60);
/// Default byte budget of all entries together.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// Lifetime and size bounds of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// An entry expires this long after its last use.
    pub ttl: Duration,
    /// Least recently used entries are evicted while the total ([`Entry::bytes`]) exceeds this.
    pub max_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_CONVERSATION_TTL,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What the next run of a conversation starts from.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Continue the stored checkpoint with only the new messages.
    Replay(Replay),
    /// Start from an empty state with the whole request flattened.
    Fallback(FallbackReason),
}

/// A run that continues a stored checkpoint.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The checkpoint, byte-for-byte (`AgentRunRequest.conversation_state`).
    pub conversation_state: Bytes,
    /// The checkpoint's blobs as the SDK pre-fetches them (§6.3).
    pub pre_fetched_blobs: Vec<pb::PreFetchedBlob>,
    /// The conversation's blob store (answers the server's `get_blob_args`).
    pub blobs: BlobStore,
    /// The request's messages the checkpoint does not cover.
    pub new_messages: Range<usize>,
    /// The run's user message: those messages only.
    pub input: RunInput,
}

impl Replay {
    /// Makes `params` (built by [`TurnParams::from_chat`] for the same request) continue the
    /// checkpoint: state, blobs and the user message of the new messages only. The input-token
    /// estimate stays that of the whole conversation, which is what the client's context holds.
    pub fn apply(self, params: &mut TurnParams) {
        params.input = self.input;
        params.conversation_state = Some(self.conversation_state);
        params.pre_fetched_blobs = self.pre_fetched_blobs;
        params.blobs = self.blobs;
    }
}

/// Why a request cannot continue a stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackReason {
    /// Nothing is stored for the conversation (new, evicted, or lost in a restart).
    NoEntry,
    /// The entry was not used within the TTL (it is removed).
    Expired,
    /// The checkpoint was produced on another account, where it is not valid.
    OtherAccount {
        /// The account that produced it.
        stored: String,
    },
    /// The request does not start with the transcript the checkpoint covers: the client edited,
    /// rewound or compacted its history.
    PrefixMismatch,
    /// The request adds no user message to the covered transcript (a resend of what the
    /// checkpoint already holds).
    NothingNew,
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEntry => f.write_str("no stored checkpoint"),
            Self::Expired => f.write_str("the stored checkpoint expired"),
            Self::OtherAccount { stored } => {
                write!(f, "the stored checkpoint belongs to account {stored:?}")
            }
            Self::PrefixMismatch => f.write_str("the history differs from the checkpoint's"),
            Self::NothingNew => f.write_str("no new user message after the checkpoint"),
        }
    }
}

/// A run that finished with a checkpoint, for [`ConversationStore::record`].
#[derive(Debug, Clone, Copy)]
pub struct Completed<'a> {
    /// The account the run used.
    pub account: &'a str,
    /// The client request that carried the run's last input: the one that started it, or, when
    /// the run parked for tool calls and resumed, the one with the last tool results.
    pub request: &'a ChatRequest,
    /// What the client got after that request, as it will echo it ([`super::ReplyRecorder`]).
    pub reply: &'a [ChatMessage],
    /// The run's final checkpoint ([`crate::turn::TurnEvent::Finished`]).
    pub checkpoint: &'a Bytes,
    /// The run's blob store ([`crate::turn::Turn::blobs`]).
    pub blobs: &'a BlobStore,
}

/// What [`ConversationStore::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The entry is stored; `evicted` least recently used entries made room for it.
    Stored {
        /// The entry's size ([`Entry::bytes`]).
        bytes: usize,
        /// Entries evicted to stay within the budget.
        evicted: usize,
    },
    /// The entry alone exceeds the budget: not stored (and any older entry removed).
    TooLarge {
        /// The entry's size.
        bytes: usize,
    },
}

/// The in-memory index of one entry.
#[derive(Debug, Clone)]
struct Slot {
    last_used: Instant,
    bytes: usize,
    /// Position in the LRU order.
    seq: u64,
    account: String,
}

/// The checkpoint policy over a storage (see the module docs).
pub struct ConversationStore<S = MemoryStorage> {
    storage: S,
    config: StoreConfig,
    /// A B-tree for the same reason as [`MemoryStorage`]'s: no whole-table rehash stall.
    index: BTreeMap<ConversationKey, Slot>,
    /// LRU order: oldest use first. Uses only move forward in time, so this is also the
    /// expiry order.
    order: BTreeMap<u64, ConversationKey>,
    next_seq: u64,
    total: usize,
    /// The latest time seen (an earlier `now` counts as this one).
    latest: Option<Instant>,
}

impl<S: fmt::Debug> fmt::Debug for ConversationStore<S> {
    /// Counts and limits; the index of every conversation is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationStore")
            .field("config", &self.config)
            .field("len", &self.index.len())
            .field("bytes", &self.total)
            .field("storage", &self.storage)
            .finish()
    }
}

impl ConversationStore<MemoryStorage> {
    /// An empty in-memory store.
    pub fn new(config: StoreConfig) -> Self {
        Self::empty(MemoryStorage::new(), config)
    }
}

impl<S: ConversationStorage> ConversationStore<S> {
    /// A store over `storage`, indexing every entry it already holds (after a restart) as used
    /// at `now`: downtime does not count towards the TTL (an adapter drops files older than
    /// the TTL before loading). Entries beyond the byte budget are evicted (in key order).
    pub fn with_storage(storage: S, config: StoreConfig, now: Instant) -> Self {
        let mut store = Self::empty(storage, config);
        store.latest = Some(now);
        let mut keys = store.storage.keys();
        keys.sort_unstable();
        for key in keys {
            if let Some(entry) = store.storage.get(&key) {
                store.insert_slot(key, entry.bytes(), entry.account().to_owned(), now);
            }
        }
        store.evict(None);
        store
    }

    fn empty(storage: S, config: StoreConfig) -> Self {
        Self {
            storage,
            config,
            index: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            total: 0,
            latest: None,
        }
    }

    /// What the next run of `req` (conversation `key`) on `account` starts from (see the
    /// module docs). A replay counts as a use of the entry.
    pub fn plan(
        &mut self,
        key: &ConversationKey,
        req: &ChatRequest,
        account: &str,
        now: Instant,
    ) -> Plan {
        let now = self.clock(now);
        let Some(slot) = self.index.get(key) else {
            return Plan::Fallback(FallbackReason::NoEntry);
        };
        if self.is_expired(slot, now) {
            self.remove(key);
            return Plan::Fallback(FallbackReason::Expired);
        }
        if slot.account != account {
            return Plan::Fallback(FallbackReason::OtherAccount {
                stored: slot.account.clone(),
            });
        }
        let Some(entry) = self.storage.get(key) else {
            self.forget_slot(key);
            return Plan::Fallback(FallbackReason::NoEntry);
        };
        if !entry.transcript().is_prefix_of(&req.messages) {
            return Plan::Fallback(FallbackReason::PrefixMismatch);
        }
        let new_messages = entry.transcript().messages()..req.messages.len();
        if !req.messages[new_messages.clone()]
            .iter()
            .any(|m| m.role == Role::User)
        {
            return Plan::Fallback(FallbackReason::NothingNew);
        }
        self.touch(key, now);
        let input = prompt::continuation_input(&req.messages, new_messages.clone());
        let pre_fetched_blobs = entry.blobs().prefetch_for(entry.checkpoint());
        Plan::Replay(Replay {
            conversation_state: entry.checkpoint().clone(),
            pre_fetched_blobs,
            blobs: entry.blobs().clone(),
            new_messages,
            input,
        })
    }

    /// Stores the checkpoint of a finished run as conversation `key`'s entry, replacing the
    /// previous one (see [`Completed`] for what the covered transcript is), then evicts least
    /// recently used entries beyond the byte budget.
    pub fn record(&mut self, key: &ConversationKey, run: Completed<'_>, now: Instant) -> Recorded {
        let now = self.clock(now);
        let transcript = Transcript::of(run.request.messages.iter().chain(run.reply));
        let previous = self.storage.get(key);
        let entry = Entry::new(
            *key,
            run.account,
            transcript,
            run.checkpoint,
            run.blobs,
            previous.as_ref().map(Entry::blobs),
        );
        drop(previous);
        let bytes = entry.bytes();
        self.forget_slot(key);
        if bytes > self.config.max_bytes {
            self.storage.remove(key);
            return Recorded::TooLarge { bytes };
        }
        // A replacing put, not remove + put: a persistent storage overwrites atomically.
        self.storage.put(entry);
        self.insert_slot(*key, bytes, run.account.to_owned(), now);
        let evicted = self.evict(Some(key));
        Recorded::Stored { bytes, evicted }
    }

    /// The account holding conversation `key`'s checkpoint, if a fresh one is stored (a
    /// conductor may prefer it, so the next turn can replay).
    pub fn account(&self, key: &ConversationKey, now: Instant) -> Option<&str> {
        let now = self.latest.map_or(now, |l| l.max(now));
        self.index
            .get(key)
            .filter(|s| !self.is_expired(s, now))
            .map(|s| s.account.as_str())
    }

    /// Removes conversation `key`'s entry; whether there was one.
    pub fn remove(&mut self, key: &ConversationKey) -> bool {
        let had = self.forget_slot(key);
        self.storage.remove(key) || had
    }

    /// Removes every entry not used within the TTL; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let now = self.clock(now);
        let mut n = 0;
        while let Some((_, key)) = self.order.first_key_value() {
            let key = *key;
            if !self
                .index
                .get(&key)
                .is_some_and(|s| self.is_expired(s, now))
            {
                break;
            }
            self.remove(&key);
            n += 1;
        }
        n
    }

    /// When the next entry expires ([`ConversationStore::expire`] then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (_, key) = self.order.first_key_value()?;
        self.index.get(key).map(|s| s.last_used + self.config.ttl)
    }

    /// Total size of the stored entries ([`Entry::bytes`]).
    pub fn bytes(&self) -> usize {
        self.total
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The limits in force.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The storage (to persist or inspect entries).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    // ---- index ------------------------------------------------------------------------------

    /// `now`, never earlier than a time already seen (keeps the LRU order the expiry order).
    fn clock(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |l| l.max(now));
        self.latest = Some(now);
        now
    }

    fn is_expired(&self, slot: &Slot, now: Instant) -> bool {
        now >= slot.last_used + self.config.ttl
    }

    fn insert_slot(&mut self, key: ConversationKey, bytes: usize, account: String, now: Instant) {
        self.forget_slot(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.total += bytes;
        self.index.insert(
            key,
            Slot {
                last_used: now,
                bytes,
                seq,
                account,
            },
        );
    }

    fn touch(&mut self, key: &ConversationKey, now: Instant) {
        let seq = self.next_seq;
        if let Some(slot) = self.index.get_mut(key) {
            self.next_seq += 1;
            self.order.remove(&slot.seq);
            self.order.insert(seq, *key);
            slot.seq = seq;
            slot.last_used = now;
        }
    }

    /// Drops `key` from the index (not from the storage); whether it was there.
    fn forget_slot(&mut self, key: &ConversationKey) -> bool {
        match self.index.remove(key) {
            Some(slot) => {
                self.order.remove(&slot.seq);
                self.total -= slot.bytes;
                true
            }
            None => false,
        }
    }

    /// Evicts least recently used entries (never `keep`) while over the budget; how many.
    fn evict(&mut self, keep: Option<&ConversationKey>) -> usize {
        let mut n = 0;
        while self.total > self.config.max_bytes {
            let Some(victim) = self.order.values().find(|k| Some(*k) != keep).copied() else {
                break;
            };
            self.remove(&victim);
            n += 1;
        }
        n
    }
}
