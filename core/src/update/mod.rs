//! `AgentServerMessage` → one typed [`ServerEvent`] (spec §5.1, §5.4–§5.8).
//!
//! [`decode_server_message`] takes the payload of one Connect envelope and returns exactly one
//! event. Unknown fields and unknown `oneof` members never fail decoding (§1): an unknown
//! top-level member or interaction update becomes [`ServerEvent::Unknown`] /
//! [`ServerEvent::UnknownUpdate`], and an unknown exec kind becomes [`ExecKind::Unknown`] with its
//! field number recovered from the raw bytes, because it must still be answered. Only bytes that
//! are not protobuf at all produce a [`DecodeError`].
//!
//! Checkpoints and blobs are zero-copy: they are slices of the payload `Bytes`.

mod checkpoint;
mod exec;
pub mod json;
mod tool;
pub(crate) mod wire;

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Top;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use prost::Message;

pub use checkpoint::{BlobKind, BlobRef, CheckpointSummary, blob_references, checkpoint_summary};
pub use exec::{ExecKind, ExecRequest, McpCall};
pub use tool::{
    McpContent, McpToolOutcome, PartialToolCall, ToolCallUpdate, ToolDeltaKind, ToolPayload,
};

/// The payload is not a well-formed protobuf message of the expected type. Blame: upstream (the
/// server, or whoever produced the bytes); the stream cannot continue reliably.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An `AgentServerMessage` envelope payload failed to decode.
    #[error("malformed AgentServerMessage: {0}")]
    ServerMessage(prost::DecodeError),
    /// A checkpoint or blob payload failed to decode as the named message.
    #[error("malformed {0}: {1}")]
    Blob(&'static str, prost::DecodeError),
}

/// One decoded server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `text_delta`: next chunk of the assistant's answer.
    TextDelta(String),
    /// `thinking_delta`: next chunk of reasoning text.
    ThinkingDelta {
        /// The chunk.
        text: String,
        /// `ThinkingStyle` enum value, when sent.
        style: Option<i32>,
    },
    /// `thinking_completed`: a reasoning block ended.
    ThinkingCompleted {
        /// How long the model thought.
        duration_ms: i32,
    },
    /// `partial_tool_call`: a tool call's arguments are being generated.
    PartialToolCall(PartialToolCall),
    /// `tool_call_delta`: execution progress of a started call (not argument streaming).
    ToolCallDelta {
        /// The tool call.
        call_id: String,
        /// The model's own id for the call.
        model_call_id: String,
        /// Which tool's progress this is.
        kind: ToolDeltaKind,
    },
    /// `tool_call_started`: arguments complete, execution begins.
    ToolCallStarted(ToolCallUpdate),
    /// `tool_call_completed`: the final call including its result.
    ToolCallCompleted(ToolCallUpdate),
    /// `user_message_appended`: the server took a (queued) user message.
    UserMessageAppended {
        /// The message text.
        text: String,
        /// The client-chosen message id (often empty).
        message_id: String,
    },
    /// `token_delta`: incremental output-token count.
    TokenDelta {
        /// Tokens since the previous delta.
        tokens: i32,
    },
    /// `summary`: context summarisation text.
    Summary(String),
    /// `summary_started`.
    SummaryStarted,
    /// `summary_completed`.
    SummaryCompleted {
        /// Optional hook message.
        hook_message: Option<String>,
    },
    /// `shell_output_delta`: output of a user-initiated shell command.
    ShellOutput(ShellOutputEvent),
    /// `heartbeat` (13): keep-alive.
    Heartbeat,
    /// `turn_ended` (14): the turn is over.
    TurnEnded(TurnTotals),
    /// `step_started`.
    StepStarted {
        /// Model step id.
        step_id: u64,
    },
    /// `step_completed`.
    StepCompleted {
        /// Model step id.
        step_id: u64,
        /// Step duration.
        duration_ms: i64,
    },
    /// `prompt_suggestion` (UI extra).
    PromptSuggestion(String),
    /// `post_request_prompt` (UI extra).
    PostRequestPrompt {
        /// Title.
        title: String,
        /// Body.
        message: String,
        /// Button label.
        button_label: String,
        /// Button target.
        button_url: String,
    },
    /// `active_branch_change` (UI extra).
    ActiveBranchChange {
        /// Repository path.
        path: String,
        /// New branch.
        branch_name: String,
    },
    /// `feedback_request` (UI extra).
    FeedbackRequest {
        /// Request id the feedback is about.
        request_id: String,
        /// Model name, when sent.
        canonical_model_name: Option<String>,
    },
    /// An `interaction_update` whose member this schema does not know (or that is empty).
    UnknownUpdate {
        /// Field number of the member in `InteractionUpdate`, when there was one.
        field: Option<u32>,
    },
    /// `exec_server_message`: must be answered (see `client::reject_exec`).
    Exec(ExecRequest),
    /// `exec_server_control_message.abort{id}`: stop that exec and send nothing more for it.
    ExecAbort {
        /// The exec id to abort.
        id: u32,
    },
    /// `conversation_checkpoint_update`: the new conversation state, a zero-copy slice of the
    /// payload, to be stored and replayed byte-for-byte.
    Checkpoint(Bytes),
    /// `kv_server_message.get_blob_args`: answer with `get_blob_result` (empty if not found).
    GetBlob {
        /// KV request id to echo.
        id: u32,
        /// The wanted blob's id.
        blob_id: Bytes,
    },
    /// `kv_server_message.set_blob_args`: store and acknowledge with `set_blob_result`.
    SetBlob {
        /// KV request id to echo.
        id: u32,
        /// The blob id (SHA-256 of `data`).
        blob_id: Bytes,
        /// The blob.
        data: Bytes,
    },
    /// `interaction_query`: must be answered on the same-numbered response field.
    Query {
        /// Query id to echo in `InteractionResponse.id`.
        id: u32,
        /// What is asked.
        kind: QueryKind,
    },
    /// An empty `AgentServerMessage`, an unknown top-level member, or a known container (KV,
    /// exec control) with an unknown member. Skipped, never fatal.
    Unknown {
        /// Field number of the top-level member, when there was one.
        field: Option<u32>,
    },
}

