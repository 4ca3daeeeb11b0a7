//! The one internal shape of a chat request and of its reply, shared by the API front
//! (Anthropic Messages / OpenAI Chat Completions parsing and rendering) and the turn machine
//! that drives Cursor.
//!
//! The API front parses a client body into a [`ChatRequest`]; the turn machine turns the
//! request into a Cursor run and reports what happens as [`ReplyEvent`]s; the API front renders
//! those events back in the client's own shape (SSE events or one JSON body).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::classify::Classification;

/// Which downstream API a request came in on (decides the rendering and the error shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    /// Anthropic Messages API (`POST /v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions API (`POST /v1/chat/completions`).
    OpenAi,
}

/// A parsed chat request, independent of the API it came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The model the client asked for, as sent (mapped to a Cursor model id later).
    pub model: String,
    /// System prompt pieces in order: Anthropic `system` (string or text blocks), OpenAI
    /// `system`/`developer` messages that precede the conversation. Claude Code's billing-header
    /// block stays here as sent; conversation ids strip its volatile parts.
    pub system: Vec<String>,
    /// The conversation, oldest first. Mid-conversation `role: "system"` entries (Claude Code
    /// sends them inside `messages`) are kept in place as [`Role::System`].
    pub messages: Vec<ChatMessage>,
    /// Client tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// How the client constrains tool use.
    pub tool_choice: ToolChoice,
    /// Whether the client asked for a streamed reply.
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: usage goes in a separate last chunk with empty
    /// `choices` (else it rides on the finish chunk). Always `false` for Anthropic.
    pub include_usage: bool,
    /// The client's output-token bound, when given.
    pub max_tokens: Option<u32>,
    /// Strings that end the reply when generated (enforced by the proxy on the text).
    pub stop_sequences: Vec<String>,
    /// Extended-thinking settings.
    pub thinking: Thinking,
    /// Identity hints for conversation ids.
    pub metadata: RequestMetadata,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The user (including tool results, which Anthropic sends as user content).
    User,
    /// The model.
    Assistant,
    /// A system note inside the conversation (Claude Code's mid-conversation system messages).
    System,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Content parts in order.
    pub content: Vec<Part>,
}

/// One piece of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Plain text.
    Text(String),
    /// An image, already base64-decoded.
    Image {
        /// MIME type (`image/png`, …).
        media_type: String,
        /// Raw image bytes.
        data: Bytes,
    },
    /// A tool call the assistant made earlier (echoed back by the client).
    ToolUse {
        /// Tool-call id (`toolu_…` / `call_…`).
        id: String,
        /// Tool name as the client declared it.
        name: String,
        /// Arguments.
        input: Map<String, Value>,
    },
    /// The client's result for a tool call.
    ToolResult {
        /// The id of the call this answers.
        tool_use_id: String,
        /// Result content: text and images.
        content: Vec<Part>,
        /// Whether the tool failed.
        is_error: bool,
    },
    /// Reasoning the assistant produced earlier (echoed back by Claude Code with its signature).
    Thinking {
        /// Reasoning text.
        text: String,
        /// Opaque signature as sent.
        signature: Option<String>,
    },
}

/// A client tool definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Tool name as the client declared it (what it expects back in a tool call).
    pub name: String,
    /// Description shown to the model.
    pub description: String,
    /// JSON Schema of the input (`None` when the client sent none).
    pub input_schema: Option<JsonSchema>,
}

/// A tool's JSON Schema as the client wrote it: the text of one JSON object, verbatim.
///
/// A schema is only ever measured and sent upstream, where it is encoded straight from the
/// text (see [`crate::client::encode_json_as_value`]); it is never parsed into a tree on the
/// request path. Shared, so cloning a request does not copy it.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonSchema(std::sync::Arc<str>);

impl JsonSchema {
    /// The schema `text`, when it is one JSON object.
    pub fn from_text(text: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(text).ok()?;
        v.is_object().then(|| Self(text.trim().into()))
    }

    /// `raw` (JSON a parser already accepted), when it is an object.
    pub(crate) fn from_raw(raw: &serde_json::value::RawValue) -> Option<Self> {
        let text = raw.get().trim();
        text.starts_with('{').then(|| Self(text.into()))
    }

    /// The schema of the JSON object `value` (`None` when it is not an object).
    pub fn from_value(value: &Value) -> Option<Self> {
        value.is_object().then(|| Self(value.to_string().into()))
    }

    /// The JSON text, as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema as a JSON tree (for inspection; the request path never needs it).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tool-use constraint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (default).
    #[default]
    Auto,
    /// The model must call some tool (Anthropic `any`, OpenAI `required`).
    Any,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool(String),
}

/// Extended-thinking settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Thinking {
    /// No thinking requested.
    #[default]
    Disabled,
    /// Thinking with a token budget (Anthropic `enabled`; OpenAI `reasoning_effort` maps here).
    Enabled {
        /// Budget in tokens, when given.
        budget_tokens: Option<u32>,
    },
    /// Anthropic `adaptive`: the model decides.
    Adaptive,
}

/// What identifies the client's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestMetadata {
    /// Anthropic `metadata.user_id` / OpenAI `user`, as sent.
    pub user_id: Option<String>,
    /// A session id: Claude Code's `session_id` inside `metadata.user_id` JSON, or the
    /// `X-Claude-Code-Session-Id` / `X-Session-Id` header.
    pub session_id: Option<String>,
}

/// Why a reply stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// The model called one or more client tools; the client must send results.
    ToolUse,
    /// The client's `max_tokens` was reached.
    MaxTokens,
    /// One of the client's stop sequences was generated.
    StopSequence,
}

/// Token usage of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens (estimated when Cursor reports none; never 0 at the start of a reply).
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from cache.
    pub cache_read_input_tokens: u64,
    /// Prompt tokens written to cache.
    pub cache_creation_input_tokens: u64,
}

/// What happened in one downstream reply, in order. The renderers turn these into Anthropic SSE
/// events, OpenAI chunks, or one JSON body.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// The reply begins (first event of every downstream response).
    Start {
        /// Reply id (`msg_…` / `chatcmpl-…`), fresh for every downstream response.
        id: String,
        /// Model name reported to the client (the one it asked for).
        model: String,
        /// Usage known at the start (input tokens estimated).
        usage: Usage,
    },
    /// A piece of answer text.
    TextDelta(String),
    /// A piece of reasoning.
    ThinkingDelta(String),
    /// The model calls a client tool (complete arguments).
    ToolCall {
        /// Tool-call id exposed to the client.
        id: String,
        /// Tool name as the client declared it.
        name: String,
        /// Arguments.
        input: Map<String, Value>,
    },
    /// Keep-alive while nothing else is sent (Anthropic `ping`; OpenAI SSE comment).
    Ping,
    /// The reply ends normally.
    Stop {
        /// Why it stopped.
        reason: StopReason,
        /// The stop sequence that ended it, for [`StopReason::StopSequence`].
        stop_sequence: Option<String>,
        /// Final usage.
        usage: Usage,
    },
    /// The reply failed. Before the first byte the adapter answers with an HTTP error in the
    /// client's shape; after it, this becomes an error event (never a silent normal stop).
    Error(Classification),
}
