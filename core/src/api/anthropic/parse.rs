//! `POST /v1/messages` and `POST /v1/messages/count_tokens` bodies → [`ChatRequest`].
//!
//! Two steps: serde deserializes the body straight from its bytes into the borrowed `Raw*`
//! structs below (every field optional, unknown fields skipped, tags and base64 data borrowed),
//! then plain code checks what serde cannot (required fields, allowed tags, which block may
//! appear in which role) and builds the owned [`ChatRequest`]. Wrong JSON types are serde's
//! errors, located by [`super::super::json`]; everything else names its path here.
//!
//! Accepted beyond the basics, because Claude Code sends it: `role: "system"` messages inside
//! `messages` (kept in place as [`Role::System`]), thinking blocks with signatures, and
//! `metadata.user_id` holding JSON. Dropped on purpose: `redacted_thinking` blocks (encrypted
//! reasoning only Anthropic can read) and `cache_control` everywhere (Cursor caches on its own).

use std::borrow::Cow;
use std::collections::HashSet;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::ParseLimits;
use crate::api::error::ClientError;
use crate::api::json::{
    StrOrSeq, body_text, decode_image, from_text, output_bound, stop_list, tool_spec,
};
use crate::api::metadata::request_metadata;
use crate::chat::{ChatMessage, ChatRequest, Part, Role, Thinking, ToolChoice, ToolSpec};
use crate::connect::error::json_kind;

#[derive(Deserialize)]
#[serde(expecting = "a Messages API request object")]
struct RawRequest<'a> {
    model: Option<String>,
    #[serde(borrow)]
    messages: Option<Vec<RawMessage<'a>>>,
    #[serde(borrow)]
    system: Option<StrOrSeq<RawBlock<'a>>>,
    max_tokens: Option<u64>,
    #[serde(borrow)]
    tools: Option<Vec<RawTool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<RawToolChoice<'a>>,
    #[serde(borrow)]
    thinking: Option<RawThinking<'a>>,
    stop_sequences: Option<StrOrSeq<String>>,
    stream: Option<bool>,
    metadata: Option<RawMetadata>,
}

#[derive(Deserialize)]
#[serde(expecting = "a message object")]
struct RawMessage<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<StrOrSeq<RawBlock<'a>>>,
}

/// Every content block kind's fields in one struct (no buffering of tagged enums); which ones
/// a block must have is checked per `type` afterwards.
#[derive(Deserialize)]
#[serde(expecting = "a content block object")]
struct RawBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    text: Option<String>,
    #[serde(borrow)]
    source: Option<RawSource<'a>>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
    tool_use_id: Option<String>,
    #[serde(borrow)]
    content: Option<StrOrSeq<RawBlock<'a>>>,
    is_error: Option<bool>,
    thinking: Option<String>,
    signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a source object")]
struct RawSource<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    media_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a tool object")]
struct RawTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    name: Option<String>,
    description: Option<String>,
    #[serde(borrow)]
    input_schema: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(expecting = "a tool_choice object")]
struct RawToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a thinking object")]
struct RawThinking<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    budget_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(expecting = "a metadata object")]
struct RawMetadata {
    user_id: Option<String>,
}

/// Which endpoint the body came to (count_tokens has no `max_tokens` and never streams).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Messages,
    CountTokens,
}

/// Parses a `POST /v1/messages` body with the default [`ParseLimits`]. `headers` supply the
/// session id when the body has none (`X-Claude-Code-Session-Id`, `X-Session-Id`).
pub fn parse_messages_request(
    body: &[u8],
    headers: &HeaderMap,
) -> Result<ChatRequest, ClientError> {
    parse_messages_request_with(body, headers, &ParseLimits::default())
}

/// [`parse_messages_request`] with explicit limits.
pub fn parse_messages_request_with(
    body: &[u8],
    headers: &HeaderMap,
    limits: &ParseLimits,
) -> Result<ChatRequest, ClientError> {
    parse(body, headers, limits, Endpoint::Messages)
}

