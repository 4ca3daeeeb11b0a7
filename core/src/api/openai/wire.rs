//! The JSON shapes of OpenAI Chat Completions replies (chunks and the non-streaming body).

use serde::Serialize;

use crate::chat::{StopReason, Usage};

/// OpenAI's `finish_reason`.
pub(super) fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolUse => "tool_calls",
        StopReason::MaxTokens => "length",
    }
}

#[derive(Serialize)]
pub(super) struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: WireCached,
}

#[derive(Serialize)]
struct WireCached {
    cached_tokens: u64,
}

impl From<&Usage> for WireUsage {
    /// OpenAI's prompt tokens include cached ones (Anthropic's `input_tokens` do not); never 0.
    fn from(u: &Usage) -> Self {
        let prompt = u
            .input_tokens
            .saturating_add(u.cache_read_input_tokens)
            .saturating_add(u.cache_creation_input_tokens)
            .max(1);
        WireUsage {
            prompt_tokens: prompt,
            completion_tokens: u.output_tokens,
            total_tokens: prompt.saturating_add(u.output_tokens),
            prompt_tokens_details: WireCached {
                cached_tokens: u.cache_read_input_tokens,
            },
        }
    }
}

#[derive(Serialize)]
pub(super) struct WireChunk<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: &'a [WireChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<WireUsage>,
}

#[derive(Serialize)]
pub(super) struct WireChunkChoice<'a> {
    pub(super) index: u32,
    pub(super) delta: WireDelta<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
pub(super) struct WireDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_calls: Option<[WireToolCall<'a>; 1]>,
}

/// A tool call, in a chunk (with `index`) or in a message (without).
#[derive(Serialize)]
pub(super) struct WireToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) index: Option<u32>,
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: WireFunction<'a>,
}

#[derive(Serialize)]
pub(super) struct WireFunction<'a> {
    pub(super) name: &'a str,
    /// The arguments object as a JSON string, as OpenAI sends it.
    pub(super) arguments: &'a str,
}

#[derive(Serialize)]
pub(super) struct WireCompletion<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [WireChoice<'a>; 1],
    pub(super) usage: WireUsage,
}

#[derive(Serialize)]
pub(super) struct WireChoice<'a> {
    pub(super) index: u32,
    pub(super) message: WireMessage<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    pub(super) role: &'static str,
    /// `null` when the reply has no text (tool calls only).
    pub(super) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) tool_calls: Vec<WireToolCall<'a>>,
    pub(super) refusal: Option<()>,
}
