//! What an upstream failure means for the client, the account and a retry.
//!
//! Two layers, applied in order:
//!
//! 1. **The Connect code** (or the HTTP status, or the transport failure) gives a default.
//! 2. **Cursor's `ErrorDetails.error`** (spec §4.5), when present and known, refines it: the
//!    same `resource_exhausted` code means "usage limit" (cool the account for this model),
//!    "rate limited" (back off) or `ERROR_PROVIDER_ERROR` (the model provider hiccuped: try
//!    elsewhere, the account did nothing wrong).
//!
//! Client-facing statuses (spec §6.6, proxy mapping):
//!
//! | Connect code | kind | client status | cool-down | another account |
//! |---|---|---|---|---|
//! | `resource_exhausted` | QuotaExhausted | 429 | Quota | yes |
//! | `unauthenticated` | Unauthenticated (refresh first) | 401 | Auth | yes |
//! | `permission_denied` | PermissionDenied | 403 | Forbidden | yes |
//! | `unavailable` | UpstreamInternal | 503 | Short | yes |
//! | `internal` | UpstreamInternal | 500 | Short | yes |
//! | `unknown`, `deadline_exceeded`, `data_loss` | UpstreamInternal | 502 | Short | yes |
//! | `aborted` | UpstreamInternal | 502 | None | yes |
//! | `canceled` | Canceled | 502 | None | yes |
//! | `invalid_argument`, `not_found`, `failed_precondition`, `out_of_range` | BadRequest | 400 | None | **no** |
//! | `already_exists`, `unimplemented` | Other | 502 | None | no |
//!
//! The four 400 codes are the ones Connect itself sends as 400/404 and that §6.6 calls the
//! client's fault: the request (model name, history, size) is what is wrong, so replaying it on
//! another account would fail the same way and only burn quota. **Every 400-class result has
//! `try_another_account == false`**, whatever `is_retryable` says. `already_exists` and
//! `unimplemented` are deterministic but the proxy's (or Cursor's) fault, hence 502 without a
//! replay. `canceled` from upstream (we did not cancel) is retried: if the proxy did cancel, the
//! client is gone and the conductor does not retry anyway.
//!
//! Cursor `ErrorDetails.error` families (they override the code's row; see
//! [`kind_of_cursor_error`] for the full lists):
//!
//! | family | kind | client status | cool-down | another account |
//! |---|---|---|---|---|
//! | `ERROR_*_USAGE_LIMIT`, `ERROR_RESOURCE_EXHAUSTED`, `ERROR_USAGE_PRICING_REQUIRED*` | QuotaExhausted | 429 | Quota | yes |
//! | `ERROR_*RATE_LIMIT*`, `ERROR_RATE_LIMITED*` | RateLimited | 429 | Quota | yes |
//! | `ERROR_PROVIDER_ERROR`, `ERROR_OPENAI`, `ERROR_TIMEOUT`, `ERROR_NETWORK_ERROR` | ProviderTransient | 502 | None | yes |
//! | auth (`ERROR_NOT_LOGGED_IN`, `ERROR_AUTH_TOKEN_*`, `ERROR_UNAUTHORIZED`, bad keys, …) | Unauthenticated (refresh first) | 401 | Auth | yes |
//! | `ERROR_SUSPICIOUS_USAGE_BLOCKED` | PermissionDenied | 403 | Forbidden | yes |
//! | `ERROR_OUTDATED_CLIENT` | OutdatedClient | 502 | None | no |
//! | request (`ERROR_BAD_MODEL_NAME`, `ERROR_CONVERSATION_TOO_LONG`, …) | BadRequest | 400 | None | no |
//! | `ERROR_USER_ABORTED_REQUEST` | Canceled | 502 | None | yes |
//! | `ERROR_INTERNAL` | UpstreamInternal | 500 | Short | yes |
//!
//! `CustomErrorDetails.is_retryable` is honoured where the code leaves the question open (the
//! generic kinds `UpstreamInternal`, `Canceled`, `Other`): `false` forbids and `true` allows a
//! replay on another account. It does not change account-scoped kinds: Cursor marks usage
//! limits `is_retryable: false` (§10.5) meaning "not on this account", which is exactly when
//! another account should be tried; and `ERROR_PROVIDER_ERROR` is retried elsewhere although
//! Cursor marks it non-retryable. Nor can it make a 400-class error replayable.

