//! The host's answers as hyper bodies, and request bodies read within the host's limit.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cursorpool_host::app::BodyError;
use cursorpool_host::body::{BodyReceiver, ResponseBody};
use cursorpool_host::conn_watch::RequestGuard;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

/// A host response body as hyper writes it, with the request's connection-watch guard held
/// until hyper is done with it (written, or dropped when the client went away).
#[derive(Debug)]
pub struct HyperBody {
    inner: Inner,
    _request: Option<RequestGuard>,
}

enum Inner {
    /// Known in full (taken on the first poll).
    Full(Option<Bytes>),
    /// Streamed: when hyper drops it (client gone) the reply's events are dropped, which
    /// tells the run.
    Stream(BodyReceiver),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(b) => f
                .debug_tuple("Full")
                .field(&b.as_ref().map(Bytes::len))
                .finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<ResponseBody> for HyperBody {
    fn from(b: ResponseBody) -> Self {
        let inner = match b {
            ResponseBody::Full(b) => Inner::Full(Some(b)),
            ResponseBody::Stream(rx) => Inner::Stream(rx),
        };
        Self {
            inner,
            _request: None,
        }
    }
}

impl HyperBody {
    /// The body, holding `request` (the connection counts it in flight) until dropped.
    pub fn guarded(mut self, request: RequestGuard) -> Self {
        self._request = Some(request);
        self
    }
}

impl Body for HyperBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Stream(rx) => match rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}

/// Reads a whole request body, at most `limit` bytes.
pub async fn read(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}
