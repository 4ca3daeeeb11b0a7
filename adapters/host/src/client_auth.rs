//! Client API keys and the management secret: what a request presents, compared in constant
//! time. Keys are never logged or echoed.

use cursorpool_core::api::{ApiError, ErrorType};
use http::HeaderMap;

/// Compares two byte strings in time that depends only on their lengths (never on where they
/// first differ).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The credential in `Authorization: Bearer …`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| v[7..].trim_ascii())
}

/// Whether `presented` equals one of `accepted` (every candidate is compared, so the time
/// does not say which one matched).
pub fn matches_any(accepted: &[String], presented: &[u8]) -> bool {
    accepted.iter().fold(false, |found, k| {
        constant_time_eq(k.as_bytes(), presented) | found
    })
}

/// Whether a client request may use the API: always when no key is configured, else when
/// `x-api-key` or `Authorization: Bearer` carries one of `keys`.
pub fn authorized(keys: &[String], headers: &HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let x_api_key = headers.get("x-api-key").map(|v| v.as_bytes());
    [x_api_key, bearer(headers)]
        .into_iter()
        .flatten()
        .fold(false, |ok, presented| matches_any(keys, presented) | ok)
}

/// The client API's answer to a missing or wrong key (401, rendered in the client's shape).
pub fn rejection() -> ApiError {
    ApiError::new(
        ErrorType::Authentication,
        "invalid API key: send a configured key in x-api-key or Authorization: Bearer",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn keys_from_either_header() {
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        assert!(authorized(&[], &headers(&[])));
        assert!(!authorized(&keys, &headers(&[])));
        assert!(authorized(&keys, &headers(&[("x-api-key", "k2")])));
        assert!(authorized(
            &keys,
            &headers(&[("authorization", "Bearer k1")])
        ));
        assert!(authorized(
            &keys,
            &headers(&[("authorization", "bearer k1")])
        ));
        assert!(!authorized(&keys, &headers(&[("x-api-key", "k3")])));
        assert!(!authorized(&keys, &headers(&[("authorization", "k1")])));
    }
}
