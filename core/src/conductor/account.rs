//! One Cursor account as it is stored on disk: the JSON credential file, its name, and the
//! token facts the conductor needs (JWT `exp` / `sub`, when to refresh).
//!
//! A file holds one account (`~/.cursorpool/auth/cursor.<key>.json`):
//!
//! ```json
//! {"label":"work","subject":"auth0|user_123","access_token":"eyJ…","refresh_token":"eyJ…",
//!  "expires_at":1767225600,"priority":0}
//! ```
//!
//! The key is the label when the account has one, else the first 8 hex digits of SHA-256 of
//! the account subject — so logging in twice to the same account rewrites one file instead of
//! adding a second. Tokens are held in [`Secret`], whose `Debug` never shows them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Lifetime assumed for an access token whose `exp` cannot be read (spec §7.2).
pub const ASSUMED_TOKEN_LIFETIME_SECS: u64 = 60 * 60;

/// How long before `exp` a token is refreshed (spec §7.2: about 5 minutes).
pub const REFRESH_MARGIN_SECS: u64 = 5 * 60;

/// Longest label accepted; labels become part of a file name.
pub const MAX_LABEL_LEN: usize = 64;

/// A credential (access token, refresh token, API key, PKCE verifier). Serialized as the plain
/// string (it is the credential file's content), but `Debug` only says that it is redacted, and
/// there is no `Display`: getting at the value takes an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for an `authorization` header or a request body. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the credential is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A short non-reversible tag telling two credentials apart in logs (`sha256:1a2b3c4d`).
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", short_hash(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Why an account record could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The label cannot be part of a file name.
    #[error(
        "invalid label {0:?}: use 1–64 characters from A–Z, a–z, 0–9, '-', '_' and '.', not starting with '.'"
    )]
    InvalidLabel(String),
    /// The access token is empty.
    #[error("the access token is empty")]
    EmptyToken,
    /// Neither the token nor the login response names the account.
    #[error("the access token has no `sub` claim and the login named no account")]
    NoSubject,
    /// The credential file is not valid JSON for an account.
    #[error("invalid credential file: {0}")]
    InvalidFile(String),
}

/// New tokens from a login, a refresh or an API-key exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The new access token (a JWT).
    pub access_token: Secret,
    /// A new refresh token when the server rotated it; `None` keeps the old one.
    pub refresh_token: Option<Secret>,
    /// The login's `authId` (`<provider>|<user id>`), when the server sent one.
    pub auth_id: Option<String>,
}

/// How an account's access token is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMethod {
    /// OAuth refresh grant with the refresh token (spec §7.4), what the desktop app does.
    OAuthRefresh,
    /// Exchange of the account's API key for a new access token (spec §7.3).
    ApiKeyExchange,
}

/// One account's credential file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// A name chosen at login (`--label`); also the file's key when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The account's subject (JWT `sub`, e.g. `auth0|user_…`).
    pub subject: String,
    /// Bearer for agent RPCs.
    pub access_token: Secret,
    /// Renews the access token (browser-login accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// The API key an account was added with; exchanged again to renew (spec §7.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// When the access token expires, seconds since the Unix epoch (JWT `exp`).
    pub expires_at: u64,
    /// Why the account is out of rotation (set by an operator or after credentials were
    /// rejected); `None` when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// Selection tier: higher priorities are used first.
    #[serde(default)]
    pub priority: i32,
    /// The account's email when the token names it (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl AccountRecord {
    /// An account from freshly issued tokens. The subject and expiry come from the access
    /// token's claims; the subject falls back to the login's `authId`, the expiry to one hour
    /// from `now_unix` (spec §7.2).
    pub fn from_grant(
        grant: TokenGrant,
        label: Option<String>,
        now_unix: u64,
    ) -> Result<AccountRecord, AccountError> {
        if let Some(l) = &label {
            validate_label(l)?;
        }
        if grant.access_token.is_empty() {
            return Err(AccountError::EmptyToken);
        }
        let claims = JwtClaims::parse(grant.access_token.expose()).unwrap_or_default();
        let subject = claims
            .sub
            .clone()
            .or(grant.auth_id)
            .filter(|s| !s.is_empty())
            .ok_or(AccountError::NoSubject)?;
        Ok(AccountRecord {
            label,
            subject,
            expires_at: claims.expiry_or_assumed(now_unix),
            email: claims.email,
            access_token: grant.access_token,
            refresh_token: grant.refresh_token,
            api_key: None,
            disabled: None,
            priority: 0,
        })
    }

    /// Reads a credential file.
    pub fn from_json(bytes: &[u8]) -> Result<AccountRecord, AccountError> {
        let record: AccountRecord =
            serde_json::from_slice(bytes).map_err(|e| AccountError::InvalidFile(e.to_string()))?;
        if let Some(l) = &record.label {
            validate_label(l)?;
        }
        if record.access_token.is_empty() {
            return Err(AccountError::EmptyToken);
        }
        Ok(record)
    }

    /// The credential file's content (pretty JSON with a trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The key that names this account's file and its persisted state.
    pub fn key(&self) -> String {
        account_key(self.label.as_deref(), &self.subject)
    }

    /// The credential file's name, `cursor.<key>.json`.
    pub fn file_name(&self) -> String {
        file_name(self.label.as_deref(), &self.subject)
    }

    /// Whether the access token should be renewed now: within [`REFRESH_MARGIN_SECS`] of its
    /// expiry, or past it.
    pub fn needs_refresh(&self, now_unix: u64) -> bool {
        now_unix.saturating_add(REFRESH_MARGIN_SECS) >= self.expires_at
    }

    /// Whether the access token has expired.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        now_unix >= self.expires_at
    }

    /// How this account can renew its token, if at all.
    pub fn refresh_method(&self) -> Option<RefreshMethod> {
        if self.refresh_token.as_ref().is_some_and(|t| !t.is_empty()) {
            Some(RefreshMethod::OAuthRefresh)
        } else if self.api_key.as_ref().is_some_and(|k| !k.is_empty()) {
            Some(RefreshMethod::ApiKeyExchange)
        } else {
            None
        }
    }

    /// Takes renewed tokens: the access token and its expiry always, the refresh token when the
    /// server rotated it. Returns `false` (and changes nothing) for an empty access token.
    pub fn apply_grant(&mut self, grant: &TokenGrant, now_unix: u64) -> bool {
        if grant.access_token.is_empty() {
            return false;
        }
        let claims = JwtClaims::parse(grant.access_token.expose()).unwrap_or_default();
        self.expires_at = claims.expiry_or_assumed(now_unix);
        self.access_token = grant.access_token.clone();
        if let Some(r) = grant.refresh_token.as_ref().filter(|r| !r.is_empty()) {
            self.refresh_token = Some(r.clone());
        }
        if self.email.is_none() {
            self.email = claims.email;
        }
        true
    }
}

