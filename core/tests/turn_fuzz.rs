//! Property test: a turn driven by an arbitrary script — well-formed and malformed server
//! frames in arbitrary chunking, raw garbage, time jumps, tool results, transport failures —
//! never panics, keeps its reply events well-formed, and emits nothing after its terminal
//! event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cursorpool_core::chat::{ApiKind, ChatMessage, ChatRequest, Part, ReplyEvent, Role, ToolSpec};
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::connect::envelope::{encode_end_stream, encode_proto};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{Framing, ModelMap, ToolResultInput, Turn, TurnEvent, TurnParams};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use proptest::prelude::*;

/// The origin of simulated time. Read once; every later instant is computed from it.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
fn epoch() -> Instant {
    Instant::now()
}

#[derive(Debug, Clone)]
enum Step {
    /// Well-formed server messages, delivered in chunks of the given sizes.
    Frames(Vec<Msg>, Vec<usize>),
    /// Arbitrary bytes on the response body.
    Raw(Vec<u8>),
    /// The response headers.
    Response(u16, bool),
    /// Time passes (milliseconds), then the timer fires.
    Wait(u64),
    /// Tool results: pick ids among the parked ones (by index) plus possibly a bogus one.
    Results(Vec<usize>, bool),
    /// A result for every parked id, in reverse order.
    ResultsAll,
    /// EOF on the response.
    End,
    Transport(u8),
    ClientGone,
    AppendFailed(u16),
}

#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Thinking(String),
    Tokens(i32),
    Heartbeat,
    TurnEnded(Option<i64>),
    Checkpoint(Vec<u8>),
    Mcp(u32, u8, u8),
    Abort(u32),
    Native(u32),
    RequestContext(u32),
    GetBlob(u32, Vec<u8>),
    SetBlob(u32, Vec<u8>),
    Query(u32),
    EndOk,
    EndError,
    EndGarbage(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        6 => "[a-zé ]{0,12}".prop_map(Msg::Text),
        2 => "[a-z ]{0,8}".prop_map(Msg::Thinking),
        2 => any::<i32>().prop_map(Msg::Tokens),
        3 => Just(Msg::Heartbeat),
        1 => proptest::option::of(any::<i64>()).prop_map(Msg::TurnEnded),
        2 => proptest::collection::vec(any::<u8>(), 0..8).prop_map(Msg::Checkpoint),
        5 => (0u32..6, 0u8..3, 0u8..4).prop_map(|(e, t, c)| Msg::Mcp(e, t, c)),
        1 => (0u32..6).prop_map(Msg::Abort),
        1 => (0u32..6).prop_map(Msg::Native),
        1 => (0u32..3).prop_map(Msg::RequestContext),
        1 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(i, b)| Msg::GetBlob(i, b)),
        1 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(i, b)| Msg::SetBlob(i, b)),
        1 => any::<u32>().prop_map(Msg::Query),
        1 => Just(Msg::EndOk),
        1 => Just(Msg::EndError),
        1 => proptest::collection::vec(any::<u8>(), 0..6).prop_map(Msg::EndGarbage),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        14 => (proptest::collection::vec(msg(), 1..6), proptest::collection::vec(1usize..40, 0..4))
            .prop_map(|(m, c)| Step::Frames(m, c)),
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Step::Raw),
        1 => (prop_oneof![Just(200u16), Just(401), Just(503)], any::<bool>())
            .prop_map(|(s, ok)| Step::Response(s, ok)),
        4 => prop_oneof![4 => 0u64..300, 1 => 0u64..200_000].prop_map(Step::Wait),
        1 => (proptest::collection::vec(0usize..6, 0..4), any::<bool>())
            .prop_map(|(i, b)| Step::Results(i, b)),
        3 => Just(Step::ResultsAll),
        1 => Just(Step::End),
        1 => (0u8..4).prop_map(Step::Transport),
        1 => Just(Step::ClientGone),
        1 => prop_oneof![Just(400u16), Just(429)].prop_map(Step::AppendFailed),
    ]
}

