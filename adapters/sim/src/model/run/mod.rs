//! One streaming run (`Run` or `RunSSE`): from the `run_request` to the end-stream.
//!
//! The run waits for its `run_request`, validates it, asks for the request context
//! (`exec request_context_args`), rebuilds the history from the replayed conversation state
//! (`get_blob_args` for blobs not pre-fetched), then plays the turn the brain planned (see
//! [`turn`]): deltas, tool calls and their waits, blob writes and checkpoints. Every frame goes
//! through the run's [`Shaper`], which applies faults.

mod turn;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::envelope::{EnvelopeDecoder, Frame, encode_proto};
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Cm;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_client_message::Message as Res;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use prost::Message as _;

use super::config::SimConfig;
use super::counters::{AccountCounters, Counters};
use super::faults::{Shaper, error_end_stream, ok_end_stream};
use super::history::{BlobId, BlobKind, LoadError, Loader, blob_id};
use super::native::{StreamEvent, result_field, shell_stream_event};
use super::rng::Rng;

pub(crate) use turn::Turn;

/// What a run needs from the rest of the sim while it handles an input.
#[derive(Debug)]
pub(crate) struct Env<'a> {
    /// The run's account counters (`None` for an unauthenticated run).
    pub(crate) counters: Option<&'a mut AccountCounters>,
    /// Global counters.
    pub(crate) global: &'a mut Counters,
    /// SHA-256 of every checkpoint this sim produced (to recognise replays).
    pub(crate) produced: &'a mut BTreeSet<BlobId>,
}

impl Env<'_> {
    /// Applies `f` to the account counters, if the run has an account.
    pub(crate) fn count(&mut self, f: impl FnOnce(&mut AccountCounters)) {
        if let Some(c) = self.counters.as_deref_mut() {
            f(c);
        }
    }
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No `run_request` yet.
    AwaitRunRequest,
    /// Waiting for the request context and the history blobs.
    Preparing,
    /// Playing the turn.
    Generating,
    /// The end-stream is queued (or a fault ended the response).
    Ended,
}

/// An exec the run is waiting on.
#[derive(Debug, Clone)]
enum PendingExec {
    /// `request_context_args`.
    RequestContext,
    /// A tool call of the current round, by index.
    Call {
        slot: usize,
        /// Accumulated `shell_stream` output.
        stream: String,
        /// Whether any `shell_stream` event arrived.
        streamed: bool,
    },
}

/// The request as validated.
#[derive(Debug, Clone)]
struct Request {
    model: String,
    tools: Vec<pb::McpToolDefinition>,
    user: Option<pb::UserMessage>,
    request_id: String,
    /// `RequestContext.cloud_rule`: where proxies put the caller's system prompt.
    cloud_rule: Option<String>,
}

/// One streaming run.
#[derive(Debug)]
pub(crate) struct Run {
    /// The account (index), `None` when unauthenticated.
    pub(crate) account: Option<usize>,
    /// The `RunSSE` request id, for `BidiAppend` routing.
    pub(crate) request_id: Option<String>,
    /// `RunSSE` (body = one `BidiRequestId`) rather than `Run`.
    sse: bool,
    sse_body_seen: bool,
    decoder: EnvelopeDecoder,
    /// Output gate (faults).
    pub(crate) shaper: Shaper,
    rng: Rng,
    phase: Phase,
    next_heartbeat: Option<Instant>,
    heartbeat_interval: Duration,
    chunk_chars: usize,
    token_interval: Duration,
    request: Option<Request>,
    next_exec: u32,
    execs: BTreeMap<u32, PendingExec>,
    next_kv: u32,
    sets: BTreeMap<u32, BlobId>,
    gets: BTreeMap<u32, (BlobId, BlobKind)>,
    loader: Option<Loader>,
    context_done: bool,
    turn: Option<Turn>,
    ops: VecDeque<turn::Op>,
    pace_ready: Option<Instant>,
}

impl Run {
    /// A run opened at `now`.
    pub(crate) fn new(
        sse: bool,
        request_id: Option<String>,
        account: Option<usize>,
        shaper: Shaper,
        seed: u64,
        config: &SimConfig,
        now: Instant,
    ) -> Self {
        Self {
            account,
            request_id,
            sse,
            sse_body_seen: false,
            decoder: EnvelopeDecoder::default(),
            shaper,
            rng: Rng::new(seed),
            phase: Phase::AwaitRunRequest,
            next_heartbeat: Some(now + config.heartbeat_interval.max(Duration::from_millis(1))),
            heartbeat_interval: config.heartbeat_interval.max(Duration::from_millis(1)),
            chunk_chars: config.chunk_chars.max(1),
            token_interval: config.token_interval,
            request: None,
            next_exec: 1,
            execs: BTreeMap::new(),
            next_kv: 0,
            sets: BTreeMap::new(),
            gets: BTreeMap::new(),
            loader: None,
            context_done: false,
            turn: None,
            ops: VecDeque::new(),
            pace_ready: None,
        }
    }