/// Parses a `POST /v1/messages/count_tokens` body (the Messages shape without `max_tokens`,
/// `stream` or `metadata`) with the default [`ParseLimits`].
pub fn parse_count_tokens_request(
    body: &[u8],
    headers: &HeaderMap,
) -> Result<ChatRequest, ClientError> {
    parse_count_tokens_request_with(body, headers, &ParseLimits::default())
}

/// [`parse_count_tokens_request`] with explicit limits.
pub fn parse_count_tokens_request_with(
    body: &[u8],
    headers: &HeaderMap,
    limits: &ParseLimits,
) -> Result<ChatRequest, ClientError> {
    parse(body, headers, limits, Endpoint::CountTokens)
}

fn parse(
    body: &[u8],
    headers: &HeaderMap,
    limits: &ParseLimits,
    endpoint: Endpoint,
) -> Result<ChatRequest, ClientError> {
    let text = body_text(body, limits)?;
    let raw: RawRequest<'_> = from_text(text)?;
    let model = raw.model.ok_or_else(|| missing("model"))?;
    if model.is_empty() {
        return Err(ClientError::invalid("model", "must not be empty"));
    }
    let raw_messages = raw.messages.ok_or_else(|| missing("messages"))?;
    if raw_messages.is_empty() {
        return Err(ClientError::invalid(
            "messages",
            "must contain at least one message",
        ));
    }
    let max_tokens = match (raw.max_tokens, endpoint) {
        (Some(v), _) => Some(output_bound(v, "max_tokens", limits)?),
        (None, Endpoint::Messages) => return Err(missing("max_tokens")),
        (None, Endpoint::CountTokens) => None,
    };
    let system = system_pieces(raw.system)?;
    let messages = raw_messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = tools(raw.tools)?;
    let tool_choice = tool_choice(raw.tool_choice, &tools)?;
    Ok(ChatRequest {
        model,
        system,
        messages,
        tool_choice,
        tools,
        stream: endpoint == Endpoint::Messages && raw.stream.unwrap_or(false),
        max_tokens,
        stop_sequences: stop_list(raw.stop_sequences, "stop_sequences")?,
        thinking: thinking(raw.thinking)?,
        metadata: request_metadata(raw.metadata.and_then(|m| m.user_id), headers),
        include_usage: false,
    })
}

fn missing(path: impl Into<String>) -> ClientError {
    ClientError::invalid(path, "required field is missing")
}

fn system_pieces(raw: Option<StrOrSeq<RawBlock<'_>>>) -> Result<Vec<String>, ClientError> {
    match raw {
        None => Ok(Vec::new()),
        Some(StrOrSeq::Str(s)) => Ok(vec![s]),
        Some(StrOrSeq::Seq(blocks)) => blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| match (b.kind.as_deref(), b.text) {
                (Some("text"), Some(text)) => Ok(text),
                (Some("text"), None) => Err(missing(format!("system[{i}].text"))),
                (None, _) => Err(missing(format!("system[{i}].type"))),
                (Some(other), _) => Err(ClientError::invalid(
                    format!("system[{i}].type"),
                    format!("system blocks must be \"text\", got {other:?}"),
                )),
            })
            .collect(),
    }
}

fn message(i: usize, raw: RawMessage<'_>) -> Result<ChatMessage, ClientError> {
    let role = match raw.role.as_deref() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system") => Role::System,
        Some(other) => {
            return Err(ClientError::invalid(
                format!("messages[{i}].role"),
                format!("unknown role {other:?}; expected \"user\", \"assistant\" or \"system\""),
            ));
        }
        None => return Err(missing(format!("messages[{i}].role"))),
    };
    let content = match raw.content {
        None => return Err(missing(format!("messages[{i}].content"))),
        Some(StrOrSeq::Str(s)) => vec![Part::Text(s)],
        Some(StrOrSeq::Seq(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.into_iter().enumerate() {
                let at = || format!("messages[{i}].content[{j}]");
                if let Some(part) = block(b, Some(role), &at)? {
                    parts.push(part);
                }
            }
            parts
        }
    };
    Ok(ChatMessage { role, content })
}

