//! The turn machine: one upstream Cursor run, from the run request to the end-stream,
//! independent of the transport.
//!
//! A [`Turn`] builds the run request, answers everything Cursor asks of a client by itself
//! (the request context with the client's tools, KV blob reads and writes, refusals of every
//! built-in tool on the matching result field, interaction queries), sends a client heartbeat
//! every 5 s, detects a stalled upstream, and turns Cursor's updates into [`ReplyEvent`]s for
//! the downstream renderer.
//!
//! **Tool calls wait inline.** When the model calls a client tool (`mcp_args`), the turn emits a
//! [`ReplyEvent::ToolCall`]; once the batch is complete (a checkpoint, a heartbeat, text,
//! thinking, a completed call, `turn_ended` — anything but tool progress and KV traffic — or
//! [`TurnConfig::tool_batch_quiet`] without another call) it ends the downstream reply with
//! `Stop{ToolUse}` and reports [`TurnEvent::Parked`]. The upstream run stays open (heartbeats
//! continue) until [`Turn::handle_tool_results`] answers the calls and the same run continues
//! into a new downstream reply with a fresh [`ReplyEvent::Start`]. Parked turns wait in
//! [`ParkedTurns`] between client requests.
//!
//! # Driving it
//!
//! Sans-IO like the rest of core: inputs are `handle_*(…, now)`, outputs are
//! [`Turn::poll_transmit`] (bytes upstream, framed per [`Framing`]), [`Turn::poll_event`] and
//! [`Turn::poll_timeout`]. After every input, drain `poll_transmit` (write everything) and then
//! `poll_event` until both return `None`, and re-arm the timer. [`TurnEvent::UpstreamClose`]
//! means: once the bytes already returned by `poll_transmit` are written, end the upstream
//! request (h2: end the request body; HTTP/1.1: stop appending and close the `RunSSE`
//! connection). [`TurnEvent::Finished`] and [`TurnEvent::Failed`] are the last events.
//!
//! Every downstream reply begins with `Start` just before its first content, so a turn that
//! fails before any content reports `downstream_started: false` and the caller may replay the
//! request on another account.

mod blobs;
mod framing;
mod lifecycle;
mod params;
mod parked;
pub mod prompt;
mod stops;
mod tools;
mod upstream;
mod usage;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;

use crate::chat::{ReplyEvent, Usage};
use crate::classify::{Classification, Failure, TransportFailure, classify};
use crate::client::{self, RunAction, RunRequestParams, exec_stream_close, mcp_success};
use crate::connect::envelope::EnvelopeDecoder;
use crate::ids::IdSource;

pub use blobs::{BlobError, BlobId, BlobStore, PREFETCH_MAX_BLOBS, PREFETCH_MAX_BYTES, blob_id};
pub use framing::Framing;
pub use params::{ModelMap, ReplyOptions, TurnConfig, TurnParams};
pub use parked::{DEFAULT_PARK_TTL, ParkId, ParkedTurns};
pub use prompt::RunInput;
pub use tools::{PROVIDER, PreparedTools, ToolCache, ToolResultInput, wire_name};

use framing::Outbox;
use stops::StopFilter;
use tools::ToolTable;
use usage::Meter;

/// What a turn tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// Something for the current downstream reply, in order.
    Reply(ReplyEvent),
    /// The downstream reply ended with these tool calls (`Stop{ToolUse}` was its last event);
    /// the upstream run stays open waiting for their results ([`Turn::handle_tool_results`]).
    Parked {
        /// The tool-use ids the client must answer.
        tool_use_ids: Vec<String>,
    },
    /// End the upstream request once the pending transmits are written (see the module docs).
    UpstreamClose,
    /// The run ended normally (or was canceled by the proxy: then `checkpoint` is `None`).
    Finished {
        /// The last `conversation_checkpoint_update`, byte-for-byte (zero-copy), to replay on
        /// the next turn; `None` when the run produced none or was canceled (keep the previous
        /// state).
        checkpoint: Option<Bytes>,
        /// Usage of the whole run.
        usage: Usage,
    },
    /// The run failed.
    Failed {
        /// What the failure means for the client, the account and a retry.
        classification: Classification,
        /// Whether the current downstream reply had begun (then a retry elsewhere is no longer
        /// transparent; a [`ReplyEvent::Error`] was emitted if the reply was still open).
        downstream_started: bool,
    },
}

