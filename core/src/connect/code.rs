//! The sixteen Connect error codes (spec §4.2) and their HTTP mappings (spec §4.3).
//!
//! Two different tables live here and they are deliberately *not* inverses of each other:
//!
//! - [`Code::http_status`] is the status a Connect server puts on a **unary** error response
//!   (the §4.2 column). The simulated backend uses it; the proxy never forwards it as is.
//! - [`Code::from_http_status`] is how connect-es derives a code when a non-200 response comes
//!   **without** a Connect JSON body (a load balancer page, an empty 401 on a stream, …). It is
//!   lossy and asymmetric on purpose: `400` becomes `internal`, `429` becomes `unavailable`.
//!
//! What the *proxy* answers its own client is decided in [`crate::classify`], not here.

use std::fmt;

/// A Connect error code. The discriminant is the Connect/gRPC code number (`canceled` = 1 …
/// `unauthenticated` = 16); there is no `ok` code because an error always carries a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Code {
    /// `canceled` (1): the operation was canceled, usually by the caller.
    Canceled = 1,
    /// `unknown` (2): an error with no better code.
    Unknown,
    /// `invalid_argument` (3): the request is malformed regardless of server state.
    InvalidArgument,
    /// `deadline_exceeded` (4): the operation did not finish in time.
    DeadlineExceeded,
    /// `not_found` (5): a requested entity does not exist.
    NotFound,
    /// `already_exists` (6): the entity the request would create already exists.
    AlreadyExists,
    /// `permission_denied` (7): the caller is authenticated but not allowed.
    PermissionDenied,
    /// `resource_exhausted` (8): a quota or rate limit was hit (Cursor: usage limits too).
    ResourceExhausted,
    /// `failed_precondition` (9): the system is not in a state the request needs.
    FailedPrecondition,
    /// `aborted` (10): a concurrency conflict; retry at a higher level.
    Aborted,
    /// `out_of_range` (11): a value is outside its valid range.
    OutOfRange,
    /// `unimplemented` (12): the server does not implement the RPC.
    Unimplemented,
    /// `internal` (13): an invariant broke inside the server.
    Internal,
    /// `unavailable` (14): the service is temporarily unavailable.
    Unavailable,
    /// `data_loss` (15): unrecoverable data loss or corruption.
    DataLoss,
    /// `unauthenticated` (16): missing, invalid or expired credentials.
    Unauthenticated,
}

impl Code {
    /// Every code, in numeric order (1 through 16).
    pub const ALL: [Code; 16] = [
        Code::Canceled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The wire spelling used in Connect JSON (`"resource_exhausted"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// Parses the exact wire spelling. Anything else — other casing, gRPC's upper-case names,
    /// numbers, `"ok"` — is `None`; callers decide how tolerant to be (the JSON error parser
    /// also accepts upper case and falls back to [`Code::Unknown`]).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The Connect/gRPC code number (1–16).
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The code with Connect/gRPC number `n`, if `n` is 1–16.
    pub fn from_number(n: u32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.number() == n)
    }

    /// The HTTP status a Connect server sends with a unary error of this code (spec §4.2).
    pub fn http_status(self) -> u16 {
        match self {
            Code::Canceled => 499,
            Code::Unknown => 500,
            Code::InvalidArgument => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::FailedPrecondition => 400,
            Code::Aborted => 409,
            Code::OutOfRange => 400,
            Code::Unimplemented => 501,
            Code::Internal => 500,
            Code::Unavailable => 503,
            Code::DataLoss => 500,
            Code::Unauthenticated => 401,
        }
    }

    /// The code connect-es derives from a non-200 HTTP status that came without a Connect
    /// JSON body (spec §4.3). This is *not* the inverse of [`Code::http_status`].
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
