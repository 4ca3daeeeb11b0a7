//! Upstream failures as the client sees them, end to end over loopback: each in its own API's
//! error shape and status (Anthropic `{"type":"error","error":{…}}`, OpenAI `{"error":{…}}`),
//! a failure after the first byte as an error event (never a silent normal stop), and a
//! failure before the first byte on one account invisible when another account is healthy.
//! Faults and quotas come from the simulated backend; its counters show what was tried.

use cursorpool_conformance as support;

use cursorpool_core::connect::code::Code;
use cursorpool_sim::model::{Fault, Quota};
use serde_json::Value;
use support::{
    Harness, Options, ProxyAccount, Response, anthropic_stream, anthropic_text_request, bounded,
    no_rests, openai_stream, openai_text_request,
};

/// A fault that ends every run with `code` before any message.
fn error_at_start(code: Code) -> Fault {
    Fault::ErrorAfter {
        after_updates: 0,
        code,
        cursor_error: None,
    }
}

/// Checks an Anthropic error response: status, `error.type`, a message.
fn assert_anthropic_error(r: &Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status, status, "Anthropic status; body: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let v = r.json();
    assert_eq!(v["type"], "error", "Anthropic error shape: {v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

/// Checks an OpenAI error response: status, `error.type` / `error.code`, a message.
fn assert_openai_error(r: &Response, status: u16, kind: &str, code: Option<&str>) -> Value {
    assert_eq!(r.status, status, "OpenAI status; body: {}", r.text());
    let v = r.json();
    let e = &v["error"];
    assert!(e.is_object(), "OpenAI error shape: {v}");
    assert_eq!(e["type"], kind, "{v}");
    if let Some(code) = code {
        assert_eq!(e["code"], code, "{v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e.get("param").is_some(), "OpenAI errors carry param: {v}");
    v
}

/// `retry-after`, when present, is a whole number of seconds.
fn assert_retry_after_well_formed(r: &Response) {
    if let Some(v) = r.header("retry-after") {
        assert!(
            v.parse::<u64>().is_ok_and(|s| s > 0),
            "retry-after is whole seconds: {v:?}"
        );
    }
}

fn exhausted() -> Quota {
    Quota {
        requests: Some(0),
        tokens: None,
    }
}

async fn quota_exhaustion_is_a_429_in_each_api_shape() {
    bounded(async {
        let h = Harness::start(Options {
            accounts: vec![("main".to_owned(), exhausted())],
            configure: Some(no_rests),
            ..Options::default()
        })
        .await;
        for stream in [false, true] {
            let r = h.anthropic(&anthropic_text_request("hi", stream)).await;
            assert_anthropic_error(&r, 429, "rate_limit_error");
            assert_ne!(r.header("x-should-retry"), Some("false"));
            assert_retry_after_well_formed(&r);
            let r = h.openai(&openai_text_request("hi", stream)).await;
            assert_openai_error(&r, 429, "insufficient_quota", Some("insufficient_quota"));
            assert_retry_after_well_formed(&r);
        }
        let c = h.account("main");
        assert_eq!(c.errors.get("resource_exhausted"), Some(&4), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn quota_exhaustion_on_one_account_moves_to_the_next() {
    bounded(async {
        let h = Harness::start(Options {
            accounts: vec![
                ("spent".to_owned(), exhausted()),
                ("fresh".to_owned(), Quota::default()),
            ],
            ..Options::default()
        })
        .await;
        let r = h
            .anthropic(&anthropic_text_request("quota elsewhere", false))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.json()["content"][0]["text"].as_str().map(str::to_owned);
        assert!(
            text.as_deref()
                .is_some_and(|t| t.contains("last user message: \"quota elsewhere\"")),
            "{text:?}"
        );
        assert_eq!(
            h.account("spent").errors.get("resource_exhausted"),
            Some(&1)
        );
        assert_eq!(h.account("fresh").turns_completed, 1);
        h.shutdown().await;
    })
    .await;
}

async fn bad_token_is_a_401_after_trying_every_account() {
    bounded(async {
        // One proxy per API: the first request disables both accounts (a rejected token that
        // cannot be refreshed), so each API's 401 shape is seen on a fresh pool.
        for openai in [false, true] {
            let h = Harness::start(Options {
                proxy_accounts: Some(vec![
                    ProxyAccount::BadToken("bad-1".to_owned()),
                    ProxyAccount::BadToken("bad-2".to_owned()),
                ]),
                ..Options::default()
            })
            .await;
            if openai {
                let r = h.openai(&openai_text_request("hi", false)).await;
                assert_openai_error(&r, 401, "authentication_error", None);
            } else {
                let r = h.anthropic(&anthropic_text_request("hi", true)).await;
                assert_anthropic_error(&r, 401, "authentication_error");
                assert_eq!(
                    r.header("x-should-retry"),
                    Some("false"),
                    "Claude Code would otherwise retry a 401 ten times"
                );
            }
            // Both accounts were tried and are out of rotation. (Over HTTP/1.1 the refused
            // `BidiAppend` may fail the run before its `RunSSE` reached the sim, so the sim's
            // count of refused runs is exact only on HTTP/2.)
            let status = h.app.pool_status();
            assert!(
                status.accounts.len() == 2
                    && status.accounts.iter().all(|a| a.disabled_reason.is_some()),
                "{status:?}"
            );
            if support::Target::current() == support::Target::Cursorpool {
                assert_eq!(
                    h.counters().unauthenticated_runs,
                    2,
                    "both accounts were tried"
                );
            }
            let refused = h.counters().unauthenticated_runs;
            // Both accounts are now out of rotation with a reason: the next request is not
            // sent upstream at all, and says that no account is available.
            let r = h.anthropic(&anthropic_text_request("again", false)).await;
            assert_eq!(r.status, support::overloaded_status(), "{}", r.text());
            let r = h.openai(&openai_text_request("again", false)).await;
            assert_openai_error(&r, 503, "server_error", None);
            assert_eq!(h.counters().unauthenticated_runs, refused);
            h.shutdown().await;
        }
    })
    .await;
}

async fn bad_token_on_one_account_is_invisible_with_a_good_one() {
    bounded(async {
        let h = Harness::start(Options {
            proxy_accounts: Some(vec![
                ProxyAccount::BadToken("bad".to_owned()),
                ProxyAccount::Sim("main".to_owned()),
            ]),
            ..Options::default()
        })
        .await;
        let s = anthropic_stream(&h.anthropic(&anthropic_text_request("hi", true)).await);
        assert!(s.error.is_none(), "{s:?}");
        assert!(s.text.contains("last user message: \"hi\""), "{}", s.text);
        // The bad account was tried first and is out of rotation. (Over HTTP/1.1 the refused
        // `BidiAppend` may end the run before its `RunSSE` reached the sim, so the sim's count
        // of refused runs is exact only on HTTP/2.)
        let refused = h.counters().unauthenticated_runs;
        match support::Target::current() {
            support::Target::Cursorpool => assert_eq!(refused, 1),
            support::Target::Lite => assert!(refused <= 1, "{refused}"),
        }
        let status = h.app.pool_status();
        assert_eq!(
            status
                .accounts
                .iter()
                .filter(|a| a.disabled_reason.is_some())
                .count(),
            1,
            "{status:?}"
        );
        assert_eq!(h.account("main").turns_completed, 1);
        h.shutdown().await;
    })
    .await;
}

async fn permission_denied_is_a_403() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(no_rests),
            ..Options::default().fault_all(None, error_at_start(Code::PermissionDenied))
        })
        .await;
        let r = h.anthropic(&anthropic_text_request("hi", true)).await;
        assert_anthropic_error(&r, 403, "permission_error");
        let r = h.openai(&openai_text_request("hi", true)).await;
        assert_openai_error(&r, 403, "permission_error", Some("permission_denied"));
        h.shutdown().await;
    })
    .await;
}

async fn upstream_internal_is_a_500_api_error() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(no_rests),
            ..Options::default().fault_all(None, error_at_start(Code::Internal))
        })
        .await;
        let r = h.anthropic(&anthropic_text_request("hi", false)).await;
        assert_anthropic_error(&r, 500, "api_error");
        let r = h.openai(&openai_text_request("hi", true)).await;
        assert_openai_error(&r, 500, "server_error", None);
        assert_eq!(
            h.account("main").errors.get("internal"),
            Some(&2),
            "{:?}",
            h.account("main")
        );
        h.shutdown().await;
    })
    .await;
}

