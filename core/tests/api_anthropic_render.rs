//! Anthropic rendering golden tests: the exact SSE event sequence (compared as parsed JSON) and
//! the non-streaming `message` body for text, thinking + text, two tool calls, and an error
//! after the first byte.

use bytes::BytesMut;
use cursorpool_core::api::anthropic::{
    MessageAccumulator, StreamRenderer, count_tokens_body, thinking_signature,
};
use cursorpool_core::chat::{ReplyEvent, StopReason, Usage};
use cursorpool_core::classify::{Classification, Failure, FailureKind, classify};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;
use serde_json::{Map, Value, json};

fn start(input_tokens: u64) -> ReplyEvent {
    ReplyEvent::Start {
        id: "msg_01test".into(),
        model: "claude-opus-4-8".into(),
        usage: Usage {
            input_tokens,
            ..Usage::default()
        },
    }
}

fn stop(reason: StopReason) -> ReplyEvent {
    ReplyEvent::Stop {
        reason,
        stop_sequence: None,
        usage: Usage {
            input_tokens: 120,
            output_tokens: 17,
            cache_read_input_tokens: 100,
            cache_creation_input_tokens: 0,
        },
    }
}

fn text(t: &str) -> ReplyEvent {
    ReplyEvent::TextDelta(t.into())
}

fn thinking(t: &str) -> ReplyEvent {
    ReplyEvent::ThinkingDelta(t.into())
}

fn tool_call(id: &str, name: &str, input: Value) -> ReplyEvent {
    let Value::Object(input) = input else {
        panic!("tool input must be an object")
    };
    ReplyEvent::ToolCall {
        id: id.into(),
        name: name.into(),
        input,
    }
}

fn unavailable() -> Classification {
    classify(Failure::Connect(&ConnectError::new(
        Code::Unavailable,
        "Cursor is at capacity",
    )))
}

/// The final usage of [`stop`], as Anthropic renders it.
fn final_usage() -> Value {
    json!({"input_tokens": 120, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 17})
}

fn message_start(input_tokens: u64) -> (String, Value) {
    ev(
        "message_start",
        json!({"message": {"id": "msg_01test", "type": "message", "role": "assistant",
            "model": "claude-opus-4-8", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 0}}}),
    )
}

/// An expected event: its name and its data, whose `type` is the name.
fn ev(name: &str, mut data: Value) -> (String, Value) {
    data["type"] = json!(name);
    (name.to_owned(), data)
}

fn block_start(index: u32, block: Value) -> (String, Value) {
    ev(
        "content_block_start",
        json!({"index": index, "content_block": block}),
    )
}

fn delta(index: u32, delta: Value) -> (String, Value) {
    ev(
        "content_block_delta",
        json!({"index": index, "delta": delta}),
    )
}

fn block_stop(index: u32) -> (String, Value) {
    ev("content_block_stop", json!({ "index": index }))
}

fn message_end(reason: &str) -> [(String, Value); 2] {
    [
        ev(
            "message_delta",
            json!({"delta": {"stop_reason": reason, "stop_sequence": null}, "usage": final_usage()}),
        ),
        ev("message_stop", json!({})),
    ]
}

/// Splits SSE bytes into `(event, data)` pairs, checking the framing on the way.
fn parse_sse(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).expect("SSE is UTF-8");
    assert!(text.ends_with("\n\n"), "every event ends with a blank line");
    text.split_terminator("\n\n")
        .map(|frame| {
            let (event, data) = frame.split_once('\n').expect("event and data lines");
            let name = event.strip_prefix("event: ").expect("event line");
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data line"))
                .expect("data is JSON");
            assert_eq!(data["type"], name, "data type matches the event name");
            (name.to_owned(), data)
        })
        .collect()
}

fn render(events: &[ReplyEvent]) -> Vec<(String, Value)> {
    let mut renderer = StreamRenderer::new();
    let mut out = BytesMut::new();
    for e in events {
        renderer.handle(e, &mut out);
    }
    parse_sse(&out)
}

fn accumulate(events: &[ReplyEvent]) -> Result<Value, Classification> {
    let mut acc = MessageAccumulator::new();
    for e in events {
        acc.handle(e);
    }
    acc.finish()
        .map(|body| serde_json::from_slice(&body).expect("body is JSON"))
}