/// One content block at path `at()`. `role` is the message's role, `None` inside a
/// tool_result (where only text and images may appear). `Ok(None)` for a dropped block.
fn block(
    raw: RawBlock<'_>,
    role: Option<Role>,
    at: &dyn Fn() -> String,
) -> Result<Option<Part>, ClientError> {
    let Some(kind) = raw.kind.as_deref() else {
        return Err(missing(format!("{}.type", at())));
    };
    let allowed = match (kind, role) {
        ("text", _) | ("image", Some(Role::User) | None) => true,
        ("tool_use" | "thinking" | "redacted_thinking", Some(Role::Assistant)) => true,
        ("tool_result", Some(Role::User)) => true,
        ("image" | "tool_use" | "thinking" | "redacted_thinking" | "tool_result", _) => false,
        (other, _) => {
            return Err(ClientError::unsupported(
                format!("{}.type", at()),
                format!("content block type {other:?} is not supported"),
            ));
        }
    };
    if !allowed {
        let place = match role {
            Some(Role::User) => "user messages",
            Some(Role::Assistant) => "assistant messages",
            Some(Role::System) => "system messages",
            None => "tool_result content",
        };
        return Err(ClientError::invalid(
            format!("{}.type", at()),
            format!("a {kind:?} block is not allowed in {place}"),
        ));
    }
    let part = match kind {
        "text" => Part::Text(raw.text.ok_or_else(|| missing(format!("{}.text", at())))?),
        "image" => image(raw.source, at)?,
        "tool_use" => Part::ToolUse {
            id: non_empty(raw.id, || format!("{}.id", at()))?,
            name: non_empty(raw.name, || format!("{}.name", at()))?,
            input: tool_input(raw.input, at)?,
        },
        "tool_result" => Part::ToolResult {
            tool_use_id: non_empty(raw.tool_use_id, || format!("{}.tool_use_id", at()))?,
            content: tool_result_content(raw.content, at)?,
            is_error: raw.is_error.unwrap_or(false),
        },
        "thinking" => Part::Thinking {
            text: raw
                .thinking
                .ok_or_else(|| missing(format!("{}.thinking", at())))?,
            signature: raw.signature,
        },
        // redacted_thinking: only Anthropic can read it; Cursor gets nothing from it.
        _ => return Ok(None),
    };
    Ok(Some(part))
}

fn non_empty(value: Option<String>, at: impl Fn() -> String) -> Result<String, ClientError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(ClientError::invalid(at(), "must not be empty")),
        None => Err(missing(at())),
    }
}

fn tool_input(
    input: Option<Value>,
    at: &dyn Fn() -> String,
) -> Result<Map<String, Value>, ClientError> {
    match input {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(ClientError::invalid(
            format!("{}.input", at()),
            format!("must be an object, got {}", json_kind(&other)),
        )),
    }
}

