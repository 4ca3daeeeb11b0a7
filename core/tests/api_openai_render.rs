//! OpenAI rendering golden tests: the exact chunk sequence (compared as parsed JSON) and the
//! non-streaming `chat.completion` body for text, thinking + text, two tool calls, and an
//! error after the first byte.

use bytes::BytesMut;
use cursorpool_core::api::openai::{CompletionAccumulator, StreamRenderer};
use cursorpool_core::chat::{ChatRequest, ReplyEvent, StopReason, Usage};
use cursorpool_core::classify::{Classification, Failure, classify};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;
use serde_json::{Value, json};

const CREATED: u64 = 1_700_000_000;

/// One SSE item.
#[derive(Debug, PartialEq)]
enum Item {
    Data(Value),
    Done,
    Comment(String),
}

fn parse_sse(bytes: &[u8]) -> Vec<Item> {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    assert!(text.ends_with("\n\n"));
    text.split_terminator("\n\n")
        .map(|frame| {
            if let Some(comment) = frame.strip_prefix(": ") {
                return Item::Comment(comment.to_owned());
            }
            let data = frame.strip_prefix("data: ").expect("data line");
            if data == "[DONE]" {
                Item::Done
            } else {
                Item::Data(serde_json::from_str(data).expect("chunk is JSON"))
            }
        })
        .collect()
}

fn start() -> ReplyEvent {
    ReplyEvent::Start {
        id: "chatcmpl-test".into(),
        model: "gpt-5".into(),
        usage: Usage {
            input_tokens: 50,
            ..Usage::default()
        },
    }
}

fn stop(reason: StopReason) -> ReplyEvent {
    ReplyEvent::Stop {
        reason,
        stop_sequence: None,
        usage: Usage {
            input_tokens: 20,
            output_tokens: 7,
            cache_read_input_tokens: 30,
            cache_creation_input_tokens: 0,
        },
    }
}

fn usage() -> Value {
    json!({"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57,
           "prompt_tokens_details": {"cached_tokens": 30}})
}

fn tool_call(id: &str, name: &str, input: Value) -> ReplyEvent {
    let Value::Object(input) = input else {
        panic!("object")
    };
    ReplyEvent::ToolCall {
        id: id.into(),
        name: name.into(),
        input,
    }
}

fn chunk(delta: Value, finish: Value) -> Item {
    Item::Data(json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-5",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    }))
}

fn finish_chunk(reason: &str) -> Item {
    let Item::Data(mut c) = chunk(json!({}), json!(reason)) else {
        unreachable!()
    };
    c["usage"] = usage();
    Item::Data(c)
}

fn role_chunk() -> Item {
    chunk(json!({"role": "assistant", "content": ""}), Value::Null)
}

fn render_with(include_usage: bool, events: &[ReplyEvent]) -> Vec<Item> {
    let mut renderer = StreamRenderer::new(CREATED, include_usage);
    let mut out = BytesMut::new();
    for e in events {
        renderer.handle(e, &mut out);
    }
    parse_sse(&out)
}

fn render(events: &[ReplyEvent]) -> Vec<Item> {
    render_with(false, events)
}

fn accumulate(events: &[ReplyEvent]) -> Result<Value, Classification> {
    let mut acc = CompletionAccumulator::new(CREATED);
    for e in events {
        acc.handle(e);
    }
    acc.finish()
        .map(|b| serde_json::from_slice(&b).expect("JSON"))
}

fn completion(message: Value, finish: &str) -> Value {
    json!({"id": "chatcmpl-test", "object": "chat.completion", "created": CREATED, "model": "gpt-5",
           "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
           "usage": usage()})
}

#[test]
fn a_text_reply_streams_role_content_finish_with_usage_then_done() {
    let events = [
        start(),
        ReplyEvent::TextDelta("Hel".into()),
        ReplyEvent::TextDelta("lo".into()),
        stop(StopReason::EndTurn),
    ];
    assert_eq!(
        render(&events),
        vec![
            role_chunk(),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            finish_chunk("stop"),
            Item::Done,
        ]
    );
    assert_eq!(
        accumulate(&events).expect("body"),
        completion(
            json!({"role": "assistant", "content": "Hello", "refusal": null}),
            "stop"
        )
    );
}

#[test]
fn thinking_streams_as_reasoning_content() {
    let events = [
        start(),
        ReplyEvent::ThinkingDelta("Hmm.".into()),
        ReplyEvent::TextDelta("42".into()),
        stop(StopReason::MaxTokens),
    ];
    assert_eq!(
        render(&events),
        vec![
            role_chunk(),
            chunk(json!({"reasoning_content": "Hmm."}), Value::Null),
            chunk(json!({"content": "42"}), Value::Null),
            finish_chunk("length"),
            Item::Done,
        ]
    );
    assert_eq!(
        accumulate(&events).expect("body"),
        completion(
            json!({"role": "assistant", "content": "42", "reasoning_content": "Hmm.", "refusal": null}),
            "length"
        )
    );
}

#[test]
fn two_tool_calls_stream_with_indexes_and_string_arguments() {
    let events = [
        start(),
        tool_call("call_a", "get_weather", json!({"city": "Paris"})),
        tool_call("call_b", "get_time", json!({})),
        stop(StopReason::ToolUse),
    ];
    assert_eq!(
        render(&events),
        vec![
            role_chunk(),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
                Value::Null
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"}}]}),
                Value::Null
            ),
            finish_chunk("tool_calls"),
            Item::Done,
        ]
    );
    assert_eq!(
        accumulate(&events).expect("body"),
        completion(
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]}),
            "tool_calls"
        )
    );
}

