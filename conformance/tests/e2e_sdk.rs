//! End to end with the official client libraries: the `anthropic` and `openai` Python SDKs
//! (pinned in `e2e/requirements.txt`, installed into `e2e/.venv` by `bash .ci/clients-setup`)
//! talk to the proxy over loopback, the proxy talks to the simulated Cursor backend. Each test
//! starts its own sim + proxy, runs one scenario of `e2e/anthropic_scenarios.py` or
//! `e2e/openai_scenarios.py`, and checks the JSON the script printed and, from the sim's
//! counters, what happened upstream.
//!
//! Without the venv the tests print a SKIPPED line and pass, unless
//! `CURSORPOOL_REQUIRE_CLIENTS=1` (CI), where they fail with instructions.

use cursorpool_conformance as support;

use cursorpool_core::connect::code::Code;
use cursorpool_sim::model::{Fault, Quota};
use serde_json::Value;
use support::{Harness, Options, bounded, run_sdk, sdk_python};

const ANTHROPIC: &str = "anthropic_scenarios.py";
const OPENAI: &str = "openai_scenarios.py";

/// Runs one scenario against a fresh sim + proxy; `None` when the SDKs are not installed.
async fn scenario(test: &str, opts: Options, script: &str, name: &str) -> Option<(Harness, Value)> {
    let python = sdk_python(test)?;
    let h = Harness::start(opts).await;
    let out = run_sdk(&python, &h, script, name).await;
    Some((h, out))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn n(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The sim's answer proves which user message it was given.
fn assert_echoes(answer: &str, user_text: &str) {
    let want = format!("last user message: \"{user_text}\"");
    assert!(answer.contains(&want), "answer lacks {want:?}: {answer:?}");
}

// ---- Anthropic ----

async fn anthropic_sdk_non_streaming_text_turn() {
    bounded(async {
        let test = "anthropic_sdk_non_streaming_text_turn";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "text").await else {
            return;
        };
        assert_eq!(out["type"], "message");
        assert_eq!(out["role"], "assistant");
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(out["block_types"], serde_json::json!(["text"]));
        let text = s(&out["text"]);
        assert_echoes(text, "hello from the anthropic sdk, non-streaming");
        assert!(
            text.contains("system prompt: \"You are tested by the anthropic SDK.\""),
            "{text}"
        );
        assert!(n(&out["input_tokens"]) > 0, "input tokens estimated: {out}");
        assert!(n(&out["output_tokens"]) > 0, "{out}");
        assert!(s(&out["id"]).starts_with("msg_"), "{out}");
        let c = h.counters().total;
        assert_eq!((c.runs, c.turns_completed), (1, 1), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_streaming_text_turn() {
    bounded(async {
        let test = "anthropic_sdk_streaming_text_turn";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "stream").await else {
            return;
        };
        let raw: Vec<&str> = out["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(s)
            .filter(|e| !matches!(*e, "text" | "thinking" | "signature" | "input_json"))
            .collect();
        assert_eq!(raw.first(), Some(&"message_start"), "{raw:?}");
        assert_eq!(
            &raw[raw.len() - 3..],
            &["content_block_stop", "message_delta", "message_stop"],
            "{raw:?}"
        );
        assert!(
            raw.iter().filter(|e| **e == "content_block_delta").count() > 1,
            "text arrives in several deltas: {raw:?}"
        );
        assert_eq!(out["stop_reason"], "end_turn");
        assert_echoes(s(&out["text"]), "hello from the anthropic sdk, streaming");
        assert_eq!(
            out["streamed_text"], out["text"],
            "deltas add up to the message"
        );
        assert!(n(&out["input_tokens"]) > 0 && n(&out["output_tokens"]) > 0);
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_tool_loop_resumes_the_parked_upstream_stream() {
    bounded(async {
        let test = "anthropic_sdk_tool_loop_resumes_the_parked_upstream_stream";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "tool_loop").await
        else {
            return;
        };
        let first = &out["first"];
        assert_eq!(first["stop_reason"], "tool_use", "{first}");
        let calls = first["tool_uses"].as_array().expect("tool uses");
        assert_eq!(calls.len(), 1, "{first}");
        assert_eq!(calls[0]["name"], "get_weather");
        assert_eq!(calls[0]["input"], serde_json::json!({"city": "Paris"}));
        let second = &out["second"];
        assert_eq!(second["stop_reason"], "end_turn", "{second}");
        let text = s(&second["text"]);
        assert!(
            text.contains("result of cursorpool-get_weather: 18 degrees, light rain"),
            "{text}"
        );
        assert!(text.contains("tool results: 1"), "{text}");
        assert_ne!(
            first["id"], second["id"],
            "a fresh message for the resumed part"
        );
        assert_eq!(out["second_events"][0], "message_start");
        // Upstream: one run carried both responses; the result went up the parked stream.
        let c = h.counters().total;
        assert_eq!(c.runs, 1, "the tool result resumed the parked run: {c:?}");
        assert_eq!(c.tool_calls_issued, 1, "{c:?}");
        assert_eq!(c.tool_results_answered, 1, "{c:?}");
        assert_eq!(c.turns_completed, 1, "{c:?}");
        assert_eq!(h.app.runs_started(), 1);
        assert_eq!(h.app.parked_len(), 0, "nothing left parked");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_two_tool_calls_in_one_turn() {
    bounded(async {
        let test = "anthropic_sdk_two_tool_calls_in_one_turn";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "two_tools").await
        else {
            return;
        };
        let first = &out["first"];
        assert_eq!(first["stop_reason"], "tool_use", "{first}");
        let names: Vec<&str> = first["tool_uses"]
            .as_array()
            .expect("tool uses")
            .iter()
            .map(|t| s(&t["name"]))
            .collect();
        assert_eq!(names, ["get_weather", "get_time"]);
        let ids: Vec<&str> = first["tool_uses"]
            .as_array()
            .expect("tool uses")
            .iter()
            .map(|t| s(&t["id"]))
            .collect();
        assert_ne!(ids[0], ids[1], "distinct tool_use ids");
        let text = s(&out["second"]["text"]);
        assert!(
            text.contains("result of cursorpool-get_weather: 18 degrees, light rain"),
            "{text}"
        );
        assert!(
            text.contains("result of cursorpool-get_time: 09:41 CET"),
            "{text}"
        );
        assert!(text.contains("tool results: 2"), "{text}");
        let c = h.counters().total;
        assert_eq!(c.runs, 1, "{c:?}");
        assert_eq!(
            (c.tool_calls_issued, c.tool_results_answered),
            (2, 2),
            "{c:?}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_thinking_blocks() {
    bounded(async {
        let test = "anthropic_sdk_thinking_blocks";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "thinking").await else {
            return;
        };
        for which in ["stream", "plain"] {
            let m = &out[which];
            assert_eq!(
                m["block_types"],
                serde_json::json!(["thinking", "text"]),
                "{which}: {m}"
            );
            assert!(
                s(&m["thinking"]).contains("think hard: what is two plus two?"),
                "{which}: {m}"
            );
            assert_echoes(s(&m["text"]), "think hard: what is two plus two?");
        }
        let events: Vec<&str> = out["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(s)
            .collect();
        assert!(events.contains(&"thinking"), "{events:?}");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_count_tokens() {
    bounded(async {
        let test = "anthropic_sdk_count_tokens";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "count_tokens").await
        else {
            return;
        };
        let (small, large) = (n(&out["small"]), n(&out["large"]));
        assert!(small > 0, "{out}");
        assert!(large > small * 10, "more text and tools count more: {out}");
        assert_eq!(h.counters().total.runs, 0, "counting needs no upstream run");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_models_list() {
    bounded(async {
        let test = "anthropic_sdk_models_list";
        let Some((h, out)) = scenario(test, Options::default(), ANTHROPIC, "models").await else {
            return;
        };
        let ids: Vec<&str> = out["ids"].as_array().expect("ids").iter().map(s).collect();
        assert!(ids.contains(&"claude-sonnet-5"), "{ids:?}");
        assert!(ids.contains(&"claude-opus-4-8"), "{ids:?}");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_sees_quota_exhaustion_as_rate_limit_error() {
    bounded(async {
        let test = "anthropic_sdk_sees_quota_exhaustion_as_rate_limit_error";
        let opts = Options {
            accounts: vec![(
                "main".to_owned(),
                Quota {
                    requests: Some(0),
                    tokens: None,
                },
            )],
            ..Options::default()
        };
        let Some((h, out)) = scenario(test, opts, ANTHROPIC, "rate_limit").await else {
            return;
        };
        assert_eq!(out["exception"], "RateLimitError", "{out}");
        assert_eq!(out["status"], 429, "{out}");
        assert_eq!(out["error_type"], "rate_limit_error", "{out}");
        h.shutdown().await;
    })
    .await;
}

async fn anthropic_sdk_sees_a_midstream_failure_as_an_error() {
    bounded(async {
        let test = "anthropic_sdk_sees_a_midstream_failure_as_an_error";
        let opts = Options::default().fault_all(
            None,
            Fault::ErrorAfter {
                after_updates: 30,
                code: Code::Internal,
                cursor_error: None,
            },
        );
        let Some((h, out)) = scenario(test, opts, ANTHROPIC, "midstream_error").await else {
            return;
        };
        assert_ne!(out["exception"], Value::Null, "a silent normal stop: {out}");
        assert_eq!(out["error_type"], "api_error", "{out}");
        assert!(
            n(&out["text_len"]) > 0,
            "the failure came after text: {out}"
        );
        h.shutdown().await;
    })
    .await;
}

// ---- OpenAI ----

async fn openai_sdk_non_streaming_text_turn() {
    bounded(async {
        let test = "openai_sdk_non_streaming_text_turn";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "text").await else {
            return;
        };
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["finish_reason"], "stop");
        let text = s(&out["content"]);
        assert_echoes(text, "hello from the openai sdk, non-streaming");
        assert!(
            text.contains("system prompt: \"You are tested by the openai SDK.\""),
            "{text}"
        );
        assert!(n(&out["usage"]["prompt_tokens"]) > 0, "{out}");
        assert!(n(&out["usage"]["completion_tokens"]) > 0, "{out}");
        assert_eq!(
            n(&out["usage"]["total_tokens"]),
            n(&out["usage"]["prompt_tokens"]) + n(&out["usage"]["completion_tokens"])
        );
        assert_eq!(h.counters().total.runs, 1);
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_streaming_text_turn() {
    bounded(async {
        let test = "openai_sdk_streaming_text_turn";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "stream").await else {
            return;
        };
        assert!(n(&out["chunks"]) > 2, "streamed in chunks: {out}");
        assert_eq!(
            out["ids"].as_array().map(Vec::len),
            Some(1),
            "one completion id: {out}"
        );
        assert_eq!(out["finish_reason"], "stop");
        assert_echoes(s(&out["content"]), "hello from the openai sdk, streaming");
        assert!(
            n(&out["usage"]["completion_tokens"]) > 0,
            "usage chunk: {out}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_tool_loop_resumes_the_parked_upstream_stream() {
    bounded(async {
        let test = "openai_sdk_tool_loop_resumes_the_parked_upstream_stream";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "tool_loop").await else {
            return;
        };
        let first = &out["first"];
        assert_eq!(first["finish_reason"], "tool_calls", "{first}");
        let calls = first["tool_calls"].as_array().expect("tool calls");
        assert_eq!(calls.len(), 1, "{first}");
        assert_eq!(calls[0]["name"], "get_weather");
        assert_eq!(calls[0]["arguments"], serde_json::json!({"city": "Paris"}));
        let second = &out["second"];
        assert_eq!(second["finish_reason"], "stop", "{second}");
        let text = s(&second["content"]);
        assert!(
            text.contains("result of cursorpool-get_weather: 18 degrees, light rain"),
            "{text}"
        );
        assert_ne!(first["ids"], second["ids"], "a fresh completion id");
        let c = h.counters().total;
        assert_eq!(c.runs, 1, "the tool result resumed the parked run: {c:?}");
        assert_eq!(
            (c.tool_calls_issued, c.tool_results_answered),
            (1, 1),
            "{c:?}"
        );
        assert_eq!(h.app.runs_started(), 1);
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_two_tool_calls_in_one_turn() {
    bounded(async {
        let test = "openai_sdk_two_tool_calls_in_one_turn";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "two_tools").await else {
            return;
        };
        let first = &out["first"];
        assert_eq!(first["finish_reason"], "tool_calls", "{first}");
        let names: Vec<&str> = first["tool_calls"]
            .as_array()
            .expect("tool calls")
            .iter()
            .map(|t| s(&t["name"]))
            .collect();
        assert_eq!(names, ["get_weather", "get_time"]);
        let text = s(&out["second"]["content"]);
        assert!(
            text.contains("result of cursorpool-get_weather: 18 degrees, light rain"),
            "{text}"
        );
        assert!(
            text.contains("result of cursorpool-get_time: 09:41 CET"),
            "{text}"
        );
        let c = h.counters().total;
        assert_eq!(c.runs, 1, "{c:?}");
        assert_eq!(
            (c.tool_calls_issued, c.tool_results_answered),
            (2, 2),
            "{c:?}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_reasoning_content() {
    bounded(async {
        let test = "openai_sdk_reasoning_content";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "thinking").await else {
            return;
        };
        let streamed = s(&out["stream"]["reasoning"]);
        assert!(
            streamed.contains("think hard: what is two plus two?"),
            "{out}"
        );
        assert_echoes(
            s(&out["stream"]["content"]),
            "think hard: what is two plus two?",
        );
        let plain = s(&out["plain"]["reasoning"]);
        assert!(plain.contains("think hard: what is two plus two?"), "{out}");
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_models_list() {
    bounded(async {
        let test = "openai_sdk_models_list";
        let Some((h, out)) = scenario(test, Options::default(), OPENAI, "models").await else {
            return;
        };
        let ids: Vec<&str> = out["ids"].as_array().expect("ids").iter().map(s).collect();
        assert!(ids.contains(&"claude-sonnet-5"), "{ids:?}");
        assert!(ids.contains(&"gpt-5"), "{ids:?}");
        assert_eq!(out["objects"], serde_json::json!(["model"]));
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_sees_quota_exhaustion_as_429() {
    bounded(async {
        let test = "openai_sdk_sees_quota_exhaustion_as_429";
        let opts = Options {
            accounts: vec![(
                "main".to_owned(),
                Quota {
                    requests: Some(0),
                    tokens: None,
                },
            )],
            ..Options::default()
        };
        let Some((h, out)) = scenario(test, opts, OPENAI, "rate_limit").await else {
            return;
        };
        assert_eq!(out["exception"], "RateLimitError", "{out}");
        assert_eq!(out["status"], 429, "{out}");
        // The one account ran dry and rests: the conductor answers "every account is cooling
        // down" (a rate limit with the time until it recovers), not the account's own
        // `insufficient_quota` (that mapping is in e2e_errors, with rests switched off).
        assert_eq!(out["code"], "rate_limit_exceeded", "{out}");
        assert!(
            out["retry_after"].as_str().is_some_and(|s| !s.is_empty()),
            "{out}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn openai_sdk_sees_a_midstream_failure_as_an_error() {
    bounded(async {
        let test = "openai_sdk_sees_a_midstream_failure_as_an_error";
        let opts = Options::default().fault_all(
            None,
            Fault::ErrorAfter {
                after_updates: 30,
                code: Code::Internal,
                cursor_error: None,
            },
        );
        let Some((h, out)) = scenario(test, opts, OPENAI, "midstream_error").await else {
            return;
        };
        assert_eq!(out["exception"], "APIError", "a silent normal stop: {out}");
        assert!(
            n(&out["text_len"]) > 0,
            "the failure came after text: {out}"
        );
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    anthropic_sdk_non_streaming_text_turn,
    anthropic_sdk_streaming_text_turn,
    anthropic_sdk_tool_loop_resumes_the_parked_upstream_stream,
    anthropic_sdk_two_tool_calls_in_one_turn,
    anthropic_sdk_thinking_blocks,
    anthropic_sdk_count_tokens,
    anthropic_sdk_models_list,
    anthropic_sdk_sees_quota_exhaustion_as_rate_limit_error,
    anthropic_sdk_sees_a_midstream_failure_as_an_error,
    openai_sdk_non_streaming_text_turn,
    openai_sdk_streaming_text_turn,
    openai_sdk_tool_loop_resumes_the_parked_upstream_stream,
    openai_sdk_two_tool_calls_in_one_turn,
    openai_sdk_reasoning_content,
    openai_sdk_models_list,
    openai_sdk_sees_quota_exhaustion_as_429,
    openai_sdk_sees_a_midstream_failure_as_an_error,
);
