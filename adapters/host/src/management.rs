//! The management API under `/v0/management`, protected by its own secret (`Authorization:
//! Bearer` or `x-management-key`, compared in constant time). Off (404) without a secret.
//!
//! Brute force is throttled globally: after [`MAX_FAILURES`] wrong secrets within [`WINDOW`]
//! every management request — the right secret included — gets 429 with `retry-after` until
//! the window that began with the first failure ends. Only failures count; a good secret
//! outside a throttled window does not reset the count.
//!
//! Answers are JSON; none carries a token, the secret, or a PKCE verifier.
//!
//! - `GET accounts`: the pool's status (state, rests, last error, usage).
//! - `POST accounts/{id}/enable|disable|reset`, `DELETE accounts/{id}` (an account from the
//!   auth directory loses its credential file too).
//! - `POST accounts` with `{"api_key", "label"?}`: exchanges the key for tokens (spec §7.3),
//!   writes the credential file when there is an auth directory, adds the account to the pool
//!   (or updates it) and answers its status.
//! - `GET usage`: per account (total, by model, by client) and per client.
//! - `GET errors`: the most recent upstream failures (time, account, kind, status, message).
//! - `GET cursor-auth-url?label=NAME`: starts a browser login; answers `{"url", "state"}`.
//! - `GET cursor-auth-status?state=ID`: `{"status": "pending"|"done"|"failed", "file"?,
//!   "error"?}`; a completed login's account joins the pool.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::conductor::refresh::RefreshFailure;
use cursorpool_core::conductor::{AccountId, Secret};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::app::{App, BodyError};
use crate::body::{HttpResponse, ResponseBody};
use crate::client_auth::{bearer, constant_time_eq};
use crate::login::{self, LoginFailure, LoginOptions};

/// Wrong secrets tolerated per window.
pub(crate) const MAX_FAILURES: u32 = 5;
/// The throttle's window, from the first failure.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Logins whose outcome is remembered (the oldest are forgotten).
const MAX_LOGINS: usize = 64;
/// Largest body of a management request (`POST accounts`).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;
/// Bound on a login announcing its URL.
const LOGIN_START_LIMIT: Duration = Duration::from_secs(30);

const PREFIX: &str = "/v0/management";

/// Whether `path` is the management API's.
pub(crate) fn is_management(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// The management API's state: the secret throttle and the logins it started.
#[derive(Debug, Default)]
pub(crate) struct Management {
    throttle: Mutex<Throttle>,
    logins: Mutex<Logins>,
}

#[derive(Debug, Default)]
struct Throttle {
    window_start: Option<Instant>,
    failures: u32,
}

impl Throttle {
    /// How long requests are still refused, if they are.
    fn blocked(&mut self, now: Instant) -> Option<Duration> {
        let start = self.window_start?;
        let end = start + WINDOW;
        if now >= end {
            *self = Throttle::default();
            return None;
        }
        (self.failures >= MAX_FAILURES).then(|| end - now)
    }

    fn fail(&mut self, now: Instant) {
        self.window_start.get_or_insert(now);
        self.failures = self.failures.saturating_add(1);
    }
}

#[derive(Debug, Clone)]
enum LoginState {
    Pending,
    Done { file: String },
    Failed { error: String },
}

#[derive(Debug, Default)]
struct Logins {
    states: HashMap<String, LoginState>,
    order: VecDeque<String>,
}

impl Management {
    fn set_login(&self, uuid: &str, state: LoginState) {
        let mut l = lock(&self.logins);
        if l.states.insert(uuid.to_owned(), state).is_none() {
            l.order.push_back(uuid.to_owned());
            while l.order.len() > MAX_LOGINS {
                if let Some(old) = l.order.pop_front() {
                    l.states.remove(&old);
                }
            }
        }
    }

    fn login(&self, uuid: &str) -> Option<LoginState> {
        lock(&self.logins).states.get(uuid).cloned()
    }
}

/// Serves one request under `/v0/management`.
pub(crate) async fn handle(
    app: Arc<App>,
    parts: Parts,
    body: Result<Bytes, BodyError>,
) -> HttpResponse {
    if let Some(resp) = refusal(&app, &parts) {
        return resp;
    }
    let path = parts.uri.path();
    let rest = path
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .trim_start_matches('/');
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let query = parts.uri.query().unwrap_or_default();
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["accounts"]) => {
            ok(serde_json::to_value(app.pool_status()).unwrap_or_default())
        }
        (&Method::POST, ["accounts"]) => add_by_api_key(&app, body).await,
        (&Method::GET, ["usage"]) => usage(&app),
        (&Method::GET, ["errors"]) => ok(json!({"errors": app.metrics().recent_errors()})),
        (&Method::POST, ["accounts", id, action]) => account_action(&app, id, action),
        (&Method::DELETE, ["accounts", id]) => delete_account(&app, id).await,
        (&Method::GET, ["cursor-auth-url"]) => start_login(&app, query_param(query, "label")).await,
        (&Method::GET, ["cursor-auth-status"]) => login_status(&app, query_param(query, "state")),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no management route for {} {path}", parts.method),
        ),
    }
}

