//! A tiny agent client written directly against the proto types, shared by the sim's tests.
//!
//! [`ClientRun`] is transport-agnostic: feed it the bytes of a run's response
//! ([`ClientRun::handle_server_bytes`]) and send upstream the `AgentClientMessage`s it returns.
//! It answers the request context, acknowledges `set_blob`s into a [`BlobStore`] that survives
//! across turns, answers `get_blob`s from it, collects text/thinking/tool calls/checkpoints and
//! the end-stream. MCP calls are held for the test to answer ([`ClientRun::answer_mcp`]) unless
//! an auto-answer is configured; native execs follow [`NativePolicy`].
//!
//! [`Harness`] drives an in-process [`Sim`] with simulated time over either transport
//! (`Run` envelopes, or `RunSSE` + `BidiAppend`). A loopback test can reuse [`ClientRun`] and
//! write the same messages to a socket instead.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use cursorpool_core::connect::end_stream::{EndStream, parse as parse_end_stream};
use cursorpool_core::connect::envelope::{EnvelopeDecoder, Frame, encode_proto};
use cursorpool_core::update::json::{json_to_value, value_to_json};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Cm;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_client_message::Message as Res;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use cursorpool_sim::model::{RunOutput, SimConfig};
use prost::Message as _;
use sha2::{Digest, Sha256};

mod harness;
#[allow(unused_imports)] // not every test file uses the in-process harness
pub use harness::*;

/// The client's durable blob store (per conversation, across turns).
pub type BlobStore = HashMap<Bytes, Bytes>;

/// What the client does with a native exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativePolicy {
    /// Refuse it on the matching result field (what a proxy must do).
    RejectRightField,
    /// Refuse it on a wrong field (`shell_result` for everything; `read_result` for shell).
    RejectWrongField,
    /// Hold it (never answer).
    Hold,
}

/// Client behaviour knobs.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Tools returned in the request context.
    pub tools: Vec<pb::McpToolDefinition>,
    /// `RequestContext.cloud_rule`.
    pub cloud_rule: Option<String>,
    /// Answer `request_context_args`.
    pub answer_request_context: bool,
    /// Acknowledge `set_blob_args` (and store the blob).
    pub ack_sets: bool,
    /// Answer `set_blob_args` with an error instead.
    pub fail_sets: bool,
    /// Answer `get_blob_args` from the store (missing → empty result).
    pub answer_gets: bool,
    /// Auto-answer MCP calls with `echo: <args json>` text.
    pub auto_mcp: bool,
    /// Native exec handling.
    pub native: NativePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            cloud_rule: None,
            answer_request_context: true,
            ack_sets: true,
            fail_sets: false,
            answer_gets: true,
            auto_mcp: false,
            native: NativePolicy::RejectRightField,
        }
    }
}

/// Everything seen on one run's response.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Concatenated `text_delta`s.
    pub text: String,
    /// Concatenated `thinking_delta`s.
    pub thinking: String,
    /// Every `AgentServerMessage` in order.
    pub messages: Vec<pb::AgentServerMessage>,
    /// Heartbeats received.
    pub heartbeats: usize,
    /// `token_delta` sum.
    pub token_deltas: i64,
    /// `turn_ended`, if seen.
    pub turn_ended: Option<pb::TurnEndedUpdate>,
    /// Index in `messages` of `turn_ended`.
    pub turn_ended_at: Option<usize>,
    /// Every checkpoint (raw bytes) with its index in `messages`.
    pub checkpoints: Vec<(usize, Bytes)>,
    /// Every MCP call received (exec id, args).
    pub mcp_calls: Vec<(u32, pb::McpArgs)>,
    /// Every native exec received (exec id, args).
    pub native_execs: Vec<(u32, Args)>,
    /// `tool_call_started` call ids.
    pub started: Vec<String>,
    /// `tool_call_completed` updates.
    pub completed: Vec<pb::ToolCallCompletedUpdate>,
    /// `partial_tool_call` updates.
    pub partials: usize,
    /// KV `get_blob_args` received.
    pub gets: usize,
    /// KV `set_blob_args` received.
    pub sets: usize,
    /// The end-stream, parsed.
    pub end: Option<EndStream>,
    /// Raw end-stream JSON.
    pub end_json: Option<String>,
    /// A transport-level end (`Reset`, `GoAway`, `DropConnection`).
    pub transport_end: Option<RunOutput>,
    /// The response ended (`Finished`).
    pub finished: bool,
    /// Response bytes received.
    pub bytes: usize,
}

impl Transcript {
    /// The last checkpoint (the state to keep).
    pub fn last_checkpoint(&self) -> Option<Bytes> {
        self.checkpoints.last().map(|(_, b)| b.clone())
    }

