//! The Anthropic Messages API: `POST /v1/messages` (SSE or one JSON body) and
//! `POST /v1/messages/count_tokens`.

mod message;
mod parse;
mod stream;
mod wire;

use bytes::{Bytes, BytesMut};

pub use message::MessageAccumulator;
pub use parse::{
    parse_count_tokens_request, parse_count_tokens_request_with, parse_messages_request,
    parse_messages_request_with,
};
pub use stream::StreamRenderer;
pub use wire::thinking_signature;

/// The `count_tokens` answer: `{"input_tokens":N}` (N ≥ 1; see [`crate::api::tokens`]).
pub fn count_tokens_body(input_tokens: u64) -> Bytes {
    #[derive(serde::Serialize)]
    struct Count {
        input_tokens: u64,
    }
    let mut out = BytesMut::with_capacity(32);
    crate::api::sse::write_json(
        &mut out,
        &Count {
            input_tokens: input_tokens.max(1),
        },
    );
    out.freeze()
}
