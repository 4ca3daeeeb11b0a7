//! Errors toward the client: what the client did wrong ([`ClientError`]), and any failure —
//! the client's, an upstream [`Classification`], or the proxy's own (all accounts busy, unknown
//! route) — rendered in the client's API shape ([`ApiError`], [`render_error`]).
//!
//! Shapes: Anthropic `{"type":"error","error":{"type":…,"message":…}}`; OpenAI
//! `{"error":{"message","type","param","code"}}` (`param` is the JSON path of a bad field,
//! else null). Headers: `content-type: application/json`; `retry-after` in whole seconds
//! (rounded up) when a retry hint is known; `x-should-retry: false` when repeating the identical
//! request cannot succeed, which Claude Code and the Stainless SDKs honour over their status
//! rules (Claude Code otherwise retries a 401 ten times).
//!
//! | failure | [`ErrorType`] | Anthropic | OpenAI (type / code) | `x-should-retry` |
//! |---|---|---|---|---|
//! | [`ClientError::TooLarge`] | RequestTooLarge | 413 `request_too_large` | 413 `invalid_request_error` / `request_too_large` | false |
//! | any other [`ClientError`] | InvalidRequest | 400 `invalid_request_error` | 400 `invalid_request_error` / the variant's code | false |
//! | `BadRequest` (400) | InvalidRequest | 400 `invalid_request_error` | 400 `invalid_request_error` / `bad_request` | false |
//! | `Unauthenticated` (401) | Authentication | 401 `authentication_error` | 401 `authentication_error` / `unauthenticated` | false |
//! | `PermissionDenied` (403) | Permission | 403 `permission_error` | 403 `permission_error` / `permission_denied` | false |
//! | `QuotaExhausted` (429) | RateLimit | 429 `rate_limit_error` | 429 `insufficient_quota` / `insufficient_quota` | — |
//! | `RateLimited` (429) | RateLimit | 429 `rate_limit_error` | 429 `rate_limit_error` / `rate_limit_exceeded` | — |
//! | `UpstreamInternal` from `unavailable` (503) | Overloaded | 529 `overloaded_error` | 503 `server_error` / `overloaded` | — |
//! | [`ApiError::overloaded`] (every account busy or cooling down) | Overloaded | 529 `overloaded_error` | 503 `server_error` / `overloaded` | — |
//! | `UpstreamInternal` (500) | Api | 500 `api_error` | 500 `server_error` / `upstream_internal` | — |
//! | `Transport`, `ProviderTransient`, `Canceled`, `Other`, other `UpstreamInternal` (502) | Api | 500 `api_error` | 502 `server_error` / the kind's name | — |
//! | `OutdatedClient` (502) | Api | 500 `api_error` | 502 `server_error` / `outdated_client` | false |
//! | [`ApiError::not_found`] (unknown route or model) | NotFound | 404 `not_found_error` | 404 `invalid_request_error` / `not_found` | false |
//!
//! The Anthropic column keeps to the statuses Anthropic documents (Claude Code and the SDKs
//! treat every status ≥ 500 alike, so 502 adds nothing there, while 529 has its own meaning);
//! the OpenAI column keeps the classified status. "Unavailable" becomes 529 because that is
//! what Anthropic answers when it has no capacity: Claude Code on Opus gives up after three
//! 529s instead of retrying for three minutes, which is right when the whole pool is busy.
//! The `ErrorType` follows the classified status, so an unusual status still lands in the
//! nearest type (other 4xx → InvalidRequest, other 5xx → Api).

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::chat::ApiKind;
use crate::classify::{Classification, FailureKind};

use super::sse;

