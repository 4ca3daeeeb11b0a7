//! Loopback transports for the server tests, around the shared in-process agent client
//! [`crate::common::ClientRun`]: an `h2` client (full-duplex `Run`, cleartext or over TLS, and
//! unary calls) and a hyper HTTP/1.1 client (`RunSSE` + `BidiAppend` the way the SDK pairs
//! them, and unary calls).
#![allow(dead_code, unreachable_pub)] // each test crate uses its own part of this module

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cursorpool_core::bidi;
use cursorpool_proto::agent_v1::AgentClientMessage;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::common::{self, BlobStore, ClientRun};

/// Upper bound for one test's network exchanges; only a hang ever reaches it.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` under [`TIMEOUT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("test exceeded its time bound")
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// A fresh UUID-shaped request id.
pub fn request_id() -> String {
    let n = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// The headers the SDK sends on an agent call (§3.1).
pub fn sdk_headers(token: &str, request_id: &str, content_type: &str) -> http::HeaderMap {
    let mut h = common::headers(token, content_type, Some(request_id));
    for (name, value) in [
        ("x-cursor-client-version", "sdk-1.0.18"),
        ("x-cursor-client-type", "sdk"),
        ("x-ghost-mode", "true"),
        ("user-agent", "connect-es/1.6.1"),
    ] {
        h.insert(name, http::HeaderValue::from_static(value));
    }
    h.insert(
        "x-original-request-id",
        http::HeaderValue::from_str(request_id).expect("header value"),
    );
    h
}

/// The first message of a new conversation asking `text` (empty state, no tools).
pub fn new_turn(text: &str) -> AgentClientMessage {
    common::run_request(text, Some(Bytes::new()), &[], "default", &[])
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 (h2 client crate).

/// An HTTP/2 client connection; `closed` resolves with how the connection ended.
pub struct H2Client {
    pub send: h2::client::SendRequest<Bytes>,
    pub closed: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// HTTP/2 with prior knowledge over `io`.
pub async fn h2_handshake<IO>(io: IO) -> H2Client
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    let closed = tokio::spawn(conn);
    H2Client { send, closed }
}

/// Cleartext prior-knowledge HTTP/2 (h2c) to `addr`.
pub async fn h2c_connect(addr: SocketAddr) -> H2Client {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    h2_handshake(tcp).await
}

/// A POST request head for `path`.
pub fn h2_request(path: &str, headers: http::HeaderMap) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = format!("http://127.0.0.1{path}").parse().expect("uri");
    *req.headers_mut() = headers;
    req
}

/// Drives one full-duplex `Run` to its end: sends `first`, answers every server message on
/// the same stream, and half-closes after the server's end-stream (as the SDK does). Returns
/// the stream's error if it failed (reset, GOAWAY, dropped connection).
pub async fn h2_run(
    client: &mut H2Client,
    token: &str,
    first: &AgentClientMessage,
    run: &mut ClientRun,
    store: &mut BlobStore,
) -> Result<(), h2::Error> {
    let headers = sdk_headers(token, &request_id(), "application/connect+proto");
    let mut send = client.send.clone().ready().await?;
    let (response, mut body_tx) =
        send.send_request(h2_request("/agent.v1.AgentService/Run", headers), false)?;
    body_tx.send_data(common::envelope(first), false)?;
    let response = response.await?;
    assert_eq!(response.status(), 200, "Run answers 200");
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+proto"
    );
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        for reply in run.handle_server_bytes(&chunk, store) {
            // A failed send means the stream died; reading the body tells how.
            let _ = body_tx.send_data(common::envelope(&reply), false);
        }
    }
    // The response ended cleanly; the SDK closes its request body now.
    let _ = body_tx.send_data(Bytes::new(), true);
    Ok(())
}

/// A one-request/one-response call over HTTP/2.
pub async fn h2_unary(
    client: &mut H2Client,
    path: &str,
    headers: http::HeaderMap,
    body: Bytes,
) -> (u16, http::HeaderMap, Bytes) {
    let mut send = client.send.clone().ready().await.expect("h2 ready");
    let (response, mut body_tx) = send
        .send_request(h2_request(path, headers), body.is_empty())
        .expect("send request");
    if !body.is_empty() {
        body_tx.send_data(body, true).expect("send body");
    }
    let response = response.await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut recv = response.into_body();
    let mut out = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.expect("body");
        let _ = recv.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, headers, out.freeze())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 (hyper client).

