//! Splitting outgoing bytes into DATA-frame-sized pieces the peer has room for.
//!
//! A run request (often 1 MiB for Claude Code) is pushed whole; the [`Chunker`] hands it back
//! in pieces no larger than the send capacity granted and the peer's SETTINGS_MAX_FRAME_SIZE,
//! so core never emits DATA the peer did not allow.
//!
//! Shaped for the h2 adapter's loop:
//!
//! 1. ask how much is wanted: [`Chunker::pending_len`] → `SendStream::reserve_capacity`;
//! 2. h2 grants capacity (`poll_capacity`) → [`SendWindow::handle_capacity_assigned`];
//! 3. [`Chunker::poll_chunk_within`] repeatedly until `None`, `send_data` each piece
//!    (END_STREAM on the piece after which [`Chunker::is_empty`], if the message is the last).
//!
//! Without a ledger, [`Chunker::poll_chunk`] takes the capacity directly.
//!
//! **Zero-copy for large pushes, small ones joined.** A released piece is a slice of one queued
//! [`Bytes`] sharing its allocation, so a large message (a run request) is never copied. Small
//! pushes that wait behind each other — a burst of blob acknowledgements, heartbeats, tool
//! results, each its own Connect envelope — are copied into one buffer of at most
//! [`JOIN_LIMIT`] bytes, so they leave as one DATA frame instead of one frame each: fewer
//! frames, fewer writes, and no storm of tiny frames for a server's flood protection.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use super::window::{FlowError, SendWindow};

/// SETTINGS_MAX_FRAME_SIZE until the peer says otherwise, and its smallest legal value.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// Largest legal SETTINGS_MAX_FRAME_SIZE, 2^24−1 (RFC 9113 §6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;

/// Pushes up to this size are joined with a small push waiting before them (see the module
/// docs).
pub const JOIN_LIMIT: usize = 4096;

/// A queue of outgoing bytes released in DATA-sized pieces.
///
/// `Debug` shows sizes only: the queue holds prompt text.
#[derive(Clone)]
pub struct Chunker {
    queue: VecDeque<Bytes>,
    pending: usize,
    max_frame_size: u32,
}

impl fmt::Debug for Chunker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("pushes", &self.queue.len())
            .field("pending", &self.pending)
            .field("max_frame_size", &self.max_frame_size)
            .finish()
    }
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunker {
    /// An empty chunker with the default maximum frame size of 16,384.
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            pending: 0,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }

    /// The largest piece released, from the peer's SETTINGS_MAX_FRAME_SIZE.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Applies the peer's SETTINGS_MAX_FRAME_SIZE; outside 16,384..=16,777,215 it is a
    /// `PROTOCOL_ERROR` and the current value is kept.
    pub fn set_max_frame_size(&mut self, n: u32) -> Result<(), FlowError> {
        if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&n) {
            return Err(FlowError::InvalidMaxFrameSize { value: n });
        }
        self.max_frame_size = n;
        Ok(())
    }

    /// Queues `bytes` behind everything pushed before. Empty pushes are dropped.
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.pending += bytes.len();
        if let Some(back) = self.queue.back_mut()
            && back.len() + bytes.len() <= JOIN_LIMIT
        {
            let mut joined = Vec::with_capacity(back.len() + bytes.len());
            joined.extend_from_slice(back);
            joined.extend_from_slice(&bytes);
            *back = Bytes::from(joined);
            return;
        }
        self.queue.push_back(bytes);
    }

    /// Bytes queued and not yet released: the capacity worth reserving.
    pub fn pending_len(&self) -> usize {
        self.pending
    }

    /// Whether everything pushed has been released.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Releases the next piece, at most `capacity` and the maximum frame size long, or `None`
    /// when nothing is queued or `capacity` is 0.
    ///
    /// The caller owns the accounting: it must deduct the piece's length from whatever
    /// granted `capacity`. [`poll_chunk_within`](Self::poll_chunk_within) does that for a
    /// [`SendWindow`].
    pub fn poll_chunk(&mut self, capacity: u32) -> Option<Bytes> {
        let len = self.next_len(capacity);
        self.take(len)
    }

    /// Releases the next piece stream `stream_id` has capacity for and records it as sent in
    /// `window`; `None` when nothing is queued or the stream has no capacity (a closed stream
    /// has none).
    pub fn poll_chunk_within(
        &mut self,
        window: &mut SendWindow,
        stream_id: u32,
    ) -> Result<Option<Bytes>, FlowError> {
        let len = self.next_len(window.capacity(stream_id));
        if len == 0 {
            return Ok(None);
        }
        window.consume(stream_id, len)?;
        Ok(self.take(len))
    }

    /// Length of the next piece: bounded by capacity, frame size and the front push.
    fn next_len(&self, capacity: u32) -> u32 {
        let Some(front) = self.queue.front() else {
            return 0;
        };
        let front_len = u32::try_from(front.len()).unwrap_or(u32::MAX);
        capacity.min(self.max_frame_size).min(front_len)
    }

    fn take(&mut self, len: u32) -> Option<Bytes> {
        if len == 0 {
            return None;
        }
        let len = len as usize;
        let front = self.queue.front_mut()?;
        let piece = if len >= front.len() {
            self.queue.pop_front()?
        } else {
            front.split_to(len)
        };
        self.pending -= piece.len();
        Some(piece)
    }
}
