//! Turns through the sans-IO model: text, follow-ups from checkpoints, tool calls, native
//! execs, thinking, cancel — driven in-process with simulated time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use prost::Message as _;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn simple_text_turn_streams_text_turn_ended_checkpoint_and_ok_end_stream() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let t = h.simple_turn(&token, "Hello there", None);

    assert!(t.finished, "response ended");
    assert_eq!(t.end_json.as_deref(), Some("{}"));
    assert!(
        t.text.contains("user turns: 1; tool results: 0"),
        "{}",
        t.text
    );
    assert!(
        t.text.contains("last user message: \"Hello there\""),
        "{}",
        t.text
    );
    // The first server message is the request-context exec (spec §6.1).
    assert!(matches!(
        &t.messages[0].message,
        Some(Sm::ExecServerMessage(e)) if matches!(e.message,
            Some(pb::exec_server_message::Message::RequestContextArgs(_)))
    ));
    // turn_ended, then the final checkpoint, then nothing but the end-stream.
    let ended_at = t.turn_ended_at.expect("turn_ended");
    let (cp_at, cp) = t.checkpoints.last().cloned().expect("checkpoint");
    assert_eq!(cp_at, ended_at + 1);
    assert_eq!(cp_at, t.messages.len() - 1);
    let ended = t.turn_ended.expect("turn_ended");
    assert!(ended.input_tokens.unwrap() > 0 && ended.output_tokens.unwrap() > 0);
    assert_eq!(ended.cache_read_tokens, Some(0));
    assert_eq!(ended.cache_write_tokens, Some(0));
    assert_eq!(t.token_deltas, ended.output_tokens.unwrap());
    // The checkpoint references only blobs the client stored: root prompt + one turn.
    let state = decode_state(&cp);
    assert_eq!(state.root_prompt_messages_json.len(), 1);
    assert_eq!(state.turns.len(), 1);
    assert!(state.pending_tool_calls.is_empty());
    let td = state.token_details.expect("token details");
    assert!(td.used_tokens > 0 && td.max_tokens >= td.used_tokens);
    for id in state.root_prompt_messages_json.iter().chain(&state.turns) {
        assert!(
            h.store.contains_key(id),
            "checkpoint references an unstored blob"
        );
    }
    // Text arrives in chunks of chunk_chars.
    let deltas: Vec<&str> = t
        .messages
        .iter()
        .filter_map(|m| match &m.message {
            Some(Sm::InteractionUpdate(pb::InteractionUpdate {
                message: Some(Iu::TextDelta(d)),
            })) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() > 1);
    assert!(deltas.iter().all(|d| d.chars().count() <= 16));

    let c = h.sim.account_counters("a").unwrap();
    assert_eq!((c.runs, c.turns_completed, c.resumed_runs), (1, 1, 0));
    assert_eq!(c.blobs_set as usize, t.sets);
    assert!(c.bytes_out as usize >= t.bytes && c.bytes_in > 0);
    assert_eq!(h.sim.open_runs(), 0);
}

#[test]
fn same_seed_and_inputs_give_identical_bytes() {
    let run = || {
        let mut h = Harness::new(config());
        let token = h.token("a");
        let t = h.simple_turn(&token, "determinism please", None);
        (t.last_checkpoint(), t.text)
    };
    assert_eq!(run(), run());
}

