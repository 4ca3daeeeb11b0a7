//! Properties of the API front: the parsers never panic, whatever the bytes or JSON, and the
//! renderers always produce a well-formed stream, whatever the event sequence.

use bytes::BytesMut;
use cursorpool_core::api::ClientError;
use cursorpool_core::api::anthropic::{
    MessageAccumulator, StreamRenderer, parse_count_tokens_request, parse_messages_request,
};
use cursorpool_core::api::openai::{self, parse_chat_request};
use cursorpool_core::api::tokens::estimate_input_tokens;
use cursorpool_core::chat::{ReplyEvent, StopReason, Usage};
use cursorpool_core::classify::{Failure, TransportFailure, classify};
use http::HeaderMap;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CLAUDE_CODE: &[u8] = include_bytes!("fixtures/claude_code_request.json");

/// Runs every parser on `body`; on success the estimate must work too; on failure the error
/// must render. Panics are the failure mode under test.
fn parse_all(body: &[u8]) {
    let headers = HeaderMap::new();
    for result in [
        parse_messages_request(body, &headers),
        parse_count_tokens_request(body, &headers),
        parse_chat_request(body, &headers),
    ] {
        match result {
            Ok(request) => {
                assert!(estimate_input_tokens(&request) >= 1);
            }
            Err(e) => check_error(&e),
        }
    }
}

fn check_error(e: &ClientError) {
    assert!(!e.to_string().is_empty());
    assert!(matches!(e.status(), 400 | 413));
    if let Some(path) = e.path() {
        assert!(!path.starts_with('.'), "{path}");
    }
}

/// Keys and strings the parsers look for, so random values reach deep code paths.
const WORDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "source",
    "data",
    "media_type",
    "tool_use_id",
    "input",
    "id",
    "name",
    "tools",
    "input_schema",
    "system",
    "max_tokens",
    "thinking",
    "budget_tokens",
    "tool_choice",
    "metadata",
    "user_id",
    "stop_sequences",
    "stop",
    "stream",
    "is_error",
    "signature",
    "user",
    "assistant",
    "developer",
    "tool",
    "image",
    "base64",
    "url",
    "tool_use",
    "tool_result",
    "redacted_thinking",
    "auto",
    "any",
    "none",
    "required",
    "enabled",
    "adaptive",
    "disabled",
    "function",
    "tool_calls",
    "arguments",
    "image_url",
    "tool_call_id",
    "parameters",
    "reasoning_effort",
    "n",
    "stream_options",
    "include_usage",
    "max_completion_tokens",
    "reasoning_content",
    "refusal",
    "high",
    "image/png",
    "data:image/png;base64,iVBORw0KGgo=",
    "{\"session_id\":\"s\"}",
    "{\"a\":1}",
    "",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid Anthropic request using most of its features.
fn anthropic_request() -> Value {
    json!({
        "model": "m", "max_tokens": 100, "stream": true, "stop_sequences": ["x"],
        "system": [{"type": "text", "text": "s"}],
        "thinking": {"type": "enabled", "budget_tokens": 1000},
        "metadata": {"user_id": "{\"session_id\":\"abc\"}"},
        "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "t"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "tool_use", "id": "c1", "name": "t", "input": {"a": 1}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "ok"}], "is_error": false}]},
            {"role": "system", "content": "note"}
        ]
    })
}

/// A valid OpenAI request using most of its features.
fn openai_request() -> Value {
    json!({
        "model": "m", "max_completion_tokens": 100, "stream": true, "stop": "y",
        "stream_options": {"include_usage": true}, "reasoning_effort": "low", "user": "u",
        "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "t"}},
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "hm", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{\"a\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "developer", "content": "note"}
        ]
    })
}

/// Every JSON pointer inside `v`, the root included.
fn pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                pointers(child, format!("{prefix}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&body);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_json_values(value in json_value()) {
        parse_all(value.to_string().as_bytes());
        parse_all(json!({"model": "m", "max_tokens": 5, "messages": value}).to_string().as_bytes());
    }

    #[test]
    fn parsers_never_panic_when_any_part_of_a_valid_request_is_replaced(
        openai in any::<bool>(),
        at in any::<prop::sample::Index>(),
        replacement in json_value(),
    ) {
        let base = if openai { openai_request() } else { anthropic_request() };
        let mut all = Vec::new();
        pointers(&base, String::new(), &mut all);
        let pointer = at.get(&all);
        let mut mutated = base.clone();
        if pointer.is_empty() {
            mutated = replacement;
        } else if let Some(slot) = mutated.pointer_mut(pointer) {
            *slot = replacement;
        }
        parse_all(mutated.to_string().as_bytes());
    }

    #[test]
    fn parsers_never_panic_on_a_damaged_claude_code_body(
        cut in 0..CLAUDE_CODE.len(),
        at in 0..CLAUDE_CODE.len(),
        byte in any::<u8>(),
    ) {
        let mut body = CLAUDE_CODE.to_vec();
        body[at] = byte;
        parse_all(&body);
        parse_all(&CLAUDE_CODE[..cut]);
    }
}

#[test]
fn the_valid_base_requests_parse() {
    let anthropic = anthropic_request().to_string();
    parse_messages_request(anthropic.as_bytes(), &HeaderMap::new()).expect("anthropic");
    let openai = openai_request().to_string();
    parse_chat_request(openai.as_bytes(), &HeaderMap::new()).expect("openai");
}