/// A request the proxy refuses because of what the client sent. Always the client's fault:
/// answered with a 4xx and never retried upstream. `path` is the JSON path of the offending
/// value (`messages[3].content[0].source.data`), empty for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The body is not UTF-8 (JSON must be).
    #[error("request body is not valid UTF-8 (invalid byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The body nests `{`/`[` deeper than the configured limit.
    #[error("request body nests JSON deeper than {limit} levels")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// The body is larger than the adapter accepts (the adapter enforces the size while
    /// reading; this variant lets it answer in the client's shape).
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The body is not well-formed JSON.
    #[error("malformed JSON{}: {message} (line {line}, column {column})", at(.path))]
    Syntax {
        /// Path of the innermost value being read when the syntax broke.
        path: String,
        /// What the JSON parser expected.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// Byte column of the problem on that line.
        column: usize,
    },
    /// A value has the wrong type, is missing, or is out of range.
    #[error("{}{message}", prefix(.path))]
    Invalid {
        /// Path of the offending value (or of the object missing a field).
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Well-formed, but asks for something the proxy cannot do (a remote image URL, `n` > 1,
    /// a content block type Cursor has no equivalent for).
    #[error("{}{message}", prefix(.path))]
    Unsupported {
        /// Path of the offending value.
        path: String,
        /// What is not supported.
        message: String,
    },
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Longest path kept in an error, in characters (paths hold client-chosen keys).
pub const MAX_PATH_CHARS: usize = 200;
/// Longest message kept in an error, in characters (messages quote client values).
pub const MAX_MESSAGE_CHARS: usize = 400;

/// `s` cut to `max` characters, with `…` marking the cut: errors echo client input, which
/// must not make a response (or a log line) as large as the request.
pub(crate) fn clip(mut s: String, max: usize) -> String {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
        s.push('…');
    }
    s
}

impl ClientError {
    /// An [`ClientError::Invalid`] at `path` (both clipped to a bounded length).
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ClientError::Invalid {
            path: clip(path.into(), MAX_PATH_CHARS),
            message: clip(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    /// An [`ClientError::Unsupported`] at `path` (both clipped to a bounded length).
    pub fn unsupported(path: impl Into<String>, message: impl Into<String>) -> Self {
        ClientError::Unsupported {
            path: clip(path.into(), MAX_PATH_CHARS),
            message: clip(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    /// The JSON path of the problem, when it concerns one value.
    pub fn path(&self) -> Option<&str> {
        match self {
            ClientError::Syntax { path, .. }
            | ClientError::Invalid { path, .. }
            | ClientError::Unsupported { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            _ => None,
        }
    }

    /// The HTTP status: 413 for [`ClientError::TooLarge`], else 400.
    pub fn status(&self) -> u16 {
        match self {
            ClientError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// A stable snake_case code (the OpenAI `code`, logs, metrics).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::InvalidUtf8 { .. } => "invalid_utf8",
            ClientError::TooDeep { .. } => "json_too_deep",
            ClientError::TooLarge { .. } => "request_too_large",
            ClientError::Syntax { .. } => "invalid_json",
            ClientError::Invalid { .. } => "invalid_request",
            ClientError::Unsupported { .. } => "unsupported",
        }
    }
}

/// What kind of error the client sees, in the vocabulary both APIs share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The request is wrong (400).
    InvalidRequest,
    /// Credentials were rejected (401).
    Authentication,
    /// Not allowed (403).
    Permission,
    /// Unknown route or model (404).
    NotFound,
    /// The body is too large (413).
    RequestTooLarge,
    /// Rate or quota limited (429).
    RateLimit,
    /// The proxy or Cursor failed (Anthropic 500; OpenAI keeps the classified 5xx).
    Api,
    /// No capacity right now (Anthropic 529, OpenAI 503).
    Overloaded,
}

impl ErrorType {
    /// The type for an HTTP status (the nearest one for statuses outside the table).
    pub fn for_status(status: u16) -> Self {
        match status {
            401 => ErrorType::Authentication,
            403 => ErrorType::Permission,
            404 => ErrorType::NotFound,
            413 => ErrorType::RequestTooLarge,
            429 => ErrorType::RateLimit,
            503 | 529 => ErrorType::Overloaded,
            400..=499 => ErrorType::InvalidRequest,
            _ => ErrorType::Api,
        }
    }

    /// Anthropic's `error.type` string.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::NotFound => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api => "api_error",
            ErrorType::Overloaded => "overloaded_error",
        }
    }

    /// The status Anthropic uses for this type.
    pub fn anthropic_status(self) -> u16 {
        match self {
            ErrorType::InvalidRequest => 400,
            ErrorType::Authentication => 401,
            ErrorType::Permission => 403,
            ErrorType::NotFound => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimit => 429,
            ErrorType::Api => 500,
            ErrorType::Overloaded => 529,
        }
    }
}

/// One error, ready to render in either API's shape. Build it from a [`Classification`] or a
/// [`ClientError`] (`From`), or with the constructors for the proxy's own conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The client-facing type.
    pub error_type: ErrorType,
    /// The status for OpenAI clients (the classified status); Anthropic clients get
    /// [`ErrorType::anthropic_status`].
    pub status: u16,
    /// OpenAI `code`: a stable snake_case name.
    pub code: Cow<'static, str>,
    /// Human-readable message (never contains credentials).
    pub message: String,
    /// OpenAI `param`: the JSON path of the offending field, if any.
    pub param: Option<String>,
    /// How long the client should wait before retrying (`retry-after`).
    pub retry_after: Option<Duration>,
    /// `x-should-retry`, when the proxy knows better than the status rules.
    pub should_retry: Option<bool>,
}

impl ApiError {
    /// An error of `error_type` with its canonical status.
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        let status = match error_type {
            ErrorType::Overloaded => 503,
            other => other.anthropic_status(),
        };
        let client_fault = (400..500).contains(&status) && status != 429;
        ApiError {
            error_type,
            status,
            code: Cow::Borrowed(default_code(error_type)),
            message: message.into(),
            param: None,
            retry_after: None,
            should_retry: client_fault.then_some(false),
        }
    }

    /// No account can take the request now (all busy or cooling down): 529 / 503, with the
    /// time until the first one is free as `retry-after` when known.
    pub fn overloaded(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ApiError {
            retry_after,
            ..ApiError::new(ErrorType::Overloaded, message)
        }
    }

    /// An unknown route or model: 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorType::NotFound, message)
    }

    /// The HTTP status for `api`.
    pub fn status_for(&self, api: ApiKind) -> u16 {
        match api {
            ApiKind::Anthropic => self.error_type.anthropic_status(),
            ApiKind::OpenAi => self.status,
        }
    }

    /// The OpenAI `error.type` string.
    pub fn openai_type(&self) -> &'static str {
        match self.error_type {
            ErrorType::InvalidRequest | ErrorType::RequestTooLarge | ErrorType::NotFound => {
                "invalid_request_error"
            }
            ErrorType::Authentication => "authentication_error",
            ErrorType::Permission => "permission_error",
            ErrorType::RateLimit if self.code == "insufficient_quota" => "insufficient_quota",
            ErrorType::RateLimit => "rate_limit_error",
            ErrorType::Api | ErrorType::Overloaded => "server_error",
        }
    }

    fn message_or_default(&self) -> &str {
        if self.message.is_empty() {
            match self.error_type {
                ErrorType::InvalidRequest => "invalid request",
                ErrorType::Authentication => "authentication failed",
                ErrorType::Permission => "permission denied",
                ErrorType::NotFound => "not found",
                ErrorType::RequestTooLarge => "request too large",
                ErrorType::RateLimit => "rate limited",
                ErrorType::Api => "upstream error",
                ErrorType::Overloaded => "overloaded",
            }
        } else {
            &self.message
        }
    }

    /// The JSON body for `api` (the same object a mid-stream error carries).
    pub fn body(&self, api: ApiKind) -> Bytes {
        let mut out = BytesMut::with_capacity(128 + self.message.len());
        self.write_body(api, &mut out);
        out.freeze()
    }

    pub(crate) fn write_body(&self, api: ApiKind, out: &mut BytesMut) {
        let message = self.message_or_default();
        match api {
            ApiKind::Anthropic => sse::write_json(
                out,
                &AnthropicErrorBody {
                    kind: "error",
                    error: AnthropicErrorInner {
                        kind: self.error_type.anthropic_type(),
                        message,
                    },
                },
            ),
            ApiKind::OpenAi => sse::write_json(
                out,
                &OpenAiErrorBody {
                    error: OpenAiErrorInner {
                        message,
                        kind: self.openai_type(),
                        param: self.param.as_deref(),
                        code: &self.code,
                    },
                },
            ),
        }
    }
}