async fn unavailable_on_every_account_is_overloaded() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(no_rests),
            ..Options::with_accounts(&["a", "b"]).fault_all(None, error_at_start(Code::Unavailable))
        })
        .await;
        let r = h.anthropic(&anthropic_text_request("hi", true)).await;
        assert_anthropic_error(&r, support::overloaded_status(), "overloaded_error");
        assert_retry_after_well_formed(&r);
        for label in ["a", "b"] {
            assert_eq!(
                h.account(label).errors.get("unavailable"),
                Some(&1),
                "account {label} was tried"
            );
        }
        let r = h.openai(&openai_text_request("hi", false)).await;
        assert_openai_error(&r, 503, "server_error", Some("overloaded"));
        assert_retry_after_well_formed(&r);
        h.shutdown().await;
    })
    .await;
}

/// A fault that ends the run with `internal` after some text reached the client.
fn error_mid_answer() -> Fault {
    Fault::ErrorAfter {
        after_updates: 30,
        code: Code::Internal,
        cursor_error: None,
    }
}

/// A prompt whose answer is much longer than the fault's 30 updates.
const LONG: &str = "a long answer please lorem 400";

async fn anthropic_failure_after_the_first_byte_is_an_error_event() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(no_rests),
            ..Options::default().fault_all(None, error_mid_answer())
        })
        .await;
        let r = h.anthropic(&anthropic_text_request(LONG, true)).await;
        let s = anthropic_stream(&r);
        assert!(!s.text.is_empty(), "text came before the failure: {s:?}");
        let err = s
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("no error event after a mid-stream failure: {:?}", s.events));
        assert_eq!(err["type"], "api_error", "{err}");
        assert_eq!(
            s.events.last().map(String::as_str),
            Some("error"),
            "{:?}",
            s.events
        );
        assert!(
            !s.events.iter().any(|e| e == "message_stop"),
            "never a normal stop: {:?}",
            s.events
        );
        assert_ne!(s.stop_reason.as_deref(), Some("end_turn"));
        // Not streamed: nothing reached the client yet, so a plain error status.
        let r = h.anthropic(&anthropic_text_request(LONG, false)).await;
        assert_anthropic_error(&r, 500, "api_error");
        h.shutdown().await;
    })
    .await;
}

