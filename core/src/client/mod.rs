//! Encoding of every message a client sends upstream (`AgentClientMessage`, spec §5.1–§5.8).
//!
//! Builders return prost `AgentClientMessage`s, so callers can still inspect or adjust them;
//! [`encode_client_message`] serializes one for an envelope (`Run`) or a `BidiAppend`
//! (see [`crate::bidi`]). Fields are written in ascending field-number order (prost's order),
//! which reproduces the byte-level examples of Appendix C.
//!
//! - run request: [`run_request`] from [`RunRequestParams`];
//! - keep-alive: [`client_heartbeat`];
//! - KV answers: [`set_blob_ok`], [`set_blob_error`], [`get_blob_found`], [`get_blob_not_found`];
//! - exec answers: [`request_context_success`], [`mcp_success`], [`mcp_error`],
//!   [`exec_stream_close`], [`exec_heartbeat`], [`exec_throw`], and [`reject_exec`] for every kind;
//! - interaction-query answers: [`answer_query`] (what the SDK answers), [`reject_query`];
//! - actions: [`cancel`], [`queued_user_message`], and [`RunAction::Resume`] in a run request.

mod exec;
mod json_value;
mod query;

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Acm;
use prost::Message;

pub use crate::update::McpContent;
pub use crate::update::json::{json_object_to_struct, json_to_value, value_to_json};
pub use exec::{
    RequestContextParams, exec_heartbeat, exec_reply, exec_stream_close, exec_throw, mcp_error,
    mcp_success, reject_exec, request_context_success,
};
pub use json_value::{JsonValueError, MAX_DEPTH as MAX_JSON_VALUE_DEPTH, encode_json_as_value};
pub use query::{answer_query, reject_query};

/// Serializes a client message (no envelope, no length prefix).
pub fn encode_client_message(msg: &pb::AgentClientMessage) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

fn wrap(m: Acm) -> pb::AgentClientMessage {
    pb::AgentClientMessage { message: Some(m) }
}

/// What a run request asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAction {
    /// A new user message (the normal turn).
    UserMessage {
        /// The message text.
        text: String,
        /// Images attached to it.
        images: Vec<ImageAttachment>,
    },
    /// Resume the turn of `conversation_state` (a retry after a failed attempt, §6.3), instead of
    /// repeating the user message.
    Resume,
}

impl Default for RunAction {
    fn default() -> Self {
        Self::UserMessage {
            text: String::new(),
            images: Vec::new(),
        }
    }
}

/// An image attached to a user message (`SelectedImage` with inline `data = 8`, as the SDK sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageAttachment {
    /// A UUID v4 chosen by the caller (core has no randomness of its own).
    pub uuid: String,
    /// `image/png`, `image/jpeg`, … (see [`ImageAttachment::sniff_mime_type`]).
    pub mime_type: String,
    /// The raw image bytes.
    pub data: Bytes,
}

