//! The downstream listener: HTTP/1.1 and HTTP/2 (hyper's auto builder) on one port, each
//! request handed to [`App::handle`]; graceful shutdown lets in-flight replies finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use cursorpool_host::app::App;
use cursorpool_host::conn_watch::ConnWatch;
use http::Response;

use crate::body::{self, HyperBody};
use crate::watched::Watched;

/// How long in-flight replies may take to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(30);

/// A listening socket on `addr` whose accept queue holds
/// [`LISTEN_BACKLOG`](cursorpool_host::serve::LISTEN_BACKLOG) connections.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std does: a restarted server rebinds while old connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(cursorpool_host::serve::LISTEN_BACKLOG)
}

/// Serves `listener` until `shutdown` resolves, then drains open connections (bounded).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = app.conn_limits();
    let mut builder = Builder::new(TokioExecutor::new());
    // The watch answers heads over the limit (431 in the API's shape) before hyper's own
    // buffer limit (a bare 431) can; HTTP/2 header lists are bounded by h2 itself.
    builder
        .http1()
        .max_buf_size(limits.max_header_bytes.saturating_add(64 * 1024).max(8192))
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    let sweeper = cursorpool_host::serve::sweeper(&app);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let platform = app.platform().clone();
                let app = app.clone();
                let watch = ConnWatch::new(limits, Instant::now());
                let requests = watch.clone();
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    let mut guard = requests.request();
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let body = body::read(incoming, app.body_limit(&parts)).await;
                        guard.body_read();
                        let (head, out) = app.handle(parts, body).await.into_parts();
                        let out = HyperBody::from(out).guarded(guard);
                        Ok::<_, Infallible>(Response::from_parts(head, out))
                    }
                });
                let io = TokioIo::new(Watched::new(stream, watch.clone()));
                let conn = builder.serve_connection(io, svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    tokio::select! {
                        ended = conn => if let Err(e) = ended {
                            tracing::debug!("client connection ended: {e}");
                        },
                        why = watch.expired(platform.as_ref()) => {
                            tracing::debug!(?why, "client connection closed");
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(sweeper);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight replies did not finish within {DRAIN:?}; closing");
    }
}
