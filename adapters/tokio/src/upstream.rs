//! One pooled HTTP/2 connection to Cursor (or the simulated backend) per account: cleartext
//! prior-knowledge h2c for `http://` bases, TLS (rustls, webpki roots plus optional extra roots)
//! with ALPN `h2` for `https://`. Many concurrent runs share the connection; a connection that
//! went away (GOAWAY, reset) is replaced on the next call, so there is no TLS handshake per
//! request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use cursorpool_host::live::{Connections, Gauge};
use cursorpool_host::relay::{Outcome, RunCall};
use cursorpool_host::upstream::{self as seam, BoxFuture, Target, UnaryAnswer, UpstreamError};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Method, Request};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::coalesce::YieldOnWake;

/// Receive window cursorpool grants Cursor per stream and per connection: large, so a fast
/// answer never waits for a WINDOW_UPDATE round trip.
const RECV_WINDOW: u32 = 4 * 1024 * 1024;

/// An `h2` failure as the host's upstream error (core's transport kind plus h2's words).
pub fn h2_error(e: &h2::Error) -> UpstreamError {
    UpstreamError::Transport {
        failure: crate::run::transport_failure(e),
        message: format!("HTTP/2 error: {e}"),
    }
}

/// A live connection and its generation (so a failure only retires the connection it saw).
#[derive(Clone)]
struct Conn {
    generation: u64,
    send: SendRequest<Bytes>,
    /// Cleared when the connection's driver task ends (the socket is closed).
    alive: Arc<AtomicBool>,
}

/// The pooled connection of one account.
pub struct Upstream {
    target: Target,
    tls: Option<TlsConnector>,
    conn: Mutex<Option<Conn>>,
    generations: AtomicU64,
    connects: Arc<AtomicU64>,
    /// Connections whose driver task is alive.
    open: Arc<Gauge>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.target)
            .field("connects", &self.connects.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// An upstream for `base_url`; `extra_roots_pem` adds trusted CA certificates (PEM) on
    /// top of the webpki roots, e.g. the simulated backend's self-signed certificate.
    pub fn new(base_url: &str, extra_roots_pem: Option<&[u8]>) -> Result<Self, UpstreamError> {
        let target = Target::parse(base_url)?;
        let tls = if target.tls {
            Some(TlsConnector::from(seam::tls_config(
                extra_roots_pem,
                &target,
                b"h2",
            )?))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            conn: Mutex::new(None),
            generations: AtomicU64::new(0),
            connects: Arc::new(AtomicU64::new(0)),
            open: Arc::new(Gauge::default()),
        })
    }

    /// The parsed base URL.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many connections (TCP + TLS + HTTP/2 handshakes) were made so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let authority = self.target.authority();
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                authority: authority.clone(),
                source,
            })?;
        // Small frames (heartbeats, tool results) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(RECV_WINDOW)
            .initial_connection_window_size(RECV_WINDOW)
            .enable_push(false);
        let alive = Arc::new(AtomicBool::new(true));
        let send = match &self.tls {
            Some(connector) => {
                let name = ServerName::try_from(self.target.host.clone()).map_err(|e| {
                    UpstreamError::Tls {
                        authority: authority.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let io = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls {
                        authority: authority.clone(),
                        reason: e.to_string(),
                    })?;
                if io.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(UpstreamError::Tls {
                        authority,
                        reason: "server did not negotiate HTTP/2 (ALPN h2)".to_owned(),
                    });
                }
                let (send, conn) = builder.handshake(io).await.map_err(|e| h2_error(&e))?;
                tokio::spawn(drive(conn, self.open.enter(), alive.clone()));
                send
            }
            None => {
                let (send, conn) = builder.handshake(tcp).await.map_err(|e| h2_error(&e))?;
                tokio::spawn(drive(conn, self.open.enter(), alive.clone()));
                send
            }
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            send,
            alive,
        })
    }

    /// The current connection, connecting first when there is none. The lock is held only
    /// while a connection is being established, so concurrent first calls share one handshake.
    async fn current(&self) -> Result<Conn, UpstreamError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // Boxed: connecting (TCP, TLS, HTTP/2 handshake) is a ~4 KB future, rare next to the
        // pooled path, and every run's task would otherwise carry (and copy) that space.
        let c = Box::pin(self.connect()).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn retire(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.generation == generation) {
            *slot = None;
        }
    }

    /// Opens a stream: `POST path` with `headers`. The caller writes the body on the returned
    /// [`SendStream`] and reads the response from the future. A dead pooled connection is
    /// replaced once, transparently.
    pub async fn open(
        &self,
        path: &str,
        headers: &HeaderMap,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), UpstreamError> {
        self.open_with(Method::POST, path, headers, end_of_stream)
            .await
    }

    /// [`Upstream::open`] with any method (`path` may carry a query).
    async fn open_with(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        end_of_stream: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), UpstreamError> {
        let uri = self.target.uri(path)?;
        let mut last_err = None;
        for _ in 0..2 {
            let conn = self.current().await?;
            let generation = conn.generation;
            let ready = match conn.send.ready().await {
                Ok(r) => r,
                Err(e) => {
                    self.retire(generation).await;
                    last_err = Some(e);
                    continue;
                }
            };
            let mut ready = ready;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri.clone())
                .body(())
                .map_err(|_| UpstreamError::BadBaseUrl(path.to_owned()))?;
            *req.headers_mut() = headers.clone();
            match ready.send_request(req, end_of_stream) {
                Ok(pair) => return Ok(pair),
                Err(e) => {
                    self.retire(generation).await;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.map_or_else(
            || UpstreamError::BadBaseUrl(path.to_owned()),
            |e| h2_error(&e),
        ))
    }

    /// One unary call (`path` may carry a query, e.g. the login poll): sends `body`, returns
    /// the status, headers and whole response body (bounded by `max_len`). The path may carry
    /// credentials: it is never logged.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        max_len: usize,
    ) -> Result<UnaryAnswer, UpstreamError> {
        let (response, mut send) = self
            .open_with(method, path, headers, body.is_empty())
            .await?;
        if !body.is_empty() {
            send.reserve_capacity(body.len());
            send.send_data(body, true).map_err(|e| h2_error(&e))?;
        }
        let response = response.await.map_err(|e| h2_error(&e))?;
        let status = response.status().as_u16();
        let (parts, recv) = response.into_parts();
        let body = read_bounded(recv, max_len).await?;
        Ok((status, parts.headers, body))
    }
}

