//! Tool-call interaction updates (`partial_tool_call`, `tool_call_started`,
//! `tool_call_completed`, `tool_call_delta`; spec §5.4–§5.5).
//!
//! Our schema knows only the MCP member of the `ToolCall` oneof; a built-in tool (shell, read,
//! edit, …) is reported as [`ToolPayload::BuiltIn`] with its field number recovered from the raw
//! bytes, so a proxy can tell "the server used a built-in tool" from "no tool yet".

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use serde_json::{Map, Value as Json};

use super::exec::McpCall;
use super::json::struct_to_json_object;
use super::wire;

/// Fields of `ToolCall` outside its `tool` oneof (`hook_additional_contexts`, `tool_call_id`).
const TOOL_CALL_NON_ONEOF_FIELDS: &[u32] = &[54, 57];

/// `partial_tool_call`: the model is still producing the call's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialToolCall {
    /// The tool call's id.
    pub call_id: String,
    /// The model's own id for the call.
    pub model_call_id: String,
    /// Next chunk of the JSON arguments as produced by the model.
    pub args_text_delta: String,
    /// The typed (possibly empty) tool call.
    pub tool: ToolPayload,
}

impl PartialToolCall {
    /// The tool's bare name, when already known.
    pub fn tool_name(&self) -> Option<&str> {
        self.tool.tool_name()
    }
}

/// `tool_call_started` / `tool_call_completed`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallUpdate {
    /// The tool call's id.
    pub call_id: String,
    /// The model's own id for the call.
    pub model_call_id: String,
    /// The typed tool call (with its result, on completion).
    pub tool: ToolPayload,
    /// `ToolCall.tool_call_id`, when sent.
    pub tool_call_id: Option<String>,
}

/// The `ToolCall` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolPayload {
    /// No `tool_call`, or one with no member set.
    None,
    /// `mcp_tool_call = 15`: a client-provided tool.
    Mcp {
        /// The call's arguments, when present.
        args: Option<McpCall>,
        /// The result, on `tool_call_completed`.
        result: Option<McpToolOutcome>,
    },
    /// A built-in tool this schema does not model; `field` is its `ToolCall` field number.
    BuiltIn {
        /// Field number in `ToolCall` (e.g. 1 = shell, 8 = read).
        field: u32,
    },
}

impl ToolPayload {
    /// The bare tool name of an MCP call (falling back to the wire name), when known.
    pub fn tool_name(&self) -> Option<&str> {
        match self {
            Self::Mcp { args: Some(a), .. } if !a.tool_name.is_empty() => Some(&a.tool_name),
            Self::Mcp { args: Some(a), .. } if !a.name.is_empty() => Some(&a.name),
            _ => None,
        }
    }
}

/// The result of an MCP call as reported in `tool_call_completed` (`McpToolResult`).
#[derive(Debug, Clone, PartialEq)]
pub enum McpToolOutcome {
    /// The tool ran; `is_error` marks a tool-level failure.
    Success {
        /// Content items.
        content: Vec<McpContent>,
        /// The tool reported failure.
        is_error: bool,
        /// Structured content, when sent.
        structured_content: Option<Map<String, Json>>,
    },
    /// The call failed.
    Error(String),
    /// The call was rejected.
    Rejected(String),
    /// Permission was denied.
    PermissionDenied(String),
    /// A result variant this schema does not know.
    Unknown,
}

/// One MCP content item (used both in results the server reports and in results we send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpContent {
    /// Text content.
    Text(String),
    /// Image content.
    Image {
        /// Raw image bytes.
        data: Bytes,
        /// MIME type, e.g. `image/png`.
        mime_type: String,
    },
}

impl McpContent {
    /// Converts to the wire item.
    pub fn to_proto(&self) -> pb::McpToolResultContentItem {
        use pb::mcp_tool_result_content_item::Content;
        let content = match self {
            Self::Text(text) => Content::Text(pb::McpTextContent {
                text: text.clone(),
                output_location: None,
            }),
            Self::Image { data, mime_type } => Content::Image(pb::McpImageContent {
                data: data.clone(),
                mime_type: mime_type.clone(),
            }),
        };
        pb::McpToolResultContentItem {
            content: Some(content),
        }
    }

