//! The JSON shapes of Anthropic replies, shared by the SSE renderer and the non-streaming body.
//! Field order is the order Anthropic sends.

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chat::{StopReason, Usage};

/// Domain separation for [`thinking_signature`].
const SIGNATURE_DOMAIN: &[u8] = b"cursorpool thinking signature v1\0";

/// The `signature` the proxy puts on a thinking block it renders: base64 of SHA-256 over a
/// domain tag and the thinking text. Cursor has no Anthropic signature to relay, but Claude
/// Code expects one (it sends the block back verbatim); a digest of the text lets the proxy
/// recognise, on the next request, a thinking block it produced itself and unchanged.
pub fn thinking_signature(thinking: &str) -> String {
    signature_of(signature_hasher().chain_update(thinking.as_bytes()))
}

pub(super) fn signature_hasher() -> Sha256 {
    Sha256::new_with_prefix(SIGNATURE_DOMAIN)
}

pub(super) fn signature_of(hasher: Sha256) -> String {
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

/// Anthropic's `stop_reason` string.
pub(super) fn stop_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
    }
}

#[derive(Serialize)]
pub(super) struct WireUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<&Usage> for WireUsage {
    /// Input tokens are never reported as 0 (clients divide by them and show them).
    fn from(u: &Usage) -> Self {
        WireUsage {
            input_tokens: u.input_tokens.max(1),
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireBlock<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Map<String, Value>,
    },
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) role: &'static str,
    pub(super) model: &'a str,
    pub(super) content: Vec<WireBlock<'a>>,
    pub(super) stop_reason: Option<&'static str>,
    pub(super) stop_sequence: Option<&'a str>,
    pub(super) usage: WireUsage,
}

#[derive(Serialize)]
#[serde(tag = "type")]
pub(super) enum WireDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
pub(super) struct WireStop<'a> {
    pub(super) stop_reason: &'static str,
    pub(super) stop_sequence: Option<&'a str>,
}

/// One SSE event; the event name equals its `type`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireEvent<'a> {
    MessageStart {
        message: WireMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: WireBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: WireStop<'a>,
        usage: WireUsage,
    },
    MessageStop,
    Ping,
}

impl WireEvent<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            WireEvent::MessageStart { .. } => "message_start",
            WireEvent::ContentBlockStart { .. } => "content_block_start",
            WireEvent::ContentBlockDelta { .. } => "content_block_delta",
            WireEvent::ContentBlockStop { .. } => "content_block_stop",
            WireEvent::MessageDelta { .. } => "message_delta",
            WireEvent::MessageStop => "message_stop",
            WireEvent::Ping => "ping",
        }
    }
}
