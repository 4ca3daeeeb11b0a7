//! Drives one core [`Turn`] over one HTTP/2 `Run` stream: request-body bytes out as the
//! stream's send capacity allows (core's [`Chunker`] never releases more than `h2` granted),
//! response-body bytes and timers in, turn events out through the host's [`Relay`]. While the
//! turn is parked on tool calls the task keeps the stream (heartbeats flow) and waits for the
//! next reply's tool results on its control channel.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::flow::chunker::Chunker;
use cursorpool_core::flow::window::SendWindow;
use cursorpool_core::turn::Turn;
use cursorpool_host::relay::{ControlReceiver, Outcome, Relay, RunCall};
use cursorpool_host::upstream::Pairing;
use h2::RecvStream;
use tokio::time::Instant;

use crate::upstream::Upstream;

/// The ledger's name for this task's one stream (h2 keeps the real id to itself).
const STREAM: u32 = 1;

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

/// Runs `call.turn` to its end on a new `Run` stream of `upstream`. Events of the first reply
/// go to the relay's reader; later replies' readers arrive with a resume on `call.control`.
/// Returns when the run is over (finished, failed, or abandoned: the control channel closed
/// while parked).
///
/// The future lives as long as the run (a parked run's included) and is copied once into its
/// task: it is kept small. An `async fn` stores each argument twice (as given and as bound),
/// so the call is taken apart here and the turn goes in boxed.
pub fn drive(upstream: Arc<Upstream>, call: RunCall) -> impl Future<Output = Outcome> + Send {
    let RunCall {
        turn,
        headers,
        relay,
        control,
        ..
    } = call;
    run(upstream, Box::new(turn), headers, relay, control)
}

/// [`drive`]'s body.
async fn run(
    upstream: Arc<Upstream>,
    mut turn: Box<Turn>,
    headers: http::HeaderMap,
    mut r: Relay,
    control: ControlReceiver,
) -> Outcome {
    // Core takes std Instants; the adapter owns the clock.
    let now = std::time::Instant::now;

    let (response, mut send) = match upstream
        .open(Pairing::Run.stream_path(), &headers, false)
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            turn.handle_transport_failure(e.failure(), now());
            r.drain(&mut turn, now).await;
            return r.finish(*turn);
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
    // One timer for the whole run, moved when the turn's deadline moves.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);

    loop {
        while let Some(bytes) = turn.poll_transmit() {
            chunker.push(bytes);
        }
        r.drain(&mut turn, now).await;
        while let Some(bytes) = turn.poll_transmit() {
            chunker.push(bytes);
        }
        close_after_flush |= r.take_close_request();
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
        if let Some(d) = deadline
            && d != timer.deadline()
        {
            timer.as_mut().reset(d);
        }
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
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        turn.handle_upstream_response(parts.status.as_u16(), &parts.headers, now());
                        recv = Some(body);
                    }
                    Err(e) => turn.handle_transport_failure(transport_failure(&e), now()),
                }
            },
            data = async { recv.as_mut().expect("guarded").data().await }, if recv.is_some() => {
                // Every chunk already received goes to the turn before its events are
                // forwarded: one hand-off to the reader per burst, not per frame.
                let mut next = Some(data);
                let mut released = 0;
                while let Some(data) = next.take() {
                    match data {
                        Some(Ok(chunk)) => {
                            released += chunk.len();
                            turn.handle_upstream_chunk(chunk, now());
                            if let Some(rs) = recv.as_mut() {
                                next = ready_data(rs).await;
                            }
                        }
                        Some(Err(e)) => {
                            recv = None;
                            turn.handle_transport_failure(transport_failure(&e), now());
                        }
                        None => {
                            recv = None;
                            turn.handle_upstream_end(now());
                        }
                    }
                }
                if let Some(rs) = recv.as_mut() {
                    let _ = rs.flow_control().release_capacity(released);
                }
            },
            msg = control.recv(), if control_open => match msg {
                Ok(msg) => r.handle_control(msg, &mut turn, now()),
                Err(_) => control_open = false,
            },
            () = &mut timer, if deadline.is_some() => turn.handle_timeout(now()),
        }
    }
    // Inline rather than a helper `async fn`, whose arguments (the turn among them) would add
    // their size twice to this future.
    r.drain(&mut turn, now).await;
    if !end_sent {
        let _ = send.send_data(Bytes::new(), true);
    }
    let outcome = r.finish(*turn);
    if outcome.checkpoint.is_some() {
        linger(recv);
    }
    outcome
}

/// Longest wait for the server's end of a finished run's stream.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Lets the server end its half of a run that finished normally (read in the background):
/// dropping an open stream resets it, and servers count resets as abuse (h2's rapid-reset
/// guard answers many with GOAWAY ENHANCE_YOUR_CALM, which would kill every run on the
/// connection). A failed or canceled run is reset at once (its stream is dropped): that is the
/// cancel.
fn linger(recv: Option<RecvStream>) {
    if let Some(mut recv) = recv
        && !recv.is_end_stream()
    {
        tokio::spawn(async move {
            let _ = tokio::time::timeout(LINGER, async {
                while let Some(Ok(chunk)) = recv.data().await {
                    let _ = recv.flow_control().release_capacity(chunk.len());
                }
            })
            .await;
        });
    }
}

/// The next chunk of `recv` if one is already there (`None`: it would have to wait).
async fn ready_data(recv: &mut RecvStream) -> Option<Option<Result<Bytes, h2::Error>>> {
    poll_fn(|cx| match recv.poll_data(cx) {
        Poll::Ready(data) => Poll::Ready(Some(data)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}