#[test]
fn an_error_after_the_first_byte_is_an_error_chunk_then_done() {
    let rate_limited = classify(Failure::Connect(&ConnectError::new(
        Code::ResourceExhausted,
        "usage limit reached",
    )));
    let events = [
        start(),
        ReplyEvent::TextDelta("Par".into()),
        ReplyEvent::Error(rate_limited.clone()),
        ReplyEvent::TextDelta("ignored".into()),
        stop(StopReason::EndTurn),
    ];
    assert_eq!(
        render(&events),
        vec![
            role_chunk(),
            chunk(json!({"content": "Par"}), Value::Null),
            Item::Data(
                json!({"error": {"message": "usage limit reached", "type": "insufficient_quota",
                                        "param": null, "code": "insufficient_quota"}})
            ),
            Item::Done,
        ]
    );
    assert_eq!(accumulate(&events), Err(rate_limited));
}

#[test]
fn include_usage_sends_usage_in_a_separate_chunk_with_empty_choices() {
    let request = ChatRequest {
        include_usage: true,
        ..ChatRequest::default()
    };
    let mut renderer = StreamRenderer::for_request(&request, CREATED);
    let mut out = BytesMut::new();
    for e in [
        start(),
        ReplyEvent::TextDelta("x".into()),
        stop(StopReason::StopSequence),
    ] {
        renderer.handle(&e, &mut out);
    }
    assert!(renderer.is_finished());
    assert_eq!(
        parse_sse(&out),
        vec![
            role_chunk(),
            chunk(json!({"content": "x"}), Value::Null),
            chunk(json!({}), json!("stop")),
            Item::Data(
                json!({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                "created": CREATED, "model": "gpt-5", "choices": [], "usage": usage()})
            ),
            Item::Done,
        ]
    );
}

#[test]
fn pings_are_sse_comments_and_empty_deltas_are_skipped() {
    let items = render(&[
        ReplyEvent::Ping,
        start(),
        ReplyEvent::TextDelta(String::new()),
        ReplyEvent::ThinkingDelta(String::new()),
        ReplyEvent::Ping,
        stop(StopReason::EndTurn),
    ]);
    assert_eq!(
        items,
        vec![
            Item::Comment("ping".into()),
            role_chunk(),
            Item::Comment("ping".into()),
            finish_chunk("stop"),
            Item::Done,
        ]
    );
}

#[test]
fn an_accumulated_reply_without_a_stop_is_a_failure() {
    let failure = accumulate(&[start(), ReplyEvent::TextDelta("cut".into())]).expect_err("fails");
    assert_eq!(failure.client_status, 502);
}
