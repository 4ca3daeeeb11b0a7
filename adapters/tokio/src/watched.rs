//! A client socket whose reads pass through the host's [`ConnWatch`] (head size, head and idle
//! timeouts): a head over the limit is answered with the watch's 431 right on the socket,
//! after which the connection reads as ended and takes no more writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use cursorpool_host::conn_watch::{ConnWatch, ReadVerdict, Rejection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `io` with its reads accounted in a [`ConnWatch`].
#[derive(Debug)]
pub struct Watched<T> {
    io: T,
    watch: ConnWatch,
    reject: Rejection,
}

impl<T> Watched<T> {
    /// Wraps `io`.
    pub fn new(io: T, watch: ConnWatch) -> Self {
        Self {
            io,
            watch,
            reject: Rejection::default(),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Watched<T> {
    /// Writes what is left of the rejection, then ends our half of the connection; `true`
    /// once it is out.
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let io = &mut self.io;
        self.reject.poll_out(|bytes| match bytes {
            Some(b) => Pin::new(&mut *io).poll_write(cx, b),
            None => Pin::new(&mut *io).poll_shutdown(cx).map_ok(|()| 0),
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::task::ready!(this.poll_reject(cx))? {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        match this.watch.on_read(&buf.filled()[before..], Instant::now()) {
            ReadVerdict::Pass => Poll::Ready(Ok(())),
            ReadVerdict::Reject(resp) => {
                buf.set_filled(before);
                this.reject.start(resp);
                std::task::ready!(this.poll_reject(cx))?;
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.reject.blocks_writes() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut this.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
