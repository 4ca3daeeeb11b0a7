//! A client socket whose reads pass through the host's [`ConnWatch`] (head size, head and idle
//! timeouts): a head over the limit is answered with the watch's 431 right on the socket,
//! after which the connection reads as ended and takes no more writes. Clones (async-h1 needs
//! them) share the socket and the state.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use cursorpool_host::conn_watch::{ConnLimits, ConnWatch, ReadVerdict, Rejection};
use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

/// The longest head async-h1 reads (it refuses larger ones without an answer): the watch
/// answers before it.
pub const ASYNC_H1_MAX_HEAD: usize = 8 * 1024 - 1;

/// `limits` as this server can honour them.
pub fn effective(limits: ConnLimits) -> ConnLimits {
    ConnLimits {
        max_header_bytes: limits.max_header_bytes.min(ASYNC_H1_MAX_HEAD),
        ..limits
    }
}

/// A TCP stream with its reads accounted in a [`ConnWatch`].
#[derive(Debug, Clone)]
pub struct Watched {
    io: TcpStream,
    watch: ConnWatch,
    reject: Arc<Mutex<Rejection>>,
}

impl Watched {
    /// Wraps `io`.
    pub fn new(io: TcpStream, watch: ConnWatch) -> Self {
        Self {
            io,
            watch,
            reject: Arc::default(),
        }
    }

    /// Writes what is left of the rejection, then ends our half of the connection; `true`
    /// once it is out.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let io = &mut self.io;
        self.reject
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll_out(|bytes| match bytes {
                Some(b) => Pin::new(&mut *io).poll_write(cx, b),
                None => Pin::new(&mut *io).poll_close(cx).map(|r| r.map(|()| 0)),
            })
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if std::task::ready!(this.poll_reject(cx))? {
            return Poll::Ready(Ok(0));
        }
        let n = std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        match this.watch.on_read(&buf[..n], Instant::now()) {
            ReadVerdict::Pass => Poll::Ready(Ok(n)),
            ReadVerdict::Reject(resp) => {
                this.reject
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .start(resp);
                std::task::ready!(this.poll_reject(cx))?;
                Poll::Ready(Ok(0))
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let blocked = this
            .reject
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocks_writes();
        if blocked {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut this.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}
