//! The baseline: a client speaking Cursor's protocol directly to the sim — cursorpool-core's
//! [`Turn`] over one shared HTTP/2 connection (cursorpool-tokio's [`Upstream`]), driven like
//! the proxy drives it but with no downstream HTTP. Tool calls are answered at once.
//!
//! A reply's "first byte" is its `Start` event for streaming workloads and its `Stop` for
//! non-streaming ones (a non-streaming HTTP answer cannot begin earlier); its "last byte" is
//! the `Stop`. Like a proxy client, the caller gets its samples at the final `Stop`; the rest
//! of the run (end-stream) finishes in the background.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::api::anthropic::parse_messages_request;
use cursorpool_core::chat::{ApiKind, Part, ReplyEvent, StopReason};
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::flow::chunker::Chunker;
use cursorpool_core::flow::window::SendWindow;
use cursorpool_core::headers::{self, CallHeaders, CallKind, ClientIdentity};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{Framing, ModelMap, ToolResultInput, Turn, TurnEvent, TurnParams};
use cursorpool_tokio::run::transport_failure;
use cursorpool_tokio::upstream::Upstream;
use tokio::sync::oneshot;

use crate::workload::TOOL_RESULT;

/// One downstream-equivalent reply of a direct run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    /// Reply start → its first byte.
    pub(crate) ttfb: Duration,
    /// Reply start → its end.
    pub(crate) ttlb: Duration,
}

/// A direct client of the sim.
#[derive(Debug)]
pub(crate) struct Direct {
    upstream: Arc<Upstream>,
    access_token: String,
    seq: AtomicU64,
}

const STREAM: u32 = 1;

impl Direct {
    /// A client of the sim at `base_url` with `access_token`.
    pub(crate) fn new(base_url: &str, access_token: &str) -> Result<Self, String> {
        Ok(Self {
            upstream: Arc::new(Upstream::new(base_url, None).map_err(|e| e.to_string())?),
            access_token: access_token.to_owned(),
            seq: AtomicU64::new(1),
        })
    }

    /// One run of the Anthropic request `body`: every reply until the final one (a tool call
    /// is answered immediately, so a tool round trip yields two replies).
    pub(crate) async fn run(&self, body: &[u8], timeout: Duration) -> Result<Vec<Reply>, String> {
        let req = parse_messages_request(body, &http::HeaderMap::new())
            .map_err(|e| format!("request does not parse: {e:?}"))?;
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut ids = IdSource::new(n);
        let request_id = ids.uuid_v4();
        let headers = headers::build(
            &ClientIdentity::default(),
            CallHeaders {
                access_token: &self.access_token,
                request_id: &request_id,
                original_request_id: None,
                kind: CallKind::Run,
            },
        )
        .map_err(|e| e.to_string())?;
        let params = TurnParams::from_chat(
            &req,
            ApiKind::Anthropic,
            &ModelMap::default(),
            format!("bench-direct-{n}"),
            Framing::Run,
            ids,
        );
        let streams = req.stream;
        let (tx, rx) = oneshot::channel();
        let upstream = self.upstream.clone();
        let task = tokio::spawn(tokio::time::timeout(
            timeout * 2,
            drive(upstream, headers, params, streams, tx),
        ));
        let res = tokio::time::timeout(timeout, rx).await;
        match res {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the run ended without a final reply".to_owned()),
            Err(_) => {
                task.abort();
                Err(format!("no final reply within {timeout:?}"))
            }
        }
    }
}

