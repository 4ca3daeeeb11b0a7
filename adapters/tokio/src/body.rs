//! The host's answers as hyper bodies, and request bodies read within the host's limit.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cursorpool_host::app::BodyError;
use cursorpool_host::body::{BodyReceiver, ResponseBody};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

/// A host response body as hyper writes it.
pub enum HyperBody {
    /// Known in full (taken on the first poll).
    Full(Option<Bytes>),
    /// Streamed: when hyper drops it (client gone) the channel closes and the renderer stops.
    Stream(BodyReceiver),
}

impl std::fmt::Debug for HyperBody {
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
        match b {
            ResponseBody::Full(b) => Self::Full(Some(b)),
            ResponseBody::Stream(rx) => Self::Stream(rx),
        }
    }
}

impl Body for HyperBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(rx) => match rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(_) => SizeHint::default(),
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
