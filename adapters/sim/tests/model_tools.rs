//! Tool calls through the sans-IO model: MCP calls (several per round, answered out of order,
//! several rounds), native execs answered on the right or the wrong field, heartbeats while
//! waiting.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::exec_client_message::Message as Res;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;

const MINUTE: Duration = Duration::from_secs(60);

fn tools() -> Vec<pb::McpToolDefinition> {
    vec![tool("srv", "echo"), tool("srv", "add")]
}

fn tool_policy() -> Policy {
    Policy {
        tools: tools(),
        ..Policy::default()
    }
}

#[test]
fn two_mcp_calls_answered_out_of_order_both_reach_the_model() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let text = r#"please call echo({"text":"hi"}) and call srv-add({"a":1,"b":2})"#;
    let req = run_request(text, Some(Bytes::new()), &tools(), "default", &[]);
    let mut run = h.open_h2(&token, tool_policy(), &req);
    h.pump(&mut run);

    // Both calls issued back-to-back, with started updates and partial args first.
    let calls = run.client.pending_mcp.clone();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].0, calls[1].0, "distinct exec ids");
    assert_eq!(calls[0].1.tool_name, "echo");
    assert_eq!(calls[0].1.name, "srv-echo");
    assert_eq!(calls[0].1.provider_identifier, "srv");
    assert_eq!(calls[1].1.tool_name, "add");
    assert!(calls[1].1.args.contains_key("b"));
    assert_eq!(
        run.client.t.started,
        vec![
            calls[0].1.tool_call_id.clone(),
            calls[1].1.tool_call_id.clone()
        ]
    );
    assert!(run.client.t.partials >= 2);
    // While waiting: an intermediate checkpoint lists both pending calls; no turn_ended.
    let cp = decode_state(
        &run.client
            .t
            .last_checkpoint()
            .expect("intermediate checkpoint"),
    );
    assert_eq!(cp.pending_tool_calls.len(), 2);
    assert!(run.client.t.turn_ended.is_none());

    // Answer the second call first: still blocked.
    let replies = run.client.answer_mcp(calls[1].0, mcp_text("three"));
    for m in &replies {
        h.send(&mut run, m);
    }
    h.advance(&mut run, Duration::from_secs(20));
    assert!(run.client.t.turn_ended.is_none(), "waits for every result");
    assert!(run.client.t.completed.is_empty());

    let replies = run.client.answer_mcp(calls[0].0, mcp_text("hi back"));
    for m in &replies {
        h.send(&mut run, m);
    }
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished);
    assert_eq!(t.end_json.as_deref(), Some("{}"));
    assert_eq!(t.completed.len(), 2);
    assert!(t.text.contains("tool results: 2"), "{}", t.text);
    assert!(t.text.contains("result of srv-echo: hi back"), "{}", t.text);
    assert!(t.text.contains("result of srv-add: three"), "{}", t.text);
    let last = decode_state(&t.last_checkpoint().unwrap());
    assert!(last.pending_tool_calls.is_empty());

    let c = h.sim.account_counters("a").unwrap();
    assert_eq!((c.tool_calls_issued, c.tool_results_answered), (2, 2));
}

#[test]
fn tool_results_are_remembered_by_the_next_turn() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        auto_mcp: true,
        ..tool_policy()
    };
    let req = run_request(
        r#"call echo({"v":42})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, policy, &req);
    h.run_to_end(&mut run, MINUTE);
    assert!(
        run.client
            .t
            .text
            .contains(r#"result of srv-echo: echo: {"v":42}"#),
        "{}",
        run.client.t.text
    );
    let state = run.client.t.last_checkpoint().unwrap();

    let t2 = h.simple_turn(&token, "and now?", Some(state));
    assert!(
        t2.text.contains("user turns: 2; tool results: 1"),
        "{}",
        t2.text
    );
}

#[test]
fn then_makes_a_second_round_after_the_first_results() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        auto_mcp: true,
        ..tool_policy()
    };
    let req = run_request(
        r#"call echo({"n":1}) then call add({"n":2})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, policy, &req);
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert_eq!(t.mcp_calls.len(), 2);
    assert!(t.mcp_calls[0].0 < t.mcp_calls[1].0);
    assert!(t.text.contains("tool results: 2"));
    assert_eq!(t.completed.len(), 2);
}

