//! The one-request/one-response endpoints: auth, model listing, unary Connect calls,
//! `BidiAppend` and the `/__sim/…` control endpoints.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use cursorpool_core::bidi::decode_append;
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::aiserver_v1 as ai;
use prost::Message as _;
use serde_json::json;

use super::accounts::{PollOutcome, TokenKind, bearer};
use super::bidi::Appended;
use super::{Control, HttpRequest, HttpResponse, Sim, header_str};

/// The model catalogue: (id, display name, aliases).
const MODELS: &[(&str, &str, &[&str])] = &[
    ("default", "Auto", &["auto"]),
    ("composer-1", "Composer 1", &[]),
    ("gpt-5", "GPT-5", &[]),
    ("claude-4.5-sonnet", "Claude 4.5 Sonnet", &["sonnet"]),
    (
        "claude-4.5-sonnet-thinking",
        "Claude 4.5 Sonnet Thinking",
        &["sonnet-thinking"],
    ),
];

impl Sim {
    /// Routes one request (see [`Sim::handle_request`]).
    pub(super) fn route(
        &mut self,
        req: HttpRequest<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> HttpResponse {
        let path = collapse_slashes(req.path);
        *self.global.requests.entry(path.clone()).or_default() += 1;
        let method = req.method.to_ascii_uppercase();
        if let Some(op) = path.strip_prefix("/__sim/") {
            return self.control_endpoint(&method, op, req.body, now, wall);
        }
        match (method.as_str(), path.as_str()) {
            ("POST", "/auth/exchange_user_api_key") => self.exchange(req.headers, wall),
            ("GET", "/auth/poll") => self.poll(req.query, wall),
            ("POST", "/oauth/token") => self.oauth_token(req.body, wall),
            ("GET", "/v1/models") => self.models_json(req.headers, wall),
            ("POST", "/aiserver.v1.AnalyticsService/BootstrapStatsig") => {
                self.bootstrap_statsig(req.headers, wall)
            }
            ("POST", p) if p.starts_with("/aiserver.v1.AnalyticsService/") => proto_response(&[]),
            ("POST", p) if is_unary(p) => self.unary(p, req, now, wall),
            _ => connect_error(&ConnectError::new(
                Code::Unimplemented,
                format!("{method} {path} is not implemented by cursor-sim"),
            )),
        }
    }

    fn unary(
        &mut self,
        path: &str,
        req: HttpRequest<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> HttpResponse {
        let ct = header_str(req.headers, "content-type");
        if !ct.starts_with("application/proto") {
            return connect_error(&ConnectError::new(
                Code::InvalidArgument,
                format!("unsupported content type {ct:?}: unary calls need application/proto"),
            ));
        }
        let account = match self.accounts.check_bearer(req.headers, wall) {
            Ok(a) => a,
            Err(_) => {
                return connect_error(&ConnectError::new(
                    Code::Unauthenticated,
                    "Invalid or expired access token",
                ));
            }
        };
        match path {
            "/aiserver.v1.BidiService/BidiAppend" => self.bidi_append(account, req.body, now),
            "/aiserver.v1.ServerConfigService/GetServerConfig" => proto_response(
                &ai::GetServerConfigResponse {
                    http2_config: self.config.http2_config,
                    agent_url_config: None,
                }
                .encode_to_vec(),
            ),
            "/aiserver.v1.DashboardService/GetUserPrivacyMode" => proto_response(
                &ai::GetUserPrivacyModeResponse {
                    privacy_mode: ai::PrivacyMode::NoStorage as i32,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            "/agent.v1.AgentService/GetUsableModels" => proto_response(
                &pb::GetUsableModelsResponse {
                    models: MODELS.iter().map(model_details).collect(),
                }
                .encode_to_vec(),
            ),
            "/agent.v1.AgentService/GetDefaultModelForCli" => proto_response(
                &pb::GetDefaultModelForCliResponse {
                    model: MODELS.first().map(model_details),
                }
                .encode_to_vec(),
            ),
            // "/aiserver.v1.DashboardService/GetTeamAdminSettingsOrEmptyIfNotInTeam": empty =
            // not in a team.
            _ => proto_response(&[]),
        }
    }

    fn bidi_append(&mut self, account: usize, body: &[u8], now: Instant) -> HttpResponse {
        let append = match decode_append(body) {
            Ok(a) => a,
            Err(e) => {
                return connect_error(&ConnectError::new(Code::InvalidArgument, e.to_string()));
            }
        };
        self.global.bidi_appends += 1;
        self.accounts.list[account].counters.bytes_in += append.payload.len() as u64;
        let (how, run, ready) = self
            .bidi
            .append(&append.request_id, append.seqno, append.payload);
        match how {
            Appended::Duplicate => self.global.bidi_duplicates += 1,
            Appended::AfterEnd => {}
            Appended::Taken {
                early,
                out_of_order,
            } => {
                self.global.bidi_early += u64::from(early);
                self.global.bidi_out_of_order += u64::from(out_of_order);
            }
        }
        if let Some(run) = run {
            for payload in ready {
                self.drive(run, now, |r, env| r.handle_client_bytes(payload, now, env));
            }
        }
        proto_response(&[])
    }

    /// `POST /auth/exchange_user_api_key` (spec §7.3): bearer = API key or refresh token.
    fn exchange(&mut self, headers: &http::HeaderMap, wall: SystemTime) -> HttpResponse {
        let token = bearer(headers).unwrap_or("");
        let (account, refresh) = if let Some(a) = self.accounts.by_api_key(token) {
            (a, None)
        } else if let Ok(a) = self.accounts.validate(token, TokenKind::Refresh, wall) {
            (a, Some(token.to_owned()))
        } else {
            return json_response(401, &json!({"error": {"message": "Invalid API key"}}));
        };
        let access = self.accounts.issue(account, TokenKind::Access, wall);
        let refresh =
            refresh.unwrap_or_else(|| self.accounts.issue(account, TokenKind::Refresh, wall));
        self.global.tokens_issued += 1;
        json_response(
            200,
            &json!({"accessToken": access, "refreshToken": refresh}),
        )
    }

    /// `GET /auth/poll?uuid&verifier` (spec §7.1).
    fn poll(&mut self, query: &str, wall: SystemTime) -> HttpResponse {
        let uuid = query_param(query, "uuid").unwrap_or_default();
        let verifier = query_param(query, "verifier").unwrap_or_default();
        match self.accounts.poll_login(&uuid, &verifier) {
            PollOutcome::Pending => json_response(404, &json!({"error": "not found"})),
            PollOutcome::BadVerifier => json_response(
                400,
                &json!({"error": "verifier does not match the challenge"}),
            ),
            PollOutcome::Done(a) => {
                self.global.logins_completed += 1;
                self.global.tokens_issued += 1;
                let access = self.accounts.issue(a, TokenKind::Access, wall);
                let refresh = self.accounts.issue(a, TokenKind::Refresh, wall);
                let label = &self.accounts.list[a].config.label;
                json_response(
                    200,
                    &json!({
                        "accessToken": access,
                        "refreshToken": refresh,
                        "authId": format!("auth0|user_sim_{label}"),
                    }),
                )
            }
        }
    }

    /// `POST /oauth/token` refresh grant (spec §7.4).
    fn oauth_token(&mut self, body: &[u8], wall: SystemTime) -> HttpResponse {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return json_response(400, &json!({"error": "invalid_request"}));
        };
        if v["grant_type"].as_str() != Some("refresh_token") {
            return json_response(400, &json!({"error": "unsupported_grant_type"}));
        }
        let token = v["refresh_token"].as_str().unwrap_or("");
        match self.accounts.validate(token, TokenKind::Refresh, wall) {
            Ok(a) => {
                self.global.tokens_issued += 1;
                let access = self.accounts.issue(a, TokenKind::Access, wall);
                json_response(
                    200,
                    &json!({"access_token": access, "id_token": access, "shouldLogout": false}),
                )
            }
            Err(super::accounts::AuthError::Expired) => {
                json_response(200, &json!({"access_token": "", "shouldLogout": true}))
            }
            Err(_) => json_response(403, &json!({"error": "invalid_grant"})),
        }
    }

    /// `POST /aiserver.v1.AnalyticsService/BootstrapStatsig` (spec §10.3), plain JSON:
    /// `{"config": "<JSON>", "generatedAtMs": …}`. The SDK hands `config` to its Statsig client
    /// (`dataAdapter.setData`), which wants a Statsig client-initialize response: without
    /// `has_updates` it logs "Failed to parse data", without `user` "StatsigUser not found"
    /// (SDK 1.0.18 verified). No gate is on and no dynamic config is set, so every SDK
    /// feature check takes its default. Answered 200 even without a valid token (the SDK
    /// ignores failures here); the user id then is a placeholder.
    fn bootstrap_statsig(&self, headers: &http::HeaderMap, wall: SystemTime) -> HttpResponse {
        let user_id = match self.accounts.check_bearer(headers, wall) {
            Ok(a) => format!("user_sim_{}", self.accounts.list[a].config.label),
            Err(_) => "user_sim_anonymous".to_owned(),
        };
        let time_ms = super::accounts::unix_secs(wall) * 1000;
        let config = json!({
            "has_updates": true,
            "time": time_ms,
            "feature_gates": {},
            "dynamic_configs": {},
            "layer_configs": {},
            "param_stores": {},
            "sdkParams": {},
            "hash_used": "djb2",
            "derived_fields": {},
            "evaluated_keys": {"userID": user_id},
            "user": {"userID": user_id},
        });
        json_response(
            200,
            &json!({"config": config.to_string(), "generatedAtMs": time_ms.to_string()}),
        )
    }

    /// `GET /v1/models` (spec §10.4): bearer = the raw API key (or an access token).
    fn models_json(&self, headers: &http::HeaderMap, wall: SystemTime) -> HttpResponse {
        let token = bearer(headers).unwrap_or("");
        let ok = self.accounts.by_api_key(token).is_some()
            || self
                .accounts
                .validate(token, TokenKind::Access, wall)
                .is_ok();
        if !ok {
            return json_response(401, &json!({"error": {"message": "Invalid API key"}}));
        }
        let items: Vec<serde_json::Value> = MODELS
            .iter()
            .map(|(id, name, aliases)| json!({"id": id, "displayName": name, "aliases": aliases}))
            .collect();
        json_response(200, &json!({ "items": items }))
    }

    /// `/__sim/<op>`: `GET counters`, `POST control` (a [`Control`] JSON), and shortcuts
    /// `POST faults` (`{"faults": […]}`), `faults/add` (a fault rule), `faults/clear`,
    /// `quota/reset`, `quota/set`, `login/complete`, `tokens/expire`, `tokens/issue`,
    /// `http2_config` whose JSON bodies are the fields of the matching [`Control`] variant.
    fn control_endpoint(
        &mut self,
        method: &str,
        op: &str,
        body: &[u8],
        now: Instant,
        wall: SystemTime,
    ) -> HttpResponse {
        let parsed: Result<Control, String> = if op == "counters" && method == "GET" {
            Ok(Control::Counters)
        } else if method != "POST" {
            Err(format!("{method} /__sim/{op}: use POST"))
        } else {
            let body: serde_json::Value = if body.is_empty() {
                json!({})
            } else {
                match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return json_response(400, &json!({"error": e.to_string()})),
                }
            };
            let name = match op {
                "control" => None,
                "faults" => Some("set_faults"),
                "faults/clear" => Some("clear_faults"),
                "quota/reset" => Some("reset_quota"),
                "quota/set" => Some("set_quota"),
                "login/complete" => Some("complete_login"),
                "tokens/expire" => Some("expire_tokens"),
                "tokens/issue" => Some("issue_token"),
                "http2_config" => Some("set_http2_config"),
                "counters" => Some("counters"),
                "faults/add" => {
                    let rule = body;
                    return self.control_json(json!({"op": "add_fault", "rule": rule}), now, wall);
                }
                _ => return json_response(404, &json!({"error": format!("no /__sim/{op}")})),
            };
            let mut body = body;
            if let (Some(name), Some(obj)) = (name, body.as_object_mut()) {
                obj.insert("op".to_owned(), json!(name));
            }
            serde_json::from_value(body).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(cmd) => match self.control(cmd, now, wall) {
                Ok(v) => json_response(200, &v),
                Err(e) => json_response(400, &json!({ "error": e })),
            },
            Err(e) => json_response(400, &json!({ "error": e })),
        }
    }

    fn control_json(
        &mut self,
        v: serde_json::Value,
        now: Instant,
        wall: SystemTime,
    ) -> HttpResponse {
        match serde_json::from_value::<Control>(v) {
            Ok(cmd) => match self.control(cmd, now, wall) {
                Ok(v) => json_response(200, &v),
                Err(e) => json_response(400, &json!({ "error": e })),
            },
            Err(e) => json_response(400, &json!({"error": e.to_string()})),
        }
    }
}

/// Whether `path` is a Connect unary call the sim answers with protobuf.
fn is_unary(path: &str) -> bool {
    matches!(
        path,
        "/aiserver.v1.BidiService/BidiAppend"
            | "/aiserver.v1.ServerConfigService/GetServerConfig"
            | "/aiserver.v1.DashboardService/GetUserPrivacyMode"
            | "/aiserver.v1.DashboardService/GetTeamAdminSettingsOrEmptyIfNotInTeam"
            | "/agent.v1.AgentService/GetUsableModels"
            | "/agent.v1.AgentService/GetDefaultModelForCli"
    )
}

fn model_details((id, name, aliases): &(&str, &str, &[&str])) -> pb::ModelDetails {
    pb::ModelDetails {
        model_id: (*id).to_owned(),
        display_model_id: (*id).to_owned(),
        display_name: (*name).to_owned(),
        display_name_short: (*name).to_owned(),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        thinking_details: id.ends_with("-thinking").then_some(pb::ThinkingDetails {}),
        max_mode: None,
    }
}

/// `//v1/models` → `/v1/models` (spec §10.4).
fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex_val(c: u8) -> Option<u8> {
        (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = (b[i] == b'%' && i + 2 < b.len())
            .then(|| Some(hex_val(b[i + 1])? * 16 + hex_val(b[i + 2])?))
            .flatten();
        match (decoded, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response.
pub(super) fn json_response(status: u16, v: &serde_json::Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from(v.to_string()),
    }
}

/// A successful unary Connect response.
fn proto_response(body: &[u8]) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/proto".to_owned())],
        body: Bytes::copy_from_slice(body),
    }
}

/// A unary Connect error (spec §4.3).
fn connect_error(e: &ConnectError) -> HttpResponse {
    HttpResponse {
        status: e.code.http_status(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from(e.to_unary_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_and_queries() {
        assert_eq!(collapse_slashes("//v1//models"), "/v1/models");
        assert_eq!(
            query_param("uuid=a-b&verifier=x%2Dy+z", "verifier").as_deref(),
            Some("x-y z")
        );
        assert_eq!(query_param("uuid=a", "verifier"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