fn tool_result_content(
    content: Option<StrOrSeq<RawBlock<'_>>>,
    at: &dyn Fn() -> String,
) -> Result<Vec<Part>, ClientError> {
    match content {
        None => Ok(Vec::new()),
        Some(StrOrSeq::Str(s)) => Ok(vec![Part::Text(s)]),
        Some(StrOrSeq::Seq(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.into_iter().enumerate() {
                let inner = || format!("{}.content[{k}]", at());
                if let Some(part) = block(b, None, &inner)? {
                    parts.push(part);
                }
            }
            Ok(parts)
        }
    }
}

fn image(source: Option<RawSource<'_>>, at: &dyn Fn() -> String) -> Result<Part, ClientError> {
    let source = source.ok_or_else(|| missing(format!("{}.source", at())))?;
    match source.kind.as_deref() {
        Some("base64") => {}
        Some("url") => {
            return Err(ClientError::unsupported(
                format!("{}.source", at()),
                "image URLs are not supported (the proxy fetches nothing); send the image as base64",
            ));
        }
        Some(other) => {
            return Err(ClientError::unsupported(
                format!("{}.source.type", at()),
                format!("image source type {other:?} is not supported; use \"base64\""),
            ));
        }
        None => return Err(missing(format!("{}.source.type", at()))),
    }
    let media_type = match source.media_type {
        Some(m) if m.starts_with("image/") && m.len() > "image/".len() => m.into_owned(),
        Some(m) => {
            return Err(ClientError::invalid(
                format!("{}.source.media_type", at()),
                format!("expected an image MIME type such as \"image/png\", got {m:?}"),
            ));
        }
        None => return Err(missing(format!("{}.source.media_type", at()))),
    };
    let data = source
        .data
        .ok_or_else(|| missing(format!("{}.source.data", at())))?;
    Ok(Part::Image {
        media_type,
        data: decode_image(&data, || format!("{}.source.data", at()))?,
    })
}

fn tools(raw: Option<Vec<RawTool<'_>>>) -> Result<Vec<ToolSpec>, ClientError> {
    let raw = raw.unwrap_or_default();
    let mut specs = Vec::with_capacity(raw.len());
    let mut names = HashSet::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref()
            && kind != "custom"
        {
            return Err(ClientError::unsupported(
                format!("tools[{i}].type"),
                format!(
                    "server tool {kind:?} is not supported; declare client tools with name, \
                     description and input_schema"
                ),
            ));
        }
        let name = non_empty(t.name, || format!("tools[{i}].name"))?;
        specs.push(tool_spec(
            &mut names,
            name,
            &format!("tools[{i}].name"),
            t.description,
            t.input_schema,
            &format!("tools[{i}].input_schema"),
        )?);
    }
    Ok(specs)
}

fn tool_choice(
    raw: Option<RawToolChoice<'_>>,
    tools: &[ToolSpec],
) -> Result<ToolChoice, ClientError> {
    let Some(raw) = raw else {
        return Ok(ToolChoice::Auto);
    };
    let choice = match raw.kind.as_deref() {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Any,
        Some("none") => ToolChoice::None,
        Some("tool") => {
            let name = non_empty(raw.name, || "tool_choice.name".to_owned())?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ClientError::invalid(
                    "tool_choice.name",
                    format!("no tool named {name:?} in tools"),
                ));
            }
            ToolChoice::Tool(name)
        }
        Some(other) => {
            return Err(ClientError::invalid(
                "tool_choice.type",
                format!(
                    "unknown tool_choice {other:?}; expected \"auto\", \"any\", \"none\" or \"tool\""
                ),
            ));
        }
        None => return Err(missing("tool_choice.type")),
    };
    if choice == ToolChoice::Any && tools.is_empty() {
        return Err(ClientError::invalid(
            "tool_choice",
            "\"any\" requires at least one tool",
        ));
    }
    Ok(choice)
}

fn thinking(raw: Option<RawThinking<'_>>) -> Result<Thinking, ClientError> {
    let Some(raw) = raw else {
        return Ok(Thinking::Disabled);
    };
    match raw.kind.as_deref() {
        Some("enabled") => {
            let budget_tokens = match raw.budget_tokens {
                None => None,
                Some(b) => match u32::try_from(b) {
                    Ok(b) if b > 0 => Some(b),
                    _ => {
                        return Err(ClientError::invalid(
                            "thinking.budget_tokens",
                            format!("must be between 1 and {}, got {b}", u32::MAX),
                        ));
                    }
                },
            };
            Ok(Thinking::Enabled { budget_tokens })
        }
        Some("adaptive") => Ok(Thinking::Adaptive),
        Some("disabled") => Ok(Thinking::Disabled),
        Some(other) => Err(ClientError::invalid(
            "thinking.type",
            format!(
                "unknown thinking type {other:?}; expected \"enabled\", \"adaptive\" or \"disabled\""
            ),
        )),
        None => Err(missing("thinking.type")),
    }
}