/// Checks the management secret on `parts` (constant time, throttled): `Some` is the answer to
/// send instead (404 when no secret is configured, 401, or 429 while throttled). Shared by the
/// management API, `/metrics` and the status page's data.
pub(crate) fn refusal(app: &App, parts: &Parts) -> Option<HttpResponse> {
    let Some(secret) = app.live().management_secret.clone() else {
        return Some(error(StatusCode::NOT_FOUND, "not found"));
    };
    let now = Instant::now();
    let mut throttle = lock(&app.management().throttle);
    if let Some(wait) = throttle.blocked(now) {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong management secrets; try again later",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        return Some(resp);
    }
    let presented = parts
        .headers
        .get("x-management-key")
        .map(|v| v.as_bytes())
        .or_else(|| bearer(&parts.headers))
        .unwrap_or_default();
    if !constant_time_eq(secret.as_bytes(), presented) {
        throttle.fail(now);
        tracing::warn!("management API: wrong or missing secret");
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "wrong or missing management secret",
        ));
    }
    None
}

fn usage(app: &App) -> HttpResponse {
    let status = app.pool_status();
    let accounts: Vec<Value> = status
        .accounts
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "key": a.key,
                "label": a.label,
                "usage": a.usage,
            })
        })
        .collect();
    ok(json!({"accounts": accounts, "clients": status.clients}))
}

fn parse_id(id: &str) -> Option<AccountId> {
    id.parse::<u32>().ok().map(AccountId::from_raw)
}

fn account_json(app: &App, id: AccountId) -> Value {
    app.pool_status()
        .accounts
        .iter()
        .find(|a| a.id == id)
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or_default()
}

fn account_action(app: &App, id: &str, action: &str) -> HttpResponse {
    let Some(id) = parse_id(id) else {
        return error(StatusCode::NOT_FOUND, "no such account");
    };
    let found = match action {
        "enable" => app.with_pool(|p| p.enable(id)),
        "disable" => app.with_pool(|p| p.disable(id, "disabled through the management API")),
        "reset" => app.with_pool(|p| p.reset_cooldown(id)),
        _ => return error(StatusCode::NOT_FOUND, "unknown account action"),
    };
    if !found {
        return error(StatusCode::NOT_FOUND, "no such account");
    }
    tracing::info!(account = %id, action, "management API");
    ok(account_json(app, id))
}

async fn delete_account(app: &App, id: &str) -> HttpResponse {
    let Some(id) = parse_id(id) else {
        return error(StatusCode::NOT_FOUND, "no such account");
    };
    let Some(record) = app.with_pool(|p| p.record(id).cloned()) else {
        return error(StatusCode::NOT_FOUND, "no such account");
    };
    let from_file = app.is_file_account(id);
    let key = record.key();
    let removed = app.remove_account(&key);
    let mut file_deleted = false;
    if from_file && let Some(dir) = app.auth_dir() {
        let dir = dir.clone();
        match blocking::unblock(move || dir.remove(&record)).await {
            Ok(deleted) => file_deleted = deleted,
            Err(e) => {
                tracing::warn!(account = %id, error = %e, "cannot delete the credential file");
            }
        }
    }
    tracing::info!(account = %id, file_deleted, "account deleted through the management API");
    ok(json!({"deleted": removed, "key": key, "file_deleted": file_deleted}))
}