/// A one-request/one-response call over a fresh HTTP/1.1 connection.
pub async fn h1_unary(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: http::HeaderMap,
    body: Bytes,
) -> (u16, http::HeaderMap, Bytes) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    h1_unary_on(tcp, method, path, headers, body).await
}

/// A one-request/one-response HTTP/1.1 call over `io`.
pub async fn h1_unary_on<IO>(
    io: IO,
    method: &str,
    path: &str,
    headers: http::HeaderMap,
    body: Bytes,
) -> (u16, http::HeaderMap, Bytes)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let response = h1_send(io, method, path, headers, body).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, body)
}

async fn h1_send<IO>(
    io: IO,
    method: &str,
    path: &str,
    mut headers: http::HeaderMap,
    body: Bytes,
) -> http::Response<hyper::body::Incoming>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    headers.insert("host", http::HeaderValue::from_static("127.0.0.1"));
    let mut req = http::Request::new(Full::new(body));
    *req.method_mut() = method.parse().expect("method");
    *req.uri_mut() = path.parse().expect("path");
    *req.headers_mut() = headers;
    send.send_request(req).await.expect("h1 response")
}

/// Sends one `BidiAppend` (hex `data`, as SDK 1.0.18) and checks it was accepted.
pub async fn bidi_append(
    addr: SocketAddr,
    token: &str,
    request_id: &str,
    seqno: i64,
    msg: &AgentClientMessage,
) {
    let body = bidi::encode_append(request_id, seqno, msg, bidi::DataEncoding::Hex);
    let mut headers = sdk_headers(token, request_id, "application/proto");
    headers.insert("x-cursor-streaming", http::HeaderValue::from_static("true"));
    let (status, _, body) = h1_unary(
        addr,
        "POST",
        "/aiserver.v1.BidiService/BidiAppend",
        headers,
        body,
    )
    .await;
    assert_eq!(status, 200, "BidiAppend {seqno} refused: {body:?}");
}

/// How an HTTP/1.1 `RunSSE` response ended.
#[derive(Debug)]
pub enum SseEnd {
    /// The chunked body ended normally.
    Complete,
    /// The connection broke before the last chunk.
    Aborted(hyper::Error),
}

/// Drives one run over HTTP/1.1 the way the SDK does (§2.5): the `run_request` append goes out
/// before `RunSSE` is even opened, and each batch of answers is sent as concurrent appends,
/// later sequence numbers first and the first of the batch only once the others were accepted,
/// so the server must buffer them out of order.
pub async fn sse_run(
    addr: SocketAddr,
    token: &str,
    first: &AgentClientMessage,
    run: &mut ClientRun,
    store: &mut BlobStore,
) -> SseEnd {
    let rid = request_id();
    bidi_append(addr, token, &rid, 0, first).await;
    let mut next_seq = 1i64;

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut headers = sdk_headers(token, &rid, "application/connect+proto");
    headers.insert("x-cursor-streaming", http::HeaderValue::from_static("true"));
    let response = h1_send(
        tcp,
        "POST",
        "/agent.v1.AgentService/RunSSE",
        headers,
        bidi::run_sse_request_body(&rid),
    )
    .await;
    assert_eq!(response.status(), 200, "RunSSE answers 200");
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+proto"
    );
    let mut body = response.into_body();
    let token: Arc<str> = Arc::from(token);
    let rid: Arc<str> = Arc::from(rid.as_str());
    loop {
        let frame = match body.frame().await {
            None => return SseEnd::Complete,
            Some(Err(e)) => return SseEnd::Aborted(e),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let numbered: Vec<(i64, AgentClientMessage)> = run
            .handle_server_bytes(&data, store)
            .into_iter()
            .map(|m| {
                next_seq += 1;
                (next_seq - 1, m)
            })
            .collect();
        let Some(((head_seq, head), rest)) = numbered.split_first() else {
            continue;
        };
        let mut in_flight = tokio::task::JoinSet::new();
        for (seq, msg) in rest.iter().rev().cloned() {
            let (token, rid) = (Arc::clone(&token), Arc::clone(&rid));
            in_flight.spawn(async move { bidi_append(addr, &token, &rid, seq, &msg).await });
        }
        while let Some(done) = in_flight.join_next().await {
            done.expect("append task");
        }
        bidi_append(addr, &token, &rid, *head_seq, head).await;
    }
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// A TLS client trusting only `cert_pem`, offering `alpn`.
pub fn tls_connector(cert_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("PEM certificate");
    roots.add(cert).expect("trust the generated certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