use std::time::Duration;

use cursorpool_proto::aiserver_v1::ErrorDetails;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;

use crate::connect::code::Code;
use crate::connect::end_stream::{EndStream, metadata_value};
use crate::connect::error::ConnectError;

/// Longest retry hint honoured; larger hints are clamped to this (a day).
pub const MAX_RETRY_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// An upstream failure, as the adapter or the turn machine observed it.
#[derive(Clone, Copy, Debug)]
pub enum Failure<'a> {
    /// A Connect error without trailers (an end-stream error, a parsed unary error).
    Connect(&'a ConnectError),
    /// An end-stream error together with its trailers (for a `retry-after` trailer).
    Trailer {
        /// The error.
        error: &'a ConnectError,
        /// The end-stream `metadata`.
        metadata: &'a [(String, Vec<String>)],
    },
    /// The stream or connection broke below Connect.
    Transport(TransportFailure),
    /// A non-200 HTTP status on a stream or unary call (a Connect JSON body is used if present).
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// The response body (possibly empty or truncated by the adapter).
        body: &'a [u8],
    },
    /// Like [`Failure::HttpStatus`], with the response headers (for `retry-after`).
    HttpResponse {
        /// The HTTP status.
        status: u16,
        /// The response headers.
        headers: &'a http::HeaderMap,
        /// The response body.
        body: &'a [u8],
    },
}

impl<'a> Failure<'a> {
    /// The failure an end-stream trailer reports, or `None` when it reports success.
    pub fn from_end_stream(end: &'a EndStream) -> Option<Failure<'a>> {
        end.error.as_ref().map(|error| Failure::Trailer {
            error,
            metadata: &end.metadata,
        })
    }
}

/// A failure below the Connect layer (spec §4.4). The proxy classifies these itself rather
/// than trusting the codes a client library would derive (§10 item 10): all are 502 and may be
/// replayed on another account before the first byte reached the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportFailure {
    /// The server reset the stream with this HTTP/2 error code.
    RstStream {
        /// HTTP/2 error code (`0x7` = REFUSED_STREAM, `0x8` = CANCEL, …).
        code: u32,
    },
    /// The connection went away (GOAWAY with this error code) before the stream finished.
    GoAway {
        /// HTTP/2 error code; `0` = NO_ERROR (graceful shutdown).
        code: u32,
    },
    /// The TCP connection was reset or closed mid-stream.
    ConnectionReset,
    /// The connection could not be opened (DNS, TCP connect).
    ConnectFailed,
    /// The TLS handshake failed.
    TlsFailed,
    /// Nothing arrived for too long (the 30 s stall rule).
    Stalled,
    /// The body ended without an end-stream envelope.
    MissingEndStream,
    /// The stream ended cleanly but never delivered `turn_ended`.
    EndedWithoutTurnEnded,
    /// The upstream broke the protocol: a malformed envelope, end-stream trailer or message.
    ProtocolViolation,
    /// A write failed because the server had already ended the stream.
    WriteAfterEnd,
}

/// HTTP/2 `NO_ERROR`.
const H2_NO_ERROR: u32 = 0x0;
/// HTTP/2 `REFUSED_STREAM`: the server guarantees it did not process the stream.
const H2_REFUSED_STREAM: u32 = 0x7;
/// HTTP/2 `INADEQUATE_SECURITY`.
const H2_INADEQUATE_SECURITY: u32 = 0xc;
/// HTTP/2 `HTTP_1_1_REQUIRED`.
const H2_HTTP_1_1_REQUIRED: u32 = 0xd;

