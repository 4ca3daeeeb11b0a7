//! `GET /metrics`: Prometheus text behind the management secret when one is set (open without
//! one), counting requests by status, tokens, latency, upstream failures by kind, and showing
//! each account's state and cooldown, parked tool calls and upstream connections.

use cursorpool_conformance as support;

use std::time::Duration;

use bytes::Bytes;
use cursorpool_tokio::app::AppConfig;
use serde_json::json;
use support::{Client, Harness, Options, anthropic_text_request, bounded};

const SECRET: &str = "metrics-secret";

fn with_secret(c: &mut AppConfig) {
    c.management_secret = Some(SECRET.to_owned());
    c.pool.cooldown.quota_initial = Duration::from_secs(600);
}

/// The value of the sample `name{labels}` (exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(h: &Harness, secret: Option<&str>) -> support::Response {
    let auth = secret.map(|s| format!("Bearer {s}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    Client::connect(h.addr)
        .await
        .send("GET", "/metrics", &headers, Bytes::new())
        .await
}

async fn metrics_count_requests_failures_cooldowns_and_parked_calls() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..Options::spent_then_fresh()
        })
        .await;
        assert_eq!(metrics(&h, None).await.status, 401);
        assert_eq!(metrics(&h, Some("wrong")).await.status, 401);

        let r = h
            .anthropic(&anthropic_text_request("fails over once", false))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = h.anthropic(&anthropic_text_request("streamed", true)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut tool = anthropic_text_request("use tool get_weather", false);
        tool["tools"] = json!([{
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
        }]);
        let r = h.anthropic(&tool).await;
        assert_eq!(r.json()["stop_reason"], "tool_use", "{}", r.text());
        let r = h
            .post("/v1/messages", Bytes::from_static(b"{not json"))
            .await;
        assert_eq!(r.status, 400);

        let r = metrics(&h, Some(SECRET)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let m = r.text();
        let get = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("{series}:\n{m}"));
        assert_eq!(
            get("cursorpool_requests_total{api=\"anthropic\",status=\"200\"}"),
            3.0
        );
        assert_eq!(
            get("cursorpool_requests_total{api=\"anthropic\",status=\"400\"}"),
            1.0
        );
        assert_eq!(get("cursorpool_request_duration_seconds_count"), 4.0);
        assert_eq!(
            get("cursorpool_request_duration_seconds_bucket{le=\"+Inf\"}"),
            4.0
        );
        assert_eq!(
            get("cursorpool_upstream_failures_total{kind=\"quota_exhausted\"}"),
            1.0
        );
        assert!(get("cursorpool_tokens_total{direction=\"input\"}") > 0.0);
        assert!(get("cursorpool_tokens_total{direction=\"output\"}") > 0.0);
        assert_eq!(
            get("cursorpool_account_state{account=\"spent\",state=\"cooling\"}"),
            1.0
        );
        assert_eq!(
            get("cursorpool_account_state{account=\"fresh\",state=\"ready\"}"),
            1.0
        );
        let cooldown = m
            .lines()
            .find(|l| l.starts_with("cursorpool_account_cooldown_seconds{account=\"spent\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("a cooldown for spent:\n{m}"));
        assert!(cooldown > 60.0, "{m}");
        assert_eq!(get("cursorpool_parked_conversations"), 1.0);
        assert!(get("cursorpool_upstream_connections_total") >= 1.0);
        assert_eq!(get("cursorpool_upstream_runs_total"), 4.0);
        // The parked run counts against its account when it finishes.
        assert_eq!(
            get("cursorpool_account_requests_total{account=\"fresh\"}"),
            2.0
        );
        // Every sample line is `name{labels} value` or `name value` with a number.
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
        }
        h.shutdown().await;
    })
    .await;
}

async fn metrics_are_open_without_a_management_secret() {
    bounded(async {
        let h = Harness::start_default().await;
        let r = metrics(&h, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text()
                .contains("cursorpool_account_state{account=\"main\",state=\"ready\"} 1")
        );
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    metrics_count_requests_failures_cooldowns_and_parked_calls,
    metrics_are_open_without_a_management_secret,
);
