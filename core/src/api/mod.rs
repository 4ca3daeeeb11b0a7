//! The API front: client request bodies in, client response bytes out.
//!
//! cursorpool speaks two downstream APIs. This module translates both into the one internal
//! shape of [`crate::chat`] and back:
//!
//! - **Parsing** ([`anthropic::parse_messages_request`], [`anthropic::parse_count_tokens_request`],
//!   [`openai::parse_chat_request`]): body bytes → [`ChatRequest`](crate::chat::ChatRequest).
//!   Every body is first checked to be UTF-8 and to nest at most [`ParseLimits::max_depth`]
//!   levels (a linear pre-scan, before serde builds anything), then deserialized straight from
//!   the bytes into borrowed intermediate structs, then validated. A problem is a typed
//!   [`ClientError`] naming the JSON path of the offending value
//!   (`messages[3].content[0].source.data: not valid base64`). Unknown fields are ignored.
//! - **Rendering** ([`anthropic::StreamRenderer`], [`anthropic::MessageAccumulator`],
//!   [`openai::StreamRenderer`], [`openai::CompletionAccumulator`]): the turn machine's
//!   [`ReplyEvent`](crate::chat::ReplyEvent)s → Anthropic SSE events, OpenAI chunks, or one JSON
//!   body. A failure after the first byte is always an explicit error event, never a normal stop.
//! - **Errors** ([`error`]): any failure in the client's own error shape, status and retry
//!   headers.
//! - **Side endpoints**: [`tokens`] (the `count_tokens` estimate, also used for the input
//!   tokens of `message_start`) and [`models`] (`/v1/models` in both shapes).
//! - **Ids** ([`ids`]): `msg_…`, `chatcmpl-…`, `toolu_…`, `call_…` from the seeded
//!   [`crate::ids::IdSource`].

pub mod anthropic;
pub mod error;
pub mod ids;
mod json;
mod metadata;
pub mod models;
pub mod openai;
mod sse;
pub mod tokens;

pub use error::{ApiError, ClientError, ErrorResponse, ErrorType, render_error};

/// Bounds applied to every client body before and while it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Deepest `{`/`[` nesting accepted, checked by a linear pre-scan before deserializing.
    /// serde_json's own recursion guard (it refuses a 128th nested container) stays as a
    /// backstop, so values above 127 only matter for the pre-scan.
    pub max_depth: usize,
    /// Largest `max_tokens` / `max_completion_tokens` accepted; larger values (and 0) are a 400.
    pub max_output_tokens: u32,
}

/// Default [`ParseLimits::max_depth`]. A real Claude Code body nests about 12 levels (tool
/// schemas); 128 leaves room for deep user schemas and still bounds the work.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Default [`ParseLimits::max_output_tokens`]. Claude Code asks for 64,000; no model emits
/// anywhere near a million tokens in one reply, so anything above is a client bug.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 1_000_000;

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
        }
    }
}