/// Output of a user-initiated shell command (`ShellOutputDeltaUpdate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOutputEvent {
    /// Standard output chunk.
    Stdout(String),
    /// Standard error chunk.
    Stderr(String),
    /// The command exited.
    Exit {
        /// Exit code.
        code: u32,
        /// Final working directory.
        cwd: String,
        /// Whether it was aborted.
        aborted: bool,
    },
    /// The command started.
    Start,
    /// An event this schema does not know.
    Unknown,
}

/// Optional per-turn token totals of `turn_ended` (authoritative when present, §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnTotals {
    /// Input tokens, cached input included.
    pub input_tokens: Option<i64>,
    /// Output tokens.
    pub output_tokens: Option<i64>,
    /// Input tokens read from cache.
    pub cache_read_tokens: Option<i64>,
    /// Input tokens written to cache.
    pub cache_write_tokens: Option<i64>,
    /// Field 5, sent by newer servers only (not in SDK 1.0.18), recovered from the raw bytes.
    pub reasoning_tokens: Option<i64>,
}

/// Every `InteractionQuery` kind (§5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// `web_search_request_query = 2`.
    WebSearch,
    /// `ask_question_interaction_query = 3`.
    AskQuestion,
    /// `switch_mode_request_query = 4`.
    SwitchMode,
    /// `create_plan_request_query = 7`.
    CreatePlan,
    /// `setup_vm_environment_args = 8`.
    SetupVmEnvironment,
    /// `web_fetch_request_query = 9`.
    WebFetch,
    /// `pr_management_request_query = 10`.
    PrManagement,
    /// `mcp_auth_request_query = 11`.
    McpAuth,
    /// `generate_image_request_query = 12`.
    GenerateImage,
    /// `replace_env_args = 13`.
    ReplaceEnv,
    /// A query this schema does not know; `field` is 0 when the query named no kind at all.
    Unknown {
        /// Field number of the member in `InteractionQuery`.
        field: u32,
    },
}

