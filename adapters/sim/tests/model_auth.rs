//! Auth and the side endpoints: API-key exchange, browser login (PKCE), OAuth refresh,
//! `/v1/models`, unary Connect calls, the control endpoints.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::aiserver_v1 as ai;
use cursorpool_sim::model::Control;
use prost::Message as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    h
}

fn json_body(r: &cursorpool_sim::model::HttpResponse) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn exchange(h: &mut Harness, key: &str) -> cursorpool_sim::model::HttpResponse {
    h.request(
        "POST",
        "/auth/exchange_user_api_key",
        "",
        &bearer(key),
        b"{}",
    )
}

#[test]
fn api_key_exchange_issues_signed_jwts_that_all_stay_valid() {
    let mut h = Harness::new(config());
    let r = exchange(&mut h, "key-a");
    assert_eq!(r.status, 200);
    let v = json_body(&r);
    let access = v["accessToken"].as_str().unwrap().to_owned();
    assert!(v["refreshToken"].as_str().is_some());
    let parts: Vec<&str> = access.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert!(payload["sub"].as_str().unwrap().contains("user_sim_a"));
    assert_eq!(payload["type"], "api_key_token");
    let exp = payload["exp"].as_u64().unwrap();
    let iat = payload["iat"].as_u64().unwrap();
    assert_eq!(exp - iat, 3600);

    // §10.2: the SDK exchanges ~5 times and uses every token.
    let more: Vec<String> = (0..4)
        .map(|_| {
            json_body(&exchange(&mut h, "key-a"))["accessToken"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for t in std::iter::once(&access).chain(&more) {
        assert_eq!(h.simple_turn(t, "hi", None).error_code(), None);
    }
    // A forged signature is not accepted.
    let forged = format!("{}.{}.{}", parts[0], parts[1], "AAAA");
    assert_eq!(
        h.simple_turn(&forged, "hi", None).error_code(),
        Some("unauthenticated")
    );
}

#[test]
fn bad_api_key_is_401_invalid_api_key() {
    let mut h = Harness::new(config());
    let r = exchange(&mut h, "wrong");
    assert_eq!(r.status, 401);
    assert_eq!(
        json_body(&r),
        json!({"error": {"message": "Invalid API key"}})
    );
}

#[test]
fn refresh_token_exchanges_for_a_new_access_token() {
    let mut h = Harness::new(config());
    let v = json_body(&exchange(&mut h, "key-b"));
    let refresh = v["refreshToken"].as_str().unwrap().to_owned();
    let r = exchange(&mut h, &refresh);
    assert_eq!(r.status, 200);
    let access = json_body(&r)["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(h.simple_turn(&access, "hi", None).error_code(), None);
    assert_eq!(h.sim.account_counters("b").unwrap().turns_completed, 1);
}

#[test]
fn browser_login_flow_with_pkce() {
    let mut h = Harness::new(config());
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let uuid = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let query = format!("uuid={uuid}&verifier={verifier}");
    let none = http::HeaderMap::new();
    assert_eq!(
        h.request("GET", "/auth/poll", &query, &none, b"").status,
        404
    );

    // The test plays the user completing the login in the browser.
    h.sim
        .control(
            Control::CompleteLogin {
                uuid: uuid.to_owned(),
                account: "b".to_owned(),
                challenge,
            },
            h.now,
            h.wall,
        )
        .unwrap();
    let bad = format!("uuid={uuid}&verifier=not-the-verifier");
    assert_eq!(h.request("GET", "/auth/poll", &bad, &none, b"").status, 400);
    let r = h.request("GET", "/auth/poll", &query, &none, b"");
    assert_eq!(r.status, 200);
    let v = json_body(&r);
    assert_eq!(v["authId"], "auth0|user_sim_b");
    let access = v["accessToken"].as_str().unwrap().to_owned();
    let refresh = v["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(h.simple_turn(&access, "hi", None).error_code(), None);
    assert_eq!(h.sim.account_counters("b").unwrap().runs, 1);
    // Collected once.
    assert_eq!(
        h.request("GET", "/auth/poll", &query, &none, b"").status,
        404
    );
    assert_eq!(h.sim.counters().logins_completed, 1);

    // The OAuth refresh grant (§7.4).
    let body = json!({"grant_type": "refresh_token", "client_id": "x", "refresh_token": refresh});
    let r = h.request(
        "POST",
        "/oauth/token",
        "",
        &none,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    let v = json_body(&r);
    assert_eq!(v["shouldLogout"], false);
    assert_eq!(
        h.simple_turn(v["access_token"].as_str().unwrap(), "hi", None)
            .error_code(),
        None
    );
    let bad = json!({"grant_type": "refresh_token", "refresh_token": "nope"});
    assert_eq!(
        h.request(
            "POST",
            "/oauth/token",
            "",
            &none,
            bad.to_string().as_bytes()
        )
        .status,
        403
    );
    let wrong = json!({"grant_type": "password"});
    assert_eq!(
        h.request(
            "POST",
            "/oauth/token",
            "",
            &none,
            wrong.to_string().as_bytes()
        )
        .status,
        400
    );
}

#[test]
fn login_completion_through_the_http_control_endpoint() {
    let mut h = Harness::new(config());
    let verifier = "v".repeat(43);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let body = json!({"uuid": "u1", "account": "a", "challenge": challenge});
    let none = http::HeaderMap::new();
    let r = h.request(
        "POST",
        "/__sim/login/complete",
        "",
        &none,
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = h.request(
        "GET",
        "/auth/poll",
        &format!("uuid=u1&verifier={verifier}"),
        &none,
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn v1_models_needs_the_api_key_and_tolerates_a_double_slash() {
    let mut h = Harness::new(config());
    for path in ["/v1/models", "//v1/models"] {
        let r = h.request("GET", path, "", &bearer("key-a"), b"");
        assert_eq!(r.status, 200);
        let v = json_body(&r);
        let ids: Vec<&str> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"default"));
        assert!(v["items"][0]["displayName"].is_string());
    }
    assert_eq!(
        h.request("GET", "/v1/models", "", &bearer("nope"), b"")
            .status,
        401
    );
}

#[test]
fn unary_connect_calls_answer_protobuf() {
    let mut cfg = config();
    cfg.http2_config = 2;
    let mut h = Harness::new(cfg);
    let token = h.token("a");
    let hd = headers(&token, "application/proto", None);

    let r = h.request(
        "POST",
        "/aiserver.v1.ServerConfigService/GetServerConfig",
        "",
        &hd,
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        ai::GetServerConfigResponse::decode(r.body)
            .unwrap()
            .http2_config,
        2
    );

    let r = h.request(
        "POST",
        "/aiserver.v1.DashboardService/GetUserPrivacyMode",
        "",
        &hd,
        b"",
    );
    assert_eq!(r.status, 200);
    ai::GetUserPrivacyModeResponse::decode(r.body).unwrap();

    let r = h.request(
        "POST",
        "/agent.v1.AgentService/GetUsableModels",
        "",
        &hd,
        b"",
    );
    let models = pb::GetUsableModelsResponse::decode(r.body).unwrap().models;
    assert!(models.iter().any(|m| m.model_id == "default"));

    let r = h.request(
        "POST",
        "/agent.v1.AgentService/GetDefaultModelForCli",
        "",
        &hd,
        b"",
    );
    assert_eq!(
        pb::GetDefaultModelForCliResponse::decode(r.body)
            .unwrap()
            .model
            .unwrap()
            .model_id,
        "default"
    );

    let r = h.request(
        "POST",
        "/aiserver.v1.DashboardService/GetTeamAdminSettingsOrEmptyIfNotInTeam",
        "",
        &hd,
        b"",
    );
    assert_eq!((r.status, r.body.len()), (200, 0));

    let r = h.request(
        "POST",
        "/aiserver.v1.AnalyticsService/TrackEvents",
        "",
        &hd,
        b"",
    );
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = h.request(
        "POST",
        "/aiserver.v1.AnalyticsService/BootstrapStatsig",
        "",
        &bearer(&token),
        b"{}",
    );
    assert_eq!(r.status, 200);
    // The SDK feeds `config` to its Statsig client, which needs a client-initialize response
    // with `has_updates` and `user` (otherwise it logs errors and drops the data).
    let config: serde_json::Value =
        serde_json::from_str(json_body(&r)["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["has_updates"], true);
    assert!(config["feature_gates"].is_object() && config["dynamic_configs"].is_object());
    assert!(config["layer_configs"].is_object());
    assert!(
        config["user"]["userID"]
            .as_str()
            .unwrap()
            .starts_with("user_sim_")
    );
    let r = h.request(
        "POST",
        "/aiserver.v1.AnalyticsService/BootstrapStatsig",
        "",
        &http::HeaderMap::new(),
        b"{}",
    );
    assert_eq!(r.status, 200);
    let config: serde_json::Value =
        serde_json::from_str(json_body(&r)["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["user"]["userID"], "user_sim_anonymous");

    let r = h.request("POST", "/aiserver.v1.Nope/Nothing", "", &hd, b"");
    assert_eq!(r.status, 501);
    assert_eq!(json_body(&r)["code"], "unimplemented");

    let r = h.request(
        "POST",
        "/aiserver.v1.ServerConfigService/GetServerConfig",
        "",
        &headers("bad", "application/proto", None),
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(json_body(&r)["code"], "unauthenticated");

    // http2_config can be changed at run time.
    let v = h
        .sim
        .control(Control::SetHttp2Config { value: 1 }, h.now, h.wall)
        .unwrap();
    assert_eq!(v["http2_config"], 1);
    let r = h.request(
        "POST",
        "/aiserver.v1.ServerConfigService/GetServerConfig",
        "",
        &hd,
        b"",
    );
    assert_eq!(
        ai::GetServerConfigResponse::decode(r.body)
            .unwrap()
            .http2_config,
        1
    );
}

#[test]
fn counters_through_control_and_the_http_endpoint() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    h.simple_turn(&token, "count me", None);
    let none = http::HeaderMap::new();
    let r = h.request("GET", "/__sim/counters", "", &none, b"");
    assert_eq!(r.status, 200);
    let v = json_body(&r);
    assert_eq!(v["accounts"]["a"]["runs"], 1);
    assert_eq!(v["total"]["turns_completed"], 1);
    let via_control = h.sim.control(Control::Counters, h.now, h.wall).unwrap();
    assert_eq!(via_control["accounts"]["a"]["runs"], 1);
    let r = h.request(
        "POST",
        "/__sim/control",
        "",
        &none,
        br#"{"op":"issue_token","account":"b"}"#,
    );
    assert_eq!(r.status, 200);
    let t = json_body(&r)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.simple_turn(&t, "hi", None).error_code(), None);
    let r = h.request(
        "POST",
        "/__sim/control",
        "",
        &none,
        br#"{"op":"reset_quota","account":"zzz"}"#,
    );
    assert_eq!(r.status, 400);
    let _ = Duration::ZERO;
}