#[test]
fn follow_up_turn_rebuilds_history_through_get_blob_and_sees_turn_one() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let t1 = h.simple_turn(&token, "my name is Ada", None);
    let state1 = t1.last_checkpoint().expect("checkpoint");

    // Turn 2 without pre-fetched blobs: the sim must read every blob back.
    let t2 = h.simple_turn(&token, "what is my name?", Some(state1.clone()));
    assert_eq!(t2.error_code(), None, "{:?}", t2.end_json);
    assert!(
        t2.gets >= 3,
        "turn, user message and steps read back: {}",
        t2.gets
    );
    assert!(t2.text.contains("user turns: 2"), "{}", t2.text);
    assert!(
        t2.text
            .contains("previous user messages: [\"my name is Ada\"]"),
        "{}",
        t2.text
    );
    assert!(t2.text.contains("last user message: \"what is my name?\""));
    let state2 = decode_state(&t2.last_checkpoint().unwrap());
    let s1 = decode_state(&state1);
    assert_eq!(state2.turns.len(), 2);
    assert_eq!(state2.turns[0], s1.turns[0], "turn 1 kept by reference");
    assert_eq!(
        state2.root_prompt_messages_json,
        s1.root_prompt_messages_json
    );

    let c = h.sim.account_counters("a").unwrap();
    assert_eq!(c.resumed_runs, 1);
    assert_eq!(c.replayed_checkpoints, 1);
    assert_eq!(c.history_turns_seen, 1);
    assert_eq!(c.blobs_got as usize, t2.gets);
    assert_eq!(c.blobs_missing, 0);
}

#[test]
fn follow_up_with_pre_fetched_blobs_needs_no_get_blob() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let state1 = h
        .simple_turn(&token, "first", None)
        .last_checkpoint()
        .unwrap();
    let prefetch = h.prefetch_all();
    let req = run_request("second", Some(state1), &[], "default", &prefetch);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    let t = run.client.t;
    assert_eq!(t.gets, 0);
    assert!(t.text.contains("user turns: 2"), "{}", t.text);
    assert!(t.text.contains("\"first\""));
}

#[test]
fn third_turn_counts_all_previous_user_turns() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let s1 = h.simple_turn(&token, "one", None).last_checkpoint();
    let s2 = h.simple_turn(&token, "two", s1).last_checkpoint();
    let t3 = h.simple_turn(&token, "three", s2);
    assert!(t3.text.contains("user turns: 3"), "{}", t3.text);
    assert!(
        t3.text
            .contains("previous user messages: [\"one\", \"two\"]"),
        "{}",
        t3.text
    );
}

#[test]
fn history_seeded_in_root_prompt_messages_is_seen_by_the_model() {
    // A stateless proxy builds its own state from JSON messages (spec §6.3).
    let mut h = Harness::new(config());
    let token = h.token("a");
    let msgs = [
        r#"{"role":"system","content":"be terse"}"#,
        r#"{"role":"user","content":[{"type":"text","text":"earlier question"}]}"#,
        r#"{"role":"assistant","content":[{"type":"text","text":"earlier answer"}]}"#,
    ];
    let mut ids = Vec::new();
    let mut prefetch = Vec::new();
    for m in msgs {
        let id = Bytes::copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(m.as_bytes()));
        ids.push(id.clone());
        prefetch.push(pb::PreFetchedBlob {
            id,
            value: Bytes::from(m),
        });
    }
    let state = pb::ConversationStateStructure {
        root_prompt_messages_json: ids,
        ..Default::default()
    };
    let req = run_request(
        "now",
        Some(Bytes::from(state.encode_to_vec())),
        &[],
        "default",
        &prefetch,
    );
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    let t = run.client.t;
    assert!(t.text.contains("user turns: 2"), "{}", t.text);
    assert!(t.text.contains("\"earlier question\""));
    assert!(t.text.contains("system prompt: \"be terse\""), "{}", t.text);
    let c = h.sim.account_counters("a").unwrap();
    assert_eq!((c.resumed_runs, c.replayed_checkpoints), (1, 0));
}

#[test]
fn system_prompt_from_request_context_cloud_rule_reaches_the_model() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        cloud_rule: Some("You are a pirate".to_owned()),
        ..Policy::default()
    };
    let req = run_request("hi", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, policy, &req);
    h.run_to_end(&mut run, MINUTE);
    assert!(
        run.client
            .t
            .text
            .contains("system prompt: \"You are a pirate\"")
    );
}