/// The key of an account: its label when it has one, else the first 8 hex digits of SHA-256
/// of its subject. A label is made file-name safe (see [`file_name`]).
pub fn account_key(label: Option<&str>, subject: &str) -> String {
    match label {
        Some(l) if !l.is_empty() => sanitize_label(l),
        _ => short_hash(subject),
    }
}

/// The credential file name of an account: `cursor.<label>.json` when labelled, else
/// `cursor.<8 hex of SHA-256 of the subject>.json`. Pure: the same inputs always name the same
/// file. Characters a label may not contain (see [`validate_label`]) become `_`, so the result
/// is always a single path component.
pub fn file_name(label: Option<&str>, subject: &str) -> String {
    format!("cursor.{}.json", account_key(label, subject))
}

/// The key inside a credential file name (`cursor.<key>.json`), or `None` when the name is not
/// one of ours (other files in the auth directory are ignored).
pub fn key_of_file_name(name: &str) -> Option<&str> {
    let key = name.strip_prefix("cursor.")?.strip_suffix(".json")?;
    (!key.is_empty() && validate_label(key).is_ok()).then_some(key)
}

/// Checks that a label can name a file: 1–[`MAX_LABEL_LEN`] characters from `A–Z a–z 0–9 - _ .`,
/// not starting with `.`.
pub fn validate_label(label: &str) -> Result<(), AccountError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('.')
        && label.bytes().all(is_label_byte);
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidLabel(label.to_owned()))
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn sanitize_label(label: &str) -> String {
    let mut out: String = label
        .chars()
        .take(MAX_LABEL_LEN)
        .map(|c| {
            if c.is_ascii() && is_label_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    out
}

/// The first 8 hex digits of SHA-256 of `text`.
pub(crate) fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    crate::ids::hex_lower(&digest[..4])
}

/// The claims of a JWT payload the conductor uses. The signature is not checked: the token is
/// Cursor's to verify; the proxy only reads when it expires and whom it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtClaims {
    /// `sub`: the account subject.
    pub sub: Option<String>,
    /// `exp`: expiry, seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// `type`: `session`, `api_key_token`, ….
    pub token_type: Option<String>,
    /// `email`, when present.
    pub email: Option<String>,
}

impl JwtClaims {
    /// The claims of `token` (`header.payload.signature`), or `None` when the payload is not
    /// base64url JSON. Standard-alphabet characters and padding are tolerated.
    pub fn parse(token: &str) -> Option<JwtClaims> {
        let mut parts = token.trim().split('.');
        let (_header, payload) = (parts.next()?, parts.next()?);
        parts.next()?;
        let normalized: String = payload
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let bytes = URL_SAFE_NO_PAD.decode(normalized).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let obj = value.as_object()?;
        let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let exp = obj.get("exp").and_then(|v| {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        });
        Some(JwtClaims {
            sub: text("sub"),
            exp,
            token_type: text("type"),
            email: text("email"),
        })
    }

    /// `exp`, or one hour from `now_unix` when the token does not say (spec §7.2).
    pub fn expiry_or_assumed(&self, now_unix: u64) -> u64 {
        self.exp
            .unwrap_or_else(|| now_unix.saturating_add(ASSUMED_TOKEN_LIFETIME_SECS))
    }
}

/// The expiry of an access token: its `exp` claim, or one hour from `now_unix` when the token
/// cannot be parsed (spec §7.2).
pub fn token_expiry(token: &str, now_unix: u64) -> u64 {
    JwtClaims::parse(token)
        .unwrap_or_default()
        .expiry_or_assumed(now_unix)
}

/// A client API key as it may appear in usage counters and logs: `key-` and 8 hex digits of
/// its SHA-256. Usage is keyed by this (or a configured name), never by the key itself.
pub fn client_fingerprint(client_key: &str) -> String {
    format!("key-{}", short_hash(client_key))
}
