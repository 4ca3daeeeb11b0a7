//! Client tool calls waiting inline: the downstream reply ends with the calls, the upstream run
//! stays open (heartbeats flowing) and the results resume the same run into a new reply.
//! Also: batches of several calls, several batches, refused built-in tools, resume errors and
//! the registry of parked turns.

mod turn_support;

use std::time::Duration;

use cursorpool_core::chat::{Part, ReplyEvent, StopReason};
use cursorpool_core::turn::{ResumeError, ToolResultInput, TurnEvent};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Cm;
use cursorpool_proto::agent_v1::exec_client_message::Message as Res;
use turn_support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn tool_rig(wire: Wire, text: &str) -> Rig {
    let mut req = chat(text);
    req.tools = vec![tool("Read"), tool("Grep")];
    Rig::start(sim_config(), wire, params(&req, wire))
}

fn result(id: &str, text: &str) -> ToolResultInput {
    ToolResultInput {
        tool_use_id: id.to_owned(),
        content: vec![Part::Text(text.to_owned())],
        is_error: false,
    }
}

/// The tool calls of reply `n`: (id, name, input as JSON text).
fn tool_calls(rig: &Rig, n: usize) -> Vec<(String, String, String)> {
    rig.reply(n)
        .into_iter()
        .filter_map(|r| match r {
            ReplyEvent::ToolCall { id, name, input } => Some((
                id.clone(),
                name.clone(),
                serde_json::Value::Object(input.clone()).to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn parked_ids(rig: &Rig) -> Vec<String> {
    match rig.events.iter().rev().find_map(|e| match e {
        TurnEvent::Parked { tool_use_ids } => Some(tool_use_ids.clone()),
        _ => None,
    }) {
        Some(ids) => ids,
        None => panic!("no Parked event in {:?}", rig.events),
    }
}

fn stop_reason(events: &[&ReplyEvent]) -> Option<StopReason> {
    match events.last() {
        Some(ReplyEvent::Stop { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[test]
fn a_tool_call_parks_keeps_heartbeats_for_a_minute_and_resumes_the_same_run() {
    for wire in WIRES {
        let mut rig = tool_rig(wire, r#"please call Read({"path":"a.txt"})"#);
        rig.run_until_quiet(MINUTE);
        assert!(rig.turn.is_parked(), "{wire:?}: {:?}", rig.events);

        // The first reply ends with the call, in the client's own tool name.
        let calls = tool_calls(&rig, 0);
        assert_eq!(calls.len(), 1, "{wire:?}");
        let (id, name, input) = &calls[0];
        assert_eq!(
            (name.as_str(), input.as_str()),
            ("Read", r#"{"path":"a.txt"}"#)
        );
        assert_eq!(stop_reason(&rig.reply(0)), Some(StopReason::ToolUse));
        assert_eq!(parked_ids(&rig), vec![id.clone()]);
        assert!(!rig.upstream_closed);

        // Parked for a minute: heartbeats both ways, nothing times out.
        let before = rig.client_heartbeats();
        let events_before = rig.events.len();
        rig.advance(MINUTE);
        assert!(
            rig.client_heartbeats() - before >= 11,
            "{wire:?}: one per 5 s"
        );
        let exec_heartbeats = rig.sent_matching(|m| {
            matches!(
                m,
                Cm::ExecClientControlMessage(pb::ExecClientControlMessage {
                    message: Some(pb::exec_client_control_message::Message::Heartbeat(_))
                })
            )
        });
        assert!(
            exec_heartbeats.len() >= 15,
            "{wire:?}: one per 3 s per call"
        );
        assert_eq!(
            rig.events.len(),
            events_before,
            "{wire:?}: no events while parked"
        );
        assert!(rig.turn.is_parked());
        assert_eq!(rig.sim.open_runs(), 1);

        // The result resumes the same upstream run into a fresh reply.
        let now = rig.now;
        rig.turn
            .handle_tool_results(vec![result(id, "file contents")], now)
            .expect("resume");
        rig.run_until_quiet(MINUTE);
        let second = rig.reply(1);
        let (ReplyEvent::Start { id: first_id, .. }, ReplyEvent::Start { id: second_id, .. }) =
            (rig.reply(0)[0], second[0])
        else {
            panic!("both replies begin with Start");
        };
        assert_ne!(
            first_id, second_id,
            "a fresh reply id per downstream response"
        );
        let text = text_of(&second);
        assert!(text.contains("tool results: 1"), "{wire:?}: {text}");
        assert!(
            text.contains("result of cursorpool-Read: file contents"),
            "{wire:?}: {text}"
        );
        assert_eq!(stop_reason(&second), Some(StopReason::EndTurn));
        assert!(matches!(
            rig.last_event(),
            Some(TurnEvent::Finished {
                checkpoint: Some(_),
                ..
            })
        ));
        let c = rig.sim.account_counters("a").expect("a");
        assert_eq!(c.runs, 1, "{wire:?}: the same upstream run was resumed");
        assert_eq!((c.tool_calls_issued, c.tool_results_answered), (1, 1));
        assert_eq!(c.exec_results_wrong_field, 0);
    }
}

#[test]
fn two_tool_calls_in_one_batch_answered_out_of_order() {
    for wire in WIRES {
        let mut rig = tool_rig(wire, r#"call Read({"path":"a"}) and call Grep({"q":"b"})"#);
        rig.run_until_quiet(MINUTE);
        let calls = tool_calls(&rig, 0);
        let names: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(names, ["Read", "Grep"], "{wire:?}: one reply, both calls");
        let ids = parked_ids(&rig);
        assert_eq!(ids, vec![calls[0].0.clone(), calls[1].0.clone()]);
        assert_eq!(
            rig.events
                .iter()
                .filter(|e| matches!(e, TurnEvent::Parked { .. }))
                .count(),
            1
        );

        let now = rig.now;
        rig.turn
            .handle_tool_results(
                vec![result(&ids[1], "grep hit"), result(&ids[0], "read body")],
                now,
            )
            .expect("resume");
        rig.run_until_quiet(MINUTE);
        let text = text_of(&rig.reply(1));
        assert!(text.contains("tool results: 2"), "{wire:?}: {text}");
        assert!(
            text.contains("result of cursorpool-Read: read body"),
            "{text}"
        );
        assert!(
            text.contains("result of cursorpool-Grep: grep hit"),
            "{text}"
        );
        assert!(matches!(rig.last_event(), Some(TurnEvent::Finished { .. })));
        let c = rig.sim.account_counters("a").expect("a");
        assert_eq!(
            (c.runs, c.tool_calls_issued, c.tool_results_answered),
            (1, 2, 2)
        );
    }
}

#[test]
fn two_batches_in_one_turn_make_three_replies_on_one_run() {
    let mut rig = tool_rig(Wire::Run, r#"call Read({"n":1}) then call Grep({"n":2})"#);
    rig.run_until_quiet(MINUTE);
    let first = parked_ids(&rig);
    let now = rig.now;
    rig.turn
        .handle_tool_results(vec![result(&first[0], "one")], now)
        .expect("first resume");
    rig.run_until_quiet(MINUTE);
    assert!(rig.turn.is_parked());
    assert_eq!(tool_calls(&rig, 1)[0].1, "Grep");
    assert_eq!(stop_reason(&rig.reply(1)), Some(StopReason::ToolUse));
    let second = parked_ids(&rig);
    assert_ne!(first, second);
    let now = rig.now;
    rig.turn
        .handle_tool_results(vec![result(&second[0], "two")], now)
        .expect("second resume");
    rig.run_until_quiet(MINUTE);
    let text = text_of(&rig.reply(2));
    assert!(text.contains("tool results: 2"), "{text}");
    assert_eq!(rig.sim.account_counters("a").expect("a").runs, 1);
}

#[test]
fn a_native_shell_exec_is_refused_on_the_right_field_and_the_turn_finishes() {
    for wire in WIRES {
        let mut rig = tool_rig(
            wire,
            "native shell(ls -la) and native shell_stream(pwd) and native read(/etc/passwd)",
        );
        rig.run_until_quiet(MINUTE);
        assert!(matches!(rig.last_event(), Some(TurnEvent::Finished { .. })));
        assert!(
            tool_calls(&rig, 0).is_empty(),
            "built-in tools never reach the client"
        );
        let c = rig.sim.account_counters("a").expect("a");
        assert_eq!(c.exec_results_wrong_field, 0, "{wire:?}");
        for kind in ["shell", "shell_stream", "read"] {
            assert_eq!(
                c.native_execs_rejected.get(kind),
                Some(&1),
                "{wire:?}: {kind}"
            );
        }
        let shell_rejections = rig.sent_matching(|m| {
            matches!(m, Cm::ExecClientMessage(pb::ExecClientMessage {
                message: Some(Res::ShellResult(pb::ShellResult {
                    result: Some(pb::shell_result::Result::Rejected(r)), ..
                })), ..
            }) if r.command == "ls -la")
        });
        assert_eq!(
            shell_rejections.len(),
            1,
            "shell_args → shell_result.rejected"
        );
        let stream_rejections = rig.sent_matching(|m| {
            matches!(
                m,
                Cm::ExecClientMessage(pb::ExecClientMessage {
                    message: Some(Res::ShellStream(pb::ShellStream {
                        event: Some(pb::shell_stream::Event::Rejected(_))
                    })),
                    ..
                })
            )
        });
        assert_eq!(
            stream_rejections.len(),
            1,
            "shell_stream_args → shell_stream"
        );
        let text = rig.text();
        assert!(text.contains("tool results: 3"), "{wire:?}: {text}");
    }
}

#[test]
fn results_for_unknown_or_missing_tool_use_ids_are_resume_errors() {
    let mut rig = tool_rig(Wire::Run, r#"call Read({}) and call Grep({})"#);
    rig.run_until_quiet(MINUTE);
    let ids = parked_ids(&rig);
    let sent_before = rig.sent.len();
    let now = rig.now;
    assert_eq!(
        rig.turn
            .handle_tool_results(vec![result("toolu_nope", "x")], now),
        Err(ResumeError::UnknownToolUseId("toolu_nope".to_owned()))
    );
    assert_eq!(
        rig.turn
            .handle_tool_results(vec![result(&ids[0], "x")], now),
        Err(ResumeError::MissingToolResult(ids[1].clone()))
    );
    assert_eq!(
        rig.turn.handle_tool_results(
            vec![
                result(&ids[0], "x"),
                result(&ids[0], "y"),
                result(&ids[1], "z")
            ],
            now
        ),
        Err(ResumeError::DuplicateToolResult(ids[0].clone()))
    );
    rig.pump();
    assert_eq!(
        rig.sent.len(),
        sent_before,
        "nothing sent for a failed resume"
    );
    assert!(rig.turn.is_parked(), "still waiting for a proper answer");

    let all = vec![result(&ids[1], "b"), result(&ids[0], "a")];
    assert_eq!(rig.turn.handle_tool_results(all.clone(), now), Ok(()));
    assert_eq!(
        rig.turn.handle_tool_results(all, now),
        Err(ResumeError::NotParked)
    );
    rig.turn.handle_client_gone(now);
    rig.pump();
    assert_eq!(
        rig.turn.handle_tool_results(vec![], now),
        Err(ResumeError::Ended)
    );
}

#[test]
fn a_parked_turn_is_found_again_by_client_key_and_tool_use_ids() {
    let mut rig = tool_rig(Wire::Sse, r#"call Read({"path":"x"})"#);
    rig.run_until_quiet(MINUTE);
    let ids = parked_ids(&rig);
    rig.park("client-1");
    assert_eq!(rig.registry.len(), 1);
    rig.advance(MINUTE); // the parked turn keeps its heartbeats from inside the registry
    assert!(
        !rig.unpark("client-2", &ids),
        "another client cannot resume it"
    );
    assert!(!rig.unpark("client-1", &["toolu_other".to_owned()]));
    assert!(rig.unpark("client-1", &ids));
    assert!(rig.registry.is_empty());
    let now = rig.now;
    rig.turn
        .handle_tool_results(vec![result(&ids[0], "found it")], now)
        .expect("resume");
    rig.run_until_quiet(MINUTE);
    assert!(rig.text().contains("result of cursorpool-Read: found it"));
    assert_eq!(rig.sim.account_counters("a").expect("a").runs, 1);
}

#[test]
fn parked_turns_expire_after_their_ttl_and_are_cancelled_upstream() {
    let mut rig = tool_rig(Wire::Run, r#"call Read({})"#);
    rig.registry = cursorpool_core::turn::ParkedTurns::new(Duration::from_secs(10 * 60));
    rig.run_until_quiet(MINUTE);
    let ids = parked_ids(&rig);
    let parked_at = rig.now;
    rig.park("client-1");
    assert_eq!(
        rig.registry.poll_timeout(),
        Some(parked_at + Duration::from_secs(600))
    );
    rig.advance(Duration::from_secs(9 * 60));
    assert_eq!((rig.registry.len(), rig.expired), (1, 0));
    assert_eq!(rig.sim.open_runs(), 1, "heartbeats kept the run alive");
    rig.advance(Duration::from_secs(2 * 60));
    assert_eq!((rig.registry.len(), rig.expired), (0, 1));
    assert!(!rig.unpark("client-1", &ids));
    assert!(rig.upstream_closed);
    assert!(matches!(
        rig.last_event(),
        Some(TurnEvent::Finished {
            checkpoint: None,
            ..
        })
    ));
    let c = rig.sim.account_counters("a").expect("a");
    assert_eq!(c.cancels, 1);
    assert_eq!(rig.sim.open_runs(), 0);
}

/// Tools prepared once by a `ToolCache` (as the proxy shares them between runs) give the very
/// same run request and request context as a turn that prepares its own.
#[test]
fn prepared_tools_give_the_same_run_request_and_request_context() {
    use cursorpool_core::turn::ToolCache;
    let mut req = chat("call Read");
    req.tools = vec![tool("Read"), tool("Grep")];
    let own = Rig::start(sim_config(), Wire::Run, params(&req, Wire::Run));
    let mut cache = ToolCache::new(2);
    let mut p = params(&req, Wire::Run);
    p.prepared_tools = Some(cache.prepare(&req.tools));
    let shared = Rig::start(sim_config(), Wire::Run, p);
    assert_eq!(own.sent[0], shared.sent[0], "run request");
    let context = |rig: &Rig| {
        rig.sent
            .iter()
            .find_map(|m| match &m.message {
                Some(Cm::ExecClientMessage(e)) => match &e.message {
                    Some(Res::RequestContextResult(r)) => Some(r.clone()),
                    _ => None,
                },
                _ => None,
            })
            .expect("the request context was answered")
    };
    let (a, b) = (context(&own), context(&shared));
    assert_eq!(a, b);
    let Some(pb::request_context_result::Result::Success(s)) = &a.result else {
        panic!("request context refused: {a:?}");
    };
    let tools = &s.request_context.as_ref().expect("context").tools;
    assert_eq!(tools.len(), 2);
    // A prepared list for other tools is not used: the turn prepares its own.
    let mut other = params(&req, Wire::Run);
    other.prepared_tools = Some(cache.prepare(&[tool("Write")]));
    let fallback = Rig::start(sim_config(), Wire::Run, other);
    assert_eq!(own.sent[0], fallback.sent[0]);
}
