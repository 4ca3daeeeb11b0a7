//! One account's HTTP/1.1 upstream: async-h1 client calls over smol TCP (or TLS through
//! futures-rustls, ALPN `http/1.1`), with a keep-alive pool of idle connections. A connection
//! goes back to the pool only once its response body was read to its clean end; a pooled
//! connection found dead on reuse (it failed before any response byte) is retried once on a
//! fresh one.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use cursorpool_core::classify::TransportFailure;
use cursorpool_host::live::{Connections, Gauge, GaugeGuard};
use cursorpool_host::relay::{Outcome, RunCall};
use cursorpool_host::upstream::{
    self as host, BoxFuture, Target, UnaryAnswer, Upstream, UpstreamError,
};
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use futures_rustls::rustls::ClientConfig;
use futures_rustls::{TlsConnector, pki_types::ServerName};
use http::{HeaderMap, Method};
use smol::net::TcpStream;

/// Most idle kept-alive connections kept per account: HTTP/1.1 carries one call at a time, so a
/// busy account needs one per concurrent stream plus its appends in flight; fewer means a new
/// TCP (and TLS) connection for every burst, and under a thousand concurrent streams the
/// closed ones fill the ephemeral port range with TIME_WAIT sockets. An idle connection holds
/// a socket and nothing else.
pub const MAX_IDLE: usize = 1024;

/// The byte stream of one connection: plain TCP or TLS.
#[derive(Clone)]
enum Io {
    Plain(TcpStream),
    /// async-h1 needs a `Clone` stream; the lock is only held inside one poll.
    Tls(Arc<Mutex<TlsStream<TcpStream>>>),
}

/// One HTTP/1.1 connection (cheap to clone: clones share the socket). Counts the bytes read so
/// that a failure can tell whether any response byte arrived.
#[derive(Clone)]
pub(crate) struct Conn {
    io: Io,
    read: Arc<AtomicU64>,
    /// Counts the socket as open until its last clone is dropped.
    _open: Arc<GaugeGuard>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.io {
            Io::Plain(_) => "tcp",
            Io::Tls(_) => "tls",
        };
        f.debug_struct("Conn")
            .field("io", &kind)
            .field("read", &self.read.load(Ordering::Relaxed))
            .finish()
    }
}

impl Conn {
    fn new(io: Io, open: &Arc<Gauge>) -> Self {
        Self {
            io,
            read: Arc::new(AtomicU64::new(0)),
            _open: Arc::new(open.enter()),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut *lock(s)).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = res {
            this.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut *lock(s)).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut *lock(s)).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_close(cx),
            Io::Tls(s) => Pin::new(&mut *lock(s)).poll_close(cx),
        }
    }
}

/// A response whose body is still on its connection. Dropping it closes the connection (unless
/// a pooled clone exists, which only [`Exchange::finish`] creates after a clean end).
pub(crate) struct Exchange {
    /// HTTP status.
    pub(crate) status: u16,
    /// Response headers.
    pub(crate) headers: HeaderMap,
    response: http_types::Response,
    conn: Conn,
    /// The response allows the connection to be reused once its body is read.
    reusable: bool,
    /// The body was read to its end.
    ended: bool,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("status", &self.status)
            .field("conn", &self.conn)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// Reads body bytes into `buf`: `Ok(0)` at the body's clean end.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.response).poll_read(cx, buf);
        if let Poll::Ready(Ok(0)) = res {
            self.ended = true;
        }
        res
    }

    /// The exchange is over: its connection returns to `upstream`'s pool if the body was read
    /// to its end and the server keeps the connection alive; otherwise it is closed.
    pub(crate) fn finish(self, upstream: &H1Upstream) {
        if self.ended && self.reusable {
            let Self { response, conn, .. } = self;
            drop(response);
            upstream.checkin(conn);
        }
    }
}

/// An account's HTTP/1.1 upstream (Cursor or the sim) with its keep-alive pool.
pub struct H1Upstream {
    target: Target,
    tls: Option<TlsConnector>,
    idle: Mutex<Vec<Conn>>,
    connects: AtomicU64,
    /// Sockets open (pooled or carrying a call).
    open: Arc<Gauge>,
}