impl ImageAttachment {
    /// The MIME type from the image's magic bytes, as the SDK determines it; `None` if unknown.
    pub fn sniff_mime_type(data: &[u8]) -> Option<&'static str> {
        match data {
            [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
            [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
            [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some("image/webp"),
            _ => None,
        }
    }

    fn to_proto(&self) -> pb::SelectedImage {
        pb::SelectedImage {
            data_or_blob_id: Some(pb::selected_image::DataOrBlobId::Data(self.data.clone())),
            uuid: self.uuid.clone(),
            mime_type: self.mime_type.clone(),
            ..Default::default()
        }
    }
}

/// Everything a run request carries (what the SDK fills, §5.2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequestParams {
    /// The last checkpoint's exact bytes; `None` for a new conversation. The field is always
    /// written: `None` encodes the mandatory empty state `0a 00`.
    pub conversation_state: Option<Bytes>,
    /// The user message, or a resume.
    pub action: RunAction,
    /// `AgentMode` of the user message (`Agent` = 1, `Plan` = 3); `None` leaves it unset.
    pub mode: Option<pb::AgentMode>,
    /// `requested_model.model_id` (e.g. `"default"` = Auto); `None` omits `requested_model`.
    pub model_id: Option<String>,
    /// `requested_model.parameters` as `(id, value)` pairs (`thinking`, `effort`, …).
    pub model_parameters: Vec<(String, String)>,
    /// Client tools the model may call; `mcp_tools` is always written, possibly empty.
    pub mcp_tools: Vec<pb::McpToolDefinition>,
    /// Stable per conversation.
    pub conversation_id: Option<String>,
    /// Blobs reachable from `conversation_state`, so the server need not `get_blob` them.
    pub pre_fetched_blobs: Vec<pb::PreFetchedBlob>,
    /// `custom_system_prompt = 8`.
    pub custom_system_prompt: Option<String>,
}

/// Builds the first message of every run.
pub fn run_request(params: RunRequestParams) -> pb::AgentClientMessage {
    use pb::conversation_action::Action;
    let action = match params.action {
        RunAction::UserMessage { text, images } => {
            let selected_context = (!images.is_empty()).then(|| pb::SelectedContext {
                selected_images: images.iter().map(ImageAttachment::to_proto).collect(),
                ..Default::default()
            });
            Action::UserMessageAction(pb::UserMessageAction {
                user_message: Some(pb::UserMessage {
                    text,
                    selected_context,
                    mode: params.mode.map_or(0, |m| m as i32),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        RunAction::Resume => Action::ResumeAction(pb::ResumeAction::default()),
    };
    let requested_model = params.model_id.map(|model_id| pb::RequestedModel {
        model_id,
        parameters: params
            .model_parameters
            .into_iter()
            .map(|(id, value)| pb::requested_model::ModelParameterValue { id, value })
            .collect(),
        ..Default::default()
    });
    wrap(Acm::RunRequest(pb::AgentRunRequest {
        conversation_state: Some(params.conversation_state.unwrap_or_default()),
        action: Some(pb::ConversationAction {
            action: Some(action),
            ..Default::default()
        }),
        requested_model,
        mcp_tools: Some(pb::McpTools {
            mcp_tools: params.mcp_tools,
        }),
        conversation_id: params.conversation_id,
        custom_system_prompt: params.custom_system_prompt,
        pre_fetched_blobs: params.pre_fetched_blobs,
        ..Default::default()
    }))
}

/// A client tool definition following the SDK's naming convention: `name` is
/// `"<provider_identifier>-<tool_name>"`. `input_schema` is the JSON Schema, converted to
/// `google.protobuf.Value` (not a JSON string) and encoded once; `None` leaves it unset
/// (allowed).
pub fn mcp_tool_definition(
    provider_identifier: &str,
    tool_name: &str,
    description: &str,
    input_schema: Option<&serde_json::Value>,
) -> pb::McpToolDefinition {
    mcp_tool_definition_encoded(
        provider_identifier,
        tool_name,
        description,
        input_schema
            .map(|s| Bytes::from(json_to_value(s).encode_to_vec()))
            .unwrap_or_default(),
    )
}

/// [`mcp_tool_definition`] with the schema already encoded as a `google.protobuf.Value`
/// (see [`encode_json_as_value`]; empty: unset).
pub fn mcp_tool_definition_encoded(
    provider_identifier: &str,
    tool_name: &str,
    description: &str,
    input_schema: Bytes,
) -> pb::McpToolDefinition {
    pb::McpToolDefinition {
        name: format!("{provider_identifier}-{tool_name}"),
        provider_identifier: provider_identifier.to_owned(),
        tool_name: tool_name.to_owned(),
        description: description.to_owned(),
        input_schema,
    }
}

/// `client_heartbeat{}`, sent every 5 s for the whole stream.
pub fn client_heartbeat() -> pb::AgentClientMessage {
    wrap(Acm::ClientHeartbeat(pb::ClientHeartbeat {}))
}

fn kv(id: u32, m: pb::kv_client_message::Message) -> pb::AgentClientMessage {
    wrap(Acm::KvClientMessage(pb::KvClientMessage {
        id,
        message: Some(m),
    }))
}

/// Acknowledges `set_blob_args` (`set_blob_result{}`: success).
pub fn set_blob_ok(id: u32) -> pb::AgentClientMessage {
    kv(
        id,
        pb::kv_client_message::Message::SetBlobResult(pb::SetBlobResult { error: None }),
    )
}

/// Fails `set_blob_args` (`set_blob_result{error{message}}`).
pub fn set_blob_error(id: u32, message: &str) -> pb::AgentClientMessage {
    kv(
        id,
        pb::kv_client_message::Message::SetBlobResult(pb::SetBlobResult {
            error: Some(pb::Error {
                message: message.to_owned(),
            }),
        }),
    )
}

/// Answers `get_blob_args` with the blob.
pub fn get_blob_found(id: u32, data: Bytes) -> pb::AgentClientMessage {
    kv(
        id,
        pb::kv_client_message::Message::GetBlobResult(pb::GetBlobResult {
            blob_data: Some(data),
        }),
    )
}

/// Answers `get_blob_args` for a blob we do not have (`blob_data` unset). Always answer: an
/// unanswered get stalls the turn.
pub fn get_blob_not_found(id: u32) -> pb::AgentClientMessage {
    kv(
        id,
        pb::kv_client_message::Message::GetBlobResult(pb::GetBlobResult { blob_data: None }),
    )
}

fn action(a: pb::conversation_action::Action) -> pb::AgentClientMessage {
    wrap(Acm::ConversationAction(pb::ConversationAction {
        action: Some(a),
        ..Default::default()
    }))
}

/// `conversation_action{cancel_action{reason}}`: asks the server to stop the turn.
pub fn cancel(reason: &str) -> pb::AgentClientMessage {
    action(pb::conversation_action::Action::CancelAction(
        pb::CancelAction {
            reason: reason.to_owned(),
        },
    ))
}

/// `conversation_action{user_message_action{user_message{text}}}` sent mid-run: a queued
/// follow-up, acknowledged by `user_message_appended`.
pub fn queued_user_message(text: &str) -> pb::AgentClientMessage {
    action(pb::conversation_action::Action::UserMessageAction(
        pb::UserMessageAction {
            user_message: Some(pb::UserMessage {
                text: text.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
}