/// Why tool results cannot resume a turn. Blame: the client's request (or its timing); the
/// caller falls back to a new run with the results flattened into the prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The run is over (finished, failed or canceled), or Cursor ended the turn without
    /// waiting for the results.
    #[error("the upstream run has ended")]
    Ended,
    /// The turn is not waiting for tool results.
    #[error("the turn is not waiting for tool results")]
    NotParked,
    /// A result for a tool call this turn did not make.
    #[error("no pending tool call {0:?}")]
    UnknownToolUseId(String),
    /// A pending tool call got no result.
    #[error("no result for tool call {0:?}")]
    MissingToolResult(String),
    /// Two results for the same tool call.
    #[error("two results for tool call {0:?}")]
    DuplicateToolResult(String),
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Streaming into the current downstream reply.
    Running,
    /// Waiting for the client's tool results; no downstream reply is open.
    Parked,
    /// Finished or failed; nothing more happens.
    Done,
}

/// The current downstream reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// No `Start` yet.
    Pending,
    /// `Start` emitted, no `Stop`.
    Open,
    /// `Stop` (or `Error`) emitted.
    Closed,
}

/// What the upstream response looks like so far.
#[derive(Debug)]
enum Response {
    /// No headers yet.
    Pending,
    /// 200 with a Connect stream.
    Streaming,
    /// Anything else: the body is kept (bounded) for the classification.
    Rejected {
        status: u16,
        headers: http::HeaderMap,
        body: Vec<u8>,
    },
}

/// Reply content that arrived while parked (delivered after the resume).
#[derive(Debug, Clone)]
enum Held {
    Text(String),
    Thinking(String),
}

/// A client tool call waiting for its result.
#[derive(Debug, Clone)]
struct Outstanding {
    tool_use_id: String,
    exec: u32,
    exec_id: String,
}

/// The request context's fields besides the tools.
#[derive(Debug)]
struct ContextParts {
    env: Arc<pb::RequestContextEnv>,
    cloud_rule: Option<String>,
}

/// Smallest timer period, so that a zero in the config cannot make the adapter spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One upstream run (see the module docs).
#[derive(Debug)]
pub struct Turn {
    /// Boxed with the request context: both are large and rarely touched, and a turn moves
    /// between tasks and registries.
    cfg: Box<TurnConfig>,
    /// Shapes the current reply (id prefix, model name, limits).
    reply_opts: ReplyOptions,
    /// Reply ids.
    ids: IdSource,
    /// Framed client messages waiting for `poll_transmit`.
    out: Outbox,
    events: VecDeque<TurnEvent>,
    /// Set with the terminal event: nothing is queued after it.
    sealed: bool,
    decoder: EnvelopeDecoder,
    response: Response,
    blobs: BlobStore,
    /// Shared with the process's [`ToolCache`] and every run declaring the same tools.
    tools: Arc<ToolTable>,
    /// What the answer to `request_context_args` carries besides the tools (it is built when
    /// asked: a parked turn does not hold a copy of every tool definition).
    context: Box<ContextParts>,
    phase: Phase,
    reply: Reply,
    /// `Start` was emitted for the current reply (what `downstream_started` reports).
    started: bool,
    stops: StopFilter,
    /// Reply content that arrived while parked.
    held: Vec<Held>,
    /// Tool-use ids of the batch being collected into the open reply.
    batch: Vec<String>,
    /// Tool-use ids the parked turn waits for.
    parked_ids: Vec<String>,
    /// Calls whose `mcp_args` still need an `mcp_result`.
    outstanding: Vec<Outstanding>,
    /// Calls the server aborted (their results are accepted and dropped).
    aborted: HashSet<String>,
    /// When the batch being collected is complete unless another call comes.
    quiet_deadline: Option<Instant>,
    next_heartbeat: Instant,
    next_exec_heartbeat: Option<Instant>,
    /// Last upstream activity (stall detection).
    last_upstream: Instant,
    /// Last event sent downstream (pings).
    last_downstream: Instant,
    meter: Meter,
    /// The last checkpoint received.
    checkpoint: Option<Bytes>,
    turn_ended: bool,
    /// A checkpoint arrived after `turn_ended`: the final state (an EOF then counts as success).
    final_checkpoint: bool,
}

