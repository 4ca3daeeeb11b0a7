//! Text turns through the turn machine against the simulated backend, over both framings:
//! the reply's shape, usage, checkpoints, thinking, stop sequences, big prompts, and the
//! conversation's blob store across turns.

mod turn_support;

use std::time::Duration;

use cursorpool_core::chat::{ReplyEvent, StopReason};
use cursorpool_core::turn::TurnEvent;
use cursorpool_proto::agent_v1 as pb;
use turn_support::*;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_text_turn_streams_the_answer_and_finishes_with_a_checkpoint_on_both_framings() {
    for wire in WIRES {
        let mut rig = Rig::ask(wire, "Hello there");
        rig.run_until_quiet(MINUTE);
        let replies = rig.replies();
        let ReplyEvent::Start { id, model, usage } = replies[0] else {
            panic!("{wire:?}: first event must be Start: {:?}", replies[0]);
        };
        assert!(id.starts_with("msg_"), "{id}");
        assert_eq!(model, "claude-test");
        assert!(usage.input_tokens > 0, "input tokens are never 0");
        let text = rig.text();
        assert!(
            text.starts_with("user turns: 1; tool results: 0; last user message: \"Hello there\""),
            "{wire:?}: {text}"
        );
        let ReplyEvent::Stop {
            reason,
            stop_sequence,
            usage,
        } = replies.last().expect("stop")
        else {
            panic!("{wire:?}: last reply event must be Stop");
        };
        assert_eq!((*reason, stop_sequence), (StopReason::EndTurn, &None));
        assert!(usage.output_tokens > 0, "{wire:?}: {usage:?}");
        assert!(
            replies[1..replies.len() - 1]
                .iter()
                .all(|r| matches!(r, ReplyEvent::TextDelta(_))),
            "{wire:?}: only text between Start and Stop"
        );
        let n = rig.events.len();
        assert_eq!(rig.events[n - 2], TurnEvent::UpstreamClose);
        let TurnEvent::Finished { checkpoint, usage } = &rig.events[n - 1] else {
            panic!("{wire:?}: {:?}", rig.events[n - 1]);
        };
        assert!(checkpoint.is_some(), "{wire:?}");
        assert!(usage.output_tokens > 0);
        let c = rig.sim.account_counters("a").expect("account");
        assert_eq!((c.runs, c.turns_completed), (1, 1), "{wire:?}");
        assert!(
            rig.turn.blobs().len() >= 3,
            "the sim stored blobs with the client"
        );
        if wire == Wire::Sse {
            assert_eq!(rig.failed_appends, 0);
            assert!(rig.sim.counters().bidi_appends >= 3);
        }
    }
}

