//! Rendering round-trips: an arbitrary reply (in the turn's grammar: thinking, text and pings
//! in any order and any bytes, then tool calls, then a stop or an error) rendered as Anthropic
//! SSE, OpenAI chunks and both non-streaming JSON bodies, then read back as a client would.
//! Every SSE event is `event:`/`data:` framed with JSON data whose `type` matches; the text,
//! the thinking and each tool call's input read back equal to what went in; a stop ends with
//! `message_stop` / `[DONE]`, an error with an error event in the API's shape; the JSON bodies
//! parse and carry the same text.

use bytes::BytesMut;
use cursorpool_core::api::{anthropic, openai};
use cursorpool_core::chat::{ReplyEvent, StopReason, Usage};
use cursorpool_core::classify::{Failure, classify};
use cursorpool_core::connect::{code::Code, error::ConnectError};
use serde_json::{Map, Value};

use crate::script::Script;

/// What went into a reply, to compare with what a client reads back.
#[derive(Debug, Default)]
struct Sent {
    text: String,
    thinking: String,
    tools: Vec<(String, String, Map<String, Value>)>,
    failed: bool,
}

fn reply(s: &mut Script<'_>) -> (Vec<ReplyEvent>, Sent) {
    let mut sent = Sent::default();
    let usage = Usage {
        input_tokens: 1 + u64::from(s.byte()),
        ..Usage::default()
    };
    let mut events = vec![ReplyEvent::Start {
        id: "msg_fuzz".into(),
        model: s.text(),
        usage,
    }];
    for _ in 0..s.byte() % 24 {
        match s.byte() % 4 {
            0 | 1 => {
                let t = s.text();
                sent.text.push_str(&t);
                events.push(ReplyEvent::TextDelta(t));
            }
            2 => {
                let t = s.text();
                sent.thinking.push_str(&t);
                events.push(ReplyEvent::ThinkingDelta(t));
            }
            _ => events.push(ReplyEvent::Ping),
        }
    }
    for k in 0..s.byte() % 3 {
        let mut input = Map::new();
        for _ in 0..s.byte() % 3 {
            input.insert(s.text(), Value::String(s.text()));
        }
        let (id, name) = (format!("toolu_{k}"), s.text());
        sent.tools.push((id.clone(), name.clone(), input.clone()));
        events.push(ReplyEvent::ToolCall { id, name, input });
    }
    let end = s.byte();
    if end % 5 == 4 {
        let code = Code::ALL[usize::from(s.byte()) % Code::ALL.len()];
        let err = ConnectError::new(code, s.text());
        sent.failed = true;
        events.push(ReplyEvent::Error(classify(Failure::Connect(&err))));
    } else {
        let reason = [
            StopReason::EndTurn,
            StopReason::ToolUse,
            StopReason::MaxTokens,
            StopReason::StopSequence,
        ][usize::from(end % 4)];
        events.push(ReplyEvent::Stop {
            reason,
            stop_sequence: (reason == StopReason::StopSequence).then(|| s.text()),
            usage: Usage {
                output_tokens: u64::from(s.byte()),
                ..usage
            },
        });
    }
    (events, sent)
}

/// `(event name, data)` of each SSE block; panics on a block without `data:`.
fn sse(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let text = std::str::from_utf8(bytes).expect("SSE is UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unterminated event"
    );
    let mut out = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut event = None;
        let mut data = None;
        for line in block.split('\n') {
            if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "one data line per event: {block:?}");
                data = Some(v.to_owned());
            } else {
                assert!(line.starts_with(':'), "unknown SSE line {line:?}");
            }
        }
        if let Some(d) = data {
            out.push((event, d));
        }
    }
    out
}

fn json(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"))
}

