//! HTTP/1.1 with hyper: every one-request/one-response call goes to
//! [`crate::model::Sim::handle_request`] (`BidiAppend` included), and `RunSSE` opens a run whose
//! outputs become a chunked `application/connect+proto` body, one chunk per envelope batch.
//!
//! hyper flushes each chunk as soon as the body yields it. When the model resets, sends GOAWAY
//! on, or drops a run, the body fails and hyper aborts the connection without the final chunk,
//! which is what an HTTP/1.1 client sees of those faults. A client that goes away drops the
//! body, and with it the run's guard, which reports the close to the model.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::accept::ConnContext;
use super::driver::{RunGuard, RunOutputs, Shared};
use super::respond::{self, MAX_BODY, RUN_SSE_PATH};
use crate::model::{HttpRequest, HttpResponse, RunOutput};

/// Serves HTTP/1.1 (keep-alive) on one connection.
pub(crate) async fn serve<IO>(io: IO, ctx: ConnContext) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = ctx.shared;
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(io::Error::other)
}

/// Answers one request.
async fn handle(shared: &Arc<Shared>, req: http::Request<Incoming>) -> http::Response<SimBody> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "request body unreadable");
            let err = respond::connect_error(400, "invalid_argument", "unreadable request body");
            return full(err);
        }
    };
    let path = parts.uri.path();
    if parts.method == http::Method::POST && path == RUN_SSE_PATH {
        let transport = match respond::run_sse_transport(&body, &parts.headers) {
            Ok(t) => t,
            Err(resp) => return full(resp),
        };
        return match shared.open_run(transport, &parts.headers) {
            Ok((guard, outputs)) => {
                let (head, ()) = respond::run_head().into_parts();
                http::Response::from_parts(head, SimBody::run(guard, outputs))
            }
            Err(resp) => full(resp),
        };
    }
    let resp = shared.apply(|sim, now, wall| {
        let req = HttpRequest {
            method: parts.method.as_str(),
            path,
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
        };
        sim.handle_request(req, now, wall)
    });
    full(resp)
}

fn full(resp: HttpResponse) -> http::Response<SimBody> {
    let (head, ()) = respond::head(&resp, false).into_parts();
    http::Response::from_parts(head, SimBody::full(resp.body))
}

/// Why a run's response body stopped without its last chunk: hyper then closes the
/// connection, the HTTP/1.1 rendering of an HTTP/2 reset, GOAWAY or drop.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunAborted {
    /// The model reset the run (`RST_STREAM` on HTTP/2).
    #[error("run reset with HTTP/2 code {0}")]
    Reset(u32),
    /// The model sent GOAWAY on the run's connection.
    #[error("GOAWAY with HTTP/2 code {0}")]
    GoAway(u32),
    /// The model dropped the connection.
    #[error("connection dropped")]
    Dropped,
    /// The run's outputs stopped without an end (the server is shutting down).
    #[error("run abandoned")]
    Abandoned,
}

/// A response body: either a whole buffer or the live outputs of a run.
#[derive(Debug)]
pub(crate) struct SimBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Run {
        /// `None` once the run ended (body finished or failed).
        guard: Option<RunGuard>,
        outputs: RunOutputs,
        /// A fault to report on the next poll, once hyper has flushed what came before it.
        abort: Option<RunAborted>,
    },
}

impl SimBody {
    fn full(bytes: Bytes) -> Self {
        let bytes = (!bytes.is_empty()).then_some(bytes);
        Self {
            kind: Kind::Full(bytes),
        }
    }

    fn run(guard: RunGuard, outputs: RunOutputs) -> Self {
        Self {
            kind: Kind::Run {
                guard: Some(guard),
                outputs,
                abort: None,
            },
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = RunAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RunAborted>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Run {
                guard,
                outputs,
                abort,
            } => {
                if let Some(e) = abort.take() {
                    tracing::debug!(error = %e, "aborting the HTTP/1.1 connection of a run");
                    return Poll::Ready(Some(Err(e)));
                }
                let Some(run) = guard.as_mut() else {
                    return Poll::Ready(None);
                };
                let fault = match ready!(outputs.poll_recv(cx)) {
                    Some(RunOutput::Data(bytes)) => {
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    Some(RunOutput::Finished) => {
                        run.mark_ended();
                        *guard = None;
                        return Poll::Ready(None);
                    }
                    Some(RunOutput::Reset { code }) => RunAborted::Reset(code),
                    Some(RunOutput::GoAway { code }) => RunAborted::GoAway(code),
                    Some(RunOutput::DropConnection) => RunAborted::Dropped,
                    None => RunAborted::Abandoned,
                };
                if !matches!(fault, RunAborted::Abandoned) {
                    run.mark_ended();
                }
                *guard = None;
                // hyper flushes the chunks it holds when the body is pending; fail the body on
                // the next poll so the client receives everything sent before the fault.
                *abort = Some(fault);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Run { guard, abort, .. } => guard.is_none() && abort.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Run { .. } => SizeHint::default(),
        }
    }
}
