//! Drives one core [`Turn`] over one HTTP/2 `Run` stream: request-body bytes out as the
//! stream's send capacity allows (core's [`Chunker`] never releases more than `h2` granted),
//! response-body bytes and timers in, turn events out to whoever serves the current downstream
//! reply. While the turn is parked on tool calls the task keeps the stream (heartbeats flow)
//! and waits for the next reply's tool results on its control channel.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use cursorpool_core::chat::{ChatRequest, Usage};
use cursorpool_core::classify::{Classification, TransportFailure};
use cursorpool_core::conversation::ReplyRecorder;
use cursorpool_core::flow::chunker::Chunker;
use cursorpool_core::flow::window::SendWindow;
use cursorpool_core::turn::{ReplyOptions, ResumeError, ToolResultInput, Turn, TurnEvent};
use h2::RecvStream;
use http::HeaderMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::upstream::{Upstream, UpstreamError};

/// The ledger's name for this task's one stream (h2 keeps the real id to itself).
const STREAM: u32 = 1;

/// How many events may wait for the downstream writer before the turn stops reading upstream.
pub const EVENT_DEPTH: usize = 64;

/// What the HTTP side asks of a running or parked turn.
#[derive(Debug)]
pub enum Control {
    /// The client sent the results of the parked tool calls: resume into a new reply whose
    /// events go to `events`. `done` answers whether the results matched.
    Resume {
        /// The request that carries the results (it becomes the run's last input).
        request: Arc<ChatRequest>,
        /// Results, matched by tool-use id.
        results: Vec<ToolResultInput>,
        /// The new reply's options (model name, max tokens, stop sequences).
        reply: ReplyOptions,
        /// Where the new reply's events go.
        events: mpsc::Sender<TurnEvent>,
        /// Whether the turn accepted the results.
        done: oneshot::Sender<Result<(), ResumeError>>,
    },
}

/// Maps an `h2` failure onto core's transport failure kinds.
pub fn transport_failure(e: &h2::Error) -> TransportFailure {
    if e.is_go_away() {
        TransportFailure::GoAway {
            code: e.reason().map_or(0, u32::from),
        }
    } else if e.is_reset() {
        TransportFailure::RstStream {
            code: e.reason().map_or(0, u32::from),
        }
    } else if e.is_io() {
        TransportFailure::ConnectionReset
    } else {
        TransportFailure::ProtocolViolation
    }
}

fn upstream_failure(e: &UpstreamError) -> TransportFailure {
    match e {
        UpstreamError::Connect { .. } | UpstreamError::BadBaseUrl(_) => {
            TransportFailure::ConnectFailed
        }
        UpstreamError::Tls { .. } => TransportFailure::TlsFailed,
        UpstreamError::H2(e) => transport_failure(e),
    }
}

/// How a run ended, for recording the conversation: the turn (its blob store), the request
/// that carried its last input, what the client was last sent, and the final checkpoint.
#[derive(Debug)]
pub struct Outcome {
    /// The finished turn.
    pub turn: Turn,
    /// The request of the run's last downstream reply.
    pub request: Arc<ChatRequest>,
    /// That reply, as the client will echo it.
    pub reply: ReplyRecorder,
    /// The checkpoint of a run that finished normally (`None`: failed or canceled).
    pub checkpoint: Option<Bytes>,
    /// Usage of a run that finished (`None`: it failed).
    pub usage: Option<Usage>,
    /// A failure delivered to a reader after the run's first event (mid-answer, or in a
    /// resumed reply): the one the first-event check never saw. `None` when the run finished,
    /// failed on its very first event, or failed because nobody read its reply any more.
    pub late_failure: Option<Classification>,
}

/// What the loop remembers of the replies it relays.
struct Relay {
    events: mpsc::Sender<TurnEvent>,
    request: Arc<ChatRequest>,
    reply: ReplyRecorder,
    checkpoint: Option<Bytes>,
    usage: Option<Usage>,
    /// Events forwarded so far (over every reply of the run).
    forwarded: u64,
    late_failure: Option<Classification>,
}

impl Relay {
    /// Forwards one event; `false` when nobody reads the current reply any more.
    async fn forward(&mut self, ev: TurnEvent) -> bool {
        let mut failure = None;
        match &ev {
            TurnEvent::Reply(r) => self.reply.handle(r),
            TurnEvent::Finished { checkpoint, usage } => {
                self.checkpoint.clone_from(checkpoint);
                self.usage = Some(*usage);
            }
            TurnEvent::Failed { classification, .. } if self.forwarded > 0 => {
                failure = Some(classification.clone());
            }
            _ => {}
        }
        self.forwarded += 1;
        let delivered = self.events.send(ev).await.is_ok();
        if delivered && failure.is_some() {
            self.late_failure = failure;
        }
        delivered
    }
}