    /// Converts from the wire item; `None` for an item with no (known) content.
    pub fn from_proto(item: pb::McpToolResultContentItem) -> Option<Self> {
        use pb::mcp_tool_result_content_item::Content;
        match item.content? {
            Content::Text(t) => Some(Self::Text(t.text)),
            Content::Image(i) => Some(Self::Image {
                data: i.data,
                mime_type: i.mime_type,
            }),
        }
    }
}

/// Which tool a `tool_call_delta` belongs to (`ToolCallDelta` oneof).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolDeltaKind {
    /// `shell_tool_call_delta = 1`.
    Shell,
    /// `task_tool_call_delta = 2`.
    Task,
    /// `edit_tool_call_delta = 3`.
    Edit,
    /// `replace_env_tool_call_delta = 4`.
    ReplaceEnv,
    /// No delta, or one this schema does not know (`field` when there was one).
    Unknown {
        /// Field number in `ToolCallDelta`.
        field: Option<u32>,
    },
}

/// `raw` is the whole `AgentServerMessage`; the update sits at `[1, update_field]`.
pub(super) fn update(
    call_id: String,
    model_call_id: String,
    tool_call: Option<pb::ToolCall>,
    raw: &[u8],
    update_field: u32,
) -> ToolCallUpdate {
    let tool_call_id = tool_call.as_ref().and_then(|t| t.tool_call_id.clone());
    ToolCallUpdate {
        call_id,
        model_call_id,
        tool: payload(tool_call, raw, update_field),
        tool_call_id,
    }
}

pub(super) fn partial(p: pb::PartialToolCallUpdate, raw: &[u8]) -> PartialToolCall {
    PartialToolCall {
        call_id: p.call_id,
        model_call_id: p.model_call_id,
        args_text_delta: p.args_text_delta,
        tool: payload(p.tool_call, raw, 7),
    }
}

pub(super) fn delta_kind(d: Option<pb::ToolCallDelta>, raw: &[u8]) -> ToolDeltaKind {
    use pb::tool_call_delta::Delta;
    match d.and_then(|d| d.delta) {
        Some(Delta::ShellToolCallDelta(_)) => ToolDeltaKind::Shell,
        Some(Delta::TaskToolCallDelta(_)) => ToolDeltaKind::Task,
        Some(Delta::EditToolCallDelta(_)) => ToolDeltaKind::Edit,
        Some(Delta::ReplaceEnvToolCallDelta(_)) => ToolDeltaKind::ReplaceEnv,
        None => ToolDeltaKind::Unknown {
            field: wire::nested(raw, &[1, 15, 2])
                .and_then(|d| wire::last_unknown_field(d, &[], true)),
        },
    }
}

fn payload(tool_call: Option<pb::ToolCall>, raw: &[u8], update_field: u32) -> ToolPayload {
    let Some(tc) = tool_call else {
        return ToolPayload::None;
    };
    match tc.tool {
        Some(pb::tool_call::Tool::McpToolCall(m)) => ToolPayload::Mcp {
            args: m.args.as_ref().map(McpCall::from_proto),
            result: m.result.map(outcome),
        },
        None => wire::nested(raw, &[1, update_field, 2])
            .and_then(|tc| wire::last_unknown_field(tc, TOOL_CALL_NON_ONEOF_FIELDS, true))
            .map_or(ToolPayload::None, |field| ToolPayload::BuiltIn { field }),
    }
}

fn outcome(r: pb::McpToolResult) -> McpToolOutcome {
    use pb::mcp_tool_result::Result as R;
    match r.result {
        Some(R::Success(s)) => McpToolOutcome::Success {
            content: s
                .content
                .into_iter()
                .filter_map(McpContent::from_proto)
                .collect(),
            is_error: s.is_error,
            structured_content: s.structured_content.as_ref().map(struct_to_json_object),
        },
        Some(R::Error(e)) => McpToolOutcome::Error(e.error),
        Some(R::Rejected(r)) => McpToolOutcome::Rejected(r.reason),
        Some(R::PermissionDenied(p)) => McpToolOutcome::PermissionDenied(p.error),
        None => McpToolOutcome::Unknown,
    }
}
