//! Response bodies: complete (JSON answers, errors) or streamed from a channel (SSE). The task
//! rendering a stream pushes bytes; the adapter's HTTP server pulls them. When the client goes
//! away the server drops the receiver, the channel closes, and the rendering task's next send
//! fails — that is how a disconnect reaches the turn.

use bytes::Bytes;

/// The sending half of a streamed body: `send` fails once the client is gone.
pub type BodySender = async_channel::Sender<Bytes>;
/// The receiving half of a streamed body.
pub type BodyReceiver = async_channel::Receiver<Bytes>;

/// A streamed body. `depth` bounds how far rendering may run ahead of the socket.
pub fn channel(depth: usize) -> (BodySender, BodyReceiver) {
    async_channel::bounded(depth)
}

/// Either a complete body or a streamed one.
#[derive(Debug)]
pub enum ResponseBody {
    /// Known in full.
    Full(Bytes),
    /// Streamed (SSE).
    Stream(BodyReceiver),
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(bytes.into())
    }
}

/// A response as the host answers it; the adapter writes it with its HTTP library.
pub type HttpResponse = http::Response<ResponseBody>;
