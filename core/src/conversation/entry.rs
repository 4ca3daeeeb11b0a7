//! One stored conversation: the last checkpoint, the account that produced it, the blobs it
//! references, and the fingerprint of the client transcript it covers; plus its byte encoding
//! for persistence.
//!
//! # Blobs
//!
//! The client is Cursor's blob store (§6.4): without the blobs a checkpoint references, replaying
//! it fails with "Blob not found". An entry keeps exactly the blobs reachable from its checkpoint
//! through the reference graph of §5.3 (state → turns → user messages, steps, texts, nested
//! states, summary archives, …): blobs only an older checkpoint needed are dropped. A checkpoint
//! that does not decode keeps every blob (nothing can be proven unreachable).
//!
//! Blobs arrive as zero-copy slices of the upstream receive buffers; kept as they are, one small
//! blob would pin a whole buffer. New blobs are therefore copied into their own allocations
//! when stored, and blobs the previous entry already held are reused from it, so each turn
//! copies only what it added and [`Entry::bytes`] is close to what the entry really occupies.
//!
//! # Encoding
//!
//! A compact, length-prefixed binary format (all integers big-endian):
//!
//! ```text
//! "CPCE"                 magic
//! u8                     version (1)
//! [u8; 32]               client tag (SHA-256 of the client's API key, never the key)
//! [u8; 16]               conversation id (UUID bytes)
//! u16 + bytes            account label (UTF-8)
//! u32                    messages covered by the transcript fingerprint
//! [u8; 32]               transcript hash
//! u32 + bytes            checkpoint (byte-for-byte)
//! u32                    number of blobs, then per blob: u32 + bytes
//! ```
//!
//! Blob ids are not stored: a blob's id is its SHA-256, recomputed when decoding, so a
//! corrupted blob can never be replayed under the id of the original. Blobs are written in id
//! order, so equal entries encode to equal bytes. Times are not stored either: a loaded entry
//! counts as used when it is loaded (see [`super::ConversationStore::with_storage`]).

use std::collections::{HashSet, VecDeque};
use std::fmt;

use bytes::Bytes;

use super::id::ConversationKey;
use super::transcript::Transcript;
use crate::turn::{BlobId, BlobStore};
use crate::update::{BlobRef, blob_references, checkpoint_summary};

const MAGIC: &[u8; 4] = b"CPCE";
const VERSION: u8 = 1;

/// Estimated bookkeeping per entry beyond its payload: the storage map slot, the store's index
/// and LRU slots, the key (48 bytes) and the entry's own fields.
pub const ENTRY_OVERHEAD: usize = 384;
/// Estimated bookkeeping per blob beyond its bytes: the map slot (32-byte id + `Bytes` handle)
/// and the allocation holding the blob.
pub const BLOB_OVERHEAD: usize = 96;

/// Why stored bytes are not an entry. Blame: local (the state store is corrupted or was written
/// by an incompatible version); the conversation continues through the fallback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryDecodeError {
    /// The bytes end before the entry does.
    #[error("conversation entry truncated")]
    Truncated,
    /// The bytes do not start with the entry magic.
    #[error("not a conversation entry (bad magic)")]
    BadMagic,
    /// An encoding version this build cannot read.
    #[error("unsupported conversation entry version {0}")]
    UnsupportedVersion(u8),
    /// The account label is not UTF-8.
    #[error("conversation entry account label is not UTF-8")]
    BadAccount,
    /// Bytes follow the entry.
    #[error("{0} trailing bytes after the conversation entry")]
    TrailingBytes(usize),
}

/// One stored conversation (see the module docs). Its `Debug` form shows sizes, never content.
#[derive(Clone)]
pub struct Entry {
    key: ConversationKey,
    account: String,
    transcript: Transcript,
    checkpoint: Bytes,
    blobs: BlobStore,
}

impl Entry {
    /// An entry for `checkpoint`, produced on `account`, covering `transcript`. Only the blobs of
    /// `blobs` reachable from the checkpoint are kept (see the module docs); those `previous`
    /// (the conversation's former blob store) already holds are shared with it, the others are
    /// copied into their own allocations, as is the checkpoint.
    pub fn new(
        key: ConversationKey,
        account: &str,
        transcript: Transcript,
        checkpoint: &Bytes,
        blobs: &BlobStore,
        previous: Option<&BlobStore>,
    ) -> Self {
        Self {
            key,
            account: account.to_owned(),
            transcript,
            checkpoint: Bytes::copy_from_slice(checkpoint),
            blobs: reachable(checkpoint, blobs, previous),
        }
    }

    /// Whose conversation this is.
    pub fn key(&self) -> &ConversationKey {
        &self.key
    }

    /// The label of the account that produced the checkpoint (a checkpoint is only valid there).
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The fingerprint of the client transcript the checkpoint covers.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// The checkpoint, byte-for-byte as Cursor sent it.
    pub fn checkpoint(&self) -> &Bytes {
        &self.checkpoint
    }

