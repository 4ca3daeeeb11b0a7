//! `POST /v1/chat/completions` bodies → [`ChatRequest`].
//!
//! Same two steps as the Anthropic parser: serde into borrowed `Raw*` structs (unknown fields
//! skipped), then checks and translation:
//!
//! - `system` / `developer` messages before the first other message form
//!   [`ChatRequest::system`]; later ones stay in place as [`Role::System`].
//! - `assistant` messages: `reasoning_content` (as echoed by DeepSeek-style clients) becomes a
//!   leading [`Part::Thinking`], then the text, then `tool_calls` as [`Part::ToolUse`] with
//!   `arguments` parsed from its JSON string (it must be an object; `""` means `{}`).
//! - `tool` messages become [`Part::ToolResult`]s; consecutive ones are merged into one user
//!   message, the way Anthropic carries several results.
//! - `image_url` parts must be base64 `data:` URLs: the proxy reaches nothing but Cursor.
//! - `reasoning_effort` maps to a thinking budget: `none` → disabled, `minimal` 1,024,
//!   `low` 4,096, `medium` 8,192, `high` 16,384, `xhigh` 32,768 tokens.
//! - `n` > 1 is refused (one completion per request); `stream_options.include_usage` is kept.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use http::HeaderMap;
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::api::ParseLimits;
use crate::api::error::ClientError;
use crate::api::json::{
    StrOrSeq, body_text, decode_image, from_text, output_bound, stop_list, tool_spec,
};
use crate::api::metadata::request_metadata;
use crate::chat::{ChatMessage, ChatRequest, Part, Role, Thinking, ToolChoice, ToolSpec};
use crate::connect::error::{json_kind, nesting_exceeds};

#[derive(Deserialize)]
#[serde(expecting = "a Chat Completions request object")]
struct RawRequest<'a> {
    model: Option<String>,
    #[serde(borrow)]
    messages: Option<Vec<RawMessage<'a>>>,
    stream: Option<bool>,
    stream_options: Option<RawStreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stop: Option<StrOrSeq<String>>,
    n: Option<u64>,
    #[serde(borrow)]
    tools: Option<Vec<RawTool<'a>>>,
    #[serde(borrow)]
    tool_choice: Option<RawToolChoice<'a>>,
    #[serde(borrow)]
    reasoning_effort: Option<Cow<'a, str>>,
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a stream_options object")]
struct RawStreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
#[serde(expecting = "a message object")]
struct RawMessage<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    content: Option<StrOrSeq<RawPart<'a>>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<RawToolCall<'a>>>,
    tool_call_id: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a content part object")]
struct RawPart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    text: Option<String>,
    refusal: Option<String>,
    #[serde(borrow)]
    image_url: Option<RawImageUrl<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "an image_url object")]
struct RawImageUrl<'a> {
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a tool call object")]
struct RawToolCall<'a> {
    id: Option<String>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<RawFunctionCall<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a function call object")]
struct RawFunctionCall<'a> {
    name: Option<String>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a tool object")]
struct RawTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<RawFunction<'a>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a function object")]
struct RawFunction<'a> {
    name: Option<String>,
    description: Option<String>,
    #[serde(borrow)]
    parameters: Option<&'a serde_json::value::RawValue>,
}

/// `tool_choice`: a mode string or `{"type":"function","function":{"name":…}}`.
enum RawToolChoice<'a> {
    Mode(Cow<'a, str>),
    Named(RawNamedChoice),
}

#[derive(Deserialize)]
#[serde(expecting = "a tool_choice object")]
struct RawNamedChoice {
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<RawChoiceFunction>,
}

#[derive(Deserialize)]
#[serde(expecting = "a function object")]
struct RawChoiceFunction {
    name: Option<String>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawToolChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawToolChoice<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\", \"none\", \"required\" or a function object")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawToolChoice::Mode(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawToolChoice::Mode(Cow::Owned(v.to_owned())))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawNamedChoice::deserialize(MapAccessDeserializer::new(map))
                    .map(RawToolChoice::Named)
            }
        }
        deserializer.deserialize_any(V(PhantomData))
    }
}

/// Parses a `POST /v1/chat/completions` body with the default [`ParseLimits`]. `headers`
/// supply a session id (`X-Session-Id`, `X-Claude-Code-Session-Id`).
pub fn parse_chat_request(body: &[u8], headers: &HeaderMap) -> Result<ChatRequest, ClientError> {
    parse_chat_request_with(body, headers, &ParseLimits::default())
}