fn message_body(content: Value, stop_reason: &str) -> Value {
    json!({"id": "msg_01test", "type": "message", "role": "assistant", "model": "claude-opus-4-8",
           "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": final_usage()})
}

#[test]
fn a_text_reply_streams_in_anthropic_order_with_input_tokens_never_zero() {
    let events = [
        start(0),
        text("Hello"),
        text(""),
        text(", world"),
        stop(StopReason::EndTurn),
    ];
    let mut expected = vec![
        message_start(1),
        block_start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Hello"})),
        delta(0, json!({"type": "text_delta", "text": ", world"})),
        block_stop(0),
    ];
    expected.extend(message_end("end_turn"));
    assert_eq!(render(&events), expected);
    assert_eq!(
        accumulate(&events).expect("body"),
        message_body(
            json!([{"type": "text", "text": "Hello, world"}]),
            "end_turn"
        )
    );
}

#[test]
fn a_thinking_then_text_reply_signs_the_thinking_block_before_it_stops() {
    let events = [
        start(42),
        thinking("Let me"),
        thinking(" think."),
        text("42"),
        stop(StopReason::EndTurn),
    ];
    let signature = thinking_signature("Let me think.");
    assert_eq!(signature.len(), 44, "base64 of a SHA-256 digest");
    let mut expected = vec![
        message_start(42),
        block_start(
            0,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ),
        delta(0, json!({"type": "thinking_delta", "thinking": "Let me"})),
        delta(0, json!({"type": "thinking_delta", "thinking": " think."})),
        delta(
            0,
            json!({"type": "signature_delta", "signature": signature}),
        ),
        block_stop(0),
        block_start(1, json!({"type": "text", "text": ""})),
        delta(1, json!({"type": "text_delta", "text": "42"})),
        block_stop(1),
    ];
    expected.extend(message_end("end_turn"));
    assert_eq!(render(&events), expected);
    assert_eq!(
        accumulate(&events).expect("body"),
        message_body(
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": signature},
                {"type": "text", "text": "42"}
            ]),
            "end_turn"
        )
    );
}

#[test]
fn a_reply_with_two_tool_calls_streams_one_complete_block_per_call() {
    let events = [
        start(9),
        text("Checking."),
        tool_call("toolu_01a", "Bash", json!({"command": "ls -la"})),
        tool_call(
            "toolu_01b",
            "Read",
            json!({"file_path": "/tmp/a.txt", "limit": 5}),
        ),
        stop(StopReason::ToolUse),
    ];
    let mut expected = vec![
        message_start(9),
        block_start(0, json!({"type": "text", "text": ""})),
        delta(0, json!({"type": "text_delta", "text": "Checking."})),
        block_stop(0),
        block_start(
            1,
            json!({"type": "tool_use", "id": "toolu_01a", "name": "Bash", "input": {}}),
        ),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"command\":\"ls -la\"}"}),
        ),
        block_stop(1),
        block_start(
            2,
            json!({"type": "tool_use", "id": "toolu_01b", "name": "Read", "input": {}}),
        ),
        delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "{\"file_path\":\"/tmp/a.txt\",\"limit\":5}"}),
        ),
        block_stop(2),
    ];
    expected.extend(message_end("tool_use"));
    let rendered = render(&events);
    assert_eq!(rendered, expected);
    // The streamed input JSON is exactly the call's input.
    let streamed: Value = serde_json::from_str(
        rendered[8].1["delta"]["partial_json"]
            .as_str()
            .expect("string"),
    )
    .expect("JSON");
    assert_eq!(streamed, json!({"file_path": "/tmp/a.txt", "limit": 5}));
    assert_eq!(
        accumulate(&events).expect("body"),
        message_body(
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01a", "name": "Bash", "input": {"command": "ls -la"}},
                {"type": "tool_use", "id": "toolu_01b", "name": "Read", "input": {"file_path": "/tmp/a.txt", "limit": 5}}
            ]),
            "tool_use"
        )
    );
}

