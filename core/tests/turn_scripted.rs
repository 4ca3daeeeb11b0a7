//! The turn machine against hand-written server frames: orderings and answers the simulated
//! backend does not produce (a batch closed only by the quiet period, text while parked, exec
//! aborts, unknown tools, KV misses, queries, broken responses, pings).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cursorpool_core::chat::{
    ApiKind, ChatMessage, ChatRequest, Part, ReplyEvent, Role, StopReason,
};
use cursorpool_core::classify::FailureKind;
use cursorpool_core::connect::envelope::{EnvelopeDecoder, Frame, encode_end_stream, encode_proto};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{
    Framing, ModelMap, ResumeError, ToolResultInput, Turn, TurnEvent, TurnParams, blob_id,
};
use cursorpool_core::update::json::json_to_value;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Cm;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use prost::Message as _;

/// The origin of simulated time. Read once; every later instant is computed from it.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
fn epoch() -> Instant {
    Instant::now()
}

/// A turn with the tools `Read` and `Grep`, its clock, and what it said so far.
struct Script {
    turn: Turn,
    now: Instant,
    sent: Vec<pb::AgentClientMessage>,
    events: Vec<TurnEvent>,
}

impl Script {
    fn new() -> Self {
        let mut s = Self::bare();
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "application/connect+proto".parse().unwrap());
        let now = s.now;
        s.turn.handle_upstream_response(200, &h, now);
        s.drain();
        s
    }

    /// A turn whose response headers have not arrived.
    fn bare() -> Self {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                content: vec![Part::Text("hi".into())],
            }],
            tools: ["Read", "Grep"]
                .iter()
                .map(|n| cursorpool_core::chat::ToolSpec {
                    name: (*n).into(),
                    description: String::new(),
                    input_schema: None,
                })
                .collect(),
            ..ChatRequest::default()
        };
        let params = TurnParams::from_chat(
            &req,
            ApiKind::OpenAi,
            &ModelMap::default(),
            "c".into(),
            Framing::Run,
            IdSource::new(3),
        );
        let now = epoch();
        let mut s = Self {
            turn: Turn::new(params, now),
            now,
            sent: Vec::new(),
            events: Vec::new(),
        };
        s.drain();
        s
    }

    fn drain(&mut self) {
        while let Some(b) = self.turn.poll_transmit() {
            let mut d = EnvelopeDecoder::default();
            d.handle_bytes(&b);
            while let Ok(Some(Frame::Message(p))) = d.poll_frame() {
                self.sent.push(pb::AgentClientMessage::decode(p).unwrap());
            }
        }
        while let Some(e) = self.turn.poll_event() {
            self.events.push(e);
        }
    }

    fn server(&mut self, m: Sm) {
        let mut b = BytesMut::new();
        encode_proto(&pb::AgentServerMessage { message: Some(m) }, &mut b).unwrap();
        self.turn.handle_upstream_data(&b, self.now);
        self.drain();
    }

    fn end_stream(&mut self, json: &str) {
        let mut b = BytesMut::new();
        encode_end_stream(json.as_bytes(), &mut b).unwrap();
        self.turn.handle_upstream_data(&b, self.now);
        self.drain();
    }

    fn at(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        self.turn.handle_timeout(now);
        self.drain();
    }

    fn replies(&self) -> Vec<&ReplyEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Reply(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn last_sent(&self) -> &Cm {
        self.sent.last().and_then(|m| m.message.as_ref()).unwrap()
    }
}

fn mcp(exec: u32, tool: &str, call_id: &str) -> Sm {
    let mut args = std::collections::HashMap::new();
    args.insert("k".to_owned(), json_to_value(&serde_json::json!(exec)));
    Sm::ExecServerMessage(Box::new(pb::ExecServerMessage {
        id: exec,
        exec_id: format!("e{exec}"),
        message: Some(Args::McpArgs(pb::McpArgs {
            name: format!("cursorpool-{tool}"),
            args,
            tool_call_id: call_id.to_owned(),
            provider_identifier: "cursorpool".to_owned(),
            tool_name: tool.to_owned(),
            ..Default::default()
        })),
        span_context: None,
    }))
}

