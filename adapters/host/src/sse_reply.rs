//! A streamed (SSE) reply as a body the adapter's HTTP server pulls: each poll renders every
//! turn event already waiting into one chunk. Rendering happens in the connection's own task
//! when the socket can take more, so a token crosses no extra task or channel between the run
//! and the socket, a burst of tokens becomes one write, and the first token is written as soon
//! as it arrives.
//!
//! Dropping the body (the client went away) drops the event receiver, which is how the run
//! learns it (the same as when nobody reads its events).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use cursorpool_core::api::{anthropic, openai};
use cursorpool_core::chat::{ApiKind, ChatRequest, ReplyEvent};
use cursorpool_core::turn::TurnEvent;
use futures_lite::Stream;

use crate::app::App;
use crate::relay::{Control, EventReceiver};
use crate::request_log::RequestLog;

/// Rendered bytes above which waiting events are left for the next poll.
const COALESCE_LIMIT: usize = 64 * 1024;

/// The renderer of the client's API.
#[derive(Debug)]
enum Renderer {
    Anthropic(anthropic::StreamRenderer),
    OpenAi(openai::StreamRenderer),
}

impl Renderer {
    fn handle(&mut self, event: &ReplyEvent, out: &mut BytesMut) {
        match self {
            Self::Anthropic(r) => r.handle(event, out),
            Self::OpenAi(r) => r.handle(event, out),
        }
    }
}

/// Who a parked turn belongs to (registered when the reply ends with tool calls).
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) app: Arc<App>,
    pub(crate) client_key: String,
    pub(crate) account: String,
    pub(crate) request: Arc<ChatRequest>,
    pub(crate) control: async_channel::Sender<Control>,
}

/// The body of one streamed reply.
pub(crate) struct SseReply {
    owner: Owner,
    renderer: Renderer,
    first: Option<TurnEvent>,
    events: Pin<Box<EventReceiver>>,
    log: RequestLog,
    out: BytesMut,
    /// The reply's last event was rendered (or its run is gone): nothing more to send.
    ended: bool,
}

impl std::fmt::Debug for SseReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseReply")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl SseReply {
    /// The reply whose first event is `first`, the rest coming on `events`.
    pub(crate) fn new(
        api: ApiKind,
        created: u64,
        owner: Owner,
        first: TurnEvent,
        events: EventReceiver,
        log: RequestLog,
    ) -> Self {
        let renderer = match api {
            ApiKind::Anthropic => Renderer::Anthropic(anthropic::StreamRenderer::new()),
            ApiKind::OpenAi => {
                Renderer::OpenAi(openai::StreamRenderer::for_request(&owner.request, created))
            }
        };
        Self {
            owner,
            renderer,
            first: Some(first),
            events: Box::pin(events),
            log,
            out: BytesMut::new(),
            ended: false,
        }
    }

    /// Renders `event`; whether the reply is over.
    fn render(&mut self, event: TurnEvent) -> bool {
        match event {
            TurnEvent::Reply(r) => {
                crate::app::note_reply(&self.log, &r);
                self.renderer.handle(&r, &mut self.out);
                matches!(r, ReplyEvent::Error(_))
            }
            TurnEvent::Parked { tool_use_ids } => {
                let o = &self.owner;
                o.app.park(
                    &o.client_key,
                    &o.account,
                    &o.request,
                    &tool_use_ids,
                    o.control.clone(),
                );
                true
            }
            TurnEvent::Finished { .. } | TurnEvent::Failed { .. } => true,
            TurnEvent::UpstreamClose => false,
        }
    }
}

impl Stream for SseReply {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        while !this.ended && this.out.len() < COALESCE_LIMIT {
            let event = match this.first.take() {
                Some(e) => e,
                None => match this.events.as_mut().poll_next(cx) {
                    Poll::Ready(Some(e)) => e,
                    // The run is over without a terminal event (it was dropped).
                    Poll::Ready(None) => {
                        this.ended = true;
                        break;
                    }
                    Poll::Pending => break,
                },
            };
            if this.render(event) {
                this.ended = true;
            }
        }
        if !this.out.is_empty() {
            return Poll::Ready(Some(this.out.split().freeze()));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for SseReply {
    fn drop(&mut self) {
        // Before the end, the client went away: dropping `events` tells the run.
        self.log.finish(if self.ended {
            200
        } else {
            crate::request_log::CLIENT_GONE
        });
    }
}
