//! Fuzz target bodies: each takes arbitrary bytes and checks invariants, panicking on a bug.

use bytes::BytesMut;
use cursorpool_core::connect::envelope::{self, Compression, EnvelopeDecoder, Frame};

/// Upper bound on one frame in the targets: large enough for the corpus, small enough that a
/// hostile length prefix is exercised.
const MAX_FRAME: u32 = 1 << 20;

/// Envelope decoder over arbitrary chunking: the first byte picks the chunk size; whatever
/// decodes must re-encode to the same bytes (uncompressed frames), and decoding the whole input
/// at once must give the same frames as decoding it in chunks.
pub fn envelope(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let whole = decode(rest, rest.len().max(1), false);
    let split = decode(rest, chunk, false);
    assert_eq!(whole, split, "chunking changed the decoded frames");
    let mixed = decode(rest, chunk, true);
    assert_eq!(whole, mixed, "zero-copy chunks changed the decoded frames");
    if let (Ok(frames), false) = (&whole.0, whole.1) {
        let mut out = BytesMut::new();
        for f in frames {
            match f {
                Frame::Message(p) => envelope::encode_message(p, &mut out).expect("fits"),
                Frame::EndStream(p) => envelope::encode_end_stream(p, &mut out).expect("fits"),
            }
        }
        assert_eq!(&out[..], &rest[..out.len()], "re-encoding differs");
    }
}

/// Decodes `data` fed `chunk` bytes at a time (with `mixed`, every other piece as a zero-copy
/// `Bytes` chunk); returns the frames (or the first error) and whether any frame was
/// compressed (compressed frames do not re-encode byte-for-byte).
fn decode(
    data: &[u8],
    chunk: usize,
    mixed: bool,
) -> (Result<Vec<Frame>, envelope::EnvelopeError>, bool) {
    let mut d = EnvelopeDecoder::new(MAX_FRAME);
    d.set_compression(Some(Compression::Gzip));
    let mut frames = Vec::new();
    let compressed = contains_compressed_frame(data);
    for (i, piece) in data.chunks(chunk).enumerate() {
        if mixed && i % 2 == 1 {
            d.handle_chunk(bytes::Bytes::copy_from_slice(piece));
        } else {
            d.handle_bytes(piece);
        }
        loop {
            match d.poll_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (Err(e), compressed),
            }
        }
    }
    (Ok(frames), compressed)
}

/// Walks the envelope headers to see whether any frame sets the compressed flag.
fn contains_compressed_frame(mut data: &[u8]) -> bool {
    while data.len() >= envelope::HEADER_LEN {
        if data[0] & envelope::FLAG_COMPRESSED != 0 {
            return true;
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let Some(next) = data.get(envelope::HEADER_LEN.saturating_add(len)..) else {
            return false;
        };
        data = next;
    }
    false
}

/// End-stream JSON: never panics; whatever parses serializes back to JSON that parses to the
/// same value; a parsed error classifies without panicking.
pub fn end_stream(data: &[u8]) {
    use cursorpool_core::classify::{Failure, classify};
    use cursorpool_core::connect::end_stream;
    let Ok(parsed) = end_stream::parse(data) else {
        return;
    };
    let again = end_stream::parse(&parsed.to_json_bytes()).expect("serialized trailer parses");
    assert_eq!(parsed, again, "end-stream does not round-trip");
    if let Some(failure) = Failure::from_end_stream(&parsed) {
        let c = classify(failure);
        assert!(
            (400..600).contains(&c.client_status),
            "status {}",
            c.client_status
        );
    }
}

/// `AgentServerMessage` decoding and what a client does with it: never panics; every exec
/// request is refused on the result field with its own number (or thrown, then closed);
/// checkpoints are summarised; an end of the stream with any Connect code classifies.
pub fn agent_server_message(data: &[u8]) {
    use cursorpool_core::client::reject_exec;
    use cursorpool_core::update::{ServerEvent, checkpoint_summary, decode_server_message};
    use cursorpool_proto::agent_v1::{agent_client_message, exec_client_control_message};
    let Ok(event) = decode_server_message(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    match event {
        ServerEvent::Exec(req) => {
            let replies = reject_exec(&req, "not available through cursorpool");
            assert!(
                !replies.is_empty(),
                "an exec request must always be answered"
            );
            let last = replies.last().and_then(|m| m.message.as_ref());
            let closes = matches!(
                last,
                Some(agent_client_message::Message::ExecClientControlMessage(c))
                    if matches!(c.message, Some(exec_client_control_message::Message::StreamClose(ref s)) if s.id == req.id)
            );
            assert!(
                closes,
                "every refusal ends with stream_close for the same id"
            );
        }
        ServerEvent::Checkpoint(state) => {
            let _ = checkpoint_summary(&state);
        }
        _ => {}
    }
    // Classification of a trailer built from the first byte: every code maps to a status.
    if let Some(&b) = data.first() {
        use cursorpool_core::classify::{Failure, classify};
        use cursorpool_core::connect::{code::Code, error::ConnectError};
        let code = Code::ALL[usize::from(b) % Code::ALL.len()];
        let err = ConnectError::new(code, "fuzz");
        let c = classify(Failure::Connect(&err));
        assert!((400..600).contains(&c.client_status));
    }
}

/// `BidiAppendRequest` bodies: never panic; whatever decodes re-encodes (hex and binary) to a
/// body that decodes to the same append.
pub fn bidi_append(data: &[u8]) {
    use cursorpool_core::bidi::{DataEncoding, decode_append, encode_append_payload};
    let Ok(append) = decode_append(data) else {
        return;
    };
    for enc in [DataEncoding::Hex, DataEncoding::Binary] {
        let body = encode_append_payload(&append.request_id, append.seqno, &append.payload, enc);
        let again = decode_append(&body).expect("re-encoded append decodes");
        assert_eq!(again, append, "append does not round-trip");
    }
}

/// Anthropic Messages request bodies: never panic; whatever parses estimates to a positive
/// token count (count_tokens must always answer).
pub fn anthropic_request(data: &[u8]) {
    use cursorpool_core::api::{anthropic, tokens};
    let headers = http::HeaderMap::new();
    if let Ok(req) = anthropic::parse_messages_request(data, &headers) {
        assert!(tokens::estimate_input_tokens(&req) > 0);
    }
    let _ = anthropic::parse_count_tokens_request(data, &headers);
}

/// OpenAI Chat Completions request bodies: never panic.
pub fn openai_request(data: &[u8]) {
    use cursorpool_core::api::{openai, tokens};
    let headers = http::HeaderMap::new();
    if let Ok(req) = openai::parse_chat_request(data, &headers) {
        assert!(tokens::estimate_input_tokens(&req) > 0);
    }
}

/// The turn machine in a model of the proxy's conversations (see [`crate::conversations`]).
pub fn conversations(data: &[u8]) {
    crate::conversations::conversations(data);
}

/// Rendering round-trips of arbitrary replies (see [`crate::render`]).
pub fn render_round_trip(data: &[u8]) {
    crate::render::render_round_trip(data);
}