    /// The end-stream error code, if the stream ended with an error.
    pub fn error_code(&self) -> Option<&'static str> {
        self.end
            .as_ref()
            .and_then(|e| e.error.as_ref())
            .map(|e| e.code.as_str())
    }
}

/// The client half of one run.
#[derive(Debug)]
pub struct ClientRun {
    /// Behaviour.
    pub policy: Policy,
    /// What was seen.
    pub t: Transcript,
    decoder: EnvelopeDecoder,
    /// MCP calls not answered yet (exec id, args).
    pub pending_mcp: Vec<(u32, pb::McpArgs)>,
}

impl ClientRun {
    /// A client with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            t: Transcript::default(),
            decoder: EnvelopeDecoder::default(),
            pending_mcp: Vec::new(),
        }
    }

    /// Bytes of the run's response; returns the replies to send upstream, in order.
    pub fn handle_server_bytes(
        &mut self,
        data: &[u8],
        store: &mut BlobStore,
    ) -> Vec<pb::AgentClientMessage> {
        self.t.bytes += data.len();
        self.decoder.handle_bytes(data);
        let mut out = Vec::new();
        while let Some(frame) = self.decoder.poll_frame().expect("well-formed envelopes") {
            match frame {
                Frame::Message(b) => {
                    let m = pb::AgentServerMessage::decode(b).expect("AgentServerMessage");
                    self.handle_message(m, store, &mut out);
                }
                Frame::EndStream(json) => {
                    self.t.end_json = Some(String::from_utf8_lossy(&json).into_owned());
                    self.t.end = Some(parse_end_stream(&json).expect("end-stream JSON"));
                }
            }
        }
        out
    }

    fn handle_message(
        &mut self,
        m: pb::AgentServerMessage,
        store: &mut BlobStore,
        out: &mut Vec<pb::AgentClientMessage>,
    ) {
        let idx = self.t.messages.len();
        self.t.messages.push(m.clone());
        match m.message {
            Some(Sm::InteractionUpdate(u)) => match u.message {
                Some(Iu::TextDelta(d)) => self.t.text.push_str(&d.text),
                Some(Iu::ThinkingDelta(d)) => self.t.thinking.push_str(&d.text),
                Some(Iu::Heartbeat(_)) => self.t.heartbeats += 1,
                Some(Iu::TokenDelta(d)) => self.t.token_deltas += i64::from(d.tokens),
                Some(Iu::TurnEnded(e)) => {
                    self.t.turn_ended = Some(e);
                    self.t.turn_ended_at = Some(idx);
                }
                Some(Iu::ToolCallStarted(s)) => self.t.started.push(s.call_id),
                Some(Iu::ToolCallCompleted(c)) => self.t.completed.push(*c),
                Some(Iu::PartialToolCall(_)) => self.t.partials += 1,
                _ => {}
            },
            Some(Sm::ConversationCheckpointUpdate(b)) => self.t.checkpoints.push((idx, b)),
            Some(Sm::KvServerMessage(k)) => self.handle_kv(*k, store, out),
            Some(Sm::ExecServerMessage(e)) => self.handle_exec(*e, out),
            _ => {}
        }
    }

    fn handle_kv(
        &mut self,
        k: pb::KvServerMessage,
        store: &mut BlobStore,
        out: &mut Vec<pb::AgentClientMessage>,
    ) {
        use pb::kv_client_message::Message as K;
        match k.message {
            Some(pb::kv_server_message::Message::SetBlobArgs(s)) => {
                self.t.sets += 1;
                assert_eq!(
                    &Sha256::digest(&s.blob_data)[..],
                    &s.blob_id[..],
                    "blob id = SHA-256(data)"
                );
                if self.policy.fail_sets {
                    out.push(kv(
                        k.id,
                        K::SetBlobResult(pb::SetBlobResult {
                            error: Some(pb::Error {
                                message: "disk full".to_owned(),
                            }),
                        }),
                    ));
                } else if self.policy.ack_sets {
                    store.insert(s.blob_id, s.blob_data);
                    out.push(kv(
                        k.id,
                        K::SetBlobResult(pb::SetBlobResult { error: None }),
                    ));
                }
            }
            Some(pb::kv_server_message::Message::GetBlobArgs(g)) => {
                self.t.gets += 1;
                if self.policy.answer_gets {
                    out.push(kv(
                        k.id,
                        K::GetBlobResult(pb::GetBlobResult {
                            blob_data: store.get(&g.blob_id).cloned(),
                        }),
                    ));
                }
            }
            None => {}
        }
    }

    fn handle_exec(&mut self, e: pb::ExecServerMessage, out: &mut Vec<pb::AgentClientMessage>) {
        match e.message {
            Some(Args::RequestContextArgs(_)) if self.policy.answer_request_context => {
                let ctx = pb::RequestContext {
                    tools: self.policy.tools.clone(),
                    cloud_rule: self.policy.cloud_rule.clone(),
                    env: Some(pb::RequestContextEnv {
                        os_version: "linux".to_owned(),
                        shell: "bash".to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                out.push(exec_result(
                    e.id,
                    Res::RequestContextResult(pb::RequestContextResult {
                        result: Some(pb::request_context_result::Result::Success(
                            pb::RequestContextSuccess {
                                request_context: Some(ctx),
                            },
                        )),
                    }),
                ));
                out.push(stream_close(e.id));
            }
            // Held: the run waits forever for its request context.
            Some(Args::RequestContextArgs(_)) => {}
            Some(Args::McpArgs(a)) => {
                self.t.mcp_calls.push((e.id, a.clone()));
                if self.policy.auto_mcp {
                    let args: serde_json::Map<String, serde_json::Value> = a
                        .args
                        .iter()
                        .map(|(k, v)| (k.clone(), value_to_json(v)))
                        .collect();
                    let text = format!("echo: {}", serde_json::Value::Object(args));
                    out.extend(mcp_answer(e.id, mcp_text(&text)));
                } else {
                    self.pending_mcp.push((e.id, a));
                }
            }
            Some(args) => {
                self.t.native_execs.push((e.id, args.clone()));
                match self.policy.native {
                    NativePolicy::Hold => {}
                    NativePolicy::RejectRightField => {
                        out.push(exec_result(e.id, right_field_rejection(&args)));
                        out.push(stream_close(e.id));
                    }
                    NativePolicy::RejectWrongField => {
                        out.push(exec_result(e.id, wrong_field_rejection(&args)));
                        out.push(stream_close(e.id));
                    }
                }
            }
            None => {}
        }
    }

    /// Answers the pending MCP call with exec id `id`; returns the messages to send.
    pub fn answer_mcp(&mut self, id: u32, result: pb::McpResult) -> Vec<pb::AgentClientMessage> {
        self.pending_mcp.retain(|(i, _)| *i != id);
        mcp_answer(id, result)
    }
}

/// An MCP success with one text item.
pub fn mcp_text(text: &str) -> pb::McpResult {
    pb::McpResult {
        result: Some(pb::mcp_result::Result::Success(pb::McpSuccess {
            content: vec![pb::McpToolResultContentItem {
                content: Some(pb::mcp_tool_result_content_item::Content::Text(
                    pb::McpTextContent {
                        text: text.to_owned(),
                        output_location: None,
                    },
                )),
            }],
            is_error: false,
            structured_content: None,
        })),
    }
}

fn mcp_answer(id: u32, result: pb::McpResult) -> Vec<pb::AgentClientMessage> {
    vec![exec_result(id, Res::McpResult(result)), stream_close(id)]
}

/// The refusal a proxy sends for a native exec, on its matching field (spec §6.2 table).
pub fn right_field_rejection(args: &Args) -> Res {
    let reason = "not supported by this client".to_owned();
    match args {
        Args::ShellArgs(a) => Res::ShellResult(pb::ShellResult {
            result: Some(pb::shell_result::Result::Rejected(shell_rejected(
                a, &reason,
            ))),
        }),
        Args::ShellStreamArgs(a) => Res::ShellStream(pb::ShellStream {
            event: Some(pb::shell_stream::Event::Rejected(shell_rejected(
                a, &reason,
            ))),
        }),
        Args::ReadArgs(a) => Res::ReadResult(pb::ReadResult {
            result: Some(pb::read_result::Result::Rejected(pb::ReadRejected {
                path: a.path.clone(),
                reason,
            })),
        }),
        Args::WriteArgs(a) => Res::WriteResult(pb::WriteResult {
            result: Some(pb::write_result::Result::Rejected(pb::WriteRejected {
                path: a.path.clone(),
                reason,
            })),
        }),
        Args::LsArgs(a) => Res::LsResult(pb::LsResult {
            result: Some(pb::ls_result::Result::Rejected(pb::LsRejected {
                path: a.path.clone(),
                reason,
            })),
        }),
        Args::GrepArgs(_) => Res::GrepResult(pb::GrepResult {
            result: Some(pb::grep_result::Result::Error(pb::GrepError {
                error: reason,
            })),
        }),
        other => panic!("test client has no refusal for {other:?}"),
    }
}

/// A refusal on the wrong field: `read_result` for shell kinds, `shell_result` otherwise.
pub fn wrong_field_rejection(args: &Args) -> Res {
    let shell = pb::ShellResult {
        result: Some(pb::shell_result::Result::Rejected(pb::ShellRejected {
            reason: "wrong field".to_owned(),
            ..Default::default()
        })),
    };
    match args {
        Args::ShellArgs(_) => Res::ReadResult(pb::ReadResult::default()),
        _ => Res::ShellResult(shell),
    }
}

fn shell_rejected(a: &pb::ShellArgs, reason: &str) -> pb::ShellRejected {
    pb::ShellRejected {
        command: a.command.clone(),
        working_directory: a.working_directory.clone(),
        reason: reason.to_owned(),
        is_readonly: false,
    }
}

fn kv(id: u32, m: pb::kv_client_message::Message) -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::KvClientMessage(pb::KvClientMessage {
            id,
            message: Some(m),
        })),
    }
}

