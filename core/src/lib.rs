//! cursorpool's sans-IO core.
//!
//! Everything here is pure: no sockets, no async runtime, no clock. Adapters feed bytes and time
//! in (`handle_*`) and drain what to send and what happened (`poll_*`). Time is always a
//! parameter, randomness comes from a seed, so every behaviour is reproducible in a test.
//!
//! - [`connect`]: Connect-RPC framing (envelopes, end-stream trailers, codes, errors).
//! - [`classify`]: what an upstream failure means for the client, the account and a retry.
//! - [`flow`]: HTTP/2 send-window accounting and DATA chunking.
//! - [`update`]: `AgentServerMessage` → typed [`update::ServerEvent`]s.
//! - [`client`]: encoding of every message a client sends upstream.
//! - [`bidi`]: the HTTP/1.1 `BidiAppend` request codec.
//! - [`headers`]: the request headers of every upstream call.
//! - [`ids`]: request, conversation and reply ids from a seeded generator.
//! - [`chat`]: the API-independent chat request and reply events.
//! - [`api`]: the API front: Anthropic / OpenAI request parsing, SSE and JSON rendering, errors.
//! - [`turn`]: the turn machine: one upstream run, tool calls parked inline, parked turns.
//! - [`conductor`]: the account pool: selection, cooldowns, failover, credentials and login.
//! - [`conversation`]: conversation ids, stored checkpoints and the replay-or-flatten policy.
#![forbid(unsafe_code)]

pub mod api;
pub mod bidi;
pub mod catalogue;
pub mod chat;
pub mod classify;
pub mod client;
pub mod conductor;
pub mod connect;
pub mod conversation;
pub mod flow;
pub mod headers;
pub mod ids;
pub mod turn;
pub mod update;
