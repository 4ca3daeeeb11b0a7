//! Identity hints: the client's user id and session id, from the body and the headers.
//!
//! Claude Code sends `metadata.user_id` as a JSON string
//! `{"device_id":…,"account_uuid":…,"session_id":…}` (2.1.x) and, in older versions, as
//! `user_<hash>_account_<uuid>_session_<uuid>`; both carry the session id, which also arrives
//! as the `X-Claude-Code-Session-Id` header. Other clients may send `X-Session-Id`.
//! Precedence: the id inside the user id, then `X-Claude-Code-Session-Id`, then `X-Session-Id`.

use http::HeaderMap;
use serde::Deserialize;

use crate::chat::RequestMetadata;
use crate::connect::error::nesting_exceeds;

/// Longest session id taken (bytes); longer values are not ids and are ignored.
const MAX_SESSION_ID_LEN: usize = 256;

/// The headers that may carry a session id, in precedence order.
const SESSION_HEADERS: [&str; 2] = ["x-claude-code-session-id", "x-session-id"];

/// `user_id` as sent plus the session id found in it or in the headers.
pub(crate) fn request_metadata(user_id: Option<String>, headers: &HeaderMap) -> RequestMetadata {
    let session_id = user_id
        .as_deref()
        .and_then(session_from_user_id)
        .or_else(|| session_from_headers(headers));
    RequestMetadata {
        user_id,
        session_id,
    }
}

/// The session id inside a Claude Code `metadata.user_id`, in either of its formats.
fn session_from_user_id(user_id: &str) -> Option<String> {
    let trimmed = user_id.trim();
    if trimmed.starts_with('{') {
        #[derive(Deserialize)]
        struct UserId {
            session_id: Option<String>,
        }
        if nesting_exceeds(trimmed.as_bytes(), 8) {
            return None;
        }
        let parsed: UserId = serde_json::from_str(trimmed).ok()?;
        return parsed.session_id.as_deref().and_then(clean);
    }
    let (_, session) = trimmed.rsplit_once("_session_")?;
    clean(session)
}

fn session_from_headers(headers: &HeaderMap) -> Option<String> {
    SESSION_HEADERS.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(clean)
    })
}

/// A usable session id: trimmed, non-empty, bounded, no control characters.
fn clean(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty() && s.len() <= MAX_SESSION_ID_LEN && !s.chars().any(char::is_control);
    ok.then(|| s.to_owned())
}
