//! The downstream client: one keep-alive HTTP/1.1 connection per worker to a proxy's
//! `POST /v1/messages`, timing the first and the last body byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One answered request.
#[derive(Debug)]
pub(crate) struct Answer {
    /// HTTP status.
    pub(crate) status: u16,
    /// The whole body.
    pub(crate) body: Bytes,
    /// Request sent → first body byte.
    pub(crate) ttfb: Duration,
    /// Request sent → end of the body.
    pub(crate) ttlb: Duration,
}

/// A worker's connection (re-opened after a failure).
#[derive(Debug)]
pub(crate) struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client of the proxy at `addr` (connects on first use).
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(s) = &self.sender
            && !s.is_closed()
        {
            return self.sender.as_mut().ok_or_else(String::new);
        }
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(self.sender.insert(sender))
    }

    /// `POST /v1/messages` with `body`, bounded by `timeout` (the connection is dropped on
    /// any failure).
    pub(crate) async fn post(&mut self, body: Bytes, timeout: Duration) -> Result<Answer, String> {
        let res = tokio::time::timeout(timeout, self.post_inner(body)).await;
        match res {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no complete answer within {timeout:?}"))
            }
        }
    }

    async fn post_inner(&mut self, body: Bytes) -> Result<Answer, String> {
        let addr = self.addr;
        let sender = self.sender().await?;
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let req = http::Request::post("/v1/messages")
            .header(http::header::HOST, addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-api-key", "bench")
            .header("anthropic-version", "2023-06-01")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = BytesMut::new();
        let mut ttfb = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                ttfb.get_or_insert_with(|| t0.elapsed());
                out.extend_from_slice(&data);
            }
        }
        let ttlb = t0.elapsed();
        Ok(Answer {
            status,
            body: out.freeze(),
            ttfb: ttfb.unwrap_or(ttlb),
            ttlb,
        })
    }
}

/// `GET http://ADDR{path}` on a fresh connection, as JSON (the sim's `/__sim/counters`).
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))
}