#[test]
fn tools_declared_only_in_the_request_context_are_callable() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        auto_mcp: true,
        ..tool_policy()
    };
    let req = run_request("use tool echo", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, policy, &req);
    h.run_to_end(&mut run, MINUTE);
    assert_eq!(run.client.t.mcp_calls.len(), 1);
    assert!(run.client.t.text.contains("tools available: 2"));
}

#[test]
fn an_undeclared_tool_is_not_called() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let t = h.simple_turn(&token, "call nope({})", None);
    assert!(t.mcp_calls.is_empty());
    assert!(t.text.contains("unknown tool: nope"), "{}", t.text);
    assert!(t.finished);
}

#[test]
fn heartbeats_continue_during_a_sixty_second_tool_wait() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request(
        r#"call echo({})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, tool_policy(), &req);
    h.pump(&mut run);
    let before = run.client.t.heartbeats;
    h.advance(&mut run, MINUTE);
    let during = run.client.t.heartbeats - before;
    assert!(during >= 11, "a heartbeat every 5 s: {during}");
    assert!(run.client.t.turn_ended.is_none());
    let (id, _) = run.client.pending_mcp[0].clone();
    for m in run.client.answer_mcp(id, mcp_text("late")) {
        h.send(&mut run, &m);
    }
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.text.contains("result of srv-echo: late"));
}

#[test]
fn native_shell_stream_answered_on_the_wrong_field_hangs_forever() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        native: NativePolicy::RejectWrongField,
        ..Policy::default()
    };
    let req = run_request(
        "native shell_stream(rm -rf /tmp/x)",
        Some(Bytes::new()),
        &[],
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, policy, &req);
    h.pump(&mut run);
    let (id, args) = run.client.t.native_execs[0].clone();
    assert!(matches!(&args, Args::ShellStreamArgs(a) if a.command == "rm -rf /tmp/x"));
    let text_before = run.client.t.text.clone();
    h.advance(&mut run, 10 * MINUTE);
    let t = &run.client.t;
    assert!(t.turn_ended.is_none(), "no progress");
    assert_eq!(t.text, text_before, "no text either");
    assert!(t.heartbeats >= 100, "only heartbeats: {}", t.heartbeats);
    let c = h.sim.account_counters("a").unwrap();
    assert_eq!(c.exec_results_wrong_field, 1);
    assert_eq!(c.native_execs_issued.get("shell_stream"), Some(&1));
    assert!(c.native_execs_rejected.is_empty());

    // The right field unblocks it.
    h.send(&mut run, &exec_result(id, right_field_rejection(&args)));
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    assert!(
        run.client
            .t
            .text
            .contains("result of shell_stream: rejected: not supported")
    );
}

#[test]
fn native_execs_rejected_on_the_right_field_let_the_turn_finish() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let text = "native shell(ls) native read(/etc/passwd) native ls(/) then native grep(foo) native write(/x)";
    let req = run_request(text, Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished, "{:?}", t.end_json);
    assert_eq!(t.native_execs.len(), 5);
    assert!(
        t.text
            .contains("result of shell: rejected: not supported by this client")
    );
    assert!(
        t.text
            .contains("result of grep: error: not supported by this client")
    );
    assert!(t.text.contains("tool results: 5"));
    let c = h.sim.account_counters("a").unwrap();
    for k in ["shell", "read", "ls", "grep", "write"] {
        assert_eq!(c.native_execs_rejected.get(k), Some(&1), "{k}");
    }
    assert_eq!(c.exec_results_wrong_field, 0);
}

#[test]
fn shell_stream_output_and_exit_complete_the_exec() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        native: NativePolicy::Hold,
        ..Policy::default()
    };
    let req = run_request(
        "native shell_stream(echo hi)",
        Some(Bytes::new()),
        &[],
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, policy, &req);
    h.pump(&mut run);
    let (id, _) = run.client.t.native_execs[0].clone();
    let ev = |e| Res::ShellStream(pb::ShellStream { event: Some(e) });
    h.send(
        &mut run,
        &exec_result(
            id,
            ev(pb::shell_stream::Event::Start(pb::ShellStreamStart {})),
        ),
    );
    h.send(
        &mut run,
        &exec_result(
            id,
            ev(pb::shell_stream::Event::Stdout(pb::ShellStreamStdout {
                data: "hi\n".to_owned(),
            })),
        ),
    );
    h.pump(&mut run);
    assert!(
        run.client.t.turn_ended.is_none(),
        "output alone does not finish the exec"
    );
    h.send(
        &mut run,
        &exec_result(
            id,
            ev(pb::shell_stream::Event::Exit(pb::ShellStreamExit {
                code: 0,
                ..Default::default()
            })),
        ),
    );
    h.send(&mut run, &stream_close(id));
    h.run_to_end(&mut run, MINUTE);
    assert!(
        run.client
            .t
            .text
            .contains("result of shell_stream: hi\n (exit 0)"),
        "{}",
        run.client.t.text
    );
}