impl QueryKind {
    /// The field number of the query in `InteractionQuery`, which is also the field of its
    /// answer in `InteractionResponse`.
    pub fn field(self) -> u32 {
        match self {
            Self::WebSearch => 2,
            Self::AskQuestion => 3,
            Self::SwitchMode => 4,
            Self::CreatePlan => 7,
            Self::SetupVmEnvironment => 8,
            Self::WebFetch => 9,
            Self::PrManagement => 10,
            Self::McpAuth => 11,
            Self::GenerateImage => 12,
            Self::ReplaceEnv => 13,
            Self::Unknown { field } => field,
        }
    }
}

/// Decodes one `AgentServerMessage` (the payload of one envelope) into its event.
pub fn decode_server_message(payload: Bytes) -> Result<ServerEvent, DecodeError> {
    let raw = payload.clone();
    let msg = pb::AgentServerMessage::decode(payload).map_err(DecodeError::ServerMessage)?;
    Ok(match msg.message {
        None => ServerEvent::Unknown {
            field: wire::last_unknown_field(&raw, &[], false),
        },
        Some(Top::InteractionUpdate(u)) => interaction_update(u, &raw),
        Some(Top::ExecServerMessage(e)) => ServerEvent::Exec(exec::exec_request(*e, &raw)),
        Some(Top::ExecServerControlMessage(c)) => match c.message {
            Some(pb::exec_server_control_message::Message::Abort(a)) => {
                ServerEvent::ExecAbort { id: a.id }
            }
            None => ServerEvent::Unknown { field: Some(5) },
        },
        Some(Top::ConversationCheckpointUpdate(state)) => ServerEvent::Checkpoint(state),
        Some(Top::KvServerMessage(kv)) => match kv.message {
            Some(pb::kv_server_message::Message::GetBlobArgs(g)) => ServerEvent::GetBlob {
                id: kv.id,
                blob_id: g.blob_id,
            },
            Some(pb::kv_server_message::Message::SetBlobArgs(s)) => ServerEvent::SetBlob {
                id: kv.id,
                blob_id: s.blob_id,
                data: s.blob_data,
            },
            None => ServerEvent::Unknown { field: Some(4) },
        },
        Some(Top::InteractionQuery(q)) => ServerEvent::Query {
            id: q.id,
            kind: query_kind(q.query, &raw),
        },
    })
}

fn query_kind(q: Option<pb::interaction_query::Query>, raw: &[u8]) -> QueryKind {
    use pb::interaction_query::Query as Q;
    match q {
        Some(Q::WebSearchRequestQuery(_)) => QueryKind::WebSearch,
        Some(Q::AskQuestionInteractionQuery(_)) => QueryKind::AskQuestion,
        Some(Q::SwitchModeRequestQuery(_)) => QueryKind::SwitchMode,
        Some(Q::CreatePlanRequestQuery(_)) => QueryKind::CreatePlan,
        Some(Q::SetupVmEnvironmentArgs(_)) => QueryKind::SetupVmEnvironment,
        Some(Q::WebFetchRequestQuery(_)) => QueryKind::WebFetch,
        Some(Q::PrManagementRequestQuery(_)) => QueryKind::PrManagement,
        Some(Q::McpAuthRequestQuery(_)) => QueryKind::McpAuth,
        Some(Q::GenerateImageRequestQuery(_)) => QueryKind::GenerateImage,
        Some(Q::ReplaceEnvArgs(_)) => QueryKind::ReplaceEnv,
        None => QueryKind::Unknown {
            field: wire::submessages(raw, 7)
                .filter_map(|q| wire::last_unknown_field(q, &[1], true))
                .last()
                .unwrap_or(0),
        },
    }
}