fn update(u: Iu) -> Sm {
    Sm::InteractionUpdate(pb::InteractionUpdate { message: Some(u) })
}

fn text(t: &str) -> Sm {
    update(Iu::TextDelta(pb::TextDeltaUpdate { text: t.into() }))
}

fn turn_ended() -> Sm {
    update(Iu::TurnEnded(pb::TurnEndedUpdate {
        input_tokens: Some(120),
        output_tokens: Some(9),
        ..Default::default()
    }))
}

fn result(id: &str) -> ToolResultInput {
    ToolResultInput {
        tool_use_id: id.into(),
        content: vec![Part::Text(format!("result {id}"))],
        is_error: false,
    }
}

#[test]
fn the_quiet_period_completes_a_tool_batch_when_nothing_else_comes() {
    let mut s = Script::new();
    s.server(mcp(1, "Read", "call_1"));
    s.at(Duration::from_millis(100));
    s.server(mcp(2, "Grep", "call_2"));
    s.at(Duration::from_millis(100));
    assert!(
        !s.turn.is_parked(),
        "the quiet period restarts with each call"
    );
    s.at(Duration::from_millis(60));
    assert!(s.turn.is_parked());
    let r = s.replies();
    assert!(matches!(r[0], ReplyEvent::Start { id, .. } if id.starts_with("chatcmpl-")));
    assert!(
        matches!(r[1], ReplyEvent::ToolCall { id, name, .. } if id == "call_1" && name == "Read")
    );
    assert!(matches!(r[2], ReplyEvent::ToolCall { id, .. } if id == "call_2"));
    assert!(matches!(
        r[3],
        ReplyEvent::Stop {
            reason: StopReason::ToolUse,
            ..
        }
    ));
    assert_eq!(
        s.events.last(),
        Some(&TurnEvent::Parked {
            tool_use_ids: vec!["call_1".into(), "call_2".into()]
        })
    );
}