#[test]
fn an_exec_throw_fails_that_call_and_the_model_reports_it() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request(
        r#"call echo({})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, tool_policy(), &req);
    h.pump(&mut run);
    let (id, _) = run.client.pending_mcp[0].clone();
    let throw = pb::AgentClientMessage {
        message: Some(pb::agent_client_message::Message::ExecClientControlMessage(
            pb::ExecClientControlMessage {
                message: Some(pb::exec_client_control_message::Message::Throw(
                    pb::ExecClientThrow {
                        id,
                        error: "boom".to_owned(),
                        ..Default::default()
                    },
                )),
            },
        )),
    };
    h.send(&mut run, &throw);
    h.run_to_end(&mut run, MINUTE);
    assert!(
        run.client
            .t
            .text
            .contains("result of srv-echo: threw: boom"),
        "{}",
        run.client.t.text
    );
}

#[test]
fn mcp_error_results_are_reported_as_errors() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request(
        r#"call echo({})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, tool_policy(), &req);
    h.pump(&mut run);
    let (id, _) = run.client.pending_mcp[0].clone();
    let err = pb::McpResult {
        result: Some(pb::mcp_result::Result::Error(pb::McpError {
            error: "Unknown custom tool: echo".to_owned(),
        })),
    };
    for m in run.client.answer_mcp(id, err) {
        h.send(&mut run, &m);
    }
    h.run_to_end(&mut run, MINUTE);
    assert!(
        run.client
            .t
            .text
            .contains("result of srv-echo: error: Unknown custom tool: echo")
    );
}

#[test]
fn tool_calls_work_over_sse_too() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        auto_mcp: true,
        ..tool_policy()
    };
    let req = run_request(
        r#"call echo({"k":"v"}) call add({})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_sse(&token, "sse-tools", policy, &req);
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    assert!(run.client.t.text.contains("tool results: 2"));
}

#[test]
fn resume_action_from_an_intermediate_checkpoint_redoes_the_pending_turn() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request(
        r#"call echo({"r":1})"#,
        Some(Bytes::new()),
        &tools(),
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, tool_policy(), &req);
    h.pump(&mut run);
    let intermediate = run
        .client
        .t
        .last_checkpoint()
        .expect("intermediate checkpoint");
    assert_eq!(decode_state(&intermediate).pending_tool_calls.len(), 1);
    // The connection dies while the tool runs; the client resumes from that checkpoint.
    h.sim.handle_run_closed(run.id, h.now);
    h.pump(&mut run);

    let resume = pb::AgentClientMessage {
        message: Some(pb::agent_client_message::Message::RunRequest(
            pb::AgentRunRequest {
                conversation_state: Some(intermediate),
                action: Some(pb::ConversationAction {
                    action: Some(pb::conversation_action::Action::ResumeAction(
                        pb::ResumeAction::default(),
                    )),
                    triggering_auth_id: None,
                }),
                mcp_tools: Some(pb::McpTools { mcp_tools: tools() }),
                ..Default::default()
            },
        )),
    };
    let policy = Policy {
        auto_mcp: true,
        ..tool_policy()
    };
    let mut run = h.open_h2(&token, policy, &resume);
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished, "{:?}", t.end_json);
    assert!(t.text.contains("user turns: 1"), "{}", t.text);
    assert!(
        t.text
            .contains(r#"last user message: "call echo({"r":1})""#),
        "{}",
        t.text
    );
    assert!(t.text.contains("result of srv-echo: echo:"), "{}", t.text);
    assert_eq!(decode_state(&t.last_checkpoint().unwrap()).turns.len(), 1);
}