impl Turn {
    /// Starts a run at `now`: the run request is the first transmit.
    pub fn new(params: TurnParams, now: Instant) -> Self {
        let mut cfg = params.config.clone();
        for d in [
            &mut cfg.heartbeat_interval,
            &mut cfg.exec_heartbeat_interval,
            &mut cfg.stall_timeout,
            &mut cfg.ping_interval,
        ] {
            *d = (*d).max(MIN_INTERVAL);
        }
        let declared = match params.tool_choice {
            crate::chat::ToolChoice::None => &[][..],
            _ => &params.tools[..],
        };
        let tools = match &params.prepared_tools {
            Some(p) if p.is_for(declared) => Arc::clone(p.table()),
            _ => Arc::new(ToolTable::new(declared)),
        };
        let context = Box::new(ContextParts {
            env: Arc::clone(&cfg.env),
            cloud_rule: params.cloud_rule(),
        });
        let run_request = client::run_request(RunRequestParams {
            conversation_state: params.conversation_state,
            action: RunAction::UserMessage {
                text: params.input.text,
                images: params.input.images,
            },
            mode: None,
            model_id: Some(params.cursor_model),
            model_parameters: params.model_parameters,
            mcp_tools: tools.definitions().to_vec(),
            conversation_id: Some(params.conversation_id),
            pre_fetched_blobs: params.pre_fetched_blobs,
            custom_system_prompt: None,
        });
        let mut turn = Self {
            next_heartbeat: now + cfg.heartbeat_interval,
            decoder: EnvelopeDecoder::new(cfg.max_frame_len),
            stops: StopFilter::new(&params.reply.stop_sequences),
            reply_opts: params.reply,
            ids: params.ids,
            out: Outbox::new(params.framing),
            events: VecDeque::new(),
            sealed: false,
            response: Response::Pending,
            blobs: params.blobs,
            tools,
            context,
            phase: Phase::Running,
            reply: Reply::Pending,
            started: false,
            held: Vec::new(),
            batch: Vec::new(),
            parked_ids: Vec::new(),
            outstanding: Vec::new(),
            aborted: HashSet::new(),
            quiet_deadline: None,
            next_exec_heartbeat: None,
            last_upstream: now,
            last_downstream: now,
            meter: Meter::new(params.input_tokens_estimate),
            checkpoint: None,
            turn_ended: false,
            final_checkpoint: false,
            cfg: Box::new(cfg),
        };
        turn.send(&run_request);
        turn
    }

    // ---- inputs -------------------------------------------------------------------------

    /// The upstream response headers arrived (of `Run`, or of `RunSSE`). Anything but 200 with
    /// `application/connect+proto` fails the run once its body has arrived
    /// ([`Turn::handle_upstream_end`]), classified with that body.
    pub fn handle_upstream_response(
        &mut self,
        status: u16,
        headers: &http::HeaderMap,
        now: Instant,
    ) {
        if self.phase == Phase::Done || !matches!(self.response, Response::Pending) {
            return;
        }
        self.last_upstream = now;
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if status != 200 || !content_type.starts_with("application/connect+proto") {
            self.response = Response::Rejected {
                status,
                headers: headers.clone(),
                body: Vec::new(),
            };
            return;
        }
        self.response = Response::Streaming;
        let encoding = headers
            .get("connect-content-encoding")
            .map(|v| v.to_str().unwrap_or("?"))
            .unwrap_or("");
        match crate::connect::envelope::Compression::from_header(encoding) {
            Ok(c) => self.decoder.set_compression(c),
            Err(e) => self.fail_and_cancel(protocol_violation(&e)),
        }
    }

    /// Bytes of the upstream response body, in any chunking.
    pub fn handle_upstream_data(&mut self, data: &[u8], now: Instant) {
        if self.accept_upstream(data, now) {
            self.decoder.handle_bytes(data);
            self.drain_frames(now);
        }
    }

    /// A chunk of the upstream response body, in any chunking; messages it holds whole are
    /// decoded from it without a copy.
    pub fn handle_upstream_chunk(&mut self, data: Bytes, now: Instant) {
        if self.accept_upstream(&data, now) {
            self.decoder.handle_chunk(data);
            self.drain_frames(now);
        }
    }

    /// Notes upstream bytes; whether they are to be decoded (not after the end, nor the body
    /// of a rejection, which is kept for its classification instead).
    fn accept_upstream(&mut self, data: &[u8], now: Instant) -> bool {
        if self.phase == Phase::Done {
            return false;
        }
        if !data.is_empty() {
            self.last_upstream = now;
        }
        match &mut self.response {
            Response::Rejected { body, .. } => {
                let room = self.cfg.max_error_body.saturating_sub(body.len());
                body.extend_from_slice(&data[..data.len().min(room)]);
                return false;
            }
            Response::Pending => self.response = Response::Streaming,
            Response::Streaming => {}
        }
        true
    }

