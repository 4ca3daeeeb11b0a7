//! Drives one core [`Turn`](cursorpool_core::turn::Turn) over HTTP/1.1 (spec §2.5): one `RunSSE` call whose streamed response
//! body feeds the turn, and one `BidiAppend` unary call per client message the turn transmits
//! (up to [`MAX_APPENDS_IN_FLIGHT`] at once, each on its own pooled connection, the rest queued
//! in order; the server orders them by sequence number). Appends start at once, without
//! waiting for the `RunSSE` response head.
//!
//! The loop mirrors the HTTP/2 driver: hand out transmits, drain events, stop when the turn is
//! done (cancel a parked turn nobody can resume), then wait for whichever input comes first —
//! the timer at `Turn::poll_timeout`, a control message, an append's answer, the `RunSSE`
//! response head or body bytes. A run that ends before its `RunSSE` body did drops that
//! connection: over HTTP/1.1 closing it is the cancel (§10.7).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::headers::path;
use cursorpool_core::turn::Turn;
use cursorpool_host::relay::{Control, ControlReceiver, Outcome, Relay, RunCall};
use cursorpool_host::upstream::{BoxFuture, UnaryAnswer, UpstreamError};
use futures_lite::FutureExt as _;
use futures_lite::Stream;
use futures_lite::future::poll_fn;
use http::{HeaderMap, Method};
use smol::Timer;

use crate::upstream::{Exchange, H1Upstream, Template, io_failure};

/// Most `BidiAppend` calls in flight at once (spec §2.5.4).
pub const MAX_APPENDS_IN_FLIGHT: usize = 16;

/// Most bytes of an append's answer kept (a success is empty; an error is a small JSON body).
const APPEND_ANSWER_LIMIT: usize = 64 * 1024;

/// Size of one read from the `RunSSE` body.
const READ_CHUNK: usize = 16 * 1024;

/// Size of the read buffer while the turn is parked: only heartbeats arrive then, and
/// thousands of parked conversations must not each hold a [`READ_CHUNK`] buffer.
const PARKED_READ_CHUNK: usize = 512;

type AppendCall = BoxFuture<'static, Result<UnaryAnswer, UpstreamError>>;

/// What woke the loop.
enum Input {
    Timer,
    Control(Control),
    ControlClosed,
    Appended(Result<UnaryAnswer, UpstreamError>),
    Opened(Result<Box<Exchange>, UpstreamError>),
    /// This many bytes of the `RunSSE` body are in the read buffer.
    Data(usize),
    End,
    ReadFailed(io::Error),
}

/// Runs `call.turn` (built with `Framing::BidiAppend`) to its end over `upstream`. Events go
/// through `call.relay`; resumes arrive on `call.control`. Returns when the run is over
/// (finished, failed, or abandoned: the control channel closed while parked).
///
/// The future lives as long as the run (a parked run's included): it is kept small. An
/// `async fn` stores each argument twice (as given and as bound), so the call is taken apart
/// here and the turn goes in boxed.
pub fn drive(upstream: Arc<H1Upstream>, call: RunCall) -> impl Future<Output = Outcome> + Send {
    let RunCall {
        turn,
        headers,
        append_headers,
        relay,
        control,
    } = call;
    run(
        upstream,
        Box::new(turn),
        headers,
        append_headers,
        relay,
        control,
    )
}