/// Runs `turn` to its end on a new `Run` stream of `upstream`. Events of the first reply go to
/// `events`; later replies' senders arrive with [`Control::Resume`]. Returns when the run is
/// over (finished, failed, or abandoned: the control channel closed while parked).
pub async fn drive(
    mut turn: Turn,
    upstream: Arc<Upstream>,
    headers: HeaderMap,
    path: &'static str,
    request: Arc<ChatRequest>,
    events: mpsc::Sender<TurnEvent>,
    mut control: mpsc::Receiver<Control>,
) -> Outcome {
    let mut relay = Relay {
        events,
        request,
        reply: ReplyRecorder::new(),
        checkpoint: None,
        usage: None,
        forwarded: 0,
        late_failure: None,
    };
    // Core takes std Instants; the adapter owns the clock.
    let now = std::time::Instant::now;

    let (response, mut send) = match upstream.open(path, &headers, false).await {
        Ok(pair) => pair,
        Err(e) => {
            turn.handle_transport_failure(upstream_failure(&e), now());
            drain_events(&mut turn, &mut relay).await;
            return relay.finish(turn);
        }
    };
    let mut response = Some(response);
    let mut recv: Option<RecvStream> = None;
    let mut chunker = Chunker::new();
    // The stream's send capacity as h2 grants it (`poll_capacity` reports the total currently
    // assigned); core's ledger decides how much each DATA write may carry.
    let mut window = SendWindow::granted();
    let _ = window.open_stream(STREAM);
    let mut close_after_flush = false;
    let mut end_sent = false;
    let mut control_open = true;

    loop {
        while let Some(bytes) = turn.poll_transmit() {
            chunker.push(bytes);
        }
        let mut events_gone = false;
        while let Some(ev) = turn.poll_event() {
            if matches!(ev, TurnEvent::UpstreamClose) {
                close_after_flush = true;
                continue;
            }
            if !relay.forward(ev).await {
                events_gone = true;
            }
        }
        if events_gone && !turn.is_done() && !turn.is_parked() {
            turn.handle_client_gone(now());
            continue;
        }
        if chunker.is_empty() && close_after_flush && !end_sent {
            let _ = send.send_data(Bytes::new(), true);
            end_sent = true;
        }
        if turn.is_done() {
            break;
        }
        if turn.is_parked() && !control_open {
            // Nobody can resume this turn any more: cancel it upstream.
            turn.handle_client_gone(now());
            continue;
        }
        if !chunker.is_empty() {
            send.reserve_capacity(chunker.pending_len());
        }
        let deadline = turn.poll_timeout().map(Instant::from_std);
        tokio::select! {
            cap = poll_fn(|cx| send.poll_capacity(cx)), if !chunker.is_empty() => match cap {
                Some(Ok(n)) => {
                    let _ = window.handle_capacity_assigned(STREAM, u32::try_from(n).unwrap_or(u32::MAX));
                    while let Ok(Some(chunk)) = chunker.poll_chunk_within(&mut window, STREAM) {
                        if let Err(e) = send.send_data(chunk, false) {
                            turn.handle_transport_failure(transport_failure(&e), now());
                            break;
                        }
                    }
                }
                Some(Err(e)) => turn.handle_transport_failure(transport_failure(&e), now()),
                None => turn.handle_transport_failure(TransportFailure::WriteAfterEnd, now()),
            },
            res = async { response.as_mut().expect("guarded").await }, if response.is_some() => {
                response = None;
                match res {
                    Ok(r) => {
                        let (parts, body) = r.into_parts();
                        turn.handle_upstream_response(parts.status.as_u16(), &parts.headers, now());
                        recv = Some(body);
                    }
                    Err(e) => turn.handle_transport_failure(transport_failure(&e), now()),
                }
            },
            data = async { recv.as_mut().expect("guarded").data().await }, if recv.is_some() => match data {
                Some(Ok(chunk)) => {
                    if let Some(r) = recv.as_mut() {
                        let _ = r.flow_control().release_capacity(chunk.len());
                    }
                    turn.handle_upstream_data(&chunk, now());
                }
                Some(Err(e)) => {
                    recv = None;
                    turn.handle_transport_failure(transport_failure(&e), now());
                }
                None => {
                    recv = None;
                    turn.handle_upstream_end(now());
                }
            },
            msg = control.recv(), if control_open => match msg {
                Some(Control::Resume { request, results, reply, events: next, done }) => {
                    turn.set_reply_options(reply);
                    let outcome = turn.handle_tool_results(results, now());
                    if outcome.is_ok() {
                        relay.events = next;
                        relay.request = request;
                    }
                    let _ = done.send(outcome);
                }
                None => control_open = false,
            },
            () = sleep_until(deadline) => turn.handle_timeout(now()),
        }
    }
    drain_events(&mut turn, &mut relay).await;
    if !end_sent {
        // The run is over: end our half (an already reset stream just ignores it).
        let _ = send.send_data(Bytes::new(), true);
    }
    relay.finish(turn)
}

impl Relay {
    fn finish(self, turn: Turn) -> Outcome {
        Outcome {
            turn,
            request: self.request,
            reply: self.reply,
            checkpoint: self.checkpoint,
            usage: self.usage,
            late_failure: self.late_failure,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn drain_events(turn: &mut Turn, relay: &mut Relay) {
    while let Some(ev) = turn.poll_event() {
        if matches!(ev, TurnEvent::UpstreamClose) {
            continue;
        }
        let _ = relay.forward(ev).await;
    }
}
