//! HTTP/2 with the `h2` crate directly (not hyper), so that faults are real HTTP/2 frames.
//!
//! One task owns a connection and every stream on it, in a single poll loop: drive the
//! connection (accept new streams, write and flush queued frames), then poll each stream
//! (request body into the model, model outputs onto the wire). Owning everything in one task
//! gives the ordering faults need: a `RST_STREAM`, `GOAWAY` or drop the model asks for fires
//! only after one more pass of the connection, which has handed every frame queued before it
//! to the socket — so the client receives the updates that preceded the fault, then the fault.
//!
//! `Run` is full duplex: the response head goes out as soon as the stream is accepted, each
//! DATA chunk of the request is fed to the model as it arrives, and its flow-control window is
//! released only after the model consumed it. A client that sends more than the advertised
//! window gets `FLOW_CONTROL_ERROR` from `h2` itself. Response data is written only as the
//! client's window allows. Client END_STREAM or `RST_STREAM` is reported to the model as a
//! close of the run.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::{Connection, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};

use super::accept::ConnContext;
use super::driver::{RunGuard, RunOutputs, Shared};
use super::respond::{self, MAX_BODY, RUN_PATH, RUN_SSE_PATH};
use crate::model::{HttpRequest, HttpResponse, RunOutput, Transport};

/// The protocol default for both flow-control windows (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;
/// How long the socket stays open (write side shut) after a GOAWAY before it is closed. A
/// client still writing when the socket closes would get a TCP reset and might never read the
/// GOAWAY; real servers linger too.
const GOAWAY_LINGER: Duration = Duration::from_secs(1);

/// Bytes of framing overhead of small unread DATA frames a connection may hold.
const SMALL_FRAME_BUDGET: usize = 16 * 1024 * 1024;

/// HTTP/2 settings the server advertises.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct H2Settings {
    /// `SETTINGS_INITIAL_WINDOW_SIZE` for request bodies; `None` = 65,535.
    pub(crate) initial_window: Option<u32>,
    /// `SETTINGS_MAX_FRAME_SIZE` the server accepts; `None` = 16,384.
    pub(crate) max_frame_size: Option<u32>,
}

/// Serves HTTP/2 on one connection whose preface has not been consumed.
pub(crate) async fn serve<IO>(io: IO, ctx: ConnContext) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    // Cursor's own client sends one DATA frame per message (acks, heartbeats, results); h2's
    // default budget for small unread frames (≈ 32 KiB) closes a busy connection with
    // ENHANCE_YOUR_CALM when a thousand runs share it, which Cursor's backend does not do.
    builder.data_frame_budget(SMALL_FRAME_BUDGET);
    if let Some(window) = ctx.h2.initial_window {
        builder.initial_window_size(window);
        // The connection window must not be the bottleneck of a larger stream window.
        builder.initial_connection_window_size(window.max(DEFAULT_WINDOW));
    }
    if let Some(max) = ctx.h2.max_frame_size {
        builder.max_frame_size(max);
    }
    let conn = builder
        .handshake::<_, Bytes>(io)
        .await
        .map_err(io::Error::other)?;
    let mut driver = Driver {
        conn,
        shared: ctx.shared,
        streams: Vec::new(),
        epoch: 0,
        shut_down: false,
    };
    let result = poll_fn(|cx| driver.poll(cx)).await;
    if driver.shut_down {
        // Release the runs now (their clients are told by the GOAWAY), the socket later.
        driver.streams.clear();
        tokio::time::sleep(GOAWAY_LINGER).await;
    }
    drop(driver);
    result
}