/// [`parse_chat_request`] with explicit limits.
pub fn parse_chat_request_with(
    body: &[u8],
    headers: &HeaderMap,
    limits: &ParseLimits,
) -> Result<ChatRequest, ClientError> {
    let text = body_text(body, limits)?;
    let raw: RawRequest<'_> = from_text(text)?;
    let model = raw.model.ok_or_else(|| missing("model"))?;
    if model.is_empty() {
        return Err(ClientError::invalid("model", "must not be empty"));
    }
    match raw.n {
        Some(0) => return Err(ClientError::invalid("n", "must be at least 1")),
        Some(n) if n > 1 => {
            return Err(ClientError::unsupported(
                "n",
                format!("only one choice per request is supported, got n = {n}"),
            ));
        }
        _ => {}
    }
    let raw_messages = raw.messages.ok_or_else(|| missing("messages"))?;
    if raw_messages.is_empty() {
        return Err(ClientError::invalid(
            "messages",
            "must contain at least one message",
        ));
    }
    let max_tokens = match (raw.max_completion_tokens, raw.max_tokens) {
        (Some(v), _) => Some(output_bound(v, "max_completion_tokens", limits)?),
        (None, Some(v)) => Some(output_bound(v, "max_tokens", limits)?),
        (None, None) => None,
    };
    let (system, messages) = conversation(raw_messages, limits)?;
    let tools = tools(raw.tools)?;
    let tool_choice = tool_choice(raw.tool_choice, &tools)?;
    Ok(ChatRequest {
        model,
        system,
        messages,
        tool_choice,
        tools,
        stream: raw.stream.unwrap_or(false),
        include_usage: raw
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_tokens,
        stop_sequences: stop_list(raw.stop, "stop")?,
        thinking: thinking(raw.reasoning_effort.as_deref())?,
        metadata: request_metadata(raw.user, headers),
    })
}

fn missing(path: impl Into<String>) -> ClientError {
    ClientError::invalid(path, "required field is missing")
}

fn non_empty(value: Option<String>, at: impl Fn() -> String) -> Result<String, ClientError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(ClientError::invalid(at(), "must not be empty")),
        None => Err(missing(at())),
    }
}

/// The leading system pieces and the conversation.
fn conversation(
    raw: Vec<RawMessage<'_>>,
    limits: &ParseLimits,
) -> Result<(Vec<String>, Vec<ChatMessage>), ClientError> {
    let mut system = Vec::new();
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(raw.len());
    let mut last_was_tool = false;
    for (i, m) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let role = m.role.as_deref().ok_or_else(|| missing(at("role")))?;
        let is_tool = role == "tool";
        match role {
            "system" | "developer" => {
                let content = m.content.ok_or_else(|| missing(at("content")))?;
                let texts = text_parts(content, &at("content"), role)?;
                if messages.is_empty() {
                    system.extend(texts);
                } else {
                    messages.push(ChatMessage {
                        role: Role::System,
                        content: texts.into_iter().map(Part::Text).collect(),
                    });
                }
            }
            "user" => {
                let content = m.content.ok_or_else(|| missing(at("content")))?;
                messages.push(ChatMessage {
                    role: Role::User,
                    content: user_parts(content, &at("content"))?,
                });
            }
            "assistant" => messages.push(assistant(m, i, limits)?),
            "tool" => {
                let tool_use_id = non_empty(m.tool_call_id, || at("tool_call_id"))?;
                let content = match m.content {
                    None => Vec::new(),
                    Some(c) => text_parts(c, &at("content"), role)?
                        .into_iter()
                        .map(Part::Text)
                        .collect(),
                };
                let result = Part::ToolResult {
                    tool_use_id,
                    content,
                    is_error: false,
                };
                match messages.last_mut() {
                    Some(last) if last_was_tool => last.content.push(result),
                    _ => messages.push(ChatMessage {
                        role: Role::User,
                        content: vec![result],
                    }),
                }
            }
            "function" => {
                return Err(ClientError::unsupported(
                    at("role"),
                    "the legacy \"function\" role is not supported; use tools and \"tool\" messages",
                ));
            }
            other => {
                return Err(ClientError::invalid(
                    at("role"),
                    format!(
                        "unknown role {other:?}; expected \"system\", \"developer\", \"user\", \
                         \"assistant\" or \"tool\""
                    ),
                ));
            }
        }
        last_was_tool = is_tool;
    }
    Ok((system, messages))
}

