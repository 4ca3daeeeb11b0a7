//! The HTTP/1.1 pairing of `Run` (spec §2.5): `RunSSE` carries the server's stream, and every
//! client message is a unary `aiserver.v1.BidiService/BidiAppend` call whose body is a
//! `BidiAppendRequest{data = 1 (hex string), request_id = 2, append_seqno = 3,
//! data_binary = 4}`.
//!
//! Encoding follows SDK 1.0.18: lowercase hex in `data`. [`DataEncoding::Binary`] writes the raw
//! bytes into `data_binary` instead; a server accepts both. Decoding accepts upper-case hex too.
//!
//! **Empty messages.** proto3 does not write an empty `string`/`bytes`, so an append whose
//! `AgentClientMessage` serializes to zero bytes (an empty message) has neither `data` nor
//! `data_binary` on the wire, exactly like an append that carries nothing. The two cannot be
//! told apart, so [`decode_append`] accepts that case as an empty payload (which decodes to an
//! `AgentClientMessage` with no member, to be ignored like any unknown message). Only *both*
//! fields non-empty is an error.

use bytes::{Bytes, BytesMut};
use cursorpool_proto::agent_v1::AgentClientMessage;
use cursorpool_proto::aiserver_v1::{BidiAppendRequest, BidiRequestId};
use prost::Message;

use crate::connect::envelope;

/// How an append carries the serialized `AgentClientMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncoding {
    /// Lowercase hex in `data = 1` (what SDK 1.0.18 sends).
    Hex,
    /// Raw bytes in `data_binary = 4`.
    Binary,
}

/// One decoded `BidiAppendRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The run's request id (the `x-request-id` of the paired `RunSSE`).
    pub request_id: String,
    /// Position of this message in the run's client stream: 0, 1, 2, … (0 = run request).
    pub seqno: i64,
    /// The serialized `AgentClientMessage` (no envelope).
    pub payload: Bytes,
}

/// A malformed `BidiAppend` or `RunSSE` request body. Blame: the client that sent it (the SDK
/// talking to the simulated backend, or a buggy peer); answer `invalid_argument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BidiError {
    /// The body is not protobuf.
    #[error("malformed BidiAppendRequest: {0}")]
    Protobuf(prost::DecodeError),
    /// `request_id` is absent or empty.
    #[error("BidiAppendRequest without a request id")]
    MissingRequestId,
    /// `append_seqno` is negative.
    #[error("negative append_seqno {0}")]
    NegativeSeqno(i64),
    /// Both `data` and `data_binary` are set.
    #[error("BidiAppendRequest sets both data and data_binary")]
    BothData,
    /// `data` has an odd number of hex digits.
    #[error("hex data of odd length {0}")]
    OddHexLength(usize),
    /// `data` contains a character that is not a hex digit.
    #[error("invalid hex character {character:?} at offset {offset}")]
    InvalidHex {
        /// The offending character.
        character: char,
        /// Its index in `data`.
        offset: usize,
    },
    /// The `RunSSE` body is not exactly one uncompressed message envelope.
    #[error("malformed RunSSE request body: {0}")]
    RunSseBody(&'static str),
}

/// Encodes the body of a `BidiAppend` call carrying `msg` as message number `seqno` of run
/// `request_id`.
pub fn encode_append(
    request_id: &str,
    seqno: i64,
    msg: &AgentClientMessage,
    encoding: DataEncoding,
) -> Bytes {
    encode_append_payload(request_id, seqno, &msg.encode_to_vec(), encoding)
}

/// Like [`encode_append`], for a message that is already serialized.
pub fn encode_append_payload(
    request_id: &str,
    seqno: i64,
    payload: &[u8],
    encoding: DataEncoding,
) -> Bytes {
    let (data, data_binary) = match encoding {
        DataEncoding::Hex => (hex::encode(payload), Bytes::new()),
        DataEncoding::Binary => (String::new(), Bytes::copy_from_slice(payload)),
    };
    let req = BidiAppendRequest {
        data,
        request_id: Some(BidiRequestId {
            request_id: request_id.to_owned(),
        }),
        append_seqno: seqno,
        data_binary,
    };
    Bytes::from(req.encode_to_vec())
}

/// Decodes and validates the body of a `BidiAppend` call.
pub fn decode_append(body: &[u8]) -> Result<Append, BidiError> {
    let req = BidiAppendRequest::decode(body).map_err(BidiError::Protobuf)?;
    let request_id = req
        .request_id
        .map(|r| r.request_id)
        .filter(|r| !r.is_empty())
        .ok_or(BidiError::MissingRequestId)?;
    if req.append_seqno < 0 {
        return Err(BidiError::NegativeSeqno(req.append_seqno));
    }
    let payload = match (req.data.is_empty(), req.data_binary.is_empty()) {
        (false, false) => return Err(BidiError::BothData),
        (false, true) => decode_hex(&req.data)?,
        (true, _) => req.data_binary,
    };
    Ok(Append {
        request_id,
        seqno: req.append_seqno,
        payload,
    })
}

fn decode_hex(data: &str) -> Result<Bytes, BidiError> {
    hex::decode(data).map(Bytes::from).map_err(|e| match e {
        hex::FromHexError::OddLength => BidiError::OddHexLength(data.len()),
        hex::FromHexError::InvalidHexCharacter { c, index } => BidiError::InvalidHex {
            character: c,
            offset: index,
        },
        // Only produced by the slice-decoding API, which is not used here.
        hex::FromHexError::InvalidStringLength => BidiError::OddHexLength(data.len()),
    })
}

/// The request body of `RunSSE`: one Connect envelope holding `BidiRequestId{request_id}`.
pub fn run_sse_request_body(request_id: &str) -> Bytes {
    let msg = BidiRequestId {
        request_id: request_id.to_owned(),
    };
    let payload = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(envelope::HEADER_LEN + payload.len());
    // A request id is a UUID: nowhere near the 4 GiB an envelope can describe.
    envelope::encode_message(&payload, &mut out)
        .unwrap_or_else(|e| unreachable!("request id envelope: {e}"));
    out.freeze()
}

/// Decodes a `RunSSE` request body (server side). `Ok(None)` for an empty body: a retried
/// `RunSSE` arrives without its body (§10.8) and the request id must come from `x-request-id`.
pub fn decode_run_sse_request_body(body: &[u8]) -> Result<Option<String>, BidiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let (header, payload) = body
        .split_at_checked(envelope::HEADER_LEN)
        .ok_or(BidiError::RunSseBody("truncated envelope header"))?;
    if header[0] != 0 {
        return Err(BidiError::RunSseBody("unexpected envelope flags"));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if usize::try_from(len).ok() != Some(payload.len()) {
        return Err(BidiError::RunSseBody(
            "envelope length does not match the body",
        ));
    }
    let id = BidiRequestId::decode(payload).map_err(BidiError::Protobuf)?;
    if id.request_id.is_empty() {
        return Err(BidiError::MissingRequestId);
    }
    Ok(Some(id.request_id))
}