    /// The upstream response body ended (EOF). Without an end-stream this is a failure, except
    /// after `turn_ended` and a final checkpoint, which count as success (§10.6).
    pub fn handle_upstream_end(&mut self, now: Instant) {
        let _ = now;
        if self.phase == Phase::Done {
            return;
        }
        if let Response::Rejected { .. } = self.response {
            let c = self.rejection();
            self.fail(c);
            return;
        }
        if self.decoder.finish().is_ok() && self.turn_ended && self.final_checkpoint {
            self.finish_ok();
        } else {
            self.fail(classify(Failure::Transport(
                TransportFailure::MissingEndStream,
            )));
        }
    }

    /// The upstream stream or connection broke below Connect. After `turn_ended` and a final
    /// checkpoint the run counts as finished.
    pub fn handle_transport_failure(&mut self, failure: TransportFailure, now: Instant) {
        let _ = now;
        if self.phase == Phase::Done {
            return;
        }
        if self.turn_ended && self.final_checkpoint {
            self.finish_ok();
        } else {
            self.fail(classify(Failure::Transport(failure)));
        }
    }

    /// A `BidiAppend` call failed (non-200, or a Connect error body): the whole run fails with
    /// that error (§2.5.5).
    pub fn handle_append_failed(
        &mut self,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
        now: Instant,
    ) {
        let _ = now;
        if self.phase == Phase::Done {
            return;
        }
        self.fail(classify(Failure::HttpResponse {
            status,
            headers,
            body,
        }));
    }