/// Text-only content (system, developer, tool messages): the string, or each text part.
fn text_parts(
    content: StrOrSeq<RawPart<'_>>,
    at: &str,
    role: &str,
) -> Result<Vec<String>, ClientError> {
    match content {
        StrOrSeq::Str(s) => Ok(vec![s]),
        StrOrSeq::Seq(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, p)| match p.kind.as_deref() {
                Some("text") => p.text.ok_or_else(|| missing(format!("{at}[{j}].text"))),
                Some(other) => Err(ClientError::invalid(
                    format!("{at}[{j}].type"),
                    format!("{role} messages may only contain text parts, got {other:?}"),
                )),
                None => Err(missing(format!("{at}[{j}].type"))),
            })
            .collect(),
    }
}

fn user_parts(content: StrOrSeq<RawPart<'_>>, at: &str) -> Result<Vec<Part>, ClientError> {
    let parts = match content {
        StrOrSeq::Str(s) => return Ok(vec![Part::Text(s)]),
        StrOrSeq::Seq(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let part = match p.kind.as_deref() {
            Some("text") => Part::Text(p.text.ok_or_else(|| missing(format!("{at}[{j}].text")))?),
            Some("image_url") => {
                let url = p
                    .image_url
                    .and_then(|u| u.url)
                    .ok_or_else(|| missing(format!("{at}[{j}].image_url.url")))?;
                image(&url, || format!("{at}[{j}].image_url.url"))?
            }
            Some(other) => {
                return Err(ClientError::unsupported(
                    format!("{at}[{j}].type"),
                    format!("content part type {other:?} is not supported"),
                ));
            }
            None => return Err(missing(format!("{at}[{j}].type"))),
        };
        out.push(part);
    }
    Ok(out)
}

/// An image from a `data:<mime>;base64,<data>` URL.
fn image(url: &str, at: impl Fn() -> String) -> Result<Part, ClientError> {
    let Some(rest) = url.strip_prefix("data:") else {
        let remote = url.starts_with("http://") || url.starts_with("https://");
        return Err(if remote {
            ClientError::unsupported(
                at(),
                "remote image URLs are not supported (the proxy fetches nothing); send the \
                 image as a base64 data URL",
            )
        } else {
            ClientError::invalid(at(), "expected a data:<mime>;base64,<data> URL")
        });
    };
    let Some((meta, data)) = rest.split_once(',') else {
        return Err(ClientError::invalid(at(), "malformed data URL (no comma)"));
    };
    let mut params = meta.split(';');
    let media_type = params.next().unwrap_or_default();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(ClientError::unsupported(
            at(),
            "only base64 data URLs are supported",
        ));
    }
    if !media_type.starts_with("image/") || media_type.len() == "image/".len() {
        return Err(ClientError::invalid(
            at(),
            format!("expected an image MIME type such as \"image/png\", got {media_type:?}"),
        ));
    }
    Ok(Part::Image {
        media_type: media_type.to_owned(),
        data: decode_image(data, at)?,
    })
}

fn assistant(
    m: RawMessage<'_>,
    i: usize,
    limits: &ParseLimits,
) -> Result<ChatMessage, ClientError> {
    let mut content = Vec::new();
    if let Some(reasoning) = m.reasoning_content.filter(|r| !r.is_empty()) {
        content.push(Part::Thinking {
            text: reasoning,
            signature: None,
        });
    }
    match m.content {
        None => {}
        Some(StrOrSeq::Str(s)) if s.is_empty() => {}
        Some(StrOrSeq::Str(s)) => content.push(Part::Text(s)),
        Some(StrOrSeq::Seq(parts)) => {
            for (j, p) in parts.into_iter().enumerate() {
                let text = match p.kind.as_deref() {
                    Some("text") => p.text,
                    Some("refusal") => p.refusal,
                    Some(other) => {
                        return Err(ClientError::invalid(
                            format!("messages[{i}].content[{j}].type"),
                            format!("assistant messages may only contain text, got {other:?}"),
                        ));
                    }
                    None => return Err(missing(format!("messages[{i}].content[{j}].type"))),
                };
                content.push(Part::Text(text.unwrap_or_default()));
            }
        }
    }
    for (k, call) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].tool_calls[{k}].{field}");
        if let Some(kind) = call.kind.as_deref()
            && kind != "function"
        {
            return Err(ClientError::unsupported(
                at("type"),
                format!("tool call type {kind:?} is not supported"),
            ));
        }
        let id = non_empty(call.id, || at("id"))?;
        let function = call.function.ok_or_else(|| missing(at("function")))?;
        let name = non_empty(function.name, || at("function.name"))?;
        let input = arguments(
            function.arguments.as_deref(),
            &at("function.arguments"),
            limits,
        )?;
        content.push(Part::ToolUse { id, name, input });
    }
    Ok(ChatMessage {
        role: Role::Assistant,
        content,
    })
}

