//! Cursor's browser login (spec §7.1, PKCE "deep control" flow), without IO: the verifier and
//! challenge, the URL the user opens, the poll URL, and a [`LoginPoller`] that turns each poll
//! answer into "wait this long", "done" or "failed".
//!
//! The adapter supplies the randomness ([`PkceLogin::new`] takes 32 random bytes for the
//! verifier and 16 for the login's UUID), performs the `GET`s and sleeps; this module decides.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::account::{Secret, TokenGrant};
use crate::ids::format_uuid;

/// Where the user logs in (spec §2.1).
pub const LOGIN_SITE: &str = "https://cursor.com";

/// Cursor's API host for polling and token calls (spec §2.2).
pub const API_BASE: &str = "https://api2.cursor.sh";

/// First delay between polls.
pub const POLL_INITIAL: Duration = Duration::from_secs(1);
/// Growth of the delay after each poll.
pub const POLL_FACTOR: f64 = 1.2;
/// Longest delay between polls.
pub const POLL_MAX: Duration = Duration::from_secs(10);
/// Polls before the login is given up (a few minutes in all, like Cursor's own clients).
pub const POLL_ATTEMPTS: u32 = 150;
/// Consecutive unexpected answers (other statuses, network errors) tolerated while polling.
pub const POLL_MAX_ERRORS: u32 = 5;

/// One browser login in progress: the PKCE pair and the login's UUID.
///
/// `Debug` redacts the verifier; [`PkceLogin::poll_url`] contains it, so never log that URL.
#[derive(Debug, Clone)]
pub struct PkceLogin {
    verifier: Secret,
    challenge: String,
    uuid: String,
}

impl PkceLogin {
    /// A login from injected randomness: the verifier is base64url of `verifier_bytes`
    /// (43 characters), the UUID is a version 4 UUID made of `uuid_bytes`.
    pub fn new(verifier_bytes: [u8; 32], uuid_bytes: [u8; 16]) -> Self {
        Self::from_parts(
            URL_SAFE_NO_PAD.encode(verifier_bytes),
            format_uuid(uuid_bytes, 4),
        )
    }

    /// A login with a given verifier and UUID (known-answer tests, resuming a login).
    pub fn from_parts(verifier: impl Into<String>, uuid: impl Into<String>) -> Self {
        let verifier = verifier.into();
        PkceLogin {
            challenge: pkce_challenge(&verifier),
            verifier: Secret::new(verifier),
            uuid: uuid.into(),
        }
    }

    /// The verifier (secret until the poll that proves it).
    pub fn verifier(&self) -> &Secret {
        &self.verifier
    }

    /// The challenge sent in the login URL.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// The login's UUID: names the login in the URL, the poll and the management API.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The page the user opens: `<site>/loginDeepControl?challenge=…&uuid=…&mode=login&redirectTarget=cli`
    /// (`site` is [`LOGIN_SITE`] in production, the simulator's address in tests).
    pub fn login_url(&self, site: &str) -> String {
        format!(
            "{}/loginDeepControl?challenge={}&uuid={}&mode=login&redirectTarget=cli",
            site.trim_end_matches('/'),
            self.challenge,
            self.uuid
        )
    }

    /// The URL polled for the result: `<api>/auth/poll?uuid=…&verifier=…`, no auth header.
    /// Contains the verifier: do not log it.
    pub fn poll_url(&self, api_base: &str) -> String {
        format!(
            "{}/auth/poll?uuid={}&verifier={}",
            api_base.trim_end_matches('/'),
            self.uuid,
            self.verifier.expose()
        )
    }
}

/// The PKCE S256 challenge of a verifier: base64url (no padding) of SHA-256 of its ASCII bytes
/// (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The delays between polls: [`POLL_INITIAL`], growing by [`POLL_FACTOR`] up to [`POLL_MAX`],
/// [`POLL_ATTEMPTS`] of them. A pure iterator: the adapter sleeps each delay, then polls.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    next: Duration,
    max: Duration,
    remaining: u32,
}

impl PollSchedule {
    /// The default schedule.
    pub fn new() -> Self {
        PollSchedule::custom(POLL_INITIAL, POLL_MAX, POLL_ATTEMPTS)
    }

