//! The Connect envelope codec: framing over arbitrary chunk boundaries and hostile input.

use bytes::{Bytes, BytesMut};
use cursorpool_core::connect::envelope::{
    self, Compression, EnvelopeDecoder, EnvelopeError, Frame, HEADER_LEN,
};
use proptest::prelude::*;

fn decode_all(chunks: &[&[u8]], max: u32) -> Result<Vec<Frame>, EnvelopeError> {
    let mut d = EnvelopeDecoder::new(max);
    d.set_compression(Some(Compression::Gzip));
    let mut out = Vec::new();
    for c in chunks {
        d.handle_bytes(c);
        while let Some(f) = d.poll_frame()? {
            out.push(f);
        }
    }
    d.finish()?;
    Ok(out)
}

/// Like [`decode_all`], handing each chunk over as `Bytes` when its flag says so (else as a
/// slice), the way the tokio adapter (chunks) and the smol one (slices) do.
fn decode_mixed(chunks: &[&[u8]], as_chunk: &[bool]) -> Result<Vec<Frame>, EnvelopeError> {
    let mut d = EnvelopeDecoder::new(1 << 20);
    d.set_compression(Some(Compression::Gzip));
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        if as_chunk.get(i).copied().unwrap_or(true) {
            d.handle_chunk(Bytes::copy_from_slice(c));
        } else {
            d.handle_bytes(c);
        }
        while let Some(f) = d.poll_frame()? {
            out.push(f);
        }
    }
    d.finish()?;
    Ok(out)
}

fn stream_of(payloads: &[Vec<u8>], end: Option<&[u8]>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for p in payloads {
        envelope::encode_message(p, &mut buf).unwrap();
    }
    if let Some(json) = end {
        envelope::encode_end_stream(json, &mut buf).unwrap();
    }
    buf.to_vec()
}

