//! Playing one turn: the brain's plan turned into a queue of operations (deltas, blob writes,
//! execs, waits, checkpoints) that [`Run::advance`] executes as far as the client's answers
//! and the pacing clock allow.
//!
//! Order within a turn (spec §6.1, §6.2, §9.10–9.14):
//!
//! 1. `set_blob` the system prompt JSON (new conversations) and the `UserMessage`;
//! 2. thinking deltas + `thinking_completed` (if asked), a thinking step blob;
//! 3. per round of tool calls: intro text, `partial_tool_call` + `tool_call_started` per MCP
//!    call, every exec back-to-back, the in-progress turn blob, an intermediate checkpoint with
//!    `pending_tool_calls` (if still waiting once the blobs are acknowledged), the wait for every
//!    result, `tool_call_completed` + a tool step blob per call;
//! 4. the answer text with `token_delta`s, its step blob and the turn blob; every set
//!    acknowledged; `turn_ended`; the final checkpoint; end-stream `{}`.

use std::time::Instant;

use bytes::Bytes;
use cursorpool_core::update::json::json_to_value;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use prost::Message as _;

use super::{Env, PendingExec, Request, Run};
use crate::model::brain::{self, AnswerInput, History, Plan, PlannedCall};
use crate::model::history::{BlobId, blob_id, tool_result_text};
use crate::model::native;

/// The system prompt the sim stores as the first root prompt message of a new conversation.
pub(crate) const SIM_SYSTEM_PROMPT: &str = "You are cursor-sim, a simulated Cursor agent.";

/// Context window the sim reports in `token_details.max_tokens`.
const MAX_TOKENS: u32 = 200_000;

/// One queued operation of a turn.
#[derive(Debug)]
pub(super) enum Op {
    /// Send a message; `paced` ones are spaced by `token_interval`.
    Send { msg: Box<Sm>, paced: bool },
    /// Store a blob in the client.
    SetBlob { data: Bytes, role: BlobRole },
    /// Block until every `set_blob` is acknowledged.
    WaitSets,
    /// Send the execs of the current round.
    IssueRound,
    /// Emit a checkpoint (an intermediate one only while calls are pending).
    Checkpoint { last: bool },
    /// Block until every call of the round has a result.
    WaitCalls,
    /// Report the round's results and plan what follows.
    AfterRound,
    /// `turn_ended`, the final checkpoint, end-stream.
    Finish,
}

/// Where a stored blob goes in the conversation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlobRole {
    Root,
    UserMessage,
    Step,
    InProgressTurn,
    Turn,
}

/// The result of one call.
#[derive(Debug, Clone)]
enum CallResult {
    Mcp(pb::McpResult),
    Text(String),
}

/// One call of the current round.
#[derive(Debug, Clone)]
struct Call {
    planned: PlannedCall,
    call_id: String,
    args: Option<pb::McpArgs>,
    result: Option<CallResult>,
}