    /// `attempts` delays from `initial`, growing by [`POLL_FACTOR`] up to `max` (a fast
    /// schedule against the simulator, a shorter one for a management-API login).
    pub fn custom(initial: Duration, max: Duration, attempts: u32) -> Self {
        PollSchedule {
            next: initial.min(max),
            max,
            remaining: attempts,
        }
    }
}

impl Default for PollSchedule {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for PollSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        self.next = current.mul_f64(POLL_FACTOR).min(self.max);
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

/// What one `GET /auth/poll` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResponse {
    /// `404`: the user has not finished logging in.
    Pending,
    /// `200` with tokens.
    Done(TokenGrant),
    /// `403` with `sign_in_policy_violation`: the organisation refuses this device.
    PolicyViolation,
    /// Anything else (other statuses, a 200 without an access token).
    Unexpected {
        /// The HTTP status.
        status: u16,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PollBody {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    auth_id: Option<String>,
}

/// Reads a poll answer.
pub fn parse_poll_response(status: u16, body: &[u8]) -> PollResponse {
    match status {
        404 => PollResponse::Pending,
        200 => match serde_json::from_slice::<PollBody>(body) {
            Ok(PollBody {
                access_token: Some(access),
                refresh_token,
                auth_id,
            }) if !access.is_empty() => PollResponse::Done(TokenGrant {
                access_token: Secret::new(access),
                refresh_token: refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
                auth_id,
            }),
            _ => PollResponse::Unexpected { status },
        },
        403 if contains(body, b"sign_in_policy_violation") => PollResponse::PolicyViolation,
        _ => PollResponse::Unexpected { status },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Why a browser login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The user did not complete the login in time.
    #[error("the browser login was not completed in time")]
    TimedOut,
    /// The organisation's sign-in policy refuses this device.
    #[error("the organisation's sign-in policy refused this login (sign_in_policy_violation)")]
    PolicyViolation,
    /// Polling kept failing (unexpected statuses or network errors).
    #[error("polling for the login result kept failing (last: {last})")]
    PollFailed {
        /// The last failure, e.g. `HTTP 500` or `network error`.
        last: String,
    },
}

/// What to do after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStep {
    /// Sleep this long, then poll again.
    Wait(Duration),
    /// The login completed with these tokens.
    Done(TokenGrant),
    /// The login failed.
    Failed(LoginError),
}

/// Drives the polling of one login: [`LoginPoller::first_delay`], then after each poll
/// [`LoginPoller::on_response`] (or [`LoginPoller::on_network_error`]) says what comes next.
#[derive(Debug, Clone)]
pub struct LoginPoller {
    schedule: PollSchedule,
    errors: u32,
    max_errors: u32,
}

impl LoginPoller {
    /// A poller with the default schedule and error tolerance.
    pub fn new() -> Self {
        Self::with_schedule(PollSchedule::new(), POLL_MAX_ERRORS)
    }

    /// A poller with a custom schedule (tests, a shorter management-API login).
    pub fn with_schedule(schedule: PollSchedule, max_errors: u32) -> Self {
        LoginPoller {
            schedule,
            errors: 0,
            max_errors,
        }
    }

    /// The delay before the first poll.
    pub fn first_delay(&mut self) -> PollStep {
        self.wait()
    }

    /// Handles one poll answer.
    pub fn on_response(&mut self, status: u16, body: &[u8]) -> PollStep {
        match parse_poll_response(status, body) {
            PollResponse::Pending => {
                self.errors = 0;
                self.wait()
            }
            PollResponse::Done(grant) => PollStep::Done(grant),
            PollResponse::PolicyViolation => PollStep::Failed(LoginError::PolicyViolation),
            PollResponse::Unexpected { status } => self.error(format!("HTTP {status}")),
        }
    }

    /// Handles a poll that failed below HTTP.
    pub fn on_network_error(&mut self) -> PollStep {
        self.error("network error".to_owned())
    }

    fn error(&mut self, last: String) -> PollStep {
        self.errors += 1;
        if self.errors > self.max_errors {
            return PollStep::Failed(LoginError::PollFailed { last });
        }
        self.wait()
    }

    fn wait(&mut self) -> PollStep {
        match self.schedule.next() {
            Some(d) => PollStep::Wait(d),
            None => PollStep::Failed(LoginError::TimedOut),
        }
    }
}

impl Default for LoginPoller {
    fn default() -> Self {
        Self::new()
    }
}

impl ExactSizeIterator for PollSchedule {}
