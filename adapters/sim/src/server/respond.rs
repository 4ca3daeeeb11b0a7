//! What both HTTP versions share: the streaming paths, turning the model's [`HttpResponse`]
//! into an `http::Response`, the response head of a run, and the server's own Connect errors.

use bytes::Bytes;
use cursorpool_core::bidi::decode_run_sse_request_body;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};

use crate::model::{HttpResponse, Transport};

/// The full-duplex HTTP/2 run.
pub(crate) const RUN_PATH: &str = "/agent.v1.AgentService/Run";
/// The server-streaming half of the HTTP/1.1 pairing.
pub(crate) const RUN_SSE_PATH: &str = "/agent.v1.AgentService/RunSSE";
/// Largest request body accepted on a one-request/one-response call (blob uploads included).
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;

/// Headers that describe an HTTP/1.1 connection and are illegal in HTTP/2 (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The response head of the model's answer. Headers that are not valid HTTP are skipped
/// (logged); for HTTP/2 the connection-specific ones are dropped too.
pub(crate) fn head(resp: &HttpResponse, for_h2: bool) -> http::Response<()> {
    let mut out = http::Response::new(());
    *out.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &resp.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            tracing::warn!(header = %name, "model produced an invalid header; skipped");
            continue;
        };
        if for_h2 && CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        out.headers_mut().append(name, value);
    }
    out
}

/// The response head of a run: `200`, `application/connect+proto` (spec §3.2).
pub(crate) fn run_head() -> http::Response<()> {
    let mut out = http::Response::new(());
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/connect+proto"),
    );
    out
}

/// A Connect unary error raised by the server itself (not the model): a request it cannot
/// even hand to the model.
pub(crate) fn connect_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "code": code, "message": message });
    HttpResponse {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from(body.to_string()),
    }
}

/// The transport of a `RunSSE` request: the request id comes from the body's `BidiRequestId`
/// envelope, or from `x-request-id` when the body is empty (a retried `RunSSE`, §10.8).
pub(crate) fn run_sse_transport(
    body: &[u8],
    headers: &http::HeaderMap,
) -> Result<Transport, HttpResponse> {
    let from_body = decode_run_sse_request_body(body)
        .map_err(|e| connect_error(400, "invalid_argument", &e.to_string()))?;
    let request_id = match from_body {
        Some(id) => id,
        None => headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                connect_error(
                    400,
                    "invalid_argument",
                    "RunSSE without a request id (empty body and no x-request-id)",
                )
            })?,
    };
    Ok(Transport::RunSse { request_id })
}