async fn openai_failure_after_the_first_byte_is_an_error_chunk() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(no_rests),
            ..Options::default().fault_all(None, error_mid_answer())
        })
        .await;
        let r = h.openai(&openai_text_request(LONG, true)).await;
        let s = openai_stream(&r);
        assert!(!s.content.is_empty(), "text came before the failure: {s:?}");
        let err = s
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("no error chunk after a mid-stream failure: {s:?}"));
        assert_eq!(err["type"], "server_error", "{err}");
        assert!(
            s.finish_reason.is_none(),
            "never a normal finish: {:?}",
            s.finish_reason
        );
        let r = h.openai(&openai_text_request(LONG, false)).await;
        assert_openai_error(&r, 500, "server_error", None);
        h.shutdown().await;
    })
    .await;
}

async fn failure_before_the_first_byte_fails_over_invisibly() {
    bounded(async {
        // With each fault: whether the sick account rests after failing (a 5xx or a broken
        // connection does, for a minute; REFUSED_STREAM says nothing about the account — but
        // over HTTP/1.1 there are no stream resets: the sim aborts the connection, which rests).
        let h1 = support::Target::current() == support::Target::Lite;
        let faults = [
            (error_at_start(Code::Unavailable), true),
            (error_at_start(Code::Internal), true),
            (
                Fault::RstStream {
                    after_updates: 0,
                    code: 7,
                },
                h1,
            ),
            (Fault::DropConnection { after_updates: 0 }, true),
        ];
        for (fault, rests) in faults {
            let h = Harness::start(
                Options::with_accounts(&["sick", "healthy"]).fault_all(Some("sick"), fault.clone()),
            )
            .await;
            for (i, stream) in [true, false].into_iter().enumerate() {
                let prompt = format!("failover {i}");
                let r = h.anthropic(&anthropic_text_request(&prompt, stream)).await;
                let text = if stream {
                    let s = anthropic_stream(&r);
                    assert!(s.error.is_none(), "{fault:?}: {s:?}");
                    s.text
                } else {
                    assert_eq!(r.status, 200, "{fault:?}: {}", r.text());
                    r.json()["content"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                assert!(
                    text.contains(&format!("last user message: \"{prompt}\"")),
                    "{fault:?}: {text}"
                );
                // A different conversation, so it is not sticky to the account that answered
                // the first one: round-robin gives it the sick account first unless that one
                // is resting.
                let prompt = format!("failover {i} (openai)");
                let r = h.openai(&openai_text_request(&prompt, stream)).await;
                if stream {
                    let s = openai_stream(&r);
                    assert!(s.error.is_none(), "{fault:?}: {s:?}");
                    assert_eq!(s.finish_reason.as_deref(), Some("stop"), "{fault:?}");
                } else {
                    assert_eq!(r.status, 200, "{fault:?}: {}", r.text());
                }
            }
            let sick = h.account("sick");
            let healthy = h.account("healthy");
            // Resting, the sick account is skipped after its one failure; not resting, it is
            // met first by every request (it is always the least recently picked).
            assert_eq!(
                sick.faults_injected,
                if rests { 1 } else { 4 },
                "{fault:?}: {sick:?}"
            );
            assert_eq!(sick.turns_completed, 0, "{fault:?}: {sick:?}");
            assert_eq!(healthy.turns_completed, 4, "{fault:?}: {healthy:?}");
            h.shutdown().await;
        }
    })
    .await;
}

async fn failure_in_a_resumed_turn_after_the_first_byte_is_an_error_event() {
    bounded(async {
        let h = Harness::start(Options::default().fault_all(
            None,
            Fault::ErrorAfter {
                after_updates: 40,
                code: Code::Internal,
                cursor_error: None,
            },
        ))
        .await;
        let mut body = anthropic_text_request(
            "call get_weather({\"city\":\"Paris\"}) and then write lorem 300",
            true,
        );
        body["tools"] = serde_json::json!([{
            "name": "get_weather",
            "description": "Weather.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
        }]);
        let first = anthropic_stream(&h.anthropic(&body).await);
        assert!(
            first.error.is_none(),
            "the tool call came before the fault: {first:?}"
        );
        assert_eq!(first.stop_reason.as_deref(), Some("tool_use"));
        let (id, name, input) = first.tool_uses[0].clone();
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(serde_json::json!({"role": "assistant", "content": [
            {"type": "text", "text": first.text},
            {"type": "tool_use", "id": id, "name": name, "input": input}
        ]}));
        messages.push(serde_json::json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "sunny"}
        ]}));
        let second = anthropic_stream(&h.anthropic(&body).await);
        assert!(
            !second.text.is_empty(),
            "text came before the failure: {second:?}"
        );
        let err = second
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("no error event: {:?}", second.events));
        assert_eq!(err["type"], "api_error", "{err}");
        assert!(!second.events.iter().any(|e| e == "message_stop"));
        assert_eq!(
            h.counters().total.runs,
            1,
            "the failure was on the resumed run"
        );
        h.shutdown().await;
    })
    .await;
}

