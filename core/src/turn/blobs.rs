//! The client side of Cursor's KV channel (spec §5.7, §6.4): a content-addressed blob store.
//!
//! Cursor uses the client as the durable store of a conversation: it writes every immutable
//! piece of state (prompt messages, user messages, steps, turns) with `set_blob_args` and reads
//! it back with `get_blob_args`, on this turn or a later one. A [`BlobStore`] therefore lives per
//! conversation, across turns: hand it to each [`super::Turn`] and take it back afterwards
//! ([`super::Turn::into_blobs`]).
//!
//! Blobs are keyed by their 32-byte id, which is `SHA-256(data)`; [`BlobStore::set`] verifies
//! that, so a corrupted or mis-paired blob is refused instead of being replayed later.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use sha2::{Digest, Sha256};

use crate::update::{BlobKind, BlobRef, blob_references, checkpoint_summary};

/// A blob id: the SHA-256 of the blob's bytes.
pub type BlobId = [u8; 32];

/// Most blobs the SDK pre-fetches with a run request (§6.3): above this it sends none.
pub const PREFETCH_MAX_BLOBS: usize = 512;
/// Most bytes the SDK pre-fetches with a run request (§6.3): above this it sends none.
pub const PREFETCH_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Why a `set_blob_args` was refused. Blame: upstream (the server sent a blob that does not
/// match its id); the turn answers `set_blob_result{error}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The id is not 32 bytes long.
    #[error("blob id of {0} bytes, expected 32")]
    BadIdLength(usize),
    /// `SHA-256(data)` differs from the id.
    #[error("blob data does not hash to its id")]
    HashMismatch,
}

/// A per-conversation, content-addressed blob store (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct BlobStore {
    blobs: HashMap<BlobId, Bytes>,
    bytes: usize,
}

/// The SHA-256 of `data`: the id Cursor gives the blob.
pub fn blob_id(data: &[u8]) -> BlobId {
    Sha256::digest(data).into()
}

impl BlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `data` under `id` after checking `id == SHA-256(data)`. Storing a blob twice is
    /// idempotent (blobs are immutable).
    pub fn set(&mut self, id: &[u8], data: Bytes) -> Result<(), BlobError> {
        let key: BlobId = id
            .try_into()
            .map_err(|_| BlobError::BadIdLength(id.len()))?;
        if blob_id(&data) != key {
            return Err(BlobError::HashMismatch);
        }
        self.put(key, data);
        Ok(())
    }

    /// Stores `data` under its own id and returns the id (for blobs the proxy creates itself).
    pub fn insert(&mut self, data: Bytes) -> BlobId {
        let key = blob_id(&data);
        self.put(key, data);
        key
    }

    /// Stores `data` under `id` where `id` is already known to be its SHA-256: the blob comes
    /// from another store, which checked or computed it. Saves hashing it again.
    pub(crate) fn insert_known(&mut self, id: BlobId, data: Bytes) {
        self.put(id, data);
    }

    fn put(&mut self, key: BlobId, data: Bytes) {
        let len = data.len();
        if self.blobs.insert(key, data).is_none() {
            self.bytes += len;
        }
    }

    /// The blob with this id; `None` for an unknown id or one that is not 32 bytes long.
    pub fn get(&self, id: &[u8]) -> Option<&Bytes> {
        let key: &BlobId = id.try_into().ok()?;
        self.blobs.get(key)
    }

    /// Number of blobs stored.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether the store holds no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Total size of the stored blobs in bytes.
    pub fn total_bytes(&self) -> usize {
        self.bytes
    }

    /// Every stored blob, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, &Bytes)> {
        self.blobs.iter()
    }

    /// The `pre_fetched_blobs` for a run that replays `state`, as the SDK builds them (§6.3):
    /// every stored blob reachable from the checkpoint through the reference graph of §5.3, or
    /// none at all if that is more than [`PREFETCH_MAX_BLOBS`] blobs or [`PREFETCH_MAX_BYTES`]
    /// bytes (the server then asks with `get_blob_args`). Blobs the store lacks, and blobs that
    /// do not decode as their kind, are skipped: the server will ask for what it misses.
    pub fn prefetch_for(&self, state: &Bytes) -> Vec<pb::PreFetchedBlob> {
        let Ok(summary) = checkpoint_summary(state) else {
            return Vec::new();
        };
        let mut queue: VecDeque<BlobRef> = summary.blobs.into();
        let mut seen: HashSet<BlobId> = HashSet::new();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = queue.pop_front() {
            let Ok(key) = BlobId::try_from(r.id.as_ref()) else {
                continue;
            };
            if !seen.insert(key) {
                continue;
            }
            let Some(data) = self.blobs.get(&key) else {
                continue;
            };
            bytes += data.len();
            if out.len() >= PREFETCH_MAX_BLOBS || bytes > PREFETCH_MAX_BYTES {
                return Vec::new();
            }
            out.push(pb::PreFetchedBlob {
                id: r.id.clone(),
                value: data.clone(),
            });
            if walks(r.kind)
                && let Ok(next) = blob_references(r.kind, data)
            {
                queue.extend(next);
            }
        }
        out
    }
}

/// Whether blobs of this kind reference further blobs.
fn walks(kind: BlobKind) -> bool {
    matches!(
        kind,
        BlobKind::ConversationState
            | BlobKind::Turn
            | BlobKind::UserMessage
            | BlobKind::SummaryArchive
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn set_verifies_the_sha256_and_is_idempotent() {
        let mut s = BlobStore::new();
        let data = Bytes::from_static(b"hello");
        let id = blob_id(&data);
        assert_eq!(s.set(&id, data.clone()), Ok(()));
        assert_eq!(s.set(&id, data.clone()), Ok(()));
        assert_eq!((s.len(), s.total_bytes()), (1, 5));
        assert_eq!(s.get(&id), Some(&data));
        assert_eq!(
            s.set(&id, Bytes::from_static(b"other")),
            Err(BlobError::HashMismatch)
        );
        assert_eq!(s.set(&[1, 2], data), Err(BlobError::BadIdLength(2)));
        assert_eq!(s.get(&[1, 2]), None);
    }

    #[test]
    fn prefetch_walks_turns_and_user_messages() {
        let mut s = BlobStore::new();
        let text = s.insert(Bytes::from_static(b"user text"));
        let user = pb::UserMessage {
            text_blob_id: Some(Bytes::copy_from_slice(&text)),
            ..Default::default()
        };
        let user_id = s.insert(Bytes::from(user.encode_to_vec()));
        let turn = pb::ConversationTurnStructure {
            turn: Some(
                pb::conversation_turn_structure::Turn::AgentConversationTurn(
                    pb::AgentConversationTurnStructure {
                        user_message: Bytes::copy_from_slice(&user_id),
                        ..Default::default()
                    },
                ),
            ),
        };
        let turn_id = s.insert(Bytes::from(turn.encode_to_vec()));
        let _unrelated = s.insert(Bytes::from_static(b"unrelated"));
        let state = pb::ConversationStateStructure {
            turns: vec![Bytes::copy_from_slice(&turn_id)],
            ..Default::default()
        };
        let got = s.prefetch_for(&Bytes::from(state.encode_to_vec()));
        let ids: Vec<&[u8]> = got.iter().map(|b| b.id.as_ref()).collect();
        assert_eq!(ids, [&turn_id[..], &user_id[..], &text[..]]);
    }
}