impl std::fmt::Debug for H1Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Upstream")
            .field("target", &self.target)
            .field("idle", &lock(&self.idle).len())
            .field("connects", &self.connects())
            .finish_non_exhaustive()
    }
}

impl H1Upstream {
    /// The upstream at `base_url` (`extra_roots_pem`: CA certificates trusted on top of the
    /// webpki roots). Makes no connection yet.
    pub fn new(base_url: &str, extra_roots_pem: Option<&[u8]>) -> Result<Self, UpstreamError> {
        let target = Target::parse(base_url)?;
        let tls = if target.tls {
            let config: Arc<ClientConfig> =
                host::tls_config(extra_roots_pem, &target, b"http/1.1")?;
            Some(TlsConnector::from(config))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            idle: Mutex::new(Vec::new()),
            connects: AtomicU64::new(0),
            open: Arc::new(Gauge::default()),
        })
    }

    /// The parsed base URL.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Idle kept-alive connections in the pool now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Connections made so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    fn checkout(&self) -> Option<Conn> {
        lock(&self.idle).pop()
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// A new connection (TCP, then TLS when the base URL is `https`).
    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let authority = self.target.authority();
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                authority: authority.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        self.connects.fetch_add(1, Ordering::Relaxed);
        let Some(connector) = &self.tls else {
            return Ok(Conn::new(Io::Plain(tcp), &self.open));
        };
        let tls_err = |reason: String| UpstreamError::Tls {
            authority: authority.clone(),
            reason,
        };
        let name = ServerName::try_from(self.target.host.clone())
            .map_err(|e| tls_err(format!("server name: {e}")))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| tls_err(e.to_string()))?;
        match stream.get_ref().1.alpn_protocol() {
            None | Some(b"http/1.1") => {}
            Some(other) => {
                return Err(tls_err(format!(
                    "the server chose ALPN {:?}",
                    String::from_utf8_lossy(other)
                )));
            }
        }
        Ok(Conn::new(Io::Tls(Arc::new(Mutex::new(stream))), &self.open))
    }

    /// Sends one request (`path`: an RPC path, the base URL's prefix is added) and returns once
    /// the response head arrived. A pooled connection that fails before any response byte is
    /// replaced by a fresh one, once.
    pub(crate) async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Exchange, UpstreamError> {
        let template = self.template(method, path, headers)?;
        self.send_with(&template, body).await
    }

    /// [`H1Upstream::send`] of a prepared request head: the calls of a run (its `BidiAppend`s)
    /// share one, so the URL is parsed and the headers converted once per run, not per call.
    pub(crate) async fn send_with(
        &self,
        template: &Template,
        body: &Bytes,
    ) -> Result<Exchange, UpstreamError> {
        let mut fresh_only = false;
        loop {
            let pooled = if fresh_only { None } else { self.checkout() };
            let reused = pooled.is_some();
            let conn = match pooled {
                Some(c) => c,
                None => self.connect().await?,
            };
            // `Request::clone` leaves the body empty: every attempt gets its own.
            let mut req = template.0.clone();
            req.set_body(http_types::Body::from_bytes(body.to_vec()));
            let before = conn.bytes_read();
            match async_h1::connect(conn.clone(), req).await {
                Ok(response) => return Ok(exchange(response, conn)),
                Err(e) if reused && conn.bytes_read() == before => {
                    tracing::debug!(error = %e, "pooled upstream connection was dead; retrying");
                    fresh_only = true;
                }
                Err(e) => return Err(h1_error(&e)),
            }
        }
    }

    /// The head of a request to `path` (method, URL, headers; no body).
    pub(crate) fn template(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Template, UpstreamError> {
        let bad = || UpstreamError::BadBaseUrl(path.to_owned());
        let scheme = if self.target.tls { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}{}",
            self.target.authority(),
            self.target.path(path)
        );
        let url = http_types::Url::parse(&url).map_err(|_| bad())?;
        let method: http_types::Method = method.as_str().parse().map_err(|_| bad())?;
        let mut req = http_types::Request::new(method, url);
        for (name, value) in headers {
            let (Ok(name), Some(value)) = (
                http_types::headers::HeaderName::from_bytes(name.as_str().as_bytes().to_vec()),
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse::<http_types::headers::HeaderValue>().ok()),
            ) else {
                tracing::debug!(header = %name, "header not representable in HTTP/1.1; skipped");
                continue;
            };
            req.append_header(name, value);
        }
        Ok(Template(req))
    }

    /// One whole unary call: the answer's body is read up to `max_len` bytes (a longer body is
    /// cut there and its connection closed).
    pub(crate) async fn call(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
        max_len: usize,
    ) -> Result<UnaryAnswer, UpstreamError> {
        let template = self.template(method, path, headers)?;
        self.call_with(&template, body, max_len).await
    }

    /// [`H1Upstream::call`] of a prepared request head.
    pub(crate) async fn call_with(
        &self,
        template: &Template,
        body: &Bytes,
        max_len: usize,
    ) -> Result<UnaryAnswer, UpstreamError> {
        let mut ex = self.send_with(template, body).await?;
        let mut out = BytesMut::new();
        // Answers are small (an append's is empty): a stack buffer, read in a loop.
        let mut buf = [0u8; 2048];
        loop {
            let n = futures_lite::future::poll_fn(|cx| ex.poll_read(cx, &mut buf))
                .await
                .map_err(|e| io_failure(&e))?;
            if n == 0 {
                break;
            }
            if out.len() + n > max_len {
                let room = max_len - out.len();
                out.extend_from_slice(&buf[..room]);
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let answer = (ex.status, ex.headers.clone(), out.freeze());
        ex.finish(self);
        Ok(answer)
    }
}

/// A prepared request head (see [`H1Upstream::send_with`]).
#[derive(Debug)]
pub(crate) struct Template(http_types::Request);

/// Wraps an async-h1 response head.
fn exchange(response: http_types::Response, conn: Conn) -> Exchange {
    let status = u16::from(response.status());
    let mut headers = HeaderMap::new();
    let mut reusable = true;
    for (name, values) in response.iter() {
        let Ok(hname) = http::HeaderName::from_bytes(name.as_str().as_bytes()) else {
            continue;
        };
        for v in values.iter() {
            if let Ok(hv) = http::HeaderValue::from_str(v.as_str()) {
                headers.append(hname.clone(), hv);
            }
        }
    }
    if headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.eq_ignore_ascii_case("close")))
    {
        reusable = false;
    }
    // Without a length or chunking the body would run to the connection's close.
    let delimited = headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
        || status == 204
        || status == 304;
    Exchange {
        status,
        headers,
        response,
        conn,
        reusable: reusable && delimited,
        ended: false,
    }
}

/// Core's transport failure kind for an IO error while reading a response.
pub(crate) fn io_failure(e: &io::Error) -> UpstreamError {
    let failure = match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            TransportFailure::ProtocolViolation
        }
        _ => TransportFailure::ConnectionReset,
    };
    UpstreamError::Transport {
        failure,
        message: e.to_string(),
    }
}

/// Core's transport failure kind for an async-h1 error (writing the request or reading the
/// response head).
fn h1_error(e: &http_types::Error) -> UpstreamError {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return io_failure(io);
    }
    let message = e.to_string();
    let failure = if message == "connection closed" || message == "empty response" {
        TransportFailure::ConnectionReset
    } else {
        TransportFailure::ProtocolViolation
    };
    UpstreamError::Transport { failure, message }
}

impl Upstream for H1Upstream {
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
        Box::pin(async move { self.call(&method, path, headers, &body, max_len).await })
    }

    fn connects(&self) -> u64 {
        H1Upstream::connects(self)
    }

    fn connections(&self) -> Connections {
        Connections {
            open: self.open.get(),
            pooled: self.idle(),
        }
    }
}