impl seam::Upstream for Upstream {
    fn drive(self: Arc<Self>, call: RunCall) -> BoxFuture<'static, Outcome> {
        Box::pin(crate::run::drive(self, call))
    }

    fn unary<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        headers: &'a HeaderMap,
        body: Bytes,
        max_len: usize,
    ) -> BoxFuture<'a, Result<UnaryAnswer, UpstreamError>> {
        Box::pin(self.call(method, path, headers, body, max_len))
    }

    fn connects(&self) -> u64 {
        Upstream::connects(self)
    }

    fn connections(&self) -> Connections {
        // The pooled connection carries every stream (HTTP/2 multiplexes); it counts as pooled
        // while it lives. A slot being filled right now counts as not pooled.
        let pooled = self.conn.try_lock().map_or(0, |slot| {
            usize::from(
                slot.as_ref()
                    .is_some_and(|c| c.alive.load(Ordering::Acquire)),
            )
        });
        Connections {
            open: self.open.get(),
            pooled,
        }
    }
}

/// Reads a whole response body, releasing flow-control capacity as it goes, up to `max_len`.
async fn read_bounded(mut recv: RecvStream, max_len: usize) -> Result<Bytes, UpstreamError> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| h2_error(&e))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if out.len() + chunk.len() > max_len {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Drives one connection until it closes; `open` counts it meanwhile and `alive` says so. Its
/// writes are coalesced across streams ([`YieldOnWake`]).
async fn drive<T>(
    conn: h2::client::Connection<T, Bytes>,
    open: cursorpool_host::live::GaugeGuard,
    alive: Arc<AtomicBool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = YieldOnWake::new(conn).await {
        tracing::debug!(error = %e, "upstream connection ended");
    }
    alive.store(false, Ordering::Release);
    drop(open);
}