/// The kind of failure, for logs, metrics and the client's error type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The account's usage limit / quota for this model is used up.
    QuotaExhausted,
    /// The account is being rate limited.
    RateLimited,
    /// The model provider behind Cursor failed (`ERROR_PROVIDER_ERROR`, timeouts): not the
    /// account's fault, worth another try elsewhere.
    ProviderTransient,
    /// The account's credentials were rejected.
    Unauthenticated,
    /// The account may not do this (blocked, flagged).
    PermissionDenied,
    /// Cursor rejects the proxy's client version: every account will fail the same way.
    OutdatedClient,
    /// The client's request is wrong (model, size, arguments).
    BadRequest,
    /// The connection or stream broke.
    Transport,
    /// Cursor failed internally or is unavailable.
    UpstreamInternal,
    /// The run was canceled.
    Canceled,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// A stable snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::QuotaExhausted => "quota_exhausted",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::ProviderTransient => "provider_transient",
            FailureKind::Unauthenticated => "unauthenticated",
            FailureKind::PermissionDenied => "permission_denied",
            FailureKind::OutdatedClient => "outdated_client",
            FailureKind::BadRequest => "bad_request",
            FailureKind::Transport => "transport",
            FailureKind::UpstreamInternal => "upstream_internal",
            FailureKind::Canceled => "canceled",
            FailureKind::Other => "other",
        }
    }
}

/// How the conductor should rest the account that failed. The durations are the conductor's
/// policy; the comments give the intended defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoolDown {
    /// Leave the account in rotation.
    None,
    /// Exponential backoff for this account *and model* (usage limits, rate limits).
    Quota,
    /// Credentials rejected even after a refresh: out until re-authenticated.
    Auth,
    /// Forbidden / flagged: out for a long time (30 min).
    Forbidden,
    /// Transient upstream or transport failure: out briefly (1 min).
    Short,
}

/// The verdict on one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// The status to answer the client with if no other account succeeds.
    pub client_status: u16,
    /// How to rest the failing account. For `Unauthenticated` it applies only when the retry
    /// after a token refresh fails too.
    pub cool_down: CoolDown,
    /// Whether the request may be replayed on another account (only while no byte has reached
    /// the client). Always `false` for a 400-class `client_status`.
    pub try_another_account: bool,
    /// Refresh this account's token and retry once on the same account before anything else
    /// (spec §7.2).
    pub refresh_token_first: bool,
    /// The server's hint how long to rest the account, overriding the cool-down's own
    /// schedule: a `retry-after` trailer/header or a retry key in
    /// `CustomErrorDetails.additional_info` (spec: uncertain); clamped to [`MAX_RETRY_HINT`].
    pub retry_after: Option<Duration>,
    /// A message for the client and logs (never contains credentials).
    pub message: String,
}

impl Classification {
    fn new(kind: FailureKind, client_status: u16, cool_down: CoolDown, another: bool) -> Self {
        Classification {
            kind,
            client_status,
            cool_down,
            try_another_account: another,
            refresh_token_first: false,
            retry_after: None,
            message: String::new(),
        }
    }

    /// Whether the client is answered with a 4xx other than 401/403/429 — its own fault.
    pub fn is_client_fault(&self) -> bool {
        (400..500).contains(&self.client_status) && !matches!(self.client_status, 401 | 403 | 429)
    }
}

/// Classifies one upstream failure.
pub fn classify(f: Failure<'_>) -> Classification {
    match f {
        Failure::Connect(error) => classify_connect(error, &[]),
        Failure::Trailer { error, metadata } => classify_connect(error, metadata),
        Failure::Transport(t) => classify_transport(t),
        Failure::HttpStatus { status, body } => classify_http(status, None, body),
        Failure::HttpResponse {
            status,
            headers,
            body,
        } => classify_http(status, Some(headers), body),
    }
}