fn encode(m: &Msg, out: &mut BytesMut) {
    let u = |x| Sm::InteractionUpdate(pb::InteractionUpdate { message: Some(x) });
    let exec = |id, a| {
        Sm::ExecServerMessage(Box::new(pb::ExecServerMessage {
            id,
            exec_id: format!("x{id}"),
            message: Some(a),
            span_context: None,
        }))
    };
    let sm = match m {
        Msg::Text(t) => u(Iu::TextDelta(pb::TextDeltaUpdate { text: t.clone() })),
        Msg::Thinking(t) => u(Iu::ThinkingDelta(pb::ThinkingDeltaUpdate {
            text: t.clone(),
            thinking_style: None,
        })),
        Msg::Tokens(n) => u(Iu::TokenDelta(pb::TokenDeltaUpdate { tokens: *n })),
        Msg::Heartbeat => u(Iu::Heartbeat(pb::HeartbeatUpdate {})),
        Msg::TurnEnded(o) => u(Iu::TurnEnded(pb::TurnEndedUpdate {
            output_tokens: *o,
            input_tokens: *o,
            ..Default::default()
        })),
        Msg::Checkpoint(b) => Sm::ConversationCheckpointUpdate(Bytes::from(b.clone())),
        Msg::Mcp(id, tool, call) => {
            let name = ["Read", "Grep", "Other"][usize::from(*tool)];
            exec(
                *id,
                Args::McpArgs(pb::McpArgs {
                    name: format!("cursorpool-{name}"),
                    args: HashMap::new(),
                    tool_call_id: if *call == 0 {
                        String::new()
                    } else {
                        format!("call_{call}")
                    },
                    provider_identifier: "cursorpool".into(),
                    tool_name: name.into(),
                    ..Default::default()
                }),
            )
        }
        Msg::Abort(id) => Sm::ExecServerControlMessage(pb::ExecServerControlMessage {
            message: Some(pb::exec_server_control_message::Message::Abort(
                pb::ExecServerAbort { id: *id },
            )),
        }),
        Msg::Native(id) => exec(
            *id,
            Args::ShellStreamArgs(pb::ShellArgs {
                command: "ls".into(),
                ..Default::default()
            }),
        ),
        Msg::RequestContext(id) => exec(
            *id,
            Args::RequestContextArgs(pb::RequestContextArgs::default()),
        ),
        Msg::GetBlob(id, b) => Sm::KvServerMessage(Box::new(pb::KvServerMessage {
            id: *id,
            message: Some(pb::kv_server_message::Message::GetBlobArgs(
                pb::GetBlobArgs {
                    blob_id: Bytes::from(b.clone()),
                },
            )),
            span_context: None,
        })),
        Msg::SetBlob(id, b) => {
            let data = Bytes::from(b.clone());
            let blob_id = if id % 2 == 0 {
                Bytes::copy_from_slice(&cursorpool_core::turn::blob_id(&data))
            } else {
                Bytes::from_static(b"bad id")
            };
            Sm::KvServerMessage(Box::new(pb::KvServerMessage {
                id: *id,
                message: Some(pb::kv_server_message::Message::SetBlobArgs(
                    pb::SetBlobArgs {
                        blob_id,
                        blob_data: data,
                    },
                )),
                span_context: None,
            }))
        }
        Msg::Query(id) => Sm::InteractionQuery(pb::InteractionQuery {
            id: *id,
            query: (id % 3 != 0).then_some(
                pb::interaction_query::Query::AskQuestionInteractionQuery(Default::default()),
            ),
        }),
        Msg::EndOk => return encode_end_stream(b"{}", out).unwrap(),
        Msg::EndError => {
            return encode_end_stream(
                br#"{"error":{"code":"resource_exhausted","message":"quota"}}"#,
                out,
            )
            .unwrap();
        }
        Msg::EndGarbage(b) => return encode_end_stream(b, out).unwrap(),
    };
    encode_proto(&pb::AgentServerMessage { message: Some(sm) }, out).unwrap();
}

/// Checks the event stream's grammar. Only a client that went away may leave its reply open
/// (nobody reads it any more).
fn check(events: &[TurnEvent], client_gone: bool) -> Result<(), TestCaseError> {
    let mut open = false; // a reply is between Start and Stop/Error
    let mut terminal_at = None;
    for (i, e) in events.iter().enumerate() {
        prop_assert!(terminal_at.is_none(), "event after the terminal one: {e:?}");
        match e {
            TurnEvent::Reply(ReplyEvent::Start { usage, .. }) => {
                prop_assert!(!open, "Start inside an open reply");
                prop_assert!(usage.input_tokens > 0);
                open = true;
            }
            TurnEvent::Reply(ReplyEvent::Stop { .. } | ReplyEvent::Error(_)) => {
                prop_assert!(open, "Stop/Error outside a reply");
                open = false;
            }
            TurnEvent::Reply(_) => prop_assert!(open, "content outside a reply: {e:?}"),
            TurnEvent::Parked { tool_use_ids } => {
                prop_assert!(!open && !tool_use_ids.is_empty());
            }
            TurnEvent::UpstreamClose => {
                prop_assert!(
                    !open || client_gone,
                    "the reply must be closed before the run ends"
                );
            }
            TurnEvent::Finished { .. } | TurnEvent::Failed { .. } => {
                prop_assert_eq!(
                    i.checked_sub(1).map(|p| &events[p]),
                    Some(&TurnEvent::UpstreamClose)
                );
                terminal_at = Some(i);
            }
        }
    }
    Ok(())
}