/// One connection and all of its streams.
struct Driver<IO> {
    conn: Connection<IO, Bytes>,
    shared: Arc<Shared>,
    streams: Vec<Stream>,
    /// Passes of the connection that ended with everything queued handed to the socket.
    epoch: u64,
    /// A GOAWAY was started; the connection's end is expected, not an error.
    shut_down: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Driver<IO> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut progressed = false;
            loop {
                match self.conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok((req, respond)))) => {
                        self.accept(req, respond);
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(e))) if self.shut_down || e.is_go_away() => {
                        tracing::debug!(error = %e, "HTTP/2 connection closed");
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            // The connection is pending: every frame queued before this point was written.
            self.epoch += 1;

            let mut i = 0;
            while i < self.streams.len() {
                let step = self.streams[i].poll(cx, self.epoch, &self.shared);
                progressed |= step.progressed;
                match step.conn {
                    Some(ConnAction::Drop) => {
                        tracing::debug!("dropping the connection (fault)");
                        return Poll::Ready(Ok(()));
                    }
                    Some(ConnAction::GoAway(code)) => {
                        // The model stops the run at a GOAWAY, so even `NO_ERROR` cannot let
                        // it finish: send GOAWAY with the code, then close the connection.
                        tracing::debug!(code, "sending GOAWAY (fault)");
                        self.conn.abrupt_shutdown(Reason::from(code));
                        self.shut_down = true;
                    }
                    None => {}
                }
                if step.done {
                    self.streams.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    /// Starts a new stream: a `Run` is opened at once (full duplex), anything else first
    /// collects its request body.
    fn accept(&mut self, req: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
        let (head, recv) = req.into_parts();
        if head.method == http::Method::POST && head.uri.path() == RUN_PATH {
            match self.shared.open_run(Transport::Run, &head.headers) {
                Ok((guard, outputs)) => match respond.send_response(respond::run_head(), false) {
                    Ok(send) => {
                        self.streams
                            .push(Stream::Run(Run::new(guard, send, Some(recv), outputs)))
                    }
                    Err(e) => tracing::debug!(error = %e, "could not answer a run"),
                },
                Err(resp) => send_full(&mut respond, resp),
            }
        } else {
            self.streams.push(Stream::Unary(Unary {
                head,
                recv,
                body: BytesMut::new(),
                respond,
            }));
        }
    }
}

/// What polling a stream did and asks of its connection.
#[derive(Debug, Default)]
struct Step {
    /// Something changed: run the loop again.
    progressed: bool,
    /// The stream is finished; forget it.
    done: bool,
    /// A connection-level fault to carry out.
    conn: Option<ConnAction>,
}

#[derive(Debug)]
enum ConnAction {
    GoAway(u32),
    Drop,
}

enum Stream {
    Unary(Unary),
    Run(Run),
}

impl Stream {
    fn poll(&mut self, cx: &mut Context<'_>, epoch: u64, shared: &Arc<Shared>) -> Step {
        match self {
            Self::Run(run) => run.poll(cx, epoch),
            Self::Unary(unary) => match unary.poll(cx, shared) {
                Poll::Pending => Step::default(),
                Poll::Ready(None) => Step {
                    progressed: true,
                    done: true,
                    conn: None,
                },
                Poll::Ready(Some(run)) => {
                    *self = Self::Run(run);
                    Step {
                        progressed: true,
                        ..Step::default()
                    }
                }
            },
        }
    }
}

/// A one-request/one-response call collecting its body.
struct Unary {
    head: http::request::Parts,
    recv: RecvStream,
    body: BytesMut,
    respond: SendResponse<Bytes>,
}

impl Unary {
    /// `Ready(None)` once answered; `Ready(Some(run))` when the call opened a run (`RunSSE`
    /// over HTTP/2, whose request is one envelope).
    fn poll(&mut self, cx: &mut Context<'_>, shared: &Arc<Shared>) -> Poll<Option<Run>> {
        loop {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    // Ignoring the result: it only fails once the stream is gone.
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    if self.body.len() + chunk.len() > MAX_BODY {
                        let resp = respond::connect_error(
                            400,
                            "invalid_argument",
                            "request body too large",
                        );
                        send_full(&mut self.respond, resp);
                        return Poll::Ready(None);
                    }
                    self.body.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "request body failed");
                    return Poll::Ready(None);
                }
                None => break,
            }
        }
        let head = &self.head;
        if head.method == http::Method::POST && head.uri.path() == RUN_SSE_PATH {
            let opened = respond::run_sse_transport(&self.body, &head.headers)
                .and_then(|transport| shared.open_run(transport, &head.headers));
            return match opened {
                Ok((guard, outputs)) => {
                    match self.respond.send_response(respond::run_head(), false) {
                        Ok(send) => Poll::Ready(Some(Run::new(guard, send, None, outputs))),
                        Err(e) => {
                            tracing::debug!(error = %e, "could not answer a run");
                            Poll::Ready(None)
                        }
                    }
                }
                Err(resp) => {
                    send_full(&mut self.respond, resp);
                    Poll::Ready(None)
                }
            };
        }
        let resp = shared.apply(|sim, now, wall| {
            let req = HttpRequest {
                method: head.method.as_str(),
                path: head.uri.path(),
                query: head.uri.query().unwrap_or(""),
                headers: &head.headers,
                body: &self.body,
            };
            sim.handle_request(req, now, wall)
        });
        send_full(&mut self.respond, resp);
        Poll::Ready(None)
    }
}