async fn stall_after_the_first_byte_is_an_error_event() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| {
                no_rests(c);
                c.turn.stall_timeout = std::time::Duration::from_secs(2);
            }),
            ..Options::default().fault_all(None, Fault::Stall { after_updates: 30 })
        })
        .await;
        let s = anthropic_stream(&h.anthropic(&anthropic_text_request(LONG, true)).await);
        assert!(!s.text.is_empty(), "{s:?}");
        assert!(
            s.error.is_some(),
            "a stalled upstream is an error event: {:?}",
            s.events
        );
        assert!(!s.events.iter().any(|e| e == "message_stop"));
        let s = openai_stream(&h.openai(&openai_text_request(LONG, true)).await);
        assert!(
            s.error.is_some(),
            "a stalled upstream is an error chunk: {s:?}"
        );
        assert!(s.finish_reason.is_none());
        h.shutdown().await;
    })
    .await;
}

async fn stall_before_the_first_byte_fails_over_invisibly() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| c.turn.stall_timeout = std::time::Duration::from_secs(2)),
            ..Options::with_accounts(&["stuck", "healthy"])
                .fault_all(Some("stuck"), Fault::Stall { after_updates: 0 })
        })
        .await;
        let s = anthropic_stream(&h.anthropic(&anthropic_text_request("hello", true)).await);
        assert!(s.error.is_none(), "{s:?}");
        assert!(
            s.text.contains("last user message: \"hello\""),
            "{}",
            s.text
        );
        assert_eq!(h.account("healthy").turns_completed, 1);
        h.shutdown().await;
    })
    .await;
}