fn reply_event() -> impl Strategy<Value = ReplyEvent> {
    let usage = (0u64..1000, 0u64..1000).prop_map(|(i, o)| Usage {
        input_tokens: i,
        output_tokens: o,
        ..Usage::default()
    });
    let reason = prop::sample::select(vec![
        StopReason::EndTurn,
        StopReason::ToolUse,
        StopReason::MaxTokens,
        StopReason::StopSequence,
    ]);
    prop_oneof![
        1 => usage.clone().prop_map(|usage| ReplyEvent::Start { id: "msg_1".into(), model: "m".into(), usage }),
        4 => any::<String>().prop_map(ReplyEvent::TextDelta),
        2 => any::<String>().prop_map(ReplyEvent::ThinkingDelta),
        1 => ("[a-z]{1,5}", "[a-z]{1,5}").prop_map(|(id, name)| ReplyEvent::ToolCall { id, name, input: Map::new() }),
        1 => Just(ReplyEvent::Ping),
        1 => (reason, usage, proptest::option::of("[a-z]{1,3}"))
            .prop_map(|(reason, usage, stop_sequence)| ReplyEvent::Stop { reason, stop_sequence, usage }),
        1 => Just(ReplyEvent::Error(classify(Failure::Transport(TransportFailure::Stalled)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the events: every data line is JSON of the event's type, message_start comes
    /// first (pings aside), blocks are started and stopped in index order, nothing follows a
    /// message_stop or an error, and a stop or error event always ends the stream.
    #[test]
    fn anthropic_streams_are_always_well_formed(events in prop::collection::vec(reply_event(), 0..24)) {
        let mut renderer = StreamRenderer::new();
        let mut accumulator = MessageAccumulator::new();
        let mut out = BytesMut::new();
        for e in &events {
            renderer.handle(e, &mut out);
            accumulator.handle(e);
        }
        let text = std::str::from_utf8(&out).expect("UTF-8");
        let mut names = Vec::new();
        let mut open: Option<u64> = None;
        let mut next = 0u64;
        for frame in text.split_terminator("\n\n") {
            let (event, data) = frame.split_once('\n').expect("two lines");
            let name = event.strip_prefix("event: ").expect("event line");
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data")).expect("JSON");
            prop_assert_eq!(data["type"].as_str(), Some(name));
            prop_assert!(!matches!(names.last().map(String::as_str), Some("message_stop" | "error")));
            match name {
                "content_block_start" => {
                    prop_assert_eq!(open, None);
                    prop_assert_eq!(data["index"].as_u64(), Some(next));
                    open = Some(next);
                }
                "content_block_delta" => prop_assert_eq!(data["index"].as_u64(), open),
                "content_block_stop" => {
                    prop_assert_eq!(data["index"].as_u64(), open);
                    open = None;
                    next += 1;
                }
                "message_delta" => prop_assert_eq!(open, None),
                "message_start" => prop_assert!(names.iter().all(|n| n == "ping")),
                _ => {}
            }
            if name != "ping" && name != "error" {
                prop_assert!(names.iter().any(|n| n == "message_start") || name == "message_start");
            }
            names.push(name.to_owned());
        }
        let ended = events.iter().any(|e| matches!(e, ReplyEvent::Stop { .. } | ReplyEvent::Error(_)));
        prop_assert_eq!(renderer.is_finished(), ended);
        prop_assert_eq!(accumulator.is_finished(), ended);
        if ended {
            prop_assert!(matches!(names.last().map(String::as_str), Some("message_stop" | "error")));
        }
        if let Ok(body) = accumulator.finish() {
            let _: Value = serde_json::from_slice(&body).expect("JSON");
        }
    }

    #[test]
    fn openai_streams_are_always_well_formed(
        events in prop::collection::vec(reply_event(), 0..24),
        include_usage in any::<bool>(),
    ) {
        let mut renderer = openai::StreamRenderer::new(1, include_usage);
        let mut accumulator = openai::CompletionAccumulator::new(1);
        let mut out = BytesMut::new();
        for e in &events {
            renderer.handle(e, &mut out);
            accumulator.handle(e);
        }
        let text = std::str::from_utf8(&out).expect("UTF-8");
        let frames: Vec<&str> = text.split_terminator("\n\n").collect();
        for (i, frame) in frames.iter().enumerate() {
            if *frame == ": ping" {
                continue;
            }
            let data = frame.strip_prefix("data: ").expect("data line");
            if data == "[DONE]" {
                prop_assert_eq!(i, frames.len() - 1);
                continue;
            }
            let _: Value = serde_json::from_str(data).expect("JSON chunk");
        }
        let ended = events.iter().any(|e| matches!(e, ReplyEvent::Stop { .. } | ReplyEvent::Error(_)));
        prop_assert_eq!(frames.last() == Some(&"data: [DONE]"), ended);
        if let Ok(body) = accumulator.finish() {
            let _: Value = serde_json::from_slice(&body).expect("JSON");
        }
    }
}

/// The straightforward byte-at-a-time depth scan the word-skipping one must agree with.
fn nesting_exceeds_reference(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn the_depth_prescan_agrees_with_a_byte_at_a_time_scan(
        body in prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(b"{}[]\"\\ax:,".to_vec()),
                1 => any::<u8>(),
            ],
            0..200,
        ),
        limit in 0usize..6,
    ) {
        prop_assert_eq!(
            cursorpool_core::connect::error::nesting_exceeds(&body, limit),
            nesting_exceeds_reference(&body, limit)
        );
    }
}

#[test]
fn the_depth_prescan_agrees_on_the_claude_code_body() {
    for limit in [5, 8, 12, 128] {
        assert_eq!(
            cursorpool_core::connect::error::nesting_exceeds(CLAUDE_CODE, limit),
            nesting_exceeds_reference(CLAUDE_CODE, limit),
            "limit {limit}"
        );
    }
}