#[test]
fn text_arriving_while_parked_is_delivered_after_the_resume() {
    let mut s = Script::new();
    s.server(mcp(1, "Read", "call_1"));
    s.server(update(Iu::Heartbeat(pb::HeartbeatUpdate {})));
    assert!(s.turn.is_parked());
    s.server(text("early "));
    let n = s.events.len();
    let now = s.now;
    s.turn
        .handle_tool_results(vec![result("call_1")], now)
        .unwrap();
    s.drain();
    s.server(text("answer"));
    s.server(turn_ended());
    let second: Vec<_> = s.events[n..].iter().collect();
    assert!(matches!(
        second[0],
        TurnEvent::Reply(ReplyEvent::Start { .. })
    ));
    assert_eq!(
        second[1],
        &TurnEvent::Reply(ReplyEvent::TextDelta("early ".into()))
    );
    assert_eq!(
        second[2],
        &TurnEvent::Reply(ReplyEvent::TextDelta("answer".into()))
    );
    // The mcp_result answered exec 1 on field 11, then stream_close.
    let results: Vec<_> = s
        .sent
        .iter()
        .filter_map(|m| match &m.message {
            Some(Cm::ExecClientMessage(e)) => Some((e.id, e.exec_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(results, [(1, "e1".to_owned())]);
}

#[test]
fn an_exec_abort_forgets_the_pending_call() {
    let mut s = Script::new();
    s.server(mcp(1, "Read", "call_1"));
    s.server(mcp(2, "Grep", "call_2"));
    s.server(Sm::ExecServerControlMessage(pb::ExecServerControlMessage {
        message: Some(pb::exec_server_control_message::Message::Abort(
            pb::ExecServerAbort { id: 2 },
        )),
    }));
    s.at(Duration::from_secs(1));
    assert!(s.turn.is_parked());
    let now = s.now;
    // The aborted call needs no result, and a result for it is accepted and dropped.
    s.turn
        .handle_tool_results(vec![result("call_2"), result("call_1")], now)
        .unwrap();
    s.drain();
    let answered: Vec<u32> = s
        .sent
        .iter()
        .filter_map(|m| match &m.message {
            Some(Cm::ExecClientMessage(e)) => Some(e.id),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [1]);
}

#[test]
fn a_call_of_an_unknown_tool_is_answered_with_an_mcp_error() {
    let mut s = Script::new();
    s.server(mcp(5, "Delete", "call_x"));
    let Some(Cm::ExecClientControlMessage(_)) = s.sent.last().and_then(|m| m.message.as_ref())
    else {
        panic!("stream_close last");
    };
    let Some(Cm::ExecClientMessage(e)) = s.sent[s.sent.len() - 2].message.as_ref() else {
        panic!("mcp_result first");
    };
    assert!(matches!(
        &e.message,
        Some(pb::exec_client_message::Message::McpResult(pb::McpResult {
            result: Some(pb::mcp_result::Result::Error(err))
        })) if err.error.contains("cursorpool-Delete")
    ));
    assert!(s.replies().is_empty(), "nothing for the client");
}

#[test]
fn kv_reads_of_missing_blobs_are_answered_empty_and_corrupt_writes_refused() {
    let mut s = Script::new();
    let data = Bytes::from_static(b"blob");
    let id = Bytes::copy_from_slice(&blob_id(&data));
    let kv = |id_: u32, m| {
        Sm::KvServerMessage(Box::new(pb::KvServerMessage {
            id: id_,
            message: Some(m),
            span_context: None,
        }))
    };
    s.server(kv(
        0,
        pb::kv_server_message::Message::GetBlobArgs(pb::GetBlobArgs {
            blob_id: id.clone(),
        }),
    ));
    assert!(matches!(
        s.last_sent(),
        Cm::KvClientMessage(pb::KvClientMessage {
            id: 0,
            message: Some(pb::kv_client_message::Message::GetBlobResult(
                pb::GetBlobResult { blob_data: None }
            ))
        })
    ));
    s.server(kv(
        1,
        pb::kv_server_message::Message::SetBlobArgs(pb::SetBlobArgs {
            blob_id: id.clone(),
            blob_data: Bytes::from_static(b"not the blob"),
        }),
    ));
    assert!(matches!(
        s.last_sent(),
        Cm::KvClientMessage(pb::KvClientMessage {
            id: 1,
            message: Some(pb::kv_client_message::Message::SetBlobResult(
                pb::SetBlobResult { error: Some(_) }
            ))
        })
    ));
    s.server(kv(
        2,
        pb::kv_server_message::Message::SetBlobArgs(pb::SetBlobArgs {
            blob_id: id.clone(),
            blob_data: data.clone(),
        }),
    ));
    s.server(kv(
        3,
        pb::kv_server_message::Message::GetBlobArgs(pb::GetBlobArgs { blob_id: id }),
    ));
    assert!(
        matches!(s.last_sent(), Cm::KvClientMessage(pb::KvClientMessage {
        id: 3,
        message: Some(pb::kv_client_message::Message::GetBlobResult(pb::GetBlobResult { blob_data: Some(d) }))
    }) if *d == data)
    );
}

#[test]
fn interaction_queries_are_answered_on_their_own_field() {
    let mut s = Script::new();
    s.server(Sm::InteractionQuery(pb::InteractionQuery {
        id: 9,
        query: Some(pb::interaction_query::Query::WebSearchRequestQuery(
            pb::WebSearchRequestQuery::default(),
        )),
    }));
    assert!(matches!(
        s.last_sent(),
        Cm::InteractionResponse(pb::InteractionResponse {
            id: 9,
            result: Some(pb::interaction_response::Result::WebSearchRequestResponse(
                _
            ))
        })
    ));
}

#[test]
fn the_request_context_carries_the_prefixed_tools_and_the_env() {
    let mut s = Script::new();
    s.server(Sm::ExecServerMessage(Box::new(pb::ExecServerMessage {
        id: 1,
        exec_id: "rc".into(),
        message: Some(Args::RequestContextArgs(pb::RequestContextArgs::default())),
        span_context: None,
    })));
    let Some(Cm::ExecClientMessage(e)) = s.sent[s.sent.len() - 2].message.as_ref() else {
        panic!("request context result");
    };
    let Some(pb::exec_client_message::Message::RequestContextResult(pb::RequestContextResult {
        result: Some(pb::request_context_result::Result::Success(ok)),
    })) = &e.message
    else {
        panic!("success on field 10: {e:?}");
    };
    let ctx = ok.request_context.as_ref().unwrap();
    let names: Vec<_> = ctx.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["cursorpool-Read", "cursorpool-Grep"]);
    assert!(ctx.env.is_some());
    assert!(matches!(s.last_sent(), Cm::ExecClientControlMessage(_)));
}

#[test]
fn broken_responses_fail_with_their_classification() {
    // 401 with a Connect JSON body, classified once the body ended.
    let mut s = Script::bare();
    let now = s.now;
    let mut h = http::HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    s.turn.handle_upstream_response(401, &h, now);
    s.turn
        .handle_upstream_data(br#"{"code":"unauthenticated","message":"bad token"}"#, now);
    s.drain();
    assert!(s.events.is_empty(), "waits for the whole body");
    s.turn.handle_upstream_end(now);
    s.drain();
    let Some(TurnEvent::Failed {
        classification,
        downstream_started: false,
    }) = s.events.last()
    else {
        panic!("{:?}", s.events);
    };
    assert_eq!(classification.kind, FailureKind::Unauthenticated);

    // 200 with the wrong content type: not a Connect stream.
    let mut s = Script::bare();
    let now = s.now;
    let mut h = http::HeaderMap::new();
    h.insert("content-type", "text/html".parse().unwrap());
    s.turn.handle_upstream_response(200, &h, now);
    s.turn.handle_upstream_data(b"<html>", now);
    s.turn.handle_upstream_end(now);
    s.drain();
    assert!(matches!(
        s.events.last(),
        Some(TurnEvent::Failed { classification, .. }) if classification.client_status == 502
    ));

    // EOF without an end-stream.
    let mut s = Script::new();
    s.server(text("partial"));
    s.turn.handle_upstream_end(s.now);
    s.drain();
    assert!(matches!(
        s.replies().last(),
        Some(ReplyEvent::Error(c)) if c.message.contains("end-stream")
    ));

    // A clean end-stream without turn_ended.
    let mut s = Script::new();
    s.end_stream("{}");
    assert!(matches!(
        s.events.last(),
        Some(TurnEvent::Failed { classification, .. })
            if classification.message.contains("before the turn finished")
    ));

    // Garbage where an envelope should be: a protocol violation, and a cancel upstream.
    let mut s = Script::new();
    s.turn.handle_upstream_data(&[0x80, 0, 0, 0, 1, 0], s.now);
    s.drain();
    assert!(matches!(
        s.events.last(),
        Some(TurnEvent::Failed { classification, .. })
            if classification.message.contains("protocol")
    ));
    assert!(matches!(s.last_sent(), Cm::ConversationAction(_)));

    // A failed BidiAppend.
    let mut s = Script::new();
    s.turn
        .handle_append_failed(503, &http::HeaderMap::new(), b"", s.now);
    s.drain();
    assert!(matches!(
        s.events.last(),
        Some(TurnEvent::Failed { classification, .. }) if classification.client_status == 503
    ));
}

#[test]
fn a_ping_goes_downstream_after_ten_quiet_seconds_and_usage_comes_from_turn_ended() {
    let mut s = Script::new();
    s.server(text("a"));
    s.at(Duration::from_secs(9));
    assert!(!s.replies().contains(&&ReplyEvent::Ping));
    s.at(Duration::from_secs(1));
    assert_eq!(s.replies().last(), Some(&&ReplyEvent::Ping));
    s.server(turn_ended());
    let Some(ReplyEvent::Stop { usage, .. }) = s.replies().last().copied() else {
        panic!("stop");
    };
    assert_eq!((usage.input_tokens, usage.output_tokens), (120, 9));
    s.server(Sm::ConversationCheckpointUpdate(Bytes::from_static(
        b"\x20\x01",
    )));
    s.end_stream("{}");
    assert_eq!(
        s.events.last(),
        Some(&TurnEvent::Finished {
            checkpoint: Some(Bytes::from_static(b"\x20\x01")),
            usage: cursorpool_core::chat::Usage {
                input_tokens: 120,
                output_tokens: 9,
                ..Default::default()
            }
        })
    );
    let now = s.now;
    assert_eq!(
        s.turn.handle_tool_results(vec![], now),
        Err(ResumeError::Ended)
    );
}
