//! The downstream listener of `cursorpool-lite`: HTTP/1.1 (async-h1) with keep-alive, each
//! request handed to the host's [`App::handle`]; the host's connection watch bounds a head's
//! size (431) and time, a stalled body and an idle keep-alive connection (async-h1 itself
//! never waits more than 60 s for a head). Shutdown stops accepting, lets in-flight
//! replies finish (bounded), then closes every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_host::app::{App, BodyError};
use cursorpool_host::body::{BodyReceiver, ResponseBody};
use cursorpool_host::conn_watch::{ConnWatch, RequestGuard};
use futures_lite::FutureExt as _;
use futures_lite::io::{AsyncBufRead, AsyncRead, AsyncReadExt as _};
use smol::net::{TcpListener, TcpStream};

use crate::watched::{self, Watched};

/// How long in-flight replies may take to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(30);

/// A listening socket on `addr` whose accept queue holds
/// [`LISTEN_BACKLOG`](cursorpool_host::serve::LISTEN_BACKLOG) connections (std binds with a
/// backlog of 128; listening again on the bound socket raises it).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    let backlog = i32::try_from(cursorpool_host::serve::LISTEN_BACKLOG).unwrap_or(i32::MAX);
    rustix::net::listen(&listener, backlog)?;
    TcpListener::try_from(listener)
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight replies (bounded).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let _sweeper = cursorpool_host::serve::sweeper(&app);
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Dropping the sender closes every connection.
    let (close_all, closed) = async_channel::bounded::<()>(1);
    let accept = async {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (app, in_flight, closed) = (app.clone(), in_flight.clone(), closed.clone());
            crate::executor::spawn(async move {
                let conn = connection(stream, app, in_flight);
                let close = async {
                    let _ = closed.recv().await;
                    Ok(())
                };
                if let Err(e) = conn.or(close).await {
                    tracing::debug!("client connection ended: {e}");
                }
            })
            .detach();
        }
    };
    accept.or(shutdown).await;
    drop(listener);
    let deadline = Instant::now() + DRAIN;
    while in_flight.load(Ordering::Acquire) > 0 {
        if Instant::now() >= deadline {
            tracing::warn!("in-flight replies did not finish within {DRAIN:?}; closing");
            break;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    drop(close_all);
}

/// One client connection: requests in turn (keep-alive), closed when its watch expires.
async fn connection(
    stream: TcpStream,
    app: Arc<App>,
    in_flight: Arc<AtomicUsize>,
) -> http_types::Result<()> {
    let watch = ConnWatch::new(watched::effective(app.conn_limits()), Instant::now());
    let io = Watched::new(stream, watch.clone());
    let requests = watch.clone();
    let platform = app.platform().clone();
    let serve = async_h1::accept(io, move |req| {
        let (app, guard) = (app.clone(), InFlight::enter(&in_flight));
        let request = requests.request();
        async move { Ok(respond(app, req, guard, request).await) }
    });
    serve
        .or(async {
            let why = watch.expired(platform.as_ref()).await;
            tracing::debug!(?why, "client connection closed");
            Ok(())
        })
        .await
}

/// Converts the request, lets the host answer, converts the answer.
async fn respond(
    app: Arc<App>,
    mut req: http_types::Request,
    guard: InFlight,
    mut request: RequestGuard,
) -> http_types::Response {
    let mut builder =
        http::Request::builder()
            .method(req.method().as_ref())
            .uri(match req.url().query() {
                Some(q) => format!("{}?{q}", req.url().path()),
                None => req.url().path().to_owned(),
            });
    for (name, values) in req.iter() {
        for v in values.iter() {
            builder = builder.header(name.as_str(), v.as_str());
        }
    }
    let parts = match builder.body(()) {
        Ok(r) => r.into_parts().0,
        Err(_) => {
            // A request line or header http cannot represent: answer as the host would.
            let mut resp = http_types::Response::new(http_types::StatusCode::BadRequest);
            resp.set_body("malformed request");
            return resp;
        }
    };
    let limit = app.body_limit(&parts);
    let body = read_body(req.take_body(), limit).await;
    request.body_read();
    let (head, body) = app.handle(parts, body).await.into_parts();
    let status = status_for_h1(head.status.as_u16());
    let mut resp = http_types::Response::new(status);
    let reader = match body {
        ResponseBody::Full(b) => {
            let len = b.len();
            http_types::Body::from_reader(Reply::full(b, (guard, request)), Some(len))
        }
        ResponseBody::Stream(rx) => {
            http_types::Body::from_reader(Reply::stream(rx, (guard, request)), None)
        }
    };
    resp.set_body(reader);
    // After the body: the host's content type replaces the body's default.
    for (name, value) in &head.headers {
        if let Ok(v) = value.to_str() {
            resp.insert_header(name.as_str(), v);
        }
    }
    if !head.headers.contains_key(http::header::CONTENT_TYPE) {
        resp.remove_header("content-type");
    }
    resp
}

/// The status async-h1 sends for the host's `status`. http-types knows only the registered
/// statuses: Anthropic's 529 (overloaded) goes out as 503, which clients treat alike (retry
/// later, with `retry-after` when given); any other unknown one by its class.
fn status_for_h1(status: u16) -> http_types::StatusCode {
    use http_types::StatusCode as S;
    S::try_from(status).unwrap_or(match status {
        400..=499 => S::BadRequest,
        529 => S::ServiceUnavailable,
        _ => S::InternalServerError,
    })
}

/// Reads a whole request body, at most `limit` bytes.
async fn read_body(body: http_types::Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    let mut reader = body.take(limit as u64 + 1);
    match reader.read_to_end(&mut out).await {
        Ok(_) if out.len() > limit => Err(BodyError::TooLarge),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}

/// Counts a reply as in flight from its request until its body is written (or dropped).
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A reply body as async-h1 reads it: the host's bytes, then the end. When async-h1 drops it
/// (written, or the client went away) a streamed reply's channel closes and the renderer
/// stops.
struct Reply {
    current: Bytes,
    rest: Option<BodyReceiver>,
    _guard: (InFlight, RequestGuard),
}

impl Reply {
    fn full(bytes: Bytes, guard: (InFlight, RequestGuard)) -> Self {
        Self {
            current: bytes,
            rest: None,
            _guard: guard,
        }
    }

    fn stream(rx: BodyReceiver, guard: (InFlight, RequestGuard)) -> Self {
        Self {
            current: Bytes::new(),
            rest: Some(rx),
            _guard: guard,
        }
    }
}

impl AsyncBufRead for Reply {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            let Some(rx) = this.rest.as_mut() else {
                break;
            };
            match rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(b)) => this.current = b,
                Poll::Ready(None) => this.rest = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.current[..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let n = amt.min(this.current.len());
        let _ = this.current.split_to(n);
    }
}

impl AsyncRead for Reply {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(b)) => b,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}