#[test]
fn an_error_after_the_first_byte_is_an_error_event_never_a_normal_stop() {
    let events = [
        start(5),
        text("Partial"),
        ReplyEvent::Error(unavailable()),
        // Anything after the error is ignored.
        text("more"),
        stop(StopReason::EndTurn),
    ];
    let mut renderer = StreamRenderer::new();
    let mut out = BytesMut::new();
    for e in &events {
        renderer.handle(e, &mut out);
    }
    assert!(renderer.is_finished());
    assert_eq!(
        parse_sse(&out),
        vec![
            message_start(5),
            block_start(0, json!({"type": "text", "text": ""})),
            delta(0, json!({"type": "text_delta", "text": "Partial"})),
            ev(
                "error",
                json!({"error": {"type": "overloaded_error", "message": "Cursor is at capacity"}})
            ),
        ]
    );
    // The non-streaming reply fails as a whole, with the classification to render.
    let failure = accumulate(&events).expect_err("an error");
    assert_eq!(failure.client_status, 503);
}

#[test]
fn an_accumulated_reply_without_a_stop_is_a_failure_not_a_truncated_success() {
    let failure = accumulate(&[start(1), text("cut")]).expect_err("no stop");
    assert_eq!(failure.kind, FailureKind::Transport);
    assert_eq!(failure.client_status, 502);
}

#[test]
fn pings_stop_sequences_and_max_tokens_render() {
    let events = [
        ReplyEvent::Ping,
        start(3),
        ReplyEvent::Ping,
        text("a"),
        ReplyEvent::Stop {
            reason: StopReason::StopSequence,
            stop_sequence: Some("END".into()),
            usage: Usage::default(),
        },
    ];
    let names: Vec<String> = render(&events).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "ping",
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let rendered = render(&events);
    assert_eq!(
        rendered[6].1["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
    assert_eq!(rendered[6].1["usage"]["input_tokens"], 1);
    let body = accumulate(&events).expect("body");
    assert_eq!(body["stop_sequence"], "END");
    assert_eq!(body["stop_reason"], "stop_sequence");

    let max = render(&[start(1), text("a"), stop(StopReason::MaxTokens)]);
    assert_eq!(max[4].1["delta"]["stop_reason"], "max_tokens");
}

#[test]
fn content_before_start_still_opens_with_message_start() {
    let mut renderer = StreamRenderer::new();
    let mut out = BytesMut::new();
    assert!(!renderer.has_started());
    renderer.handle(&text("early"), &mut out);
    assert!(renderer.has_started());
    renderer.handle(&stop(StopReason::EndTurn), &mut out);
    let names: Vec<String> = parse_sse(&out).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(parse_sse(&out)[0].1["message"]["usage"]["input_tokens"], 1);
}

#[test]
fn a_tool_call_with_empty_input_sends_an_empty_object() {
    let input = Map::new();
    let rendered = render(&[
        start(1),
        ReplyEvent::ToolCall {
            id: "toolu_x".into(),
            name: "TaskList".into(),
            input,
        },
        stop(StopReason::ToolUse),
    ]);
    assert_eq!(rendered[2].1["delta"]["partial_json"], "{}");
}

#[test]
fn interleaved_thinking_gets_one_signed_block_per_run() {
    let rendered = render(&[
        start(1),
        thinking("a"),
        text("b"),
        thinking("c"),
        stop(StopReason::EndTurn),
    ]);
    let signatures: Vec<&Value> = rendered
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "signature_delta")
        .map(|(_, d)| &d["delta"]["signature"])
        .collect();
    assert_eq!(
        signatures,
        [
            &json!(thinking_signature("a")),
            &json!(thinking_signature("c"))
        ]
    );
    let stops: Vec<&Value> = rendered
        .iter()
        .filter(|(n, _)| n == "content_block_stop")
        .map(|(_, d)| &d["index"])
        .collect();
    assert_eq!(stops, [&json!(0), &json!(1), &json!(2)]);
}

#[test]
fn count_tokens_answers_input_tokens() {
    let body: Value = serde_json::from_slice(&count_tokens_body(1234)).expect("JSON");
    assert_eq!(body, json!({"input_tokens": 1234}));
    let zero: Value = serde_json::from_slice(&count_tokens_body(0)).expect("JSON");
    assert_eq!(zero, json!({"input_tokens": 1}));
}