/// The turn being played.
#[derive(Debug)]
pub(crate) struct Turn {
    history: History,
    user: pb::UserMessage,
    user_text: String,
    req: Request,
    plan: Plan,
    round: usize,
    calls: Vec<Call>,
    results: Vec<(String, String)>,
    state: pb::ConversationStateStructure,
    root_ids: Vec<BlobId>,
    user_msg_id: BlobId,
    steps: Vec<BlobId>,
    current_turn: Option<BlobId>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Turn {
    /// A turn answering `user` after `history`, on top of `state` (its last turn already
    /// removed for a resume).
    pub(super) fn new(
        history: History,
        user: pb::UserMessage,
        user_text: String,
        req: Request,
        plan: Plan,
        state: pb::ConversationStateStructure,
    ) -> Self {
        let mut input = brain::tokens(&user_text) + brain::tokens(SIM_SYSTEM_PROMPT);
        for t in history
            .user_messages
            .iter()
            .chain(&history.assistant_messages)
            .chain(&history.tool_results)
            .chain(&history.system)
        {
            input += brain::tokens(t);
        }
        if let Some(r) = &req.cloud_rule {
            input += brain::tokens(r);
        }
        Self {
            history,
            user,
            user_text,
            req,
            plan,
            round: 0,
            calls: Vec::new(),
            results: Vec::new(),
            root_ids: state.root_prompt_messages_json.clone(),
            state,
            user_msg_id: BlobId::new(),
            steps: Vec::new(),
            current_turn: None,
            input_tokens: input,
            output_tokens: 0,
        }
    }

    /// The result field number the call in `slot` must be answered on.
    pub(super) fn expected_field(&self, slot: usize) -> u32 {
        match self.calls.get(slot).map(|c| &c.planned) {
            Some(PlannedCall::Native { kind, .. }) => kind.field,
            _ => 11,
        }
    }

    /// The native kind name of the call in `slot` (for counters).
    pub(super) fn native_name(&self, slot: usize) -> String {
        self.calls
            .get(slot)
            .map(|c| c.planned.display_name())
            .unwrap_or_default()
    }

    pub(super) fn set_mcp_result(&mut self, slot: usize, r: pb::McpResult) {
        if let Some(c) = self.calls.get_mut(slot) {
            c.result = Some(CallResult::Mcp(r));
        }
    }

    pub(super) fn set_text_result(&mut self, slot: usize, text: String) {
        if let Some(c) = self.calls.get_mut(slot) {
            c.result = Some(CallResult::Text(text));
        }
    }

    /// `turn_ended` with the totals so far.
    pub(super) fn turn_ended(&self) -> pb::TurnEndedUpdate {
        pb::TurnEndedUpdate {
            input_tokens: Some(self.total_input() as i64),
            output_tokens: Some(self.output_tokens as i64),
            cache_read_tokens: Some(0),
            cache_write_tokens: Some(0),
        }
    }

    fn total_input(&self) -> u64 {
        self.input_tokens
            + self
                .results
                .iter()
                .map(|(_, t)| brain::tokens(t))
                .sum::<u64>()
    }

    fn pending_call_ids(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| c.result.is_none())
            .map(|c| c.call_id.clone())
            .collect()
    }

    fn turn_blob(&self) -> Bytes {
        let t = pb::ConversationTurnStructure {
            turn: Some(
                pb::conversation_turn_structure::Turn::AgentConversationTurn(
                    pb::AgentConversationTurnStructure {
                        user_message: self.user_msg_id.clone(),
                        steps: self.steps.clone(),
                        request_id: (!self.req.request_id.is_empty())
                            .then(|| self.req.request_id.clone()),
                        encrypted_model: None,
                    },
                ),
            ),
        };
        Bytes::from(t.encode_to_vec())
    }

    fn checkpoint(&self, last: bool) -> Bytes {
        let mut s = self.state.clone();
        s.root_prompt_messages_json = self.root_ids.clone();
        s.turns.extend(self.current_turn.clone());
        s.pending_tool_calls = if last {
            Vec::new()
        } else {
            self.pending_call_ids()
        };
        let used = self.total_input() + self.output_tokens;
        s.token_details = Some(pb::ConversationTokenDetails {
            used_tokens: u32::try_from(used).unwrap_or(u32::MAX),
            max_tokens: MAX_TOKENS,
        });
        Bytes::from(s.encode_to_vec())
    }
}