/// Drives one run to its end; sends the replies on `done` at the final `Stop` (or the error).
async fn drive(
    upstream: Arc<Upstream>,
    headers: http::HeaderMap,
    params: TurnParams,
    streams: bool,
    done: oneshot::Sender<Result<Vec<Reply>, String>>,
) {
    let mut done = Some(done);
    let mut report = |r: Result<Vec<Reply>, String>| {
        if let Some(d) = done.take() {
            let _ = d.send(r);
        }
    };
    let mut turn = Turn::new(params, Instant::now());
    let (response, mut send) = match upstream.open(headers::path::RUN, &headers, false).await {
        Ok(pair) => pair,
        Err(e) => return report(Err(e.to_string())),
    };
    let mut response = Some(response);
    let mut recv: Option<h2::RecvStream> = None;
    let mut chunker = Chunker::new();
    let mut window = SendWindow::granted();
    let _ = window.open_stream(STREAM);
    let mut close_after_flush = false;
    let mut end_sent = false;
    let mut replies = Vec::new();
    let mut reply_start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut calls: Vec<String> = Vec::new();

    loop {
        while let Some(b) = turn.poll_transmit() {
            chunker.push(b);
        }
        while let Some(ev) = turn.poll_event() {
            let now = Instant::now();
            match ev {
                TurnEvent::Reply(ReplyEvent::Start { .. }) => {
                    if streams {
                        first.get_or_insert(now);
                    }
                }
                TurnEvent::Reply(ReplyEvent::ToolCall { id, .. }) => calls.push(id),
                TurnEvent::Reply(ReplyEvent::Stop { reason, .. }) => {
                    let ttlb = now - reply_start;
                    replies.push(Reply {
                        ttfb: first.map_or(ttlb, |f| f - reply_start),
                        ttlb,
                    });
                    if reason != StopReason::ToolUse {
                        report(Ok(std::mem::take(&mut replies)));
                    }
                }
                TurnEvent::Reply(ReplyEvent::Error(c)) => report(Err(format!("{c:?}"))),
                TurnEvent::Reply(_) => {}
                TurnEvent::Parked { .. } => {
                    let results = calls
                        .drain(..)
                        .map(|id| ToolResultInput {
                            tool_use_id: id,
                            content: vec![Part::Text(TOOL_RESULT.to_owned())],
                            is_error: false,
                        })
                        .collect();
                    reply_start = Instant::now();
                    first = None;
                    if let Err(e) = turn.handle_tool_results(results, reply_start) {
                        report(Err(format!("resume: {e}")));
                    }
                }
                TurnEvent::UpstreamClose => close_after_flush = true,
                TurnEvent::Finished { .. } => report(Err("finished without a Stop".to_owned())),
                TurnEvent::Failed { classification, .. } => {
                    report(Err(format!("run failed: {classification:?}")));
                }
            }
        }
        while let Some(b) = turn.poll_transmit() {
            chunker.push(b);
        }
        if chunker.is_empty() && close_after_flush && !end_sent {
            let _ = send.send_data(Bytes::new(), true);
            end_sent = true;
        }
        if turn.is_done() {
            break;
        }
        if !chunker.is_empty() {
            send.reserve_capacity(chunker.pending_len());
        }
        let deadline = turn.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            cap = poll_fn(|cx| send.poll_capacity(cx)), if !chunker.is_empty() => match cap {
                Some(Ok(n)) => {
                    let _ = window.handle_capacity_assigned(STREAM, u32::try_from(n).unwrap_or(u32::MAX));
                    while let Ok(Some(chunk)) = chunker.poll_chunk_within(&mut window, STREAM) {
                        if let Err(e) = send.send_data(chunk, false) {
                            turn.handle_transport_failure(transport_failure(&e), Instant::now());
                            break;
                        }
                    }
                }
                Some(Err(e)) => turn.handle_transport_failure(transport_failure(&e), Instant::now()),
                None => turn.handle_transport_failure(TransportFailure::WriteAfterEnd, Instant::now()),
            },
            res = async { response.as_mut().expect("guarded").await }, if response.is_some() => {
                response = None;
                match res {
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        turn.handle_upstream_response(parts.status.as_u16(), &parts.headers, Instant::now());
                        recv = Some(body);
                    }
                    Err(e) => turn.handle_transport_failure(transport_failure(&e), Instant::now()),
                }
            },
            data = async { recv.as_mut().expect("guarded").data().await }, if recv.is_some() => match data {
                Some(Ok(chunk)) => {
                    if let Some(rs) = recv.as_mut() {
                        let _ = rs.flow_control().release_capacity(chunk.len());
                    }
                    turn.handle_upstream_data(&chunk, Instant::now());
                }
                Some(Err(e)) => {
                    recv = None;
                    turn.handle_transport_failure(transport_failure(&e), Instant::now());
                }
                None => {
                    recv = None;
                    turn.handle_upstream_end(Instant::now());
                }
            },
            () = sleep_until(deadline) => turn.handle_timeout(Instant::now()),
        }
    }
    if !end_sent {
        let _ = send.send_data(Bytes::new(), true);
    }
    report(Err("the run ended without a final reply".to_owned()));
    // Read the stream to its HTTP/2 end rather than dropping it (which resets it: many resets
    // make the server answer GOAWAY ENHANCE_YOUR_CALM).
    if let Some(mut rs) = recv {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(chunk)) = rs.data().await {
                let _ = rs.flow_control().release_capacity(chunk.len());
            }
            let _ = rs.trailers().await;
        })
        .await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
