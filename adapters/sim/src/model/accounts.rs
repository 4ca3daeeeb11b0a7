//! Accounts, access/refresh tokens (JWT-shaped, HMAC-SHA256-signed by the sim), browser-login
//! (PKCE) completion and quotas.
//!
//! Every token the sim issues stays valid until its `exp` (spec §10.2: the SDK exchanges its
//! key about five times and keeps using all of them); only [`Accounts::expire`] ends them early.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::config::{AccountConfig, Quota};
use super::counters::AccountCounters;

/// Lifetime of refresh tokens (browser-login sessions live long).
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// One account with its live counters and quota usage.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The configuration it was created with (quota may change through control).
    pub(crate) config: AccountConfig,
    /// Everything counted for it.
    pub(crate) counters: AccountCounters,
}

/// What an issued token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Bearer on RPCs.
    Access,
    /// Exchanged for new access tokens (`/auth/exchange_user_api_key`, `/oauth/token`).
    Refresh,
}

#[derive(Debug, Clone)]
struct TokenInfo {
    account: usize,
    kind: TokenKind,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No `authorization: Bearer` header.
    Missing,
    /// Not a token this sim issued (or the wrong kind).
    Unknown,
    /// Issued here, but past its `exp`.
    Expired,
}

/// A browser login a test completed, waiting for the client's poll.
#[derive(Debug, Clone)]
struct PendingLogin {
    account: usize,
    challenge: String,
}

/// The outcome of `/auth/poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// Not completed (yet): 404.
    Pending,
    /// Completed but the verifier does not match the challenge.
    BadVerifier,
    /// Logged in: the account index.
    Done(usize),
}

/// All accounts and every token issued for them.
#[derive(Debug)]
pub(crate) struct Accounts {
    pub(crate) list: Vec<Account>,
    tokens: HashMap<String, TokenInfo>,
    logins: HashMap<String, PendingLogin>,
    key: [u8; 32],
    seq: u64,
    ttl: Duration,
}

impl Accounts {
    /// Accounts from configuration; the signing key is derived from `seed`.
    pub(crate) fn new(configs: &[AccountConfig], seed: u64, ttl: Duration) -> Self {
        let mut h = Sha256::new();
        h.update(b"cursor-sim jwt signing key");
        h.update(seed.to_le_bytes());
        Self {
            list: configs
                .iter()
                .map(|c| Account {
                    config: c.clone(),
                    counters: AccountCounters::default(),
                })
                .collect(),
            tokens: HashMap::new(),
            logins: HashMap::new(),
            key: h.finalize().into(),
            seq: 0,
            ttl,
        }
    }

    /// Index of the account labelled `label`.
    pub(crate) fn by_label(&self, label: &str) -> Option<usize> {
        self.list.iter().position(|a| a.config.label == label)
    }

    /// Index of the account whose API key is `key`.
    pub(crate) fn by_api_key(&self, key: &str) -> Option<usize> {
        self.list.iter().position(|a| a.config.api_key == key)
    }

    /// Signs and records a new token of `kind` for `account`.
    pub(crate) fn issue(&mut self, account: usize, kind: TokenKind, wall: SystemTime) -> String {
        self.seq += 1;
        let iat = unix_secs(wall);
        let ttl = match kind {
            TokenKind::Access => self.ttl,
            TokenKind::Refresh => REFRESH_TTL,
        };
        let exp = iat + ttl.as_secs().max(1);
        let label = &self.list[account].config.label;
        let typ = match kind {
            TokenKind::Access => "api_key_token",
            TokenKind::Refresh => "refresh",
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = serde_json::json!({
            "sub": format!("auth0|user_sim_{label}"),
            "type": typ,
            "iat": iat,
            "exp": exp,
            "jti": self.seq,
            "iss": "https://cursor-sim.invalid",
        });
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, signing_input.as_bytes()));
        let token = format!("{signing_input}.{sig}");
        self.tokens
            .insert(token.clone(), TokenInfo { account, kind, exp });
        token
    }

    /// The account a token of `kind` belongs to, if it is one of ours, correctly signed and not
    /// expired at `wall`.
    pub(crate) fn validate(
        &self,
        token: &str,
        kind: TokenKind,
        wall: SystemTime,
    ) -> Result<usize, AuthError> {
        if !self.signature_ok(token) {
            return Err(AuthError::Unknown);
        }
        let info = self.tokens.get(token).ok_or(AuthError::Unknown)?;
        if info.kind != kind {
            return Err(AuthError::Unknown);
        }
        if unix_secs(wall) >= info.exp {
            return Err(AuthError::Expired);
        }
        Ok(info.account)
    }

    /// Validates the `authorization: Bearer` access token of a request.
    pub(crate) fn check_bearer(
        &self,
        headers: &http::HeaderMap,
        wall: SystemTime,
    ) -> Result<usize, AuthError> {
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        self.validate(token, TokenKind::Access, wall)
    }

    /// Makes every access token of `account` (or of all accounts) expire now. Returns how many
    /// tokens were affected. Refresh tokens stay valid so a client can renew.
    pub(crate) fn expire(&mut self, account: Option<usize>, wall: SystemTime) -> usize {
        let now = unix_secs(wall);
        let mut n = 0;
        for info in self.tokens.values_mut() {
            if info.kind == TokenKind::Access
                && account.is_none_or(|a| a == info.account)
                && info.exp > now
            {
                info.exp = now;
                n += 1;
            }
        }
        n
    }

    /// Records that the browser login `uuid` was completed for `account` with PKCE `challenge`.
    pub(crate) fn complete_login(&mut self, uuid: &str, account: usize, challenge: &str) {
        self.logins.insert(
            uuid.to_owned(),
            PendingLogin {
                account,
                challenge: challenge.to_owned(),
            },
        );
    }

    /// Answers a poll for `uuid` with `verifier`; a successful poll consumes the login.
    pub(crate) fn poll_login(&mut self, uuid: &str, verifier: &str) -> PollOutcome {
        let Some(login) = self.logins.get(uuid) else {
            return PollOutcome::Pending;
        };
        if pkce_challenge(verifier) != login.challenge {
            return PollOutcome::BadVerifier;
        }
        let account = login.account;
        self.logins.remove(uuid);
        PollOutcome::Done(account)
    }

    /// Whether `account` has used up its quota.
    pub(crate) fn quota_exhausted(&self, account: usize) -> bool {
        let a = &self.list[account];
        let Quota { requests, tokens } = a.config.quota;
        requests.is_some_and(|max| a.counters.quota_requests_used >= max)
            || tokens.is_some_and(|max| a.counters.quota_tokens_used >= max)
    }

    /// Zeroes the quota usage of `account` (or all).
    pub(crate) fn reset_quota(&mut self, account: Option<usize>) -> Vec<String> {
        let mut labels = Vec::new();
        for (i, a) in self.list.iter_mut().enumerate() {
            if account.is_none_or(|x| x == i) {
                a.counters.quota_requests_used = 0;
                a.counters.quota_tokens_used = 0;
                labels.push(a.config.label.clone());
            }
        }
        labels
    }

    fn signature_ok(&self, token: &str) -> bool {
        let Some((input, sig)) = token.rsplit_once('.') else {
            return false;
        };
        let expected = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, input.as_bytes()));
        expected == sig
    }
}

/// The token of an `authorization: Bearer <token>` header (scheme case-insensitive).
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// `base64url(sha256(verifier))` without padding (spec §7.1).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Seconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_secs(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// HMAC-SHA256 (RFC 2104) over `msg` with `key`.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