/// Sends a whole response; `h2` writes the body as the client's window allows.
fn send_full(respond: &mut SendResponse<Bytes>, resp: HttpResponse) {
    let end = resp.body.is_empty();
    match respond.send_response(respond::head(&resp, true), end) {
        Ok(mut send) if !end => {
            if let Err(e) = send.send_data(resp.body, true) {
                tracing::debug!(error = %e, "response body not sent");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "response not sent"),
    }
}

/// What is left to write on a run's response, in the model's order.
#[derive(Debug)]
enum Out {
    Data(Bytes),
    End,
    Reset(u32),
    GoAway(u32),
    Drop,
}

/// A streaming run on this connection.
struct Run {
    guard: RunGuard,
    send: SendStream<Bytes>,
    /// The request body; `None` after the client's END_STREAM (or for `RunSSE`).
    recv: Option<RecvStream>,
    outputs: RunOutputs,
    outputs_open: bool,
    queue: VecDeque<Out>,
    /// The fault at the head of the queue fires once the connection epoch reaches this.
    fire_at: Option<u64>,
    /// The response is complete (END_STREAM sent, or the run died with its connection);
    /// only the client's END_STREAM is still awaited.
    sent_end: bool,
}

impl Run {
    fn new(
        guard: RunGuard,
        send: SendStream<Bytes>,
        recv: Option<RecvStream>,
        outputs: RunOutputs,
    ) -> Self {
        Self {
            guard,
            send,
            recv,
            outputs,
            outputs_open: true,
            queue: VecDeque::new(),
            fire_at: None,
            sent_end: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, epoch: u64) -> Step {
        let mut step = Step::default();

        // A client RST_STREAM ends the run both ways.
        if !self.sent_end
            && let Poll::Ready(reason) = self.send.poll_reset(cx)
        {
            tracing::debug!(?reason, "client reset the run");
            step.progressed = true;
            step.done = true;
            return step;
        }

        // The request body, into the model.
        while let Some(recv) = self.recv.as_mut() {
            match recv.poll_data(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if !chunk.is_empty() {
                        self.guard.body(&chunk);
                    }
                    // The model consumed the bytes: only now give the window back. Ignoring
                    // the result: it only fails once the stream is gone.
                    let _ = recv.flow_control().release_capacity(chunk.len());
                    step.progressed = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "run request body failed");
                    self.recv = None;
                    self.guard.client_closed();
                    step.progressed = true;
                    if e.is_reset() {
                        step.done = true;
                        return step;
                    }
                }
                Poll::Ready(None) => {
                    self.recv = None;
                    self.guard.client_closed();
                    step.progressed = true;
                }
                Poll::Pending => break,
            }
        }

        // The model's outputs, queued in order.
        while self.outputs_open {
            match self.outputs.poll_recv(cx) {
                Poll::Ready(Some(output)) => {
                    self.queue.push_back(match output {
                        RunOutput::Data(bytes) => Out::Data(bytes),
                        RunOutput::Finished => Out::End,
                        RunOutput::Reset { code } => Out::Reset(code),
                        RunOutput::GoAway { code } => Out::GoAway(code),
                        RunOutput::DropConnection => Out::Drop,
                    });
                    step.progressed = true;
                }
                Poll::Ready(None) => self.outputs_open = false,
                Poll::Pending => break,
            }
        }

        // The queue, onto the wire.
        while let Some(front) = self.queue.front_mut() {
            match front {
                Out::Data(bytes) => match poll_capacity(&mut self.send, bytes.len(), cx) {
                    Poll::Ready(Some(n)) => {
                        let chunk = bytes.split_to(n.min(bytes.len()));
                        if bytes.is_empty() {
                            self.queue.pop_front();
                        }
                        step.progressed = true;
                        if let Err(e) = self.send.send_data(chunk, false) {
                            tracing::debug!(error = %e, "run data not sent");
                            step.done = true;
                            return step;
                        }
                    }
                    Poll::Ready(None) => {
                        step.done = true;
                        return step;
                    }
                    Poll::Pending => break,
                },
                Out::End => {
                    self.queue.pop_front();
                    self.guard.mark_ended();
                    self.sent_end = true;
                    step.progressed = true;
                    if let Err(e) = self.send.send_data(Bytes::new(), true) {
                        tracing::debug!(error = %e, "run end not sent");
                        step.done = true;
                        return step;
                    }
                }
                Out::Reset(_) | Out::GoAway(_) | Out::Drop => {
                    // Fire only after the connection wrote what came before.
                    let Some(at) = self.fire_at else {
                        self.fire_at = Some(epoch + 1);
                        step.progressed = true;
                        break;
                    };
                    if epoch < at {
                        break;
                    }
                    self.fire_at = None;
                    step.progressed = true;
                    match self.queue.pop_front() {
                        Some(Out::Reset(code)) => {
                            tracing::debug!(code, "resetting the run (fault)");
                            self.guard.mark_ended();
                            self.send.send_reset(Reason::from(code));
                            step.done = true;
                        }
                        Some(Out::GoAway(code)) => {
                            // The connection closes around the stream; keep it until then.
                            step.conn = Some(ConnAction::GoAway(code));
                            self.guard.mark_ended();
                            self.sent_end = true;
                            self.recv = None;
                            self.queue.clear();
                        }
                        _ => {
                            self.guard.mark_ended();
                            step.conn = Some(ConnAction::Drop);
                        }
                    }
                    return step;
                }
            }
        }

        if !self.outputs_open && self.queue.is_empty() && !self.sent_end {
            // The outputs stopped without an end: nothing more will come for this run.
            tracing::debug!("run abandoned");
            self.send.send_reset(Reason::INTERNAL_ERROR);
            step.done = true;
        }
        if self.sent_end && self.recv.is_none() {
            step.done = true;
        }
        step
    }
}

/// Send capacity for up to `want` bytes: `Ready(Some(n))` with `n > 0`, `Ready(None)` when
/// the stream can no longer send (reset by the client).
fn poll_capacity(
    send: &mut SendStream<Bytes>,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<Option<usize>> {
    let available = send.capacity();
    if available > 0 {
        return Poll::Ready(Some(available));
    }
    send.reserve_capacity(want);
    loop {
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(0)) => {}
            Some(Ok(n)) => return Poll::Ready(Some(n)),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "run stream closed");
                return Poll::Ready(None);
            }
            None => return Poll::Ready(None),
        }
    }
}