fn classify_connect(error: &ConnectError, metadata: &[(String, Vec<String>)]) -> Classification {
    use FailureKind as K;
    let details = error.cursor_details();
    let refined = details
        .as_ref()
        .and_then(|d| CursorError::try_from(d.error).ok())
        .and_then(kind_of_cursor_error);
    let mut c = match refined {
        Some(kind) => for_kind(kind, error.code),
        None => for_code(error.code),
    };
    let is_retryable = details
        .as_ref()
        .and_then(|d| d.details.as_ref())
        .and_then(|c| c.is_retryable);
    if let Some(retryable) = is_retryable
        && matches!(c.kind, K::UpstreamInternal | K::Canceled | K::Other)
    {
        c.try_another_account = retryable;
    }
    if c.is_client_fault() {
        c.try_another_account = false;
    }
    c.retry_after = retry_hint(details.as_ref(), metadata);
    c.message = error.user_message();
    c
}

/// Defaults from the Connect code alone (table in the module docs).
fn for_code(code: Code) -> Classification {
    use {CoolDown as D, FailureKind as K};
    match code {
        Code::ResourceExhausted => Classification::new(K::QuotaExhausted, 429, D::Quota, true),
        Code::Unauthenticated => for_kind(K::Unauthenticated, code),
        Code::PermissionDenied => Classification::new(K::PermissionDenied, 403, D::Forbidden, true),
        Code::Unavailable => Classification::new(K::UpstreamInternal, 503, D::Short, true),
        Code::Internal => Classification::new(K::UpstreamInternal, 500, D::Short, true),
        Code::Unknown | Code::DeadlineExceeded | Code::DataLoss => {
            Classification::new(K::UpstreamInternal, 502, D::Short, true)
        }
        Code::Aborted => Classification::new(K::UpstreamInternal, 502, D::None, true),
        Code::Canceled => Classification::new(K::Canceled, 502, D::None, true),
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::OutOfRange => {
            Classification::new(K::BadRequest, 400, D::None, false)
        }
        Code::AlreadyExists | Code::Unimplemented => {
            Classification::new(K::Other, 502, D::None, false)
        }
    }
}

/// Defaults for a kind that Cursor's details named explicitly.
fn for_kind(kind: FailureKind, code: Code) -> Classification {
    use {CoolDown as D, FailureKind as K};
    match kind {
        K::QuotaExhausted => Classification::new(kind, 429, D::Quota, true),
        K::RateLimited => Classification::new(kind, 429, D::Quota, true),
        K::ProviderTransient => Classification::new(kind, 502, D::None, true),
        K::Unauthenticated => Classification {
            refresh_token_first: true,
            ..Classification::new(kind, 401, D::Auth, true)
        },
        K::PermissionDenied => Classification::new(kind, 403, D::Forbidden, true),
        // The proxy's own version is refused: the client did nothing wrong (502), the account
        // neither (no cool-down), and every other account would refuse it the same way.
        K::OutdatedClient => Classification::new(kind, 502, D::None, false),
        K::BadRequest => Classification::new(kind, 400, D::None, false),
        K::Canceled => Classification::new(kind, 502, D::None, true),
        K::UpstreamInternal => Classification::new(kind, 500, D::Short, true),
        K::Transport | K::Other => for_code(code),
    }
}