    /// The client's results for the parked tool calls: each outstanding `mcp_args` is answered
    /// (`mcp_result` + `stream_close`, matched by tool-call id) in the order given, and the run
    /// continues into a new downstream reply. Nothing is sent unless every parked call has
    /// exactly one result and every result belongs to a parked call.
    pub fn handle_tool_results(
        &mut self,
        results: Vec<ToolResultInput>,
        now: Instant,
    ) -> Result<(), ResumeError> {
        match self.phase {
            Phase::Done => return Err(ResumeError::Ended),
            Phase::Running => return Err(ResumeError::NotParked),
            // Cursor ended the turn without waiting for the results: they cannot go in.
            Phase::Parked if self.turn_ended => return Err(ResumeError::Ended),
            Phase::Parked => {}
        }
        let mut seen = HashSet::new();
        for r in &results {
            if !self.parked_ids.contains(&r.tool_use_id) {
                return Err(ResumeError::UnknownToolUseId(r.tool_use_id.clone()));
            }
            if !seen.insert(r.tool_use_id.as_str()) {
                return Err(ResumeError::DuplicateToolResult(r.tool_use_id.clone()));
            }
        }
        if let Some(missing) = self
            .parked_ids
            .iter()
            .find(|id| !seen.contains(id.as_str()) && !self.aborted.contains(*id))
        {
            return Err(ResumeError::MissingToolResult(missing.clone()));
        }
        let mut result_chars = 0;
        for r in results {
            result_chars += tools::result_chars(&r.content);
            let Some(i) = self
                .outstanding
                .iter()
                .position(|o| o.tool_use_id == r.tool_use_id)
            else {
                continue; // aborted by the server meanwhile
            };
            let o = self.outstanding.remove(i);
            let content = tools::result_content(&r.content);
            self.send(&mcp_success(o.exec, &o.exec_id, &content, r.is_error));
            self.send(&exec_stream_close(o.exec));
        }
        if self.outstanding.is_empty() {
            self.next_exec_heartbeat = None;
        }
        self.meter.new_reply(result_chars);
        self.parked_ids.clear();
        self.phase = Phase::Running;
        self.reply = Reply::Pending;
        self.started = false;
        self.stops = StopFilter::new(&self.reply_opts.stop_sequences);
        self.last_downstream = now;
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Text(t) => self.on_text(t, now),
                Held::Thinking(t) => self.on_thinking(t, now),
            }
        }
        Ok(())
    }

    /// The downstream client went away (or a parked turn expired): cancel the run upstream
    /// (`cancel_action`, then [`TurnEvent::UpstreamClose`]) and finish without a checkpoint.
    /// An open reply gets no `Stop`: nobody reads it any more.
    pub fn handle_client_gone(&mut self, now: Instant) {
        let _ = now;
        self.cancel("client disconnected");
    }

    /// Time passed: heartbeats, the tool-batch quiet period, pings, stall detection.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if now >= self.last_upstream + self.cfg.stall_timeout {
            if let Response::Rejected { .. } = self.response {
                let c = self.rejection();
                self.fail(c);
            } else {
                self.fail_and_cancel(classify(Failure::Transport(TransportFailure::Stalled)));
            }
            return;
        }
        if self.quiet_deadline.is_some_and(|t| now >= t) {
            self.complete_batch(now);
        }
        if now >= self.next_heartbeat {
            self.send(&client::client_heartbeat());
            self.next_heartbeat = next_tick(self.next_heartbeat, self.cfg.heartbeat_interval, now);
        }
        if let Some(t) = self.next_exec_heartbeat
            && now >= t
        {
            let ids: Vec<u32> = self.outstanding.iter().map(|o| o.exec).collect();
            for id in ids {
                self.send(&client::exec_heartbeat(id));
            }
            self.next_exec_heartbeat = (!self.outstanding.is_empty())
                .then(|| next_tick(t, self.cfg.exec_heartbeat_interval, now));
        }
        if self.phase == Phase::Running
            && self.reply == Reply::Open
            && now >= self.last_downstream + self.cfg.ping_interval
        {
            self.push_event(TurnEvent::Reply(ReplyEvent::Ping));
            self.last_downstream = now;
        }
    }

    /// Replaces the reply options (model name, limits) for the next downstream reply: call it
    /// before [`Turn::handle_tool_results`] with the options of the request carrying them.
    pub fn set_reply_options(&mut self, opts: ReplyOptions) {
        self.reply_opts = opts;
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next bytes to send upstream: envelopes for the `Run` request body, or one
    /// `BidiAppend` request body.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`Turn::handle_timeout`] must next be called; `None` once the run is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut t = self
            .next_heartbeat
            .min(self.last_upstream + self.cfg.stall_timeout);
        for other in [self.quiet_deadline, self.next_exec_heartbeat]
            .into_iter()
            .flatten()
        {
            t = t.min(other);
        }
        if self.phase == Phase::Running && self.reply == Reply::Open {
            t = t.min(self.last_downstream + self.cfg.ping_interval);
        }
        Some(t)
    }

    // ---- state --------------------------------------------------------------------------

    /// Whether the current downstream reply has begun (its `Start` was emitted). Before that a
    /// failure may be retried on another account without the client noticing.
    pub fn downstream_started(&self) -> bool {
        self.started
    }

    /// Whether the turn waits for tool results.
    pub fn is_parked(&self) -> bool {
        self.phase == Phase::Parked
    }

    /// Whether the run is over (finished or failed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The tool-use ids the parked turn waits for (empty unless parked).
    pub fn parked_tool_use_ids(&self) -> &[String] {
        &self.parked_ids
    }

    /// The last checkpoint received so far.
    pub fn checkpoint(&self) -> Option<&Bytes> {
        self.checkpoint.as_ref()
    }

    /// The conversation's blob store (with everything this run stored).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Gives the blob store back for the conversation's next turn.
    pub fn into_blobs(self) -> BlobStore {
        self.blobs
    }

    /// The `RunSSE` request body (one `BidiRequestId` envelope) for [`Framing::BidiAppend`];
    /// `None` for [`Framing::Run`].
    pub fn run_sse_request_body(&self) -> Option<Bytes> {
        self.out.run_sse_request_body()
    }
}

/// The next tick of a periodic timer: one period after the last, or after `now` when time
/// jumped past it.
fn next_tick(last: Instant, period: Duration, now: Instant) -> Instant {
    let next = last + period;
    if next > now { next } else { now + period }
}

/// A protocol violation with its cause in the message.
fn protocol_violation(cause: &dyn std::fmt::Display) -> Classification {
    let mut c = classify(Failure::Transport(TransportFailure::ProtocolViolation));
    c.message = format!("{}: {cause}", c.message);
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn turns_and_registries_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<super::Turn>();
        assert_send::<super::ParkedTurns>();
    }

    #[test]
    fn a_turn_is_cheap_to_move() {
        assert!(std::mem::size_of::<super::Turn>() <= 1024);
    }
}