impl Run {
    /// Queues the beginning of the turn.
    pub(super) fn start_turn(&mut self) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let mut ops = Vec::new();
        if turn.root_ids.is_empty() {
            let json = serde_json::json!({"role": "system", "content": SIM_SYSTEM_PROMPT});
            ops.push(Op::SetBlob {
                data: Bytes::from(json.to_string()),
                role: BlobRole::Root,
            });
        }
        ops.push(Op::SetBlob {
            data: Bytes::from(turn.user.encode_to_vec()),
            role: BlobRole::UserMessage,
        });
        self.ops.extend(ops);
        let think = self.turn.as_ref().is_some_and(|t| t.plan.think);
        if think {
            let text = self
                .turn
                .as_ref()
                .map(|t| brain::thinking_text(&t.history, &t.user_text))
                .unwrap_or_default();
            self.queue_text(&text, true);
            self.queue_msg(
                Iu::ThinkingCompleted(pb::ThinkingCompletedUpdate {
                    thinking_duration_ms: 1,
                }),
                false,
            );
            self.queue_step(pb::conversation_step::Message::ThinkingMessage(
                pb::ThinkingMessage {
                    text,
                    duration_ms: 1,
                },
            ));
        }
        self.queue_next_segment();
    }

    /// Queues the next round of calls, or the answer when no round is left.
    fn queue_next_segment(&mut self) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let Some(round) = turn.plan.rounds.get(turn.round).cloned() else {
            self.queue_answer();
            return;
        };
        turn.round += 1;
        turn.calls = round
            .into_iter()
            .map(|planned| Call {
                planned,
                call_id: String::new(),
                args: None,
                result: None,
            })
            .collect();
        let intro = brain::round_intro(
            &turn
                .calls
                .iter()
                .map(|c| c.planned.clone())
                .collect::<Vec<_>>(),
        );
        self.queue_text(&intro, false);
        self.queue_step(pb::conversation_step::Message::AssistantMessage(
            pb::AssistantMessage { text: intro },
        ));
        let n = self.turn.as_ref().map_or(0, |t| t.calls.len());
        for slot in 0..n {
            let call_id = format!("toolu_sim_{}", self.rng.hex(12));
            let Some(turn) = self.turn.as_mut() else {
                return;
            };
            let call = &mut turn.calls[slot];
            call.call_id = call_id.clone();
            let PlannedCall::Mcp { def, args } = &call.planned else {
                continue;
            };
            let mcp = pb::McpArgs {
                name: def.name.clone(),
                args: args
                    .iter()
                    .map(|(k, v)| (k.clone(), json_to_value(v)))
                    .collect(),
                tool_call_id: call_id.clone(),
                provider_identifier: def.provider_identifier.clone(),
                tool_name: def.tool_name.clone(),
                smart_mode_approval_only: false,
                skip_approval: false,
            };
            let args_json = serde_json::Value::Object(args.clone()).to_string();
            call.args = Some(mcp.clone());
            let header = pb::McpArgs {
                args: Default::default(),
                ..mcp.clone()
            };
            for chunk in brain::chunks(&args_json, self.chunk_chars) {
                self.queue_msg(
                    Iu::PartialToolCall(Box::new(pb::PartialToolCallUpdate {
                        call_id: call_id.clone(),
                        tool_call: Some(mcp_tool_call(&call_id, header.clone(), None)),
                        args_text_delta: chunk,
                        model_call_id: call_id.clone(),
                    })),
                    true,
                );
            }
            self.queue_msg(
                Iu::ToolCallStarted(Box::new(pb::ToolCallStartedUpdate {
                    call_id: call_id.clone(),
                    tool_call: Some(mcp_tool_call(&call_id, mcp, None)),
                    model_call_id: call_id,
                })),
                false,
            );
        }
        self.ops.push_back(Op::IssueRound);
        self.ops.push_back(Op::SetBlob {
            data: Bytes::new(),
            role: BlobRole::InProgressTurn,
        });
        self.ops.push_back(Op::WaitSets);
        self.ops.push_back(Op::Checkpoint { last: false });
        self.ops.push_back(Op::WaitCalls);
        self.ops.push_back(Op::AfterRound);
    }

    /// Queues the answer and the end of the turn.
    fn queue_answer(&mut self) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        let text = brain::answer(
            &AnswerInput {
                history: &turn.history,
                user_text: &turn.user_text,
                results: &turn.results,
                tools: turn.req.tools.len(),
                model: &turn.req.model,
                plan: &turn.plan,
                system: turn.req.cloud_rule.as_deref().or_else(|| {
                    turn.history
                        .system
                        .iter()
                        .map(String::as_str)
                        .find(|s| *s != SIM_SYSTEM_PROMPT)
                }),
            },
            &mut self.rng,
        );
        self.queue_text(&text, false);
        self.queue_step(pb::conversation_step::Message::AssistantMessage(
            pb::AssistantMessage { text },
        ));
        self.ops.push_back(Op::SetBlob {
            data: Bytes::new(),
            role: BlobRole::Turn,
        });
        self.ops.push_back(Op::WaitSets);
        self.ops.push_back(Op::Finish);
    }

    /// Queues `text` as paced deltas (thinking or text with `token_delta`s).
    fn queue_text(&mut self, text: &str, thinking: bool) {
        for chunk in brain::chunks(text, self.chunk_chars) {
            let tokens = brain::tokens(&chunk);
            if let Some(t) = self.turn.as_mut() {
                t.output_tokens += tokens;
            }
            if thinking {
                self.queue_msg(
                    Iu::ThinkingDelta(pb::ThinkingDeltaUpdate {
                        text: chunk,
                        thinking_style: None,
                    }),
                    true,
                );
            } else {
                self.queue_msg(Iu::TextDelta(pb::TextDeltaUpdate { text: chunk }), true);
                self.queue_msg(
                    Iu::TokenDelta(pb::TokenDeltaUpdate {
                        tokens: i32::try_from(tokens).unwrap_or(i32::MAX),
                    }),
                    false,
                );
            }
        }
    }

    fn queue_msg(&mut self, u: Iu, paced: bool) {
        self.ops.push_back(Op::Send {
            msg: Box::new(Sm::InteractionUpdate(pb::InteractionUpdate {
                message: Some(u),
            })),
            paced,
        });
    }

    fn queue_step(&mut self, m: pb::conversation_step::Message) {
        let step = pb::ConversationStep { message: Some(m) };
        self.ops.push_back(Op::SetBlob {
            data: Bytes::from(step.encode_to_vec()),
            role: BlobRole::Step,
        });
    }

    /// Whether the next operation is a paced message (for [`Run::timeout`]).
    pub(super) fn front_is_paced(&self) -> bool {
        matches!(self.ops.front(), Some(Op::Send { paced: true, .. }))
            && !self.token_interval.is_zero()
    }

    /// Executes queued operations until one blocks (on the client or on the clock).
    pub(super) fn advance(&mut self, now: Instant, env: &mut Env<'_>) {
        while self.phase == super::Phase::Generating && self.shaper.accepts() {
            let Some(op) = self.ops.front() else {
                break;
            };
            match op {
                Op::Send { paced: true, .. }
                    if !self.token_interval.is_zero()
                        && self.pace_ready.is_some_and(|r| now < r) =>
                {
                    break;
                }
                Op::WaitSets if !self.sets.is_empty() => break,
                Op::WaitCalls
                    if self
                        .turn
                        .as_ref()
                        .is_some_and(|t| !t.pending_call_ids().is_empty()) =>
                {
                    self.shaper.waiting_for_client();
                    break;
                }
                _ => {}
            }
            let Some(op) = self.ops.pop_front() else {
                break;
            };
            match op {
                Op::Send { msg, paced } => {
                    if paced {
                        self.pace_ready = Some(now + self.token_interval);
                    }
                    self.emit(*msg);
                }
                Op::SetBlob { data, role } => self.run_set_blob(data, role, env),
                Op::WaitSets | Op::WaitCalls => {}
                Op::IssueRound => self.issue_round(env),
                Op::Checkpoint { last } => self.emit_checkpoint(last, env),
                Op::AfterRound => self.after_round(env),
                Op::Finish => self.finish(env),
            }
        }
    }

    fn run_set_blob(&mut self, data: Bytes, role: BlobRole, env: &mut Env<'_>) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        let data = match role {
            BlobRole::InProgressTurn | BlobRole::Turn => turn.turn_blob(),
            _ => data,
        };
        let id = self.set_blob(data, env);
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        match role {
            BlobRole::Root => turn.root_ids.push(id),
            BlobRole::UserMessage => turn.user_msg_id = id,
            BlobRole::Step => turn.steps.push(id),
            BlobRole::InProgressTurn | BlobRole::Turn => turn.current_turn = Some(id),
        }
    }

    fn issue_round(&mut self, env: &mut Env<'_>) {
        let n = self.turn.as_ref().map_or(0, |t| t.calls.len());
        for slot in 0..n {
            let Some(call) = self.turn.as_ref().map(|t| t.calls[slot].clone()) else {
                return;
            };
            let id = self.alloc_exec();
            self.execs.insert(
                id,
                PendingExec::Call {
                    slot,
                    stream: String::new(),
                    streamed: false,
                },
            );
            let args = match &call.planned {
                PlannedCall::Mcp { .. } => {
                    env.count(|c| c.tool_calls_issued += 1);
                    Args::McpArgs(call.args.clone().unwrap_or_default())
                }
                PlannedCall::Native { kind, arg } => {
                    let name = kind.name.to_owned();
                    env.count(|c| *c.native_execs_issued.entry(name).or_default() += 1);
                    native::build_args(*kind, arg, &call.call_id)
                }
            };
            self.send_exec(id, args);
        }
    }

    fn emit_checkpoint(&mut self, last: bool, env: &mut Env<'_>) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        if !last && turn.pending_call_ids().is_empty() {
            return;
        }
        let bytes = turn.checkpoint(last);
        env.produced.insert(blob_id(&bytes));
        self.emit(Sm::ConversationCheckpointUpdate(bytes));
    }

    fn after_round(&mut self, _env: &mut Env<'_>) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let calls = std::mem::take(&mut turn.calls);
        let mut msgs = Vec::new();
        let mut steps = Vec::new();
        for call in &calls {
            let name = call.planned.display_name();
            let (tool_call, text) = match (&call.planned, &call.result) {
                (PlannedCall::Mcp { .. }, Some(CallResult::Mcp(r))) => {
                    let tc = mcp_tool_call(
                        &call.call_id,
                        call.args.clone().unwrap_or_default(),
                        Some(tool_result(r)),
                    );
                    let text = tool_result_text(&tc).unwrap_or_default();
                    msgs.push(Iu::ToolCallCompleted(Box::new(
                        pb::ToolCallCompletedUpdate {
                            call_id: call.call_id.clone(),
                            tool_call: Some(tc.clone()),
                            model_call_id: call.call_id.clone(),
                        },
                    )));
                    (tc, text)
                }
                (planned, result) => {
                    let text = match result {
                        Some(CallResult::Text(t)) => t.clone(),
                        Some(CallResult::Mcp(r)) => tool_result_text(&mcp_tool_call(
                            "",
                            pb::McpArgs::default(),
                            Some(tool_result(r)),
                        ))
                        .unwrap_or_default(),
                        None => String::new(),
                    };
                    let args = match planned {
                        PlannedCall::Native { kind, arg } => pb::McpArgs {
                            name: kind.name.to_owned(),
                            tool_name: kind.name.to_owned(),
                            provider_identifier: "cursor-native".to_owned(),
                            tool_call_id: call.call_id.clone(),
                            args: [(
                                "arg".to_owned(),
                                json_to_value(&serde_json::Value::String(arg.clone())),
                            )]
                            .into_iter()
                            .collect(),
                            ..Default::default()
                        },
                        PlannedCall::Mcp { .. } => call.args.clone().unwrap_or_default(),
                    };
                    let tc = mcp_tool_call(&call.call_id, args, Some(text_result(&text)));
                    (tc, text)
                }
            };
            turn.results.push((name, text));
            steps.push(pb::conversation_step::Message::ToolCall(tool_call));
        }
        for m in msgs {
            self.emit_update(m);
        }
        for s in steps {
            self.queue_step(s);
        }
        self.queue_next_segment();
    }

    fn finish(&mut self, env: &mut Env<'_>) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        let ended = turn.turn_ended();
        let total = turn.total_input() + turn.output_tokens;
        self.emit_update(Iu::TurnEnded(ended));
        self.emit_checkpoint(true, env);
        env.count(|c| {
            c.turns_completed += 1;
            c.quota_tokens_used += total;
        });
        self.end_ok();
    }
}

