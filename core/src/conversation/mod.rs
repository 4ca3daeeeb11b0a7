//! Conversations that survive: conversation ids, stored checkpoints and when to replay them.
//!
//! A client conversation (a Claude Code session is hundreds of requests over hours) maps to one
//! Cursor conversation. Every request resends the whole history; the proxy should send Cursor
//! only what is new, continuing the last checkpoint, and must still work when it cannot.
//!
//! - [`id`]: the [`ConversationKey`] of a request — stable across the requests of one client
//!   conversation, never shared between two clients (salted with the client's API key) — and
//!   the UUID sent as `conversation_id`.
//! - [`transcript`]: the fingerprint of the client transcript a checkpoint covers, and the
//!   [`ReplyRecorder`] that turns a reply into the assistant message the client will echo.
//! - [`entry`]: one stored conversation (checkpoint, account, reachable blobs, fingerprint)
//!   and its byte encoding for persistence.
//! - [`storage`]: the [`ConversationStorage`] trait and its in-memory implementation.
//! - [`store`]: the policy — [`ConversationStore::plan`] (replay the checkpoint with only the
//!   new messages, or fall back to flattening the whole request) and
//!   [`ConversationStore::record`], with a TTL and an LRU byte budget.
//!
//! # Wiring (what an adapter does per client request)
//!
//! 1. `key = ConversationKey::for_request(&req, client_api_key)`; `key.id()` is the run's
//!    `conversation_id`.
//! 2. If the request carries tool results a parked turn waits for, resume that turn (no new
//!    run). Otherwise pick an account (preferably [`ConversationStore::account`]) and call
//!    [`ConversationStore::plan`]; build `TurnParams::from_chat(&req, …, key.id(), …)` and,
//!    for [`Plan::Replay`], [`Replay::apply`] it.
//! 3. Feed every `ReplyEvent` of the turn to a [`ReplyRecorder`] (it keeps the last reply).
//! 4. On `TurnEvent::Finished { checkpoint: Some(cp), .. }`, call
//!    [`ConversationStore::record`] with the account, the request that carried the run's last
//!    input, `recorder.messages()`, `cp` and `turn.blobs()`.
//! 5. Call [`ConversationStore::expire`] at [`ConversationStore::poll_timeout`].
//!
//! The store never fails a request: every reason not to replay is a [`FallbackReason`].

pub mod entry;
pub mod id;
pub mod storage;
pub mod store;
pub mod transcript;

pub use entry::{Entry, EntryDecodeError};
pub use id::{ConversationKey, IdBasis};
pub use storage::{ConversationStorage, MemoryStorage};
pub use store::{
    Completed, ConversationStore, DEFAULT_CONVERSATION_TTL, DEFAULT_MAX_BYTES, FallbackReason,
    Plan, Recorded, Replay, StoreConfig,
};
pub use transcript::{ReplyRecorder, Transcript};