/// `exec_client_message{id, result}` (no `exec_id`: the SDK never echoes it, §10.1).
pub fn exec_result(id: u32, r: Res) -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::ExecClientMessage(pb::ExecClientMessage {
            id,
            exec_id: String::new(),
            local_execution_time_ms: Some(1),
            message: Some(r),
        })),
    }
}

/// `exec_client_control_message{stream_close{id}}`.
pub fn stream_close(id: u32) -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::ExecClientControlMessage(pb::ExecClientControlMessage {
            message: Some(pb::exec_client_control_message::Message::StreamClose(
                pb::ExecClientStreamClose { id },
            )),
        })),
    }
}

/// `client_heartbeat{}`.
pub fn heartbeat() -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::ClientHeartbeat(pb::ClientHeartbeat {})),
    }
}

/// `conversation_action{cancel_action}`.
pub fn cancel() -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::ConversationAction(pb::ConversationAction {
            action: Some(pb::conversation_action::Action::CancelAction(
                pb::CancelAction {
                    reason: "user".to_owned(),
                },
            )),
            triggering_auth_id: None,
        })),
    }
}

/// A tool declaration `<server>-<name>` with an object schema.
pub fn tool(server: &str, name: &str) -> pb::McpToolDefinition {
    pb::McpToolDefinition {
        name: format!("{server}-{name}"),
        provider_identifier: server.to_owned(),
        tool_name: name.to_owned(),
        description: format!("the {name} tool"),
        input_schema: bytes::Bytes::from(prost::Message::encode_to_vec(&json_to_value(
            &serde_json::json!({"type": "object"}),
        ))),
    }
}