/// The kind a Cursor `ErrorDetails.error` names, or `None` when it does not decide (then the
/// Connect code does). Families follow the SDK's classes (§4.5), split where the proxy must act
/// differently: usage limits vs rate limits vs provider failures, and account credentials
/// (`ERROR_BAD_API_KEY`, `ERROR_BAD_USER_API_KEY`, `ERROR_USER_NOT_FOUND` — "configuration" in
/// the SDK) counted as authentication, since another account may well work.
pub fn kind_of_cursor_error(error: CursorError) -> Option<FailureKind> {
    use CursorError as E;
    use FailureKind as K;
    Some(match error {
        E::FreeUserUsageLimit
        | E::ProUserUsageLimit
        | E::ResourceExhausted
        | E::UsagePricingRequired
        | E::UsagePricingRequiredChangeable => K::QuotaExhausted,
        E::FreeUserRateLimitExceeded
        | E::ProUserRateLimitExceeded
        | E::OpenaiRateLimitExceeded
        | E::GenericRateLimitExceeded
        | E::Gpt4VisionPreviewRateLimit
        | E::ApiKeyRateLimit
        | E::RateLimited
        | E::RateLimitedChangeable => K::RateLimited,
        E::ProviderError | E::Openai | E::Timeout | E::NetworkError => K::ProviderTransient,
        E::NotLoggedIn
        | E::InvalidAuthId
        | E::NotHighEnoughPermissions
        | E::AgentRequiresLogin
        | E::AuthTokenNotFound
        | E::AuthTokenExpired
        | E::Unauthorized
        | E::BadApiKey
        | E::BadUserApiKey
        | E::UserNotFound => K::Unauthenticated,
        E::SuspiciousUsageBlocked => K::PermissionDenied,
        E::OutdatedClient => K::OutdatedClient,
        E::BadModelName
        | E::NotFound
        | E::Deprecated
        | E::BadRequest
        | E::FileNotFound
        | E::ModelBlocked
        | E::ModelNoLongerSupported
        | E::ConversationTooLong
        | E::MaxTokens
        | E::ClaudeImageTooLarge => K::BadRequest,
        E::UserAbortedRequest => K::Canceled,
        E::Internal => K::UpstreamInternal,
        _ => return None,
    })
}

fn classify_transport(t: TransportFailure) -> Classification {
    use {CoolDown as D, TransportFailure as T};
    let cool_down = match t {
        // Graceful or explicitly unprocessed: nothing about the account.
        T::GoAway { code: H2_NO_ERROR }
        | T::RstStream {
            code: H2_REFUSED_STREAM,
        } => D::None,
        // Properties of the path to Cursor, not of the account.
        T::RstStream {
            code: H2_INADEQUATE_SECURITY | H2_HTTP_1_1_REQUIRED,
        }
        | T::ConnectFailed
        | T::TlsFailed => D::None,
        _ => D::Short,
    };
    Classification {
        message: transport_message(t),
        ..Classification::new(FailureKind::Transport, 502, cool_down, true)
    }
}

fn transport_message(t: TransportFailure) -> String {
    match t {
        TransportFailure::RstStream { code } => {
            format!("upstream reset the stream ({})", h2_code_name(code))
        }
        TransportFailure::GoAway { code } => {
            format!("upstream connection went away ({})", h2_code_name(code))
        }
        TransportFailure::ConnectionReset => "upstream connection was reset".to_owned(),
        TransportFailure::ConnectFailed => "could not connect to upstream".to_owned(),
        TransportFailure::TlsFailed => "TLS handshake with upstream failed".to_owned(),
        TransportFailure::Stalled => "upstream stream stalled".to_owned(),
        TransportFailure::MissingEndStream => {
            "upstream stream ended without an end-stream message".to_owned()
        }
        TransportFailure::EndedWithoutTurnEnded => {
            "upstream stream ended before the turn finished".to_owned()
        }
        TransportFailure::ProtocolViolation => "upstream violated the protocol".to_owned(),
        TransportFailure::WriteAfterEnd => "upstream ended the stream while sending".to_owned(),
    }
}

/// The RFC 9113 name of an HTTP/2 error code.
pub fn h2_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("error code {other:#x}"),
    };
    name.to_owned()
}

