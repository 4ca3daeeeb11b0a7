//! The Connect streaming envelope (spec §4.1): `flags: u8`, `length: u32 BE`, `payload`.
//!
//! [`EnvelopeDecoder`] is incremental: feed it transport chunks of any size with
//! [`EnvelopeDecoder::handle_bytes`] and drain whole frames with
//! [`EnvelopeDecoder::poll_frame`]. A frame's declared length is checked against the configured
//! maximum *before* any buffer is grown for it, so a hostile 4 GiB length prefix costs nothing.
//! Compressed payloads (flag `0x01`) are inflated with a hard cap on the expanded size, so a gzip
//! bomb is an error, not an allocation.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Flag bit: the payload is compressed with the stream's `connect-content-encoding`.
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag bit: the payload is the JSON end-stream message (response direction only).
pub const FLAG_END_STREAM: u8 = 0x02;
/// Flag bits that are defined; any other bit set is a protocol violation.
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_END_STREAM;
/// Size of the envelope header: one flags byte and a big-endian `u32` length.
pub const HEADER_LEN: usize = 5;
/// Default bound on one frame's payload (compressed or expanded). Checkpoints and blobs of
/// several MiB are normal; 64 MiB leaves room while bounding memory per stream.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 64 * 1024 * 1024;

/// The payload compression negotiated for a stream (`connect-content-encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `gzip`, the only encoding cursorpool asks for or produces.
    Gzip,
}

impl Compression {
    /// Parses a `connect-content-encoding` header value; `identity` and empty mean none.
    pub fn from_header(value: &str) -> Result<Option<Self>, EnvelopeError> {
        match value.trim() {
            "" | "identity" => Ok(None),
            v if v.eq_ignore_ascii_case("gzip") => Ok(Some(Self::Gzip)),
            other => Err(EnvelopeError::UnsupportedEncoding(other.to_owned())),
        }
    }
}

/// One decoded envelope, payload already decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A protobuf message.
    Message(Bytes),
    /// The end-stream JSON (`{}` or `{"error":…,"metadata":…}`), see `connect::end_stream`.
    EndStream(Bytes),
}

/// Everything that can be wrong with a stream of envelopes. Every variant blames the peer that
/// produced the bytes (Cursor, or a client talking to the simulated backend).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A flag bit other than `0x01`/`0x02` was set.
    #[error("envelope has reserved flag bits set: {flags:#04x}")]
    ReservedFlags {
        /// The whole flags byte as received.
        flags: u8,
    },
    /// The declared length exceeds the configured maximum; nothing was allocated for it.
    #[error("envelope of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The stream ended inside an envelope.
    #[error("stream ended inside an envelope: {buffered} of {expected} bytes")]
    Truncated {
        /// Bytes of the partial envelope (header included) that arrived.
        buffered: usize,
        /// Bytes the envelope needed (header included); 0 when even the header was incomplete.
        expected: usize,
    },
    /// A compressed frame arrived on a stream that negotiated no compression.
    #[error("compressed envelope without a negotiated content encoding")]
    CompressedWithoutEncoding,
    /// `connect-content-encoding` named an algorithm cursorpool does not speak.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The compressed payload is corrupt.
    #[error("corrupt compressed envelope: {0}")]
    Decompress(String),
    /// The payload expands beyond the maximum frame length (a compression bomb).
    #[error("compressed envelope expands beyond {max} bytes")]
    DecompressedTooLarge {
        /// Configured maximum.
        max: u32,
    },
    /// Bytes arrived after the end-stream envelope.
    #[error("data after the end-stream envelope")]
    DataAfterEndStream,
}

/// A payload too large to be described by the envelope's `u32` length (a local bug, not input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload of {0} bytes does not fit an envelope")]
pub struct PayloadTooLarge(pub usize);

/// Incremental envelope decoder for one stream direction.
///
/// Bytes handed over as [`Bytes`] ([`Self::handle_chunk`]) are not copied while they hold whole
/// envelopes: frames are slices of the chunk. Only an envelope split across chunks is
/// assembled in an own buffer.
#[derive(Debug)]
pub struct EnvelopeDecoder {
    /// The unread rest of the last chunk, while nothing is being assembled in `buf`.
    chunk: Bytes,
    /// Bytes being assembled (an envelope split across chunks, or bytes given as slices).
    buf: BytesMut,
    max_frame_len: u32,
    compression: Option<Compression>,
    ended: bool,
}

impl Default for EnvelopeDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl EnvelopeDecoder {
    /// A decoder that refuses frames (declared or expanded) longer than `max_frame_len`.
    pub fn new(max_frame_len: u32) -> Self {
        Self {
            chunk: Bytes::new(),
            buf: BytesMut::new(),
            max_frame_len,
            compression: None,
            ended: false,
        }
    }

    /// Sets the compression negotiated in the response headers.
    pub fn set_compression(&mut self, compression: Option<Compression>) {
        self.compression = compression;
    }