/// A tool call's `arguments`: a JSON object in a string (empty means `{}`).
fn arguments(
    raw: Option<&str>,
    at: &str,
    limits: &ParseLimits,
) -> Result<Map<String, Value>, ClientError> {
    let text = raw.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Map::new());
    }
    if nesting_exceeds(text.as_bytes(), limits.max_depth) {
        return Err(ClientError::invalid(
            at,
            format!("nests JSON deeper than {} levels", limits.max_depth),
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ClientError::invalid(
            at,
            format!("must be a JSON object, got {}", json_kind(&other)),
        )),
        Err(e) => Err(ClientError::invalid(at, format!("not valid JSON: {e}"))),
    }
}

fn tools(raw: Option<Vec<RawTool<'_>>>) -> Result<Vec<ToolSpec>, ClientError> {
    let raw = raw.unwrap_or_default();
    let mut specs = Vec::with_capacity(raw.len());
    let mut names = HashSet::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        if let Some(kind) = t.kind.as_deref()
            && kind != "function"
        {
            return Err(ClientError::unsupported(
                format!("tools[{i}].type"),
                format!("tool type {kind:?} is not supported; use \"function\""),
            ));
        }
        let function = t
            .function
            .ok_or_else(|| missing(format!("tools[{i}].function")))?;
        let name = non_empty(function.name, || format!("tools[{i}].function.name"))?;
        specs.push(tool_spec(
            &mut names,
            name,
            &format!("tools[{i}].function.name"),
            function.description,
            function.parameters,
            &format!("tools[{i}].function.parameters"),
        )?);
    }
    Ok(specs)
}

fn tool_choice(
    raw: Option<RawToolChoice<'_>>,
    tools: &[ToolSpec],
) -> Result<ToolChoice, ClientError> {
    let choice = match raw {
        None => return Ok(ToolChoice::Auto),
        Some(RawToolChoice::Mode(mode)) => match mode.as_ref() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Any,
            other => {
                return Err(ClientError::invalid(
                    "tool_choice",
                    format!(
                        "unknown tool_choice {other:?}; expected \"auto\", \"none\" or \"required\""
                    ),
                ));
            }
        },
        Some(RawToolChoice::Named(named)) => {
            if let Some(kind) = named.kind.as_deref()
                && kind != "function"
            {
                return Err(ClientError::unsupported(
                    "tool_choice.type",
                    format!("tool_choice type {kind:?} is not supported; use \"function\""),
                ));
            }
            let function = named
                .function
                .ok_or_else(|| missing("tool_choice.function"))?;
            let name = non_empty(function.name, || "tool_choice.function.name".to_owned())?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ClientError::invalid(
                    "tool_choice.function.name",
                    format!("no tool named {name:?} in tools"),
                ));
            }
            ToolChoice::Tool(name)
        }
    };
    if choice == ToolChoice::Any && tools.is_empty() {
        return Err(ClientError::invalid(
            "tool_choice",
            "\"required\" needs at least one tool",
        ));
    }
    Ok(choice)
}

fn thinking(effort: Option<&str>) -> Result<Thinking, ClientError> {
    let budget = match effort {
        None | Some("none") => return Ok(Thinking::Disabled),
        Some("minimal") => 1_024,
        Some("low") => 4_096,
        Some("medium") => 8_192,
        Some("high") => 16_384,
        Some("xhigh") => 32_768,
        Some(other) => {
            return Err(ClientError::invalid(
                "reasoning_effort",
                format!(
                    "unknown reasoning_effort {other:?}; expected \"none\", \"minimal\", \"low\", \
                     \"medium\", \"high\" or \"xhigh\""
                ),
            ));
        }
    };
    Ok(Thinking::Enabled {
        budget_tokens: Some(budget),
    })
}