fn classify_http(status: u16, headers: Option<&http::HeaderMap>, body: &[u8]) -> Classification {
    use {CoolDown as D, FailureKind as K};
    let header_hint = headers
        .and_then(|h| h.get(http::header::RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_seconds);
    if let Some(error) = ConnectError::parse_unary_body(body) {
        let mut c = classify_connect(&error, &[]);
        c.retry_after = header_hint.or(c.retry_after);
        return c;
    }
    let mut c = match status {
        401 => for_kind(K::Unauthenticated, Code::Unauthenticated),
        403 => Classification::new(K::PermissionDenied, 403, D::Forbidden, true),
        429 => Classification::new(K::RateLimited, 429, D::Quota, true),
        413 => Classification::new(K::BadRequest, 400, D::None, false),
        408 | 500..=599 => {
            let client_status = if status == 503 { 503 } else { 502 };
            Classification::new(K::UpstreamInternal, client_status, D::Short, true)
        }
        // Other 4xx without Connect JSON come from something in front of Cursor and point at
        // the proxy's configuration; 1xx–3xx (a redirect, a 200 with the wrong body) likewise.
        _ => Classification::new(K::Other, 502, D::None, false),
    };
    c.retry_after = header_hint;
    c.message = ConnectError::from_unary(status, body).message;
    c
}

/// The server's retry hint: a `retry-after` (seconds) or `retry-after-ms` trailer first, then a
/// retry key in `CustomErrorDetails.additional_info` — matched ignoring case, `_` and `-`:
/// `retry_after`, `retryAfter`, `retry_after_seconds`, `retry_after_secs` (seconds) or
/// `retry_after_ms` (milliseconds). Values may be fractional and may end in `s` / `ms`.
/// HTTP-date values are ignored (core has no clock). Clamped to [`MAX_RETRY_HINT`].
pub fn retry_hint(
    details: Option<&ErrorDetails>,
    metadata: &[(String, Vec<String>)],
) -> Option<Duration> {
    let from_trailer = metadata_value(metadata, "retry-after")
        .and_then(parse_seconds)
        .or_else(|| metadata_value(metadata, "retry-after-ms").and_then(parse_millis));
    from_trailer.or_else(|| {
        let info = &details?.details.as_ref()?.additional_info;
        // Deterministic choice whatever the map's iteration order: best key name, then text.
        let mut candidates: Vec<(u8, &str, Duration)> = info
            .iter()
            .filter_map(|(key, value)| {
                let norm: String = key
                    .chars()
                    .filter(|c| *c != '_' && *c != '-')
                    .flat_map(char::to_lowercase)
                    .collect();
                let (rank, parsed) = match norm.as_str() {
                    "retryafter" => (0, parse_seconds(value)),
                    "retryafterseconds" | "retryaftersecs" => (1, parse_seconds(value)),
                    "retryafterms" | "retryaftermillis" => (2, parse_millis(value)),
                    _ => return None,
                };
                Some((rank, key.as_str(), parsed?))
            })
            .collect();
        candidates.sort();
        candidates.first().map(|(_, _, d)| *d)
    })
}

/// Seconds, possibly fractional, optionally suffixed `s` (or `ms`, meaning milliseconds).
fn parse_seconds(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return parse_millis(ms);
    }
    parse_scaled(t.strip_suffix('s').unwrap_or(t), 1.0)
}

/// Milliseconds, possibly fractional, optionally suffixed `ms`.
fn parse_millis(text: &str) -> Option<Duration> {
    let t = text.trim();
    parse_scaled(t.strip_suffix("ms").unwrap_or(t), 1e-3)
}

fn parse_scaled(number: &str, seconds_per_unit: f64) -> Option<Duration> {
    let number = number.trim();
    // Only plain decimal numbers: no sign, exponent, `inf` or `NaN`.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs = number.parse::<f64>().ok()? * seconds_per_unit;
    let capped = secs.min(MAX_RETRY_HINT.as_secs_f64());
    Duration::try_from_secs_f64(capped).ok()
}