    /// Appends transport bytes. Frames become available through [`Self::poll_frame`].
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.assemble();
        self.buf.extend_from_slice(data);
    }

    /// Appends a received chunk without copying it (see the type's docs).
    pub fn handle_chunk(&mut self, data: Bytes) {
        if self.chunk.is_empty() && self.buf.is_empty() {
            self.chunk = data;
        } else {
            self.handle_bytes(&data);
        }
    }

    /// Moves the rest of the current chunk into the assembly buffer.
    fn assemble(&mut self) {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// The bytes not yet returned as frames (at most one of the two places holds any).
    fn pending(&self) -> &[u8] {
        if self.chunk.is_empty() {
            &self.buf
        } else {
            &self.chunk
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.chunk.len() + self.buf.len()
    }

    /// Whether the end-stream envelope was decoded.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the stream is unusable: the caller fails it.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, EnvelopeError> {
        let pending = self.pending();
        if pending.len() < HEADER_LEN {
            if self.ended && !pending.is_empty() {
                return Err(EnvelopeError::DataAfterEndStream);
            }
            // A header split across chunks: assemble it.
            self.assemble();
            return Ok(None);
        }
        if self.ended {
            return Err(EnvelopeError::DataAfterEndStream);
        }
        let flags = pending[0];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(EnvelopeError::ReservedFlags { flags });
        }
        let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]);
        if len > self.max_frame_len {
            return Err(EnvelopeError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        let total = HEADER_LEN + len as usize;
        if pending.len() < total {
            self.assemble();
            // Grow once for the rest of this frame (bounded by the check above).
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let raw = if self.chunk.is_empty() {
            self.buf.advance(HEADER_LEN);
            self.buf.split_to(len as usize).freeze()
        } else {
            self.chunk.advance(HEADER_LEN);
            let raw = self.chunk.split_to(len as usize);
            if self.chunk.is_empty() {
                // Holds no reference to the transport's buffer once it is used up.
                self.chunk = Bytes::new();
            }
            raw
        };
        let payload = if flags & FLAG_COMPRESSED != 0 {
            match self.compression {
                Some(Compression::Gzip) => gunzip_bounded(&raw, self.max_frame_len)?,
                None => return Err(EnvelopeError::CompressedWithoutEncoding),
            }
        } else {
            raw
        };
        if flags & FLAG_END_STREAM != 0 {
            self.ended = true;
            Ok(Some(Frame::EndStream(payload)))
        } else {
            Ok(Some(Frame::Message(payload)))
        }
    }

    /// Checks the stream may end here: no partial envelope is buffered.
    pub fn finish(&self) -> Result<(), EnvelopeError> {
        let pending = self.pending();
        if pending.is_empty() {
            return Ok(());
        }
        let expected = if pending.len() >= HEADER_LEN {
            HEADER_LEN
                + u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize
        } else {
            0
        };
        Err(EnvelopeError::Truncated {
            buffered: pending.len(),
            expected,
        })
    }
}

/// Inflates a gzip payload, refusing to produce more than `max` bytes.
fn gunzip_bounded(compressed: &[u8], max: u32) -> Result<Bytes, EnvelopeError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(max as usize));
    let mut reader = GzDecoder::new(compressed).take(u64::from(max) + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| EnvelopeError::Decompress(e.to_string()))?;
    if out.len() > max as usize {
        return Err(EnvelopeError::DecompressedTooLarge { max });
    }
    Ok(Bytes::from(out))
}

fn put_header(flags: u8, len: usize, dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    let len32 = u32::try_from(len).map_err(|_| PayloadTooLarge(len))?;
    dst.reserve(HEADER_LEN + len);
    dst.put_u8(flags);
    dst.put_u32(len32);
    Ok(())
}

/// Appends one envelope with the given flags around `payload`.
pub fn encode(flags: u8, payload: &[u8], dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    put_header(flags, payload.len(), dst)?;
    dst.put_slice(payload);
    Ok(())
}

/// Appends a message envelope (flags 0).
pub fn encode_message(payload: &[u8], dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    encode(0, payload, dst)
}

/// Appends the end-stream envelope (flags `0x02`) around its JSON.
pub fn encode_end_stream(json: &[u8], dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    encode(FLAG_END_STREAM, json, dst)
}

/// Appends a gzip-compressed message envelope (flags `0x01`).
pub fn encode_message_gzip(payload: &[u8], dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let compressed = std::io::Write::write_all(&mut enc, payload)
        .and_then(|()| enc.finish())
        .unwrap_or_default();
    encode(FLAG_COMPRESSED, &compressed, dst)
}

/// Encodes a protobuf message straight into an envelope, without an intermediate buffer.
pub fn encode_proto<M: prost::Message>(msg: &M, dst: &mut BytesMut) -> Result<(), PayloadTooLarge> {
    let len = msg.encoded_len();
    put_header(0, len, dst)?;
    // `put_header` reserved `len` bytes, so encoding cannot run out of room.
    msg.encode_raw(dst);
    Ok(())
}

/// One message envelope as a standalone buffer.
pub fn message_envelope(payload: &[u8]) -> Result<Bytes, PayloadTooLarge> {
    let mut dst = BytesMut::new();
    encode_message(payload, &mut dst)?;
    Ok(dst.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_split_across_chunks_waits_for_the_rest() {
        let mut d = EnvelopeDecoder::default();
        d.handle_bytes(&[0, 0, 0]);
        assert_eq!(d.poll_frame(), Ok(None));
        d.handle_bytes(&[0, 2, 0x3a]);
        assert_eq!(d.poll_frame(), Ok(None));
        d.handle_bytes(&[0x00]);
        assert_eq!(
            d.poll_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(&[0x3a, 0x00]))))
        );
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn encode_proto_matches_encode_message() {
        let v = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("hi".into())),
        };
        let mut a = BytesMut::new();
        encode_proto(&v, &mut a).unwrap();
        let mut b = BytesMut::new();
        encode_message(&prost::Message::encode_to_vec(&v), &mut b).unwrap();
        assert_eq!(a, b);
    }
}