    /// Whether the run has queued its end (or was ended by a fault).
    pub(crate) fn is_ended(&self) -> bool {
        self.phase == Phase::Ended || !self.shaper.accepts()
    }

    /// Ends the run at once with `err` (auth and quota failures at open).
    pub(crate) fn fail(&mut self, err: &ConnectError, env: &mut Env<'_>) {
        self.end_error(err, env);
    }

    /// Request-body bytes: envelopes of `AgentClientMessage` (`Run`) or the `BidiRequestId`
    /// envelope (`RunSSE`). Returns a `BidiRequestId` found in a `RunSSE` body.
    pub(crate) fn handle_body(
        &mut self,
        data: &[u8],
        now: Instant,
        env: &mut Env<'_>,
    ) -> Option<String> {
        env.count(|c| c.bytes_in += data.len() as u64);
        if self.is_ended() {
            return None;
        }
        self.decoder.handle_bytes(data);
        let mut sse_id = None;
        loop {
            match self.decoder.poll_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Message(payload))) => {
                    if self.sse {
                        if self.sse_body_seen {
                            continue;
                        }
                        self.sse_body_seen = true;
                        match cursorpool_proto::aiserver_v1::BidiRequestId::decode(payload) {
                            Ok(b) if !b.request_id.is_empty() => sse_id = Some(b.request_id),
                            Ok(_) => {}
                            Err(e) => {
                                let msg = format!("invalid BidiRequestId: {e}");
                                self.invalid(&msg, env);
                                break;
                            }
                        }
                    } else {
                        self.handle_client_bytes(payload, now, env);
                    }
                }
                Ok(Some(Frame::EndStream(_))) => {
                    self.invalid("clients must not send end-stream envelopes", env);
                    break;
                }
                Err(e) => {
                    self.invalid(&format!("malformed request envelope: {e}"), env);
                    break;
                }
            }
            if self.is_ended() {
                break;
            }
        }
        sse_id
    }

    /// One serialized `AgentClientMessage` (an envelope payload or a `BidiAppend`'s data).
    pub(crate) fn handle_client_bytes(&mut self, payload: Bytes, now: Instant, env: &mut Env<'_>) {
        if self.is_ended() {
            return;
        }
        match pb::AgentClientMessage::decode(payload) {
            Ok(m) => self.handle_client_message(m, now, env),
            Err(e) => self.invalid(&format!("malformed AgentClientMessage: {e}"), env),
        }
    }

    fn handle_client_message(
        &mut self,
        m: pb::AgentClientMessage,
        now: Instant,
        env: &mut Env<'_>,
    ) {
        if self.phase == Phase::AwaitRunRequest {
            match m.message {
                Some(Cm::RunRequest(r)) => self.handle_run_request(r, now, env),
                // §10.8: a retried Run arrives without its run_request.
                _ => self.invalid("first message must be a run_request", env),
            }
            return;
        }
        match m.message {
            Some(Cm::ExecClientMessage(e)) => self.handle_exec_result(e, env),
            Some(Cm::ExecClientControlMessage(c)) => self.handle_exec_control(c),
            Some(Cm::KvClientMessage(k)) => self.handle_kv(k, env),
            Some(Cm::ConversationAction(a)) => match a.action {
                Some(pb::conversation_action::Action::CancelAction(_)) => {
                    self.cancel(env);
                    return;
                }
                Some(pb::conversation_action::Action::UserMessageAction(u)) => {
                    // A queued follow-up: acknowledged, not acted upon (spec §6.6, optional).
                    self.emit_update(Iu::UserMessageAppended(Box::new(
                        pb::UserMessageAppendedUpdate {
                            user_message: u.user_message,
                        },
                    )));
                }
                _ => {}
            },
            Some(
                Cm::RunRequest(_)
                | Cm::InteractionResponse(_)
                | Cm::ClientHeartbeat(_)
                | Cm::PrewarmRequest(_),
            )
            | None => {}
        }
        self.check_ready(now, env);
        self.advance(now, env);
    }

    fn handle_run_request(&mut self, r: pb::AgentRunRequest, now: Instant, env: &mut Env<'_>) {
        let Some(state_bytes) = r.conversation_state.clone() else {
            self.invalid("Conversation state is required", env);
            return;
        };
        let Some(action) = r.action.and_then(|a| a.action) else {
            self.invalid("Action is required", env);
            return;
        };
        let mut tools = r.mcp_tools.map(|t| t.mcp_tools).unwrap_or_default();
        let user = match action {
            pb::conversation_action::Action::UserMessageAction(u) => {
                if let Some(ctx) = u.request_context {
                    merge_tools(&mut tools, ctx.tools);
                }
                Some(u.user_message.unwrap_or_default())
            }
            pb::conversation_action::Action::ResumeAction(_) => None,
            pb::conversation_action::Action::CancelAction(_) => {
                self.cancel(env);
                return;
            }
            _ => {
                self.invalid("Unsupported conversation action", env);
                return;
            }
        };
        let state = match pb::ConversationStateStructure::decode(state_bytes.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.invalid(&format!("Invalid conversation state: {e}"), env);
                return;
            }
        };
        if !state_bytes.is_empty() {
            env.count(|c| c.resumed_runs += 1);
            if env.produced.contains(&blob_id(&state_bytes)) {
                env.count(|c| c.replayed_checkpoints += 1);
            }
        }
        let model = r
            .requested_model
            .map(|m| m.model_id)
            .filter(|m| !m.is_empty())
            .or_else(|| {
                r.model_details
                    .map(|m| m.model_id)
                    .filter(|m| !m.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned());
        let loader = match Loader::new(state, &r.pre_fetched_blobs) {
            Ok(l) => l,
            Err(e) => {
                self.load_failed(&e, env);
                return;
            }
        };
        let from_prefetch = loader.from_prefetch;
        env.count(|c| c.blobs_got += from_prefetch);
        self.request = Some(Request {
            model,
            tools,
            user,
            request_id: self.request_id.clone().unwrap_or_default(),
            cloud_rule: None,
        });
        self.loader = Some(loader);
        self.phase = Phase::Preparing;
        // The request context first, as the real server does; blob reads go out alongside.
        let id = self.alloc_exec();
        self.execs.insert(id, PendingExec::RequestContext);
        self.send_exec(
            id,
            Args::RequestContextArgs(pb::RequestContextArgs::default()),
        );
        self.request_missing_blobs();
        self.check_ready(now, env);
    }

    fn request_missing_blobs(&mut self) {
        let Some(loader) = self.loader.as_mut() else {
            return;
        };
        for (blob, kind) in loader.take_missing() {
            let id = self.next_kv;
            self.next_kv += 1;
            self.gets.insert(id, (blob.clone(), kind));
            self.emit(Sm::KvServerMessage(Box::new(pb::KvServerMessage {
                id,
                message: Some(pb::kv_server_message::Message::GetBlobArgs(
                    pb::GetBlobArgs { blob_id: blob },
                )),
                span_context: None,
            })));
        }
    }

    /// Starts the turn once the request context and every history blob are in.
    fn check_ready(&mut self, now: Instant, env: &mut Env<'_>) {
        if self.phase != Phase::Preparing || !self.context_done {
            return;
        }
        let Some(loader) = self.loader.take() else {
            return;
        };
        if !loader.is_done() {
            self.loader = Some(loader);
            return;
        }
        let Some(req) = self.request.clone() else {
            return;
        };
        let resume = req.user.is_none();
        let (history, last_user) = loader.history(resume && !loader.state().turns.is_empty());
        let seen = history.user_messages.len() as u64;
        env.count(|c| c.history_turns_seen += seen);
        let user = req.user.clone().or(last_user).unwrap_or_default();
        let user_text = loader.user_text(&user);
        let mut state = loader.state().clone();
        if resume && !state.turns.is_empty() {
            state.turns.pop();
        }
        let plan = super::brain::plan(&user_text, &req.tools, &req.model);
        self.turn = Some(Turn::new(history, user, user_text, req, plan, state));
        self.phase = Phase::Generating;
        self.start_turn();
        self.advance(now, env);
    }

    fn handle_kv(&mut self, k: pb::KvClientMessage, env: &mut Env<'_>) {
        match k.message {
            Some(pb::kv_client_message::Message::SetBlobResult(r)) => {
                if self.sets.remove(&k.id).is_none() {
                    return;
                }
                if let Some(e) = r.error {
                    let err = ConnectError::new(
                        Code::Internal,
                        format!("Failed to store blob: {}", e.message),
                    );
                    self.end_error(&err, env);
                }
            }
            Some(pb::kv_client_message::Message::GetBlobResult(r)) => {
                let Some((blob, kind)) = self.gets.remove(&k.id) else {
                    return;
                };
                let Some(loader) = self.loader.as_mut() else {
                    return;
                };
                match loader.got(blob, kind, r.blob_data) {
                    Ok(()) => {
                        env.count(|c| c.blobs_got += 1);
                        self.request_missing_blobs();
                    }
                    Err(e) => self.load_failed(&e, env),
                }
            }
            None => {}
        }
    }

    fn load_failed(&mut self, e: &LoadError, env: &mut Env<'_>) {
        if matches!(e, LoadError::NotFound(_)) {
            env.count(|c| c.blobs_missing += 1);
        }
        self.end_error(&ConnectError::new(Code::Internal, e.to_string()), env);
    }

    fn handle_exec_result(&mut self, e: pb::ExecClientMessage, env: &mut Env<'_>) {
        let Some(pending) = self.execs.get(&e.id).cloned() else {
            return;
        };
        let Some(msg) = e.message else {
            // A result on a field this schema does not know: never the expected one.
            env.count(|c| c.exec_results_wrong_field += 1);
            return;
        };
        match pending {
            PendingExec::RequestContext => {
                let Res::RequestContextResult(r) = msg else {
                    env.count(|c| c.exec_results_wrong_field += 1);
                    return;
                };
                if let Some(pb::request_context_result::Result::Success(s)) = r.result
                    && let Some(ctx) = s.request_context
                    && let Some(req) = self.request.as_mut()
                {
                    merge_tools(&mut req.tools, ctx.tools);
                    if ctx.cloud_rule.is_some() {
                        req.cloud_rule = ctx.cloud_rule;
                    }
                }
                self.execs.remove(&e.id);
                self.context_done = true;
            }
            PendingExec::Call {
                slot, mut stream, ..
            } => {
                let Some(turn) = self.turn.as_mut() else {
                    return;
                };
                let expected = turn.expected_field(slot);
                if result_field(&msg) != expected {
                    env.count(|c| c.exec_results_wrong_field += 1);
                    return;
                }
                if let Res::ShellStream(s) = &msg {
                    match shell_stream_event(s) {
                        StreamEvent::Partial(t) => {
                            stream.push_str(&t);
                            self.execs.insert(
                                e.id,
                                PendingExec::Call {
                                    slot,
                                    stream,
                                    streamed: true,
                                },
                            );
                            return;
                        }
                        StreamEvent::Done(d) => {
                            let text = if stream.is_empty() {
                                d
                            } else {
                                format!("{stream} ({d})")
                            };
                            self.execs.remove(&e.id);
                            self.complete_native(slot, text, env);
                            return;
                        }
                    }
                }
                self.execs.remove(&e.id);
                match msg {
                    Res::McpResult(r) => {
                        env.count(|c| c.tool_results_answered += 1);
                        turn.set_mcp_result(slot, r);
                    }
                    other => {
                        let text = super::native::describe(&other);
                        self.complete_native(slot, text, env);
                    }
                }
            }
        }
    }

    fn complete_native(&mut self, slot: usize, text: String, env: &mut Env<'_>) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let kind = turn.native_name(slot);
        env.count(|c| *c.native_execs_rejected.entry(kind).or_default() += 1);
        turn.set_text_result(slot, text);
    }

    fn handle_exec_control(&mut self, c: pb::ExecClientControlMessage) {
        use pb::exec_client_control_message::Message as C;
        match c.message {
            Some(C::Throw(t)) => match self.execs.remove(&t.id) {
                Some(PendingExec::RequestContext) => self.context_done = true,
                Some(PendingExec::Call { slot, .. }) => {
                    if let Some(turn) = self.turn.as_mut() {
                        turn.set_text_result(slot, format!("threw: {}", t.error));
                    }
                }
                None => {}
            },
            Some(C::StreamClose(s)) => {
                // A stream that produced output and closed without an exit event is complete.
                if let Some(PendingExec::Call {
                    slot,
                    stream,
                    streamed: true,
                }) = self.execs.get(&s.id).cloned()
                {
                    self.execs.remove(&s.id);
                    if let Some(turn) = self.turn.as_mut() {
                        turn.set_text_result(slot, stream);
                    }
                }
            }
            Some(C::Heartbeat(_)) | None => {}
        }
    }

    /// The client half-closed or went away before the end of the turn: cancel (§10.7).
    pub(crate) fn handle_closed(&mut self, env: &mut Env<'_>) {
        if self.shaper.is_stalled() {
            self.shaper.close();
            return;
        }
        if self.is_ended() {
            return;
        }
        self.cancel(env);
    }

    fn cancel(&mut self, env: &mut Env<'_>) {
        env.count(|c| c.cancels += 1);
        self.ops.clear();
        self.execs.clear();
        match self.turn.as_ref() {
            Some(turn) => {
                let ended = turn.turn_ended();
                self.emit_update(Iu::TurnEnded(ended));
                self.end_ok();
            }
            None if self.phase == Phase::AwaitRunRequest => {
                self.end_error(&ConnectError::new(Code::Canceled, "canceled"), env);
            }
            None => {
                self.emit_update(Iu::TurnEnded(pb::TurnEndedUpdate::default()));
                self.end_ok();
            }
        }
    }

    /// Time passed: heartbeats and paced output.
    pub(crate) fn handle_timeout(&mut self, now: Instant, env: &mut Env<'_>) {
        if self.is_ended() || self.shaper.is_stalled() {
            return;
        }
        if let Some(t) = self.next_heartbeat
            && now >= t
        {
            self.emit_update(Iu::Heartbeat(pb::HeartbeatUpdate {}));
            self.next_heartbeat = Some(now + self.heartbeat_interval);
        }
        self.advance(now, env);
    }

    /// When this run next needs [`Run::handle_timeout`] (or its shaper a release).
    pub(crate) fn timeout(&self) -> Option<Instant> {
        let mut t = self.shaper.timeout();
        if !self.is_ended() && !self.shaper.is_stalled() {
            t = min_opt(t, self.next_heartbeat);
            if self.front_is_paced() {
                t = min_opt(t, self.pace_ready);
            }
        }
        t
    }

    fn alloc_exec(&mut self) -> u32 {
        let id = self.next_exec;
        self.next_exec += 1;
        id
    }

    fn send_exec(&mut self, id: u32, args: Args) {
        let exec_id = self.rng.uuid();
        self.emit(Sm::ExecServerMessage(Box::new(pb::ExecServerMessage {
            id,
            exec_id,
            message: Some(args),
            span_context: None,
        })));
    }

    /// Sends `set_blob_args` for `data` and returns its id.
    fn set_blob(&mut self, data: Bytes, env: &mut Env<'_>) -> BlobId {
        let blob = blob_id(&data);
        let id = self.next_kv;
        self.next_kv += 1;
        self.sets.insert(id, blob.clone());
        env.count(|c| c.blobs_set += 1);
        self.emit(Sm::KvServerMessage(Box::new(pb::KvServerMessage {
            id,
            message: Some(pb::kv_server_message::Message::SetBlobArgs(
                pb::SetBlobArgs {
                    blob_id: blob.clone(),
                    blob_data: data,
                },
            )),
            span_context: None,
        })));
        blob
    }

    fn emit_update(&mut self, u: Iu) {
        self.emit(Sm::InteractionUpdate(pb::InteractionUpdate {
            message: Some(u),
        }));
    }

    fn emit(&mut self, m: Sm) {
        if !self.shaper.accepts() {
            return;
        }
        let msg = pb::AgentServerMessage { message: Some(m) };
        let mut b = BytesMut::new();
        // Messages here are far below the 4 GiB envelope limit.
        let _ = encode_proto(&msg, &mut b);
        self.shaper.push_msg(b.freeze());
    }

    fn invalid(&mut self, message: &str, env: &mut Env<'_>) {
        env.global.invalid_runs += 1;
        self.end_error(&ConnectError::new(Code::InvalidArgument, message), env);
    }

    fn end_error(&mut self, err: &ConnectError, env: &mut Env<'_>) {
        if self.is_ended() {
            return;
        }
        let code = err.code.as_str().to_owned();
        env.count(|c| *c.errors.entry(code).or_default() += 1);
        self.shaper.push_end(error_end_stream(err));
        self.finish_phase();
    }

    fn end_ok(&mut self) {
        if self.is_ended() {
            return;
        }
        self.shaper.push_end(ok_end_stream());
        self.finish_phase();
    }

    fn finish_phase(&mut self) {
        self.phase = Phase::Ended;
        self.ops.clear();
        self.execs.clear();
        self.next_heartbeat = None;
    }
}

/// Adds `more` to `tools`, skipping names already declared.
fn merge_tools(tools: &mut Vec<pb::McpToolDefinition>, more: Vec<pb::McpToolDefinition>) {
    for t in more {
        if !tools.iter().any(|x| x.name == t.name) {
            tools.push(t);
        }
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
