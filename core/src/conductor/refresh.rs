//! Renewing an access token without IO: the request to send (spec §7.3 API-key exchange,
//! §7.4 OAuth refresh grant) and what the answer means. The adapter sends [`TokenRequest`] to
//! [`super::login::API_BASE`] (or the simulator), feeds the answer to [`parse_refresh`], and
//! reports the outcome to the pool ([`super::Pool::update_tokens`] or
//! [`super::Pool::report_refresh_failed`]).

use std::fmt;

use serde::Deserialize;

use super::account::{AccountRecord, RefreshMethod, Secret, TokenGrant};

/// Path of the OAuth refresh grant (spec §7.4).
pub const OAUTH_TOKEN_PATH: &str = "/oauth/token";
/// Path of the API-key / token exchange (spec §7.3).
pub const EXCHANGE_PATH: &str = "/auth/exchange_user_api_key";
/// The public client id embedded in Cursor's desktop and CLI builds (spec §7.4).
pub const OAUTH_CLIENT_ID: &str = "KbZUR41cY7W6zRSdpSUJ7I7mLYBKOCmB";

/// One token call: `POST <api base><path>` with `content-type: application/json`, the body, and
/// `authorization: Bearer <bearer>` when set. `Debug` redacts the bearer and the body (both
/// carry credentials).
#[derive(Clone)]
pub struct TokenRequest {
    /// Which call this is (decides how the answer is read).
    pub method: RefreshMethod,
    /// The path below the API base.
    pub path: &'static str,
    /// The bearer credential, if the call takes one.
    pub bearer: Option<Secret>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("bearer", &self.bearer)
            .field(
                "body",
                &format_args!("<{} bytes, redacted>", self.body.len()),
            )
            .finish()
    }
}

/// The call that renews `record`'s access token, or `None` when it has nothing to renew with
/// (an account added with a bare access token).
pub fn refresh_request(record: &AccountRecord) -> Option<TokenRequest> {
    match record.refresh_method()? {
        RefreshMethod::OAuthRefresh => record.refresh_token.as_ref().map(oauth_refresh_request),
        RefreshMethod::ApiKeyExchange => record.api_key.as_ref().map(exchange_request),
    }
}

/// `POST /oauth/token` `{"grant_type":"refresh_token","client_id":…,"refresh_token":…}`.
pub fn oauth_refresh_request(refresh_token: &Secret) -> TokenRequest {
    let body = serde_json::json!({
        "grant_type": "refresh_token",
        "client_id": OAUTH_CLIENT_ID,
        "refresh_token": refresh_token.expose(),
    });
    TokenRequest {
        method: RefreshMethod::OAuthRefresh,
        path: OAUTH_TOKEN_PATH,
        bearer: None,
        body: body.to_string().into_bytes(),
    }
}

/// `POST /auth/exchange_user_api_key` with `authorization: Bearer <key>` and body `{}`. The
/// bearer is an API key (adding an account by key) or a refresh token.
pub fn exchange_request(bearer: &Secret) -> TokenRequest {
    TokenRequest {
        method: RefreshMethod::ApiKeyExchange,
        path: EXCHANGE_PATH,
        bearer: Some(bearer.clone()),
        body: b"{}".to_vec(),
    }
}

/// Why a token call failed. The variant decides what happens to the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshFailure {
    /// The credential was refused (401/403, `shouldLogout`): the account needs a new login;
    /// it is disabled with this reason.
    #[error("credentials rejected: {0}")]
    Rejected(String),
    /// The call failed for a reason that may pass (5xx, network, a malformed answer): the
    /// account rests briefly and the refresh is tried again.
    #[error("token refresh failed: {0}")]
    Transient(String),
}

#[derive(Deserialize)]
struct OAuthBody {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default, rename = "shouldLogout")]
    should_logout: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeBody {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Reads the answer to a [`TokenRequest`] of `method`.
pub fn parse_refresh(
    method: RefreshMethod,
    status: u16,
    body: &[u8],
) -> Result<TokenGrant, RefreshFailure> {
    match status {
        200 => {}
        401 | 403 => {
            return Err(RefreshFailure::Rejected(format!(
                "the token endpoint answered {status}; log in again"
            )));
        }
        404 if method == RefreshMethod::ApiKeyExchange => {
            return Err(RefreshFailure::Rejected(
                "the API-key exchange endpoint does not exist (404)".to_owned(),
            ));
        }
        _ => {
            return Err(RefreshFailure::Transient(format!(
                "the token endpoint answered {status}"
            )));
        }
    }
    let malformed =
        || RefreshFailure::Transient("the token endpoint's answer has no access token".to_owned());
    match method {
        RefreshMethod::OAuthRefresh => {
            let b: OAuthBody = serde_json::from_slice(body).map_err(|_| malformed())?;
            if b.should_logout {
                return Err(RefreshFailure::Rejected(
                    "the session ended (shouldLogout); log in again".to_owned(),
                ));
            }
            let access = b
                .access_token
                .filter(|t| !t.is_empty())
                .ok_or_else(malformed)?;
            Ok(TokenGrant {
                access_token: Secret::new(access),
                refresh_token: None,
                auth_id: None,
            })
        }
        RefreshMethod::ApiKeyExchange => {
            let b: ExchangeBody = serde_json::from_slice(body).map_err(|_| malformed())?;
            let access = b
                .access_token
                .filter(|t| !t.is_empty())
                .ok_or_else(malformed)?;
            Ok(TokenGrant {
                access_token: Secret::new(access),
                refresh_token: b.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
                auth_id: None,
            })
        }
    }
}