fn mcp_tool_call(
    call_id: &str,
    args: pb::McpArgs,
    result: Option<pb::McpToolResult>,
) -> pb::ToolCall {
    pb::ToolCall {
        tool: Some(pb::tool_call::Tool::McpToolCall(pb::McpToolCall {
            args: Some(args),
            result,
        })),
        tool_call_id: (!call_id.is_empty()).then(|| call_id.to_owned()),
    }
}

/// `McpResult` (exec reply) → `McpToolResult` (what tool-call updates and steps carry).
fn tool_result(r: &pb::McpResult) -> pb::McpToolResult {
    use pb::mcp_result::Result as R;
    use pb::mcp_tool_result::Result as T;
    let result = match &r.result {
        Some(R::Success(s)) => T::Success(s.clone()),
        Some(R::Error(e)) => T::Error(pb::McpToolError {
            error: e.error.clone(),
            read_tool_def_reminder: String::new(),
        }),
        Some(R::Rejected(x)) => T::Rejected(x.clone()),
        Some(R::PermissionDenied(x)) => T::PermissionDenied(x.clone()),
        Some(R::ToolNotFound(x)) => T::Error(pb::McpToolError {
            error: format!("tool not found: {}", x.name),
            read_tool_def_reminder: String::new(),
        }),
        Some(R::ServerNotFound(x)) => T::Error(pb::McpToolError {
            error: format!("server not found: {}", x.name),
            read_tool_def_reminder: String::new(),
        }),
        Some(R::Approved(_)) | None => T::Success(pb::McpSuccess::default()),
    };
    pb::McpToolResult {
        result: Some(result),
    }
}

fn text_result(text: &str) -> pb::McpToolResult {
    pb::McpToolResult {
        result: Some(pb::mcp_tool_result::Result::Success(pb::McpSuccess {
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