fn default_code(error_type: ErrorType) -> &'static str {
    match error_type {
        ErrorType::InvalidRequest => "invalid_request",
        ErrorType::Authentication => "unauthenticated",
        ErrorType::Permission => "permission_denied",
        ErrorType::NotFound => "not_found",
        ErrorType::RequestTooLarge => "request_too_large",
        ErrorType::RateLimit => "rate_limit_exceeded",
        ErrorType::Api => "server_error",
        ErrorType::Overloaded => "overloaded",
    }
}

impl From<&Classification> for ApiError {
    fn from(c: &Classification) -> Self {
        let error_type = ErrorType::for_status(c.client_status);
        let code: &'static str = match (c.kind, error_type) {
            (FailureKind::QuotaExhausted, _) => "insufficient_quota",
            (FailureKind::RateLimited, _) => "rate_limit_exceeded",
            (_, ErrorType::Overloaded) => "overloaded",
            (kind, _) => kind.as_str(),
        };
        let client_fault = (400..500).contains(&c.client_status) && c.client_status != 429;
        let deterministic = c.kind == FailureKind::OutdatedClient;
        ApiError {
            error_type,
            status: c.client_status,
            code: Cow::Borrowed(code),
            message: c.message.clone(),
            param: None,
            retry_after: c.retry_after,
            should_retry: (client_fault || deterministic).then_some(false),
        }
    }
}

impl From<&ClientError> for ApiError {
    fn from(e: &ClientError) -> Self {
        let error_type = match e {
            ClientError::TooLarge { .. } => ErrorType::RequestTooLarge,
            _ => ErrorType::InvalidRequest,
        };
        ApiError {
            error_type,
            status: e.status(),
            code: Cow::Borrowed(e.code()),
            message: e.to_string(),
            param: e.path().map(str::to_owned),
            retry_after: None,
            should_retry: Some(false),
        }
    }
}

/// A complete HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The status code.
    pub status: u16,
    /// Headers to send, lowercase names: `content-type`, and `retry-after` /
    /// `x-should-retry` when they apply.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Bytes,
}

impl ErrorResponse {
    /// `(status, headers, body)`.
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, Bytes) {
        (self.status, self.headers, self.body)
    }
}

/// Renders `error` as a complete response for a client of `api` (see the module table).
pub fn render_error(api: ApiKind, error: &ApiError) -> ErrorResponse {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(after) = error.retry_after {
        headers.push(("retry-after".to_owned(), ceil_secs(after).to_string()));
    }
    if let Some(retry) = error.should_retry {
        headers.push(("x-should-retry".to_owned(), retry.to_string()));
    }
    ErrorResponse {
        status: error.status_for(api),
        headers,
        body: error.body(api),
    }
}

/// Whole seconds, rounded up (a hint of 1.2 s must not become a retry after 1 s).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorInner<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorInner<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiErrorInner<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorInner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: &'a str,
}
