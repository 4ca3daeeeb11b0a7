//! The downstream listener: HTTP/1.1 and HTTP/2 (hyper's auto builder) on one port, each
//! request handed to [`App::handle`]; graceful shutdown lets in-flight replies finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use cursorpool_host::app::App;
use http::Response;

use crate::body::{self, HyperBody};

/// How long in-flight replies may take to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` resolves, then drains open connections (bounded).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let builder = Builder::new(TokioExecutor::new());
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
                let app = app.clone();
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let (parts, incoming) = req.into_parts();
                        let body = body::read(incoming, app.body_limit(&parts)).await;
                        let (head, out) = app.handle(parts, body).await.into_parts();
                        Ok::<_, Infallible>(Response::from_parts(head, HyperBody::from(out)))
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("client connection ended: {e}");
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