    /// The blobs the checkpoint references.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// What the entry is accounted as in memory: payload plus the estimated bookkeeping
    /// ([`ENTRY_OVERHEAD`], [`BLOB_OVERHEAD`] per blob).
    pub fn bytes(&self) -> usize {
        ENTRY_OVERHEAD
            + self.account.len()
            + self.checkpoint.len()
            + self.blobs.total_bytes()
            + self.blobs.len() * BLOB_OVERHEAD
    }

    /// The entry's encoding (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let (client, uuid) = self.key.to_parts();
        let mut blobs: Vec<(&BlobId, &Bytes)> = self.blobs.iter().collect();
        blobs.sort_unstable_by_key(|(id, _)| **id);
        let account = truncated(&self.account, u16::MAX as usize).as_bytes();
        let mut out = Vec::with_capacity(
            128 + account.len()
                + self.checkpoint.len()
                + self.blobs.total_bytes()
                + 4 * blobs.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&client);
        out.extend_from_slice(&uuid);
        out.extend_from_slice(&(account.len() as u16).to_be_bytes());
        out.extend_from_slice(account);
        out.extend_from_slice(&(self.transcript.messages() as u32).to_be_bytes());
        out.extend_from_slice(self.transcript.hash());
        put_bytes(&mut out, &self.checkpoint);
        out.extend_from_slice(&(blobs.len() as u32).to_be_bytes());
        for (_, data) in blobs {
            put_bytes(&mut out, data);
        }
        out
    }

    /// Decodes an [`Entry::encode`]d entry. Checkpoint and blobs are zero-copy slices of
    /// `data`; lengths are checked against what is left before anything is taken.
    pub fn decode(data: &Bytes) -> Result<Self, EntryDecodeError> {
        let mut r = Reader { data, at: 0 };
        if r.take(4)?[..] != MAGIC[..] {
            return Err(EntryDecodeError::BadMagic);
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(EntryDecodeError::UnsupportedVersion(version));
        }
        let client: [u8; 32] = r.array()?;
        let uuid: [u8; 16] = r.array()?;
        let account_len = u16::from_be_bytes(r.array()?) as usize;
        let account = std::str::from_utf8(&r.take(account_len)?)
            .map_err(|_| EntryDecodeError::BadAccount)?
            .to_owned();
        let messages = u32::from_be_bytes(r.array()?);
        let hash: [u8; 32] = r.array()?;
        let checkpoint = r.bytes()?;
        let count = u32::from_be_bytes(r.array()?);
        let mut blobs = BlobStore::new();
        for _ in 0..count {
            blobs.insert(r.bytes()?);
        }
        if r.at != data.len() {
            return Err(EntryDecodeError::TrailingBytes(data.len() - r.at));
        }
        Ok(Self {
            key: ConversationKey::from_parts(client, uuid),
            account,
            transcript: Transcript::from_parts(messages, hash),
            checkpoint,
            blobs,
        })
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("account", &self.account)
            .field("messages", &self.transcript.messages())
            .field("checkpoint_len", &self.checkpoint.len())
            .field("blobs", &self.blobs.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// A bounds-checked cursor over the encoding.
struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, EntryDecodeError> {
        if self.data.len() - self.at < n {
            return Err(EntryDecodeError::Truncated);
        }
        let out = self.data.slice(self.at..self.at + n);
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryDecodeError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    fn bytes(&mut self) -> Result<Bytes, EntryDecodeError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }
}

/// The blobs of `blobs` reachable from `checkpoint` (all of them when it does not decode),
/// shared with `previous` where it has them, copied otherwise.
fn reachable(checkpoint: &Bytes, blobs: &BlobStore, previous: Option<&BlobStore>) -> BlobStore {
    // Every blob kept comes from `blobs` under its verified id: it is not hashed again.
    let keep = |id: &BlobId, data: &Bytes, out: &mut BlobStore| {
        let data = previous
            .and_then(|p| p.get(id))
            .cloned()
            .unwrap_or_else(|| Bytes::copy_from_slice(data));
        out.insert_known(*id, data);
    };
    let mut out = BlobStore::new();
    let Ok(summary) = checkpoint_summary(checkpoint) else {
        for (id, data) in blobs.iter() {
            keep(id, data, &mut out);
        }
        return out;
    };
    let mut queue: VecDeque<BlobRef> = summary.blobs.into();
    let mut seen: HashSet<Bytes> = HashSet::new();
    while let Some(r) = queue.pop_front() {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let Ok(id) = BlobId::try_from(&r.id[..]) else {
            continue;
        };
        let Some(data) = blobs.get(&id) else {
            continue;
        };
        keep(&id, data, &mut out);
        if let Ok(next) = blob_references(r.kind, data) {
            queue.extend(next);
        }
    }
    out
}