#[test]
fn the_run_request_declares_prefixed_tools_and_the_context_carries_the_system_prompt() {
    let mut req = chat("what is your system prompt?");
    req.system = vec!["Be terse.".to_owned(), "Answer in English.".to_owned()];
    req.tools = vec![tool("Read")];
    let mut rig = Rig::start(sim_config(), Wire::Run, params(&req, Wire::Run));
    rig.run_until_quiet(MINUTE);
    let text = rig.text();
    assert!(
        text.contains("system prompt: \"Be terse.\n\nAnswer in English.\""),
        "{text}"
    );
    assert!(text.contains("tools available: 1"), "{text}");
    let Some(pb::agent_client_message::Message::RunRequest(run)) = &rig.sent[0].message else {
        panic!("the run request goes first");
    };
    let tools = &run.mcp_tools.as_ref().expect("mcp_tools").mcp_tools;
    assert_eq!(tools[0].name, "cursorpool-Read");
    assert_eq!(tools[0].tool_name, "Read");
    assert_eq!(run.conversation_state.as_deref(), Some(&[][..]));
    assert_eq!(run.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(
        run.requested_model.as_ref().map(|m| m.model_id.as_str()),
        Some("default")
    );
}

#[test]
fn thinking_deltas_come_before_the_answer() {
    for wire in WIRES {
        let mut rig = Rig::ask(wire, "think about it, then answer");
        rig.run_until_quiet(MINUTE);
        let replies = rig.replies();
        let first_thinking = replies
            .iter()
            .position(|r| matches!(r, ReplyEvent::ThinkingDelta(_)))
            .expect("thinking deltas");
        let first_text = replies
            .iter()
            .position(|r| matches!(r, ReplyEvent::TextDelta(_)))
            .expect("text deltas");
        assert!(first_thinking < first_text, "{wire:?}");
        let thinking: String = replies
            .iter()
            .filter_map(|r| match r {
                ReplyEvent::ThinkingDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(!thinking.is_empty());
        assert!(matches!(rig.last_event(), Some(TurnEvent::Finished { .. })));
    }
}

#[test]
fn a_one_mib_user_text_goes_through() {
    for wire in WIRES {
        let big = format!("BEGIN {} END", "x".repeat(1024 * 1024));
        let mut rig = Rig::ask(wire, &big);
        rig.run_until_quiet(MINUTE);
        assert!(
            rig.text().contains("last user message: \"BEGIN xxxx"),
            "{wire:?}"
        );
        assert!(matches!(rig.last_event(), Some(TurnEvent::Finished { .. })));
        let c = rig.sim.account_counters("a").expect("account");
        assert!(c.bytes_in > 1024 * 1024, "{wire:?}: {}", c.bytes_in);
    }
}

#[test]
fn a_stop_sequence_cuts_the_text_and_cancels_upstream() {
    for wire in WIRES {
        let mut req = chat("Hello there");
        req.stop_sequences = vec!["tool results".to_owned()];
        let mut rig = Rig::start(sim_config(), wire, params(&req, wire));
        rig.run_until_quiet(MINUTE);
        assert_eq!(rig.text(), "user turns: 1; ", "{wire:?}");
        let replies = rig.replies();
        assert!(matches!(
            replies.last(),
            Some(ReplyEvent::Stop {
                reason: StopReason::StopSequence,
                stop_sequence: Some(s),
                ..
            }) if s == "tool results"
        ));
        let cancels = rig.sent_matching(|m| {
            matches!(
                m,
                pb::agent_client_message::Message::ConversationAction(pb::ConversationAction {
                    action: Some(pb::conversation_action::Action::CancelAction(_)),
                    ..
                })
            )
        });
        assert_eq!(cancels.len(), 1, "{wire:?}");
        assert!(rig.upstream_closed);
        assert!(matches!(
            rig.last_event(),
            Some(TurnEvent::Finished {
                checkpoint: None,
                ..
            })
        ));
        assert_eq!(rig.sim.account_counters("a").expect("a").cancels, 1);
    }
}

#[test]
fn max_tokens_ends_the_reply_and_the_run() {
    let mut req = chat("lorem 400");
    req.max_tokens = Some(5);
    let mut rig = Rig::start(sim_config(), Wire::Run, params(&req, Wire::Run));
    rig.run_until_quiet(MINUTE);
    assert!(matches!(
        rig.replies().last(),
        Some(ReplyEvent::Stop {
            reason: StopReason::MaxTokens,
            ..
        })
    ));
    assert!(rig.text().len() < 200, "{}", rig.text());
    assert!(matches!(rig.last_event(), Some(TurnEvent::Finished { .. })));
}

#[test]
fn the_next_turn_replays_the_checkpoint_with_the_same_blob_store() {
    let mut rig = Rig::ask(Wire::Run, "first question");
    rig.run_until_quiet(MINUTE);
    let Some(TurnEvent::Finished {
        checkpoint: Some(state),
        ..
    }) = rig.last_event().cloned()
    else {
        panic!("first turn must finish with a checkpoint");
    };
    let blobs = rig.turn.blobs().clone();

    // Second turn on the same sim: the state replayed byte-for-byte, the blobs answered from
    // the store (half pre-fetched, the rest by get_blob).
    let mut p = params(&chat("second question"), Wire::Run);
    let mut prefetch = blobs.prefetch_for(&state);
    assert!(!prefetch.is_empty());
    prefetch.truncate(prefetch.len() / 2);
    p.pre_fetched_blobs = prefetch;
    p.conversation_state = Some(state);
    p.blobs = blobs;
    rig.next_run(p);
    rig.run_until_quiet(MINUTE);
    let text = rig.text();
    assert!(text.contains("user turns: 2"), "{text}");
    assert!(
        text.contains("previous user messages: [\"first question\"]"),
        "{text}"
    );
    let c = rig.sim.account_counters("a").expect("a");
    assert_eq!((c.replayed_checkpoints, c.blobs_missing), (1, 0));
}
