//! Response bodies: complete (JSON answers, errors) or streamed (SSE). The adapter's HTTP
//! server pulls a stream's chunks as the socket takes them (see [`crate::sse_reply`]); when the
//! client goes away the server drops the stream — that is how a disconnect reaches the turn.

use std::pin::Pin;

use bytes::Bytes;

/// A streamed body: chunks until the end of the reply.
pub type BodyReceiver = Pin<Box<dyn futures_lite::Stream<Item = Bytes> + Send + Sync>>;

/// Either a complete body or a streamed one.
pub enum ResponseBody {
    /// Known in full.
    Full(Bytes),
    /// Streamed (SSE).
    Stream(BodyReceiver),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(bytes.into())
    }
}

/// A response as the host answers it; the adapter writes it with its HTTP library.
pub type HttpResponse = http::Response<ResponseBody>;