/// [`drive`]'s body.
async fn run(
    upstream: Arc<H1Upstream>,
    mut turn: Box<Turn>,
    headers: HeaderMap,
    append_headers: Option<HeaderMap>,
    mut relay: Relay,
    control: ControlReceiver,
) -> Outcome {
    // The receiver's listener is `!Unpin`; pinned once, it is polled as a stream.
    let mut control = Box::pin(control);
    // Core takes std Instants; the adapter owns the clock.
    let now = Instant::now;

    let Some(sse_body) = turn.run_sse_request_body() else {
        // A `Run`-framed turn cannot travel over HTTP/1.1.
        turn.handle_transport_failure(TransportFailure::ProtocolViolation, now());
        relay.drain(&mut turn, now).await;
        return relay.finish(*turn);
    };
    // `None` would be a host bug; the stream headers then go along (and the server judges).
    let append_headers = append_headers.unwrap_or_else(|| headers.clone());
    let append_head = match upstream.template(&Method::POST, path::BIDI_APPEND, &append_headers) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::warn!("cannot prepare BidiAppend calls: {e}");
            turn.handle_transport_failure(TransportFailure::ProtocolViolation, now());
            relay.drain(&mut turn, now).await;
            return relay.finish(*turn);
        }
    };

    let mut opening: Option<BoxFuture<'static, Result<Exchange, UpstreamError>>> = Some({
        let up = Arc::clone(&upstream);
        Box::pin(async move {
            up.send(&Method::POST, path::RUN_SSE, &headers, &sse_body)
                .await
        })
    });
    let mut sse: Option<Exchange> = None;
    let mut queued: VecDeque<Bytes> = VecDeque::new();
    let mut in_flight: Vec<AppendCall> = Vec::new();
    let mut control_open = true;
    let mut timer = Timer::never();
    let mut buf = vec![0u8; READ_CHUNK];

    loop {
        while let Some(body) = turn.poll_transmit() {
            queued.push_back(body);
        }
        while in_flight.len() < MAX_APPENDS_IN_FLIGHT
            && let Some(body) = queued.pop_front()
        {
            in_flight.push(append(&upstream, &append_head, body));
        }
        relay.drain(&mut turn, now).await;
        // Nothing to end on this transport: the run stops appending, and the `RunSSE`
        // connection is dropped below unless its body ended.
        let _ = relay.take_close_request();
        if turn.is_done() {
            break;
        }
        if turn.is_parked() && !control_open {
            // Nobody can resume this turn any more: cancel it upstream.
            turn.handle_client_gone(now());
            continue;
        }
        match turn.poll_timeout() {
            Some(at) => {
                timer.set_at(at);
            }
            None => timer = Timer::never(),
        }
        let chunk = if turn.is_parked() {
            PARKED_READ_CHUNK
        } else {
            READ_CHUNK
        };
        if buf.len() != chunk {
            buf = vec![0u8; chunk];
        }
        let input = poll_fn(|cx| {
            poll_input(
                cx,
                &mut timer,
                control_open.then_some(control.as_mut()),
                &mut in_flight,
                &mut opening,
                sse.as_mut(),
                &mut buf,
            )
        })
        .await;
        match input {
            Input::Timer => turn.handle_timeout(now()),
            Input::Control(msg) => relay.handle_control(msg, &mut turn, now()),
            Input::ControlClosed => control_open = false,
            Input::Appended(Ok((200, _, _))) => {}
            Input::Appended(Ok((status, headers, body))) => {
                turn.handle_append_failed(status, &headers, &body, now());
            }
            Input::Appended(Err(e)) => {
                tracing::debug!(error = %e, "BidiAppend call failed");
                turn.handle_transport_failure(e.failure(), now());
            }
            Input::Opened(Ok(ex)) => {
                opening = None;
                turn.handle_upstream_response(ex.status, &ex.headers, now());
                sse = Some(*ex);
            }
            Input::Opened(Err(e)) => {
                tracing::debug!(error = %e, "RunSSE call failed");
                opening = None;
                turn.handle_transport_failure(e.failure(), now());
            }
            Input::Data(n) => turn.handle_upstream_data(&buf[..n], now()),
            Input::End => {
                if let Some(ex) = sse.take() {
                    ex.finish(&upstream);
                }
                turn.handle_upstream_end(now());
            }
            Input::ReadFailed(e) => {
                tracing::debug!(error = %e, "RunSSE body read failed");
                sse = None;
                turn.handle_transport_failure(io_failure(&e).failure(), now());
            }
        }
    }
    drop(opening);
    let outcome = relay.finish(*turn);
    // Appends not yet sent are not sent after the run's end. Those in flight finish in the
    // background so their kept-alive connections go back to the pool.
    if !in_flight.is_empty() {
        crate::executor::spawn(linger_appends(in_flight)).detach();
    }
    // Finished normally: the body's last chunk follows the end-stream envelope; read it
    // (bounded) in the background and pool the connection. Otherwise dropping the connection
    // tells the server the run is canceled (§10.7).
    if let Some(ex) = sse.take()
        && outcome.checkpoint.is_some()
    {
        crate::executor::spawn(linger_stream(ex, upstream)).detach();
    }
    outcome
}

/// Longest wait for the leftovers of a finished run (appends in flight, the stream's end).
const LINGER: Duration = Duration::from_secs(2);

/// Lets the appends in flight at a run's end complete (bounded), pooling their connections.
async fn linger_appends(in_flight: Vec<AppendCall>) {
    let all = async {
        for call in in_flight {
            let _ = call.await;
        }
    };
    all.or(async {
        Timer::after(LINGER).await;
    })
    .await;
}

/// Reads what is left of a finished run's `RunSSE` body (bounded) and pools its connection
/// when the body ended cleanly.
async fn linger_stream(mut ex: Exchange, upstream: Arc<H1Upstream>) {
    let mut buf = vec![0u8; 1024];
    let end = async {
        loop {
            match poll_fn(|cx| ex.poll_read(cx, &mut buf)).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
    .or(async {
        Timer::after(LINGER).await;
        false
    })
    .await;
    if end {
        ex.finish(&upstream);
    }
}

/// One `BidiAppend` call with `body` (the turn's transmit, sequence number inside).
fn append(upstream: &Arc<H1Upstream>, head: &Arc<Template>, body: Bytes) -> AppendCall {
    let up = Arc::clone(upstream);
    let head = Arc::clone(head);
    Box::pin(async move { up.call_with(&head, &body, APPEND_ANSWER_LIMIT).await })
}

/// The first ready input, by priority: timer, control, appends, the `RunSSE` head, its body.
fn poll_input(
    cx: &mut Context<'_>,
    timer: &mut Timer,
    control: Option<Pin<&mut async_channel::Receiver<Control>>>,
    in_flight: &mut Vec<AppendCall>,
    opening: &mut Option<BoxFuture<'static, Result<Exchange, UpstreamError>>>,
    sse: Option<&mut Exchange>,
    buf: &mut [u8],
) -> Poll<Input> {
    if Pin::new(&mut *timer).poll(cx).is_ready() {
        return Poll::Ready(Input::Timer);
    }
    if let Some(control) = control
        && let Poll::Ready(msg) = control.poll_next(cx)
    {
        return Poll::Ready(msg.map_or(Input::ControlClosed, Input::Control));
    }
    for i in 0..in_flight.len() {
        if let Poll::Ready(res) = in_flight[i].as_mut().poll(cx) {
            drop(in_flight.swap_remove(i));
            return Poll::Ready(Input::Appended(res));
        }
    }
    if let Some(fut) = opening
        && let Poll::Ready(res) = fut.as_mut().poll(cx)
    {
        return Poll::Ready(Input::Opened(res.map(Box::new)));
    }
    if let Some(ex) = sse
        && let Poll::Ready(res) = ex.poll_read(cx, buf)
    {
        return Poll::Ready(match res {
            Ok(0) => Input::End,
            Ok(n) => Input::Data(n),
            Err(e) => Input::ReadFailed(e),
        });
    }
    Poll::Pending
}
