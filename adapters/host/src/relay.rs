//! What passes between the HTTP side and the task driving one run, whatever the transport:
//! the run's inputs ([`RunCall`]), the HTTP side's requests ([`Control`]), the forwarding of
//! turn events to whoever serves the current downstream reply ([`Relay`]) and how the run
//! ended ([`Outcome`]). Each adapter's driver moves bytes and time; this file moves events.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use cursorpool_core::chat::{ChatRequest, Usage};
use cursorpool_core::classify::Classification;
use cursorpool_core::conversation::ReplyRecorder;
use cursorpool_core::turn::{ReplyOptions, ResumeError, ToolResultInput, Turn, TurnEvent};
use futures_lite::Stream;
use http::HeaderMap;

/// How many batches of events may wait for the downstream writer before the turn stops
/// reading upstream. The writer folds every waiting event into one write, so a short queue
/// loses nothing; the queue's slots are allocated up front for every run, parked ones included.
pub const EVENT_DEPTH: usize = 8;

/// The sending end of a reply's events: one batch per [`Relay::drain`], every event the turn
/// had queued (a burst of upstream frames is one hand-off, not one per token).
pub type EventSender = async_channel::Sender<Vec<TurnEvent>>;

/// A new reply's event channel.
pub fn event_channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = async_channel::bounded(EVENT_DEPTH);
    (
        tx,
        EventReceiver {
            rx,
            pending: Vec::new().into_iter(),
        },
    )
}

