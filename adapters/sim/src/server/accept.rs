//! The listening socket: accepts connections, terminates TLS when configured, and picks the
//! protocol of each connection — HTTP/2 when ALPN says `h2` or when the client opens with the
//! HTTP/2 connection preface (cleartext prior knowledge, h2c), HTTP/1.1 otherwise.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::driver::Shared;
use super::tls::Tls;
use super::{http1, http2};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a client may take to finish the TLS handshake or send its first bytes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection task needs.
#[derive(Debug, Clone)]
pub(crate) struct ConnContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tls: Option<Tls>,
    pub(crate) h2: http2::H2Settings,
}

/// Accepts connections until the task is aborted; aborting it aborts every connection too.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: ConnContext) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let ctx = ctx.clone();
                    connections.spawn(async move {
                        if let Err(e) = serve_connection(tcp, peer, ctx).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one accepted TCP connection to its end.
async fn serve_connection(tcp: TcpStream, peer: SocketAddr, ctx: ConnContext) -> io::Result<()> {
    tracing::debug!(%peer, "connection accepted");
    // Envelopes are flushed one by one; do not let Nagle hold them back.
    tcp.set_nodelay(true)?;
    match &ctx.tls {
        None => dispatch(tcp, ctx).await,
        Some(tls) => {
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            if alpn_h2 {
                http2::serve(Prefixed::new(Bytes::new(), stream), ctx).await
            } else {
                dispatch(stream, ctx).await
            }
        }
    }
}

/// Reads just enough of the connection to tell an HTTP/2 preface from an HTTP/1.1 request,
/// then serves it with the matching protocol (the bytes read are replayed).
async fn dispatch<IO>(mut io: IO, ctx: ConnContext) -> io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut head = [0u8; PREFACE.len()];
    let mut len = 0;
    let is_h2 = loop {
        let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, io.read(&mut head[len..]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
        if n == 0 {
            // Closed before saying anything (a port probe, a client giving up).
            return Ok(());
        }
        len += n;
        if head[..len] != PREFACE[..len] {
            break false;
        }
        if len == PREFACE.len() {
            break true;
        }
    };
    let io = Prefixed::new(Bytes::copy_from_slice(&head[..len]), io);
    if is_h2 {
        http2::serve(io, ctx).await
    } else {
        http1::serve(io, ctx).await
    }
}

/// A byte stream with some already-read bytes put back in front of it.
#[derive(Debug)]
pub(crate) struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    fn new(prefix: Bytes, io: IO) -> Self {
        Self { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
