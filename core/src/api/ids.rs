//! Reply and tool-call ids in each API's own style, drawn from the crate's seeded
//! [`IdSource`] (core reads no entropy; the adapter seeds it once, tests with a constant).
//!
//! The ids look like the real ones (`msg_01…`, `toolu_01…`, `chatcmpl-…`, `call_…`, base62
//! bodies of the usual length) so clients that sniff prefixes or lengths are happy. They are
//! unique per generator, not secret.

use crate::chat::ApiKind;
use crate::ids::IdSource;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by `len` base62 characters.
fn base62_id(ids: &mut IdSource, prefix: &str, len: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    let (mut bits, mut left) = (0u64, 0);
    for _ in 0..len {
        if left == 0 {
            // Ten 6-bit draws per 64 bits; `% 62` is slightly biased, which ids don't mind.
            bits = ids.next_u64();
            left = 10;
        }
        out.push(char::from(BASE62[(bits & 63) as usize % 62]));
        bits >>= 6;
        left -= 1;
    }
    out
}

/// An Anthropic message id: `msg_01` + 22 base62 characters.
pub fn message_id(ids: &mut IdSource) -> String {
    base62_id(ids, "msg_01", 22)
}

/// An Anthropic tool-use id: `toolu_01` + 22 base62 characters.
pub fn tool_use_id(ids: &mut IdSource) -> String {
    base62_id(ids, "toolu_01", 22)
}

/// An OpenAI completion id: `chatcmpl-` + 29 base62 characters.
pub fn completion_id(ids: &mut IdSource) -> String {
    base62_id(ids, "chatcmpl-", 29)
}

/// An OpenAI tool-call id: `call_` + 24 base62 characters.
pub fn tool_call_id(ids: &mut IdSource) -> String {
    base62_id(ids, "call_", 24)
}

/// The reply id for `api`: [`message_id`] or [`completion_id`].
pub fn reply_id(ids: &mut IdSource, api: ApiKind) -> String {
    match api {
        ApiKind::Anthropic => message_id(ids),
        ApiKind::OpenAi => completion_id(ids),
    }
}

/// The tool-call id for `api`: [`tool_use_id`] or [`tool_call_id`].
pub fn call_id(ids: &mut IdSource, api: ApiKind) -> String {
    match api {
        ApiKind::Anthropic => tool_use_id(ids),
        ApiKind::OpenAi => tool_call_id(ids),
    }
}
