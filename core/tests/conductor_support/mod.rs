//! Shared pieces of the conductor tests: simulated time, JWT-shaped tokens, account records,
//! and real classifications of the failures the conductor reacts to (built through
//! `classify`, so the tests exercise the same values the adapter will pass).
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cursorpool_core::classify::{Classification, Failure, TransportFailure, classify};
use cursorpool_core::conductor::{AccountId, AccountRecord, Pool, PoolConfig, Secret, Strategy};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;

/// Wall-clock seconds at the simulated epoch (2026-01-01T00:00:00Z).
pub const UNIX0: u64 = 1_767_225_600;

/// The origin of simulated time. Read once; every later instant is computed from it.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
pub fn epoch() -> Instant {
    Instant::now()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A JWT-shaped token with this payload (unsigned; the conductor never checks signatures).
pub fn jwt(payload: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{body}.c2lnbmF0dXJl")
}

/// An access token for `sub` expiring at `exp`.
pub fn access_token(sub: &str, exp: u64) -> String {
    jwt(&serde_json::json!({"sub": sub, "exp": exp, "type": "session"}))
}

/// A labelled account with a refresh token, valid for a day from [`UNIX0`].
pub fn record(label: &str, priority: i32) -> AccountRecord {
    AccountRecord {
        label: Some(label.to_owned()),
        subject: format!("auth0|user_{label}"),
        access_token: Secret::new(access_token(&format!("auth0|user_{label}"), UNIX0 + 86_400)),
        refresh_token: Some(Secret::new(format!("refresh-{label}"))),
        api_key: None,
        expires_at: UNIX0 + 86_400,
        disabled: None,
        priority,
        email: None,
    }
}

/// A pool of accounts `labels` (priority 0) with `strategy`.
pub fn pool_of(strategy: Strategy, labels: &[&str]) -> (Pool, Vec<AccountId>) {
    let mut pool = Pool::new(PoolConfig {
        strategy,
        ..PoolConfig::default()
    });
    let ids = labels.iter().map(|l| pool.upsert(record(l, 0))).collect();
    (pool, ids)
}

fn connect(code: Code, message: &str) -> Classification {
    classify(Failure::Connect(&ConnectError::new(code, message)))
}

/// `resource_exhausted`: the account's quota for the model is used up.
pub fn quota() -> Classification {
    connect(Code::ResourceExhausted, "usage limit reached")
}

/// A quota failure with Cursor's retry hint.
pub fn quota_with_hint(hint: Duration) -> Classification {
    Classification {
        retry_after: Some(hint),
        ..quota()
    }
}

/// `unauthenticated`.
pub fn unauthenticated() -> Classification {
    connect(Code::Unauthenticated, "token expired")
}

/// `permission_denied`.
pub fn forbidden() -> Classification {
    connect(Code::PermissionDenied, "blocked")
}

/// `unavailable` (503).
pub fn unavailable() -> Classification {
    connect(Code::Unavailable, "try later")
}

/// `unavailable` with Cursor's hint to rest `hint`.
pub fn unavailable_with_hint(hint: Duration) -> Classification {
    Classification {
        retry_after: Some(hint),
        ..unavailable()
    }
}

/// HTTP 500 without a Connect body.
pub fn http_500() -> Classification {
    classify(Failure::HttpStatus {
        status: 500,
        body: b"",
    })
}

/// `invalid_argument`: the client's fault.
pub fn bad_request() -> Classification {
    connect(Code::InvalidArgument, "Conversation state is required")
}

/// The stream was reset with INTERNAL_ERROR (a broken transport).
pub fn reset() -> Classification {
    classify(Failure::Transport(TransportFailure::RstStream {
        code: 0x2,
    }))
}

/// The connection went away (GOAWAY with an error).
pub fn goaway() -> Classification {
    classify(Failure::Transport(TransportFailure::GoAway { code: 0x2 }))
}