#[test]
fn a_four_gib_length_prefix_is_refused_before_allocating() {
    let mut d = EnvelopeDecoder::default();
    d.handle_bytes(&[0x00, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        d.poll_frame(),
        Err(EnvelopeError::TooLarge {
            len: u32::MAX,
            max: envelope::DEFAULT_MAX_FRAME_LEN
        })
    );
    // Nothing beyond the five header bytes was buffered for it.
    assert!(d.buffered_len() == HEADER_LEN);
}

#[test]
fn a_truncated_frame_is_reported_at_end_of_stream() {
    let bytes = stream_of(&[b"hello".to_vec()], None);
    let cut = &bytes[..bytes.len() - 2];
    assert_eq!(
        decode_all(&[cut], 1024),
        Err(EnvelopeError::Truncated {
            buffered: cut.len(),
            expected: bytes.len()
        })
    );
    assert_eq!(
        decode_all(&[&bytes[..3]], 1024),
        Err(EnvelopeError::Truncated {
            buffered: 3,
            expected: 0
        })
    );
}

#[test]
fn reserved_flag_bits_are_a_typed_error() {
    for flags in [0x04u8, 0x08, 0x80, 0xff] {
        assert_eq!(
            decode_all(&[&[flags, 0, 0, 0, 0]], 1024),
            Err(EnvelopeError::ReservedFlags { flags })
        );
    }
}

#[test]
fn a_gzip_bomb_is_refused_with_bounded_memory() {
    // 64 MiB of zeros compresses to ~64 KiB; the decoder allows 1 MiB.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let mut buf = BytesMut::new();
    envelope::encode_message_gzip(&zeros, &mut buf).unwrap();
    drop(zeros);
    assert!(buf.len() < 1024 * 1024, "bomb is small on the wire");
    assert_eq!(
        decode_all(&[&buf], 1024 * 1024),
        Err(EnvelopeError::DecompressedTooLarge { max: 1024 * 1024 })
    );
}

#[test]
fn gzip_frames_decode_to_their_payload() {
    let mut buf = BytesMut::new();
    envelope::encode_message_gzip(b"compressed hello", &mut buf).unwrap();
    assert_eq!(
        decode_all(&[&buf], 1024),
        Ok(vec![Frame::Message(Bytes::from_static(
            b"compressed hello"
        ))])
    );
}

#[test]
fn a_compressed_frame_without_negotiated_encoding_is_refused() {
    let mut buf = BytesMut::new();
    envelope::encode_message_gzip(b"x", &mut buf).unwrap();
    let mut d = EnvelopeDecoder::default();
    d.handle_bytes(&buf);
    assert_eq!(
        d.poll_frame(),
        Err(EnvelopeError::CompressedWithoutEncoding)
    );
}

#[test]
fn corrupt_gzip_is_a_typed_error() {
    let mut buf = BytesMut::new();
    envelope::encode(envelope::FLAG_COMPRESSED, b"not gzip at all", &mut buf).unwrap();
    assert!(matches!(
        decode_all(&[&buf], 1024),
        Err(EnvelopeError::Decompress(_))
    ));
}

#[test]
fn bytes_after_the_end_stream_are_refused() {
    let mut bytes = stream_of(&[], Some(b"{}"));
    bytes.extend_from_slice(&[0, 0, 0, 0, 0]);
    assert_eq!(
        decode_all(&[&bytes], 1024),
        Err(EnvelopeError::DataAfterEndStream)
    );
}

#[test]
fn content_encoding_header_values_are_parsed() {
    assert_eq!(
        Compression::from_header("gzip"),
        Ok(Some(Compression::Gzip))
    );
    assert_eq!(Compression::from_header("identity"), Ok(None));
    assert_eq!(Compression::from_header(""), Ok(None));
    assert!(Compression::from_header("br").is_err());
}

#[test]
fn the_spec_end_stream_envelope_decodes() {
    // Appendix C: end-stream envelope with {}.
    let bytes = [0x02, 0x00, 0x00, 0x00, 0x02, 0x7b, 0x7d];
    assert_eq!(
        decode_all(&[&bytes], 1024),
        Ok(vec![Frame::EndStream(Bytes::from_static(b"{}"))])
    );
    let mut enc = BytesMut::new();
    envelope::encode_end_stream(b"{}", &mut enc).unwrap();
    assert_eq!(&enc[..], &bytes);
}

#[test]
fn messages_whole_in_a_chunk_are_slices_of_it_not_copies() {
    let chunk = Bytes::from(stream_of(&[b"first".to_vec(), b"second".to_vec()], None));
    let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
    let mut d = EnvelopeDecoder::default();
    d.handle_chunk(chunk.clone());
    for want in [&b"first"[..], b"second"] {
        let Ok(Some(Frame::Message(p))) = d.poll_frame() else {
            panic!("expected a message");
        };
        assert_eq!(&p[..], want);
        assert!(range.contains(&(p.as_ptr() as usize)), "payload was copied");
    }
    assert_eq!(d.poll_frame(), Ok(None));
    assert_eq!(d.buffered_len(), 0);
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn a_message_split_across_chunks_is_assembled_and_a_cut_one_is_truncated() {
    let bytes = stream_of(&[b"hello".to_vec()], None);
    let mut d = EnvelopeDecoder::default();
    d.handle_chunk(Bytes::copy_from_slice(&bytes[..7]));
    assert_eq!(d.poll_frame(), Ok(None));
    assert_eq!(d.buffered_len(), 7);
    assert_eq!(
        d.finish(),
        Err(EnvelopeError::Truncated {
            buffered: 7,
            expected: HEADER_LEN + 5
        })
    );
    d.handle_chunk(Bytes::copy_from_slice(&bytes[7..]));
    assert_eq!(
        d.poll_frame(),
        Ok(Some(Frame::Message(Bytes::from_static(b"hello"))))
    );
    assert_eq!(d.finish(), Ok(()));
}

proptest! {
    /// Every way of splitting the same byte stream yields the same frames.
    #[test]
    fn the_decoder_gives_the_same_frames_for_every_split(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        end in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        as_chunk in prop::collection::vec(any::<bool>(), 0..21),
    ) {
        let bytes = stream_of(&payloads, end.as_deref());
        let whole = decode_all(&[&bytes], 1 << 20).unwrap();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut prev = 0;
        for p in points {
            chunks.push(&bytes[prev..p]);
            prev = p;
        }
        chunks.push(&bytes[prev..]);
        let split = decode_all(&chunks, 1 << 20).unwrap();
        prop_assert_eq!(&split, &whole);
        let mixed = decode_mixed(&chunks, &as_chunk).unwrap();
        prop_assert_eq!(&mixed, &whole);
        let mut expected: Vec<Frame> = payloads.iter().map(|p| Frame::Message(Bytes::from(p.clone()))).collect();
        if let Some(e) = end { expected.push(Frame::EndStream(Bytes::from(e))); }
        prop_assert_eq!(whole, expected);
    }

    /// Arbitrary bytes never panic the decoder; they decode or fail with a typed error.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&[&data], 4096);
    }

    /// Whatever decodes re-encodes to the same bytes (uncompressed frames).
    #[test]
    fn decoded_frames_reencode_to_the_input(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..5),
    ) {
        let bytes = stream_of(&payloads, Some(b"{}"));
        let frames = decode_all(&[&bytes], 4096).unwrap();
        let mut out = BytesMut::new();
        for f in frames {
            match f {
                Frame::Message(p) => envelope::encode_message(&p, &mut out).unwrap(),
                Frame::EndStream(p) => envelope::encode_end_stream(&p, &mut out).unwrap(),
            }
        }
        prop_assert_eq!(&out[..], &bytes[..]);
    }
}