pin_project_lite::pin_project! {
    /// The receiving end of a reply's events: the batches as sent, one event at a time.
    pub struct EventReceiver {
        #[pin]
        rx: async_channel::Receiver<Vec<TurnEvent>>,
        pending: std::vec::IntoIter<TurnEvent>,
    }
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl EventReceiver {
    /// The next event; `Err` once the run is gone and every event was taken.
    pub async fn recv(&mut self) -> Result<TurnEvent, async_channel::RecvError> {
        loop {
            if let Some(ev) = self.pending.next() {
                return Ok(ev);
            }
            self.pending = self.rx.recv().await?.into_iter();
        }
    }
}

impl Stream for EventReceiver {
    type Item = TurnEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TurnEvent>> {
        let mut this = self.project();
        loop {
            if let Some(ev) = this.pending.next() {
                return Poll::Ready(Some(ev));
            }
            match this.rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(batch)) => *this.pending = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where a run's driver hears from the HTTP side ([`RunCall::control`]).
pub type ControlReceiver = async_channel::Receiver<Control>;

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
        events: EventSender,
        /// Whether the turn accepted the results.
        done: async_channel::Sender<Result<(), ResumeError>>,
    },
}

/// Everything a driver needs for one run.
#[derive(Debug)]
pub struct RunCall {
    /// The turn (its framing matches the upstream's pairing).
    pub turn: Turn,
    /// Headers of the stream call (`Run` or `RunSSE`).
    pub headers: HeaderMap,
    /// Headers of each `BidiAppend` call (the `RunSSE` pairing only).
    pub append_headers: Option<HeaderMap>,
    /// Forwards the run's events.
    pub relay: Relay,
    /// Requests from the HTTP side (resume); closed when nobody can resume the run any more.
    pub control: ControlReceiver,
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
    /// The conversation was already kept (by the relay's recorder, before the reply ended).
    pub recorded: bool,
    /// A failure after the run's first event (mid-answer, or in a resumed reply): the one the
    /// first-event check never saw, whether or not the reader was still there to get it (a
    /// reply ends at its error event, and its reader may leave before the run's own end). `None`
    /// when the run finished, was canceled (the reader left: that is not a failure) or failed
    /// on its very first event.
    pub late_failure: Option<Classification>,
}

/// Keeps a finished run's conversation (see [`Relay::on_finished`]): the turn (its blobs), the
/// request of its last reply, that reply, and the final checkpoint.
pub type Recorder = Box<dyn FnOnce(&Turn, &Arc<ChatRequest>, &ReplyRecorder, &Bytes) + Send>;

/// Forwards a run's events to the reader of the current reply and remembers what the
/// conversation record needs.
pub struct Relay {
    events: EventSender,
    /// Called with the final checkpoint before the reader hears the run finished.
    recorder: Option<Recorder>,
    /// The recorder ran.
    recorded: bool,
    request: Arc<ChatRequest>,
    reply: ReplyRecorder,
    checkpoint: Option<Bytes>,
    usage: Option<Usage>,
    /// Events forwarded so far (over every reply of the run).
    forwarded: u64,
    late_failure: Option<Classification>,
    /// The driver should end the upstream request body once its queued bytes are out.
    close_requested: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("forwarded", &self.forwarded)
            .field("recorded", &self.recorded)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay whose first reply's events go to `events`.
    pub fn new(events: EventSender, request: Arc<ChatRequest>) -> Self {
        Self {
            events,
            recorder: None,
            recorded: false,
            request,
            reply: ReplyRecorder::new(),
            checkpoint: None,
            usage: None,
            forwarded: 0,
            late_failure: None,
            close_requested: false,
        }
    }

    /// Keeps the conversation with `recorder` when the run finishes with a checkpoint, *before*
    /// the reader learns the reply ended: a client that sends its next message the moment it
    /// has the answer finds the checkpoint already stored.
    pub fn on_finished(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Notes one event on its way to the reader; whether it goes to the reader at all.
    fn note(&mut self, ev: &TurnEvent) -> bool {
        match ev {
            TurnEvent::UpstreamClose => {
                self.close_requested = true;
                return false;
            }
            TurnEvent::Reply(r) => self.reply.handle(r),
            TurnEvent::Finished { checkpoint, usage } => {
                self.checkpoint.clone_from(checkpoint);
                self.usage = Some(*usage);
            }
            TurnEvent::Failed { classification, .. } if self.forwarded > 0 => {
                self.late_failure = Some(classification.clone());
            }
            _ => {}
        }
        self.forwarded += 1;
        true
    }

    /// Forwards every event the turn has queued. When the reader is gone mid-reply the turn
    /// is told (a parked or finished turn has no reader to lose). Drain again after this: the
    /// turn may have queued more.
    pub async fn drain(&mut self, turn: &mut Turn, now: impl Fn() -> Instant) {
        loop {
            let mut batch = Vec::new();
            while let Some(ev) = turn.poll_event() {
                if let TurnEvent::Finished {
                    checkpoint: Some(checkpoint),
                    ..
                } = &ev
                    && let Some(record) = self.recorder.take()
                {
                    // The reply is recorded as the client will echo it: with this run's last
                    // reply events, which all came before `Finished`.
                    record(turn, &self.request, &self.reply, checkpoint);
                    self.recorded = true;
                }
                if self.note(&ev) {
                    batch.push(ev);
                }
            }
            let gone = !batch.is_empty() && self.events.send(batch).await.is_err();
            if gone && !turn.is_done() && !turn.is_parked() {
                turn.handle_client_gone(now());
                continue;
            }
            return;
        }
    }

    /// Whether the turn asked to end the upstream request body (taken once).
    pub fn take_close_request(&mut self) -> bool {
        std::mem::take(&mut self.close_requested)
    }

    /// Applies one control message to the turn (a resume switches the reply's reader).
    pub fn handle_control(&mut self, msg: Control, turn: &mut Turn, now: Instant) {
        match msg {
            Control::Resume {
                request,
                results,
                reply,
                events,
                done,
            } => {
                turn.set_reply_options(reply);
                let outcome = turn.handle_tool_results(results, now);
                if outcome.is_ok() {
                    self.events = events;
                    self.request = request;
                }
                let _ = done.try_send(outcome);
            }
        }
    }

    /// The run is over.
    pub fn finish(self, turn: Turn) -> Outcome {
        Outcome {
            turn,
            request: self.request,
            reply: self.reply,
            checkpoint: self.checkpoint,
            usage: self.usage,
            recorded: self.recorded,
            late_failure: self.late_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::StreamExt as _;
    use futures_lite::future::block_on;

    fn parked(id: &str) -> TurnEvent {
        TurnEvent::Parked {
            tool_use_ids: vec![id.to_owned()],
        }
    }

    fn id(ev: &TurnEvent) -> &str {
        match ev {
            TurnEvent::Parked { tool_use_ids } => &tool_use_ids[0],
            _ => "?",
        }
    }

    #[test]
    fn batches_come_out_one_event_at_a_time_in_order_then_the_end() {
        let (tx, mut rx) = event_channel();
        block_on(async {
            tx.send(vec![parked("a"), parked("b")]).await.unwrap();
            tx.send(Vec::new()).await.unwrap();
            tx.send(vec![parked("c")]).await.unwrap();
            drop(tx);
            assert_eq!(id(&rx.recv().await.unwrap()), "a");
            // Pinned as a reply's body pins it, the stream goes on where `recv` left off,
            // passing over the empty batch.
            let mut rx = Box::pin(rx);
            let rest: Vec<TurnEvent> = rx.as_mut().collect().await;
            assert_eq!(rest.iter().map(id).collect::<Vec<_>>(), ["b", "c"]);
            assert!(rx.next().await.is_none());
        });
    }
}