fn new_turn(now: Instant, framing: Framing) -> Turn {
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![Part::Text("go".into())],
        }],
        tools: ["Read", "Grep"]
            .iter()
            .map(|n| ToolSpec {
                name: (*n).into(),
                description: String::new(),
                input_schema: None,
            })
            .collect(),
        stop_sequences: vec!["zz".into()],
        max_tokens: Some(500),
        ..ChatRequest::default()
    };
    let p = TurnParams::from_chat(
        &req,
        ApiKind::Anthropic,
        &ModelMap::default(),
        "c".into(),
        framing,
        IdSource::new(0),
    );
    Turn::new(p, now)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_upstream_scripts_never_panic_or_speak_after_the_end(
        steps in proptest::collection::vec(step(), 0..30),
        bidi in any::<bool>(),
    ) {
        let mut now = epoch();
        let framing = if bidi {
            Framing::BidiAppend { request_id: "r".into() }
        } else {
            Framing::Run
        };
        let mut turn = new_turn(now, framing);
        let mut events = Vec::new();
        let mut gone = false;
        let drain = |turn: &mut Turn, events: &mut Vec<TurnEvent>| {
            while turn.poll_transmit().is_some() {}
            while let Some(e) = turn.poll_event() {
                events.push(e);
            }
        };
        drain(&mut turn, &mut events);
        let mut headers_ok = http::HeaderMap::new();
        headers_ok.insert("content-type", "application/connect+proto".parse().unwrap());
        for s in steps {
            match s {
                Step::Frames(msgs, cuts) => {
                    let mut b = BytesMut::new();
                    for m in &msgs {
                        encode(m, &mut b);
                    }
                    let mut rest = b.freeze();
                    for c in cuts {
                        let at = c.min(rest.len());
                        let head = rest.split_to(at);
                        turn.handle_upstream_data(&head, now);
                        drain(&mut turn, &mut events);
                    }
                    turn.handle_upstream_data(&rest, now);
                }
                Step::Raw(b) => turn.handle_upstream_data(&b, now),
                Step::Response(status, ok) => {
                    let h = if ok { headers_ok.clone() } else { http::HeaderMap::new() };
                    turn.handle_upstream_response(status, &h, now);
                }
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    turn.handle_timeout(now);
                }
                Step::Results(picks, bogus) => {
                    let parked = turn.parked_tool_use_ids().to_vec();
                    let mut results: Vec<ToolResultInput> = picks
                        .iter()
                        .filter_map(|i| parked.get(*i))
                        .map(|id| ToolResultInput {
                            tool_use_id: id.clone(),
                            content: vec![Part::Text("r".into())],
                            is_error: false,
                        })
                        .collect();
                    if bogus {
                        results.push(ToolResultInput {
                            tool_use_id: "bogus".into(),
                            content: vec![],
                            is_error: true,
                        });
                    }
                    let before = events.len();
                    if turn.handle_tool_results(results, now).is_err() {
                        drain(&mut turn, &mut events);
                        prop_assert_eq!(events.len(), before, "a failed resume emits nothing");
                    }
                }
                Step::ResultsAll => {
                    let results = turn
                        .parked_tool_use_ids()
                        .iter()
                        .rev()
                        .map(|id| ToolResultInput {
                            tool_use_id: id.clone(),
                            content: vec![Part::Text("r".into())],
                            is_error: false,
                        })
                        .collect();
                    let _ = turn.handle_tool_results(results, now);
                }
                Step::End => turn.handle_upstream_end(now),
                Step::Transport(k) => {
                    let f = [
                        TransportFailure::ConnectionReset,
                        TransportFailure::RstStream { code: 2 },
                        TransportFailure::GoAway { code: 0 },
                        TransportFailure::Stalled,
                    ][usize::from(k)];
                    turn.handle_transport_failure(f, now);
                }
                Step::ClientGone => {
                    gone = true;
                    turn.handle_client_gone(now);
                }
                Step::AppendFailed(status) => {
                    turn.handle_append_failed(status, &http::HeaderMap::new(), b"", now);
                }
            }
            drain(&mut turn, &mut events);
            check(&events, gone)?;
            if turn.is_done() {
                prop_assert!(turn.poll_timeout().is_none());
            }
        }
        // Whatever state it is in, time alone ends it (stall) or it has ended.
        now += Duration::from_secs(3600);
        turn.handle_timeout(now);
        drain(&mut turn, &mut events);
        check(&events, gone)?;
        prop_assert!(turn.is_done(), "an hour of silence ends every run");
    }
}