/// `POST accounts` `{"api_key": "...", "label": "..."}`.
async fn add_by_api_key(app: &App, body: Result<Bytes, BodyError>) -> HttpResponse {
    let bytes = match body {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body is unreadable or too large",
            );
        }
    };
    // A parser's message could quote the body (and so the key): not shown.
    let parsed = serde_json::from_slice::<Value>(&bytes).ok();
    let api_key = parsed.as_ref().and_then(|v| v["api_key"].as_str());
    let label = parsed.as_ref().map(|v| &v["label"]);
    let (Some(api_key), Some(label @ (Value::Null | Value::String(_)))) = (api_key, label) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected a JSON object {\"api_key\": \"...\", \"label\": \"...\"}",
        );
    };
    let key = Secret::new(api_key);
    let label = label.as_str().filter(|l| !l.is_empty()).map(str::to_owned);
    let config = app.config();
    let upstream = match app
        .platform()
        .upstream(&config.upstream_url, config.upstream_root_pem.as_deref())
    {
        Ok(u) => u,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let record = match login::exchange_api_key(
        app.platform().as_ref(),
        upstream.as_ref(),
        &key,
        label,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let status = match &e {
                LoginFailure::Account(_) | LoginFailure::Exchange(RefreshFailure::Rejected(_)) => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            tracing::info!("management API: adding an account by API key failed: {e}");
            return error(status, &e.to_string());
        }
    };
    let mut file = None;
    let record = match app.auth_dir() {
        Some(dir) => match login::store(dir.path(), record).await {
            Ok(done) => {
                file = done
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned());
                done.record
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        None => record,
    };
    let id = match app.upsert_account(record) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    tracing::info!(account = %id, file = ?file, "account added by API key through the management API");
    let mut status = account_json(app, id);
    if let (Some(obj), Some(file)) = (status.as_object_mut(), file) {
        obj.insert("file".to_owned(), Value::String(file));
    }
    ok(status)
}

async fn start_login(app: &Arc<App>, label: Option<String>) -> HttpResponse {
    if let Some(label) = &label
        && let Err(e) = cursorpool_core::conductor::account::validate_label(label)
    {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let Some(dir) = app.auth_dir() else {
        return error(
            StatusCode::CONFLICT,
            "the proxy has no auth directory to store a login in",
        );
    };
    let config = app.config();
    let opts = LoginOptions {
        label,
        auth_dir: dir.path().to_path_buf(),
        upstream: config.upstream_url.clone(),
        upstream_root_pem: config.upstream_root_pem.clone(),
        login_site: config.login_site.clone(),
        schedule: config.login_schedule.clone(),
        progress: false,
    };
    // The login announces its URL (Ok) or why it could not start (Err).
    let (tx, rx) = async_channel::bounded::<Result<(String, String), String>>(1);
    let task_app = app.clone();
    let platform = app.platform().clone();
    app.platform().spawn(Box::pin(async move {
        let uuid = Arc::new(OnceLock::<String>::new());
        let (u, a, started) = (uuid.clone(), task_app.clone(), tx.clone());
        let result = login::run(platform.as_ref(), &opts, move |s| {
            let _ = u.set(s.uuid.clone());
            a.management().set_login(&s.uuid, LoginState::Pending);
            let _ = started.try_send(Ok((s.url.clone(), s.uuid.clone())));
        })
        .await;
        let Some(uuid) = uuid.get() else {
            // Failed before it could start: the handler reports it.
            let why = result
                .err()
                .map_or_else(|| "the login could not start".to_owned(), |e| e.to_string());
            let _ = tx.try_send(Err(why));
            return;
        };
        let state = match result {
            Ok(done) => {
                let file = done
                    .path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match task_app.upsert_account(done.record) {
                    Ok(id) => {
                        tracing::info!(account = %id, file, "management login completed");
                        LoginState::Done { file }
                    }
                    Err(e) => LoginState::Failed {
                        error: e.to_string(),
                    },
                }
            }
            Err(e) => {
                tracing::info!("management login failed: {e}");
                LoginState::Failed {
                    error: e.to_string(),
                }
            }
        };
        task_app.management().set_login(uuid, state);
    }));
    let limit = app.platform().sleep(LOGIN_START_LIMIT);
    let answer = futures_lite::future::or(async { Some(rx.recv().await) }, async {
        limit.await;
        None
    })
    .await;
    match answer {
        Some(Ok(Ok((url, state)))) => ok(json!({"url": url, "state": state})),
        Some(Ok(Err(why))) => error(StatusCode::BAD_GATEWAY, &why),
        Some(Err(_)) => error(StatusCode::BAD_GATEWAY, "the login could not start"),
        None => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the login did not start in time",
        ),
    }
}

fn login_status(app: &App, state: Option<String>) -> HttpResponse {
    let Some(state) = state else {
        return error(StatusCode::BAD_REQUEST, "missing state parameter");
    };
    match app.management().login(&state) {
        None => error(StatusCode::NOT_FOUND, "no such login"),
        Some(LoginState::Pending) => ok(json!({"status": "pending"})),
        Some(LoginState::Done { file }) => ok(json!({"status": "done", "file": file})),
        Some(LoginState::Failed { error }) => ok(json!({"status": "failed", "error": error})),
    }
}

/// The value of `name` in a query string (`%XX` and `+` decoded).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ok(v: Value) -> HttpResponse {
    respond(StatusCode::OK, &v)
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    respond(status, &json!({"error": message}))
}

fn respond(status: StatusCode, v: &Value) -> HttpResponse {
    let mut resp = Response::new(ResponseBody::full(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