fn interaction_update(u: pb::InteractionUpdate, raw: &[u8]) -> ServerEvent {
    let Some(m) = u.message else {
        let field = wire::submessages(raw, 1)
            .filter_map(|iu| wire::last_unknown_field(iu, &[], false))
            .last();
        return ServerEvent::UnknownUpdate { field };
    };
    match m {
        Iu::TextDelta(t) => ServerEvent::TextDelta(t.text),
        Iu::ThinkingDelta(t) => ServerEvent::ThinkingDelta {
            text: t.text,
            style: t.thinking_style,
        },
        Iu::ThinkingCompleted(t) => ServerEvent::ThinkingCompleted {
            duration_ms: t.thinking_duration_ms,
        },
        Iu::PartialToolCall(p) => ServerEvent::PartialToolCall(tool::partial(*p, raw)),
        Iu::ToolCallDelta(d) => ServerEvent::ToolCallDelta {
            call_id: d.call_id,
            model_call_id: d.model_call_id,
            kind: tool::delta_kind(d.tool_call_delta, raw),
        },
        Iu::ToolCallStarted(s) => ServerEvent::ToolCallStarted(tool::update(
            s.call_id,
            s.model_call_id,
            s.tool_call,
            raw,
            2,
        )),
        Iu::ToolCallCompleted(c) => ServerEvent::ToolCallCompleted(tool::update(
            c.call_id,
            c.model_call_id,
            c.tool_call,
            raw,
            3,
        )),
        Iu::UserMessageAppended(a) => {
            let m = a.user_message.unwrap_or_default();
            ServerEvent::UserMessageAppended {
                text: m.text,
                message_id: m.message_id,
            }
        }
        Iu::TokenDelta(t) => ServerEvent::TokenDelta { tokens: t.tokens },
        Iu::Summary(s) => ServerEvent::Summary(s.summary),
        Iu::SummaryStarted(_) => ServerEvent::SummaryStarted,
        Iu::SummaryCompleted(s) => ServerEvent::SummaryCompleted {
            hook_message: s.hook_message,
        },
        Iu::ShellOutputDelta(s) => ServerEvent::ShellOutput(shell_output(s)),
        Iu::Heartbeat(_) => ServerEvent::Heartbeat,
        Iu::TurnEnded(t) => ServerEvent::TurnEnded(TurnTotals {
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cache_read_tokens: t.cache_read_tokens,
            cache_write_tokens: t.cache_write_tokens,
            reasoning_tokens: wire::nested(raw, &[1, 14])
                .and_then(|b| wire::last_varint(b, 5))
                // int64 on the wire: two's complement in a u64 varint.
                .map(|v| i64::from_ne_bytes(v.to_ne_bytes())),
        }),
        Iu::StepStarted(s) => ServerEvent::StepStarted { step_id: s.step_id },
        Iu::StepCompleted(s) => ServerEvent::StepCompleted {
            step_id: s.step_id,
            duration_ms: s.step_duration_ms,
        },
        Iu::PromptSuggestion(p) => ServerEvent::PromptSuggestion(p.suggestion),
        Iu::PostRequestPrompt(p) => ServerEvent::PostRequestPrompt {
            title: p.title,
            message: p.message,
            button_label: p.button_label,
            button_url: p.button_url,
        },
        Iu::ActiveBranchChange(a) => ServerEvent::ActiveBranchChange {
            path: a.path,
            branch_name: a.branch_name,
        },
        Iu::FeedbackRequest(f) => ServerEvent::FeedbackRequest {
            request_id: f.request_id,
            canonical_model_name: f.canonical_model_name,
        },
    }
}

fn shell_output(s: pb::ShellOutputDeltaUpdate) -> ShellOutputEvent {
    use pb::shell_output_delta_update::Event;
    match s.event {
        Some(Event::Stdout(o)) => ShellOutputEvent::Stdout(o.data),
        Some(Event::Stderr(e)) => ShellOutputEvent::Stderr(e.data),
        Some(Event::Exit(x)) => ShellOutputEvent::Exit {
            code: x.code,
            cwd: x.cwd,
            aborted: x.aborted,
        },
        Some(Event::Start(_)) => ShellOutputEvent::Start,
        None => ShellOutputEvent::Unknown,
    }
}