async fn transport_failures_after_the_first_byte_are_error_events() {
    bounded(async {
        let faults = [
            Fault::RstStream {
                after_updates: 30,
                code: 2,
            },
            Fault::GoAway {
                after_updates: 30,
                code: 2,
            },
            Fault::GoAway {
                after_updates: 30,
                code: 0,
            },
            Fault::DropConnection { after_updates: 30 },
        ];
        for fault in faults {
            let h = Harness::start(Options {
                configure: Some(no_rests),
                ..Options::default().fault_all(None, fault.clone())
            })
            .await;
            let s = anthropic_stream(&h.anthropic(&anthropic_text_request(LONG, true)).await);
            assert!(!s.text.is_empty(), "{fault:?}: {s:?}");
            assert!(
                s.error.is_some(),
                "{fault:?}: no error event after a mid-stream failure: {:?}",
                s.events
            );
            assert!(!s.events.iter().any(|e| e == "message_stop"), "{fault:?}");
            let s = openai_stream(&h.openai(&openai_text_request(LONG, true)).await);
            assert!(!s.content.is_empty(), "{fault:?}: {s:?}");
            assert!(s.error.is_some(), "{fault:?}: no error chunk: {s:?}");
            assert!(s.finish_reason.is_none(), "{fault:?}: {s:?}");
            h.shutdown().await;
        }
    })
    .await;
}

async fn the_pooled_connection_recovers_after_it_drops() {
    bounded(async {
        let mut opts = Options {
            configure: Some(no_rests),
            ..Options::default()
        };
        opts.faults.push(cursorpool_sim::model::FaultRule {
            account: None,
            runs: cursorpool_sim::model::FaultRuns::Next(1),
            fault: Fault::DropConnection { after_updates: 30 },
        });
        let h = Harness::start(opts).await;
        let s = anthropic_stream(&h.anthropic(&anthropic_text_request(LONG, true)).await);
        assert!(s.error.is_some(), "{s:?}");
        let after_drop = h.app.upstream_connects();
        for i in 0..3 {
            let prompt = format!("after the drop {i}");
            let s = anthropic_stream(&h.anthropic(&anthropic_text_request(&prompt, true)).await);
            assert!(s.error.is_none(), "{s:?}");
            assert!(
                s.text.contains(&format!("last user message: \"{prompt}\"")),
                "{}",
                s.text
            );
        }
        match support::Target::current() {
            support::Target::Cursorpool => {
                assert_eq!(h.app.upstream_connects(), 2, "one reconnect after the drop");
            }
            // HTTP/1.1: a run opens its stream and a burst of appends at once; the three later
            // runs reuse kept-alive connections instead of opening a burst each (≥ 3 × 4).
            support::Target::Lite => {
                let more = h.app.upstream_connects() - after_drop;
                assert!(
                    more <= 6,
                    "{more} new connections for three sequential runs"
                );
            }
        }
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    quota_exhaustion_is_a_429_in_each_api_shape,
    quota_exhaustion_on_one_account_moves_to_the_next,
    bad_token_is_a_401_after_trying_every_account,
    bad_token_on_one_account_is_invisible_with_a_good_one,
    permission_denied_is_a_403,
    upstream_internal_is_a_500_api_error,
    unavailable_on_every_account_is_overloaded,
    anthropic_failure_after_the_first_byte_is_an_error_event,
    openai_failure_after_the_first_byte_is_an_error_chunk,
    failure_before_the_first_byte_fails_over_invisibly,
    failure_in_a_resumed_turn_after_the_first_byte_is_an_error_event,
    stall_after_the_first_byte_is_an_error_event,
    stall_before_the_first_byte_fails_over_invisibly,
    transport_failures_after_the_first_byte_are_error_events,
    the_pooled_connection_recovers_after_it_drops,
);