fn check_anthropic(events: &[ReplyEvent], sent: &Sent) {
    let mut r = anthropic::StreamRenderer::new();
    let mut out = BytesMut::new();
    for e in events {
        r.handle(e, &mut out);
    }
    let (mut text, mut thinking) = (String::new(), String::new());
    let mut tools: Vec<(String, String, String)> = Vec::new();
    let blocks = sse(&out);
    for (name, data) in &blocks {
        let v = json(data);
        assert_eq!(v["type"].as_str(), name.as_deref(), "{v}");
        match name.as_deref() {
            Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                tools.push((
                    b["id"].as_str().unwrap_or_default().into(),
                    b["name"].as_str().unwrap_or_default().into(),
                    String::new(),
                ));
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => text.push_str(d["text"].as_str().expect("text")),
                    Some("thinking_delta") => {
                        thinking.push_str(d["thinking"].as_str().expect("thinking"));
                    }
                    Some("input_json_delta") => tools
                        .last_mut()
                        .expect("an open tool_use block")
                        .2
                        .push_str(d["partial_json"].as_str().expect("partial_json")),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(text, sent.text, "Anthropic text");
    assert_eq!(thinking, sent.thinking, "Anthropic thinking");
    assert_eq!(tools.len(), sent.tools.len());
    for ((id, name, input), (sid, sname, sinput)) in tools.iter().zip(&sent.tools) {
        assert_eq!((id, name), (sid, sname));
        assert_eq!(&json(input), &Value::Object(sinput.clone()));
    }
    let last = blocks.last().and_then(|(n, _)| n.as_deref());
    if sent.failed {
        assert_eq!(last, Some("error"));
        let v = json(&blocks[blocks.len() - 1].1);
        assert_eq!(v["type"], "error", "{v}");
    } else {
        assert_eq!(last, Some("message_stop"));
    }
    let mut acc = anthropic::MessageAccumulator::new();
    for e in events {
        acc.handle(e);
    }
    match acc.finish() {
        Ok(body) => {
            assert!(!sent.failed, "a failed reply has no body");
            let v: Value = serde_json::from_slice(&body).expect("a JSON body");
            let body_text: String = v["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            assert_eq!(body_text, sent.text, "Anthropic JSON text");
        }
        Err(_) => assert!(sent.failed, "only a failed reply has no body"),
    }
}

fn check_openai(events: &[ReplyEvent], sent: &Sent) {
    let mut r = openai::StreamRenderer::new(0, true);
    let mut out = BytesMut::new();
    for e in events {
        r.handle(e, &mut out);
    }
    let (mut text, mut reasoning) = (String::new(), String::new());
    let mut args: Vec<String> = Vec::new();
    let mut done = false;
    let mut error = false;
    for (_, data) in sse(&out) {
        assert!(!done, "nothing after [DONE]");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v = json(&data);
        if v.get("error").is_some() {
            assert!(v["error"]["message"].is_string(), "{v}");
            error = true;
            continue;
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            let d = &c["delta"];
            text.push_str(d["content"].as_str().unwrap_or(""));
            reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                let i = usize::try_from(t["index"].as_u64().expect("index")).expect("small");
                if args.len() <= i {
                    args.resize(i + 1, String::new());
                }
                args[i].push_str(t["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
    }
    assert_eq!(text, sent.text, "OpenAI content");
    assert_eq!(reasoning, sent.thinking, "OpenAI reasoning");
    assert_eq!(args.len(), sent.tools.len());
    for (a, (_, _, input)) in args.iter().zip(&sent.tools) {
        assert_eq!(&json(a), &Value::Object(input.clone()));
    }
    assert_eq!(
        error, sent.failed,
        "an error chunk exactly when the reply failed"
    );
    if !sent.failed {
        assert!(done, "a finished stream ends with [DONE]");
    }
    let mut acc = openai::CompletionAccumulator::new(0);
    for e in events {
        acc.handle(e);
    }
    match acc.finish() {
        Ok(body) => {
            let v: Value = serde_json::from_slice(&body).expect("a JSON body");
            let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
            assert_eq!(content, sent.text, "OpenAI JSON content");
        }
        Err(_) => assert!(sent.failed, "only a failed reply has no body"),
    }
}

/// The target: see the module documentation.
pub fn render_round_trip(data: &[u8]) {
    let mut s = Script::new(data);
    let (events, sent) = reply(&mut s);
    check_anthropic(&events, &sent);
    check_openai(&events, &sent);
}