/// A `run_request` with `text`, replaying `state` (empty = new conversation) and the blobs of
/// `store` as `pre_fetched_blobs` when `prefetch`.
pub fn run_request(
    text: &str,
    state: Option<Bytes>,
    tools: &[pb::McpToolDefinition],
    model: &str,
    prefetch: &[pb::PreFetchedBlob],
) -> pb::AgentClientMessage {
    pb::AgentClientMessage {
        message: Some(Cm::RunRequest(pb::AgentRunRequest {
            conversation_state: state,
            action: Some(pb::ConversationAction {
                action: Some(pb::conversation_action::Action::UserMessageAction(
                    pb::UserMessageAction {
                        user_message: Some(pb::UserMessage {
                            text: text.to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )),
                triggering_auth_id: None,
            }),
            requested_model: Some(pb::RequestedModel {
                model_id: model.to_owned(),
                ..Default::default()
            }),
            mcp_tools: Some(pb::McpTools {
                mcp_tools: tools.to_vec(),
            }),
            conversation_id: Some("conv-1".to_owned()),
            pre_fetched_blobs: prefetch.to_vec(),
            ..Default::default()
        })),
    }
}

/// One envelope holding `m`.
pub fn envelope(m: &pb::AgentClientMessage) -> Bytes {
    let mut b = BytesMut::new();
    encode_proto(m, &mut b).expect("small message");
    b.freeze()
}

/// Request headers of a stream or unary call.
pub fn headers(token: &str, content_type: &str, request_id: Option<&str>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("content-type", content_type.parse().expect("header"));
    h.insert("connect-protocol-version", "1".parse().expect("header"));
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    if let Some(r) = request_id {
        h.insert("x-request-id", r.parse().expect("header"));
    }
    h
}

/// Decodes a checkpoint.
pub fn decode_state(b: &Bytes) -> pb::ConversationStateStructure {
    pb::ConversationStateStructure::decode(b.clone()).expect("ConversationStateStructure")
}

/// A config with accounts `a` (key `key-a`) and `b` (key `key-b`), 4-char chunks.
pub fn config() -> SimConfig {
    use cursorpool_sim::model::{AccountConfig, Quota};
    SimConfig {
        seed: 7,
        accounts: vec![
            AccountConfig {
                label: "a".to_owned(),
                api_key: "key-a".to_owned(),
                quota: Quota::default(),
            },
            AccountConfig {
                label: "b".to_owned(),
                api_key: "key-b".to_owned(),
                quota: Quota::default(),
            },
        ],
        chunk_chars: 16,
        ..SimConfig::default()
    }
}