#[test]
fn thinking_deltas_when_asked_or_with_a_thinking_model() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let t = h.simple_turn(&token, "think about it", None);
    assert!(t.thinking.contains("think about it"), "{}", t.thinking);
    assert!(t.messages.iter().any(|m| matches!(
        &m.message,
        Some(Sm::InteractionUpdate(pb::InteractionUpdate {
            message: Some(Iu::ThinkingCompleted(_))
        }))
    )));

    let req = run_request(
        "plain",
        Some(Bytes::new()),
        &[],
        "claude-4.5-sonnet-thinking",
        &[],
    );
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    assert!(!run.client.t.thinking.is_empty());
    assert!(
        run.client
            .t
            .text
            .contains("model: claude-4.5-sonnet-thinking")
    );

    let t = h.simple_turn(&token, "plain", None);
    assert!(t.thinking.is_empty());
}

#[test]
fn text_is_paced_by_token_interval_in_simulated_time() {
    let mut cfg = config();
    cfg.token_interval = Duration::from_millis(100);
    cfg.chunk_chars = 4;
    let mut h = Harness::new(cfg);
    let token = h.token("a");
    let req = run_request("pace me", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.pump(&mut run);
    let first = run.client.t.text.len();
    assert!(first <= 4, "only the first chunk goes out at once: {first}");
    h.advance(&mut run, Duration::from_millis(250));
    let later = run.client.t.text.len();
    assert!(later > first && later <= 12, "{first} → {later}");
    h.run_to_end(&mut run, 10 * MINUTE);
    assert!(run.client.t.finished);
    assert!(run.client.t.text.ends_with('.'));
}

#[test]
fn lorem_makes_long_answers() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let t = h.simple_turn(&token, "lorem 500", None);
    assert!(t.text.split_whitespace().count() > 500);
}

#[test]
fn cancel_action_stops_the_turn_with_turn_ended_and_ok_end_stream() {
    let mut cfg = config();
    cfg.token_interval = Duration::from_secs(1);
    let mut h = Harness::new(cfg);
    let token = h.token("a");
    let req = run_request("lorem 50", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.advance(&mut run, Duration::from_secs(3));
    assert!(!run.client.t.finished);
    h.send(&mut run, &cancel());
    h.pump(&mut run);
    let t = &run.client.t;
    assert!(t.finished);
    assert!(t.turn_ended.is_some());
    assert_eq!(t.end_json.as_deref(), Some("{}"));
    assert_eq!(h.sim.account_counters("a").unwrap().cancels, 1);
    assert_eq!(h.sim.account_counters("a").unwrap().turns_completed, 0);
}

#[test]
fn client_half_close_before_the_end_is_a_cancel() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let tools = [tool("srv", "echo")];
    let policy = Policy {
        tools: tools.to_vec(),
        ..Policy::default()
    };
    let req = run_request(
        r#"call echo({"x":1})"#,
        Some(Bytes::new()),
        &tools,
        "default",
        &[],
    );
    let mut run = h.open_h2(&token, policy, &req);
    h.pump(&mut run);
    assert_eq!(run.client.pending_mcp.len(), 1);
    h.sim.handle_run_closed(run.id, h.now);
    h.pump(&mut run);
    assert!(run.client.t.finished);
    assert!(run.client.t.turn_ended.is_some());
    assert_eq!(h.sim.account_counters("a").unwrap().cancels, 1);
    assert_eq!(h.sim.open_runs(), 0);
}

#[test]
fn sse_transport_runs_a_full_turn_through_bidi_append() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request("over http/1.1", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_sse(&token, "req-sse-1", Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished);
    assert_eq!(t.end_json.as_deref(), Some("{}"));
    assert!(t.text.contains("over http/1.1"));
    let c = h.sim.counters();
    assert!(c.bidi_appends >= 3);
    assert_eq!(c.bidi_duplicates, 0);
    // Appends after the end are accepted and dropped.
    let late = h.append(&token, "req-sse-1", 99, &heartbeat());
    assert_eq!(late.status, 200);
}
