//! Failures of a run against the simulated backend: what the turn reports, whether the
//! downstream reply had begun (a retry on another account is transparent only before), and
//! that an error after the first byte is visible as an error, never a silent stop.

mod turn_support;

use std::time::Duration;

use cursorpool_core::chat::ReplyEvent;
use cursorpool_core::classify::{Classification, FailureKind};
use cursorpool_core::connect::code::Code;
use cursorpool_core::turn::TurnEvent;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_sim::model::{Fault, FaultRule, FaultRuns, Quota, SimConfig};
use turn_support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn with_fault(fault: Fault) -> SimConfig {
    let mut cfg = sim_config();
    cfg.faults = vec![FaultRule {
        account: None,
        runs: FaultRuns::All,
        fault,
    }];
    cfg
}

/// The terminal `Failed` event (asserting it is last, right after `UpstreamClose`).
fn failure(rig: &Rig) -> (Classification, bool) {
    let n = rig.events.len();
    assert!(n >= 2, "{:?}", rig.events);
    assert_eq!(rig.events[n - 2], TurnEvent::UpstreamClose);
    match &rig.events[n - 1] {
        TurnEvent::Failed {
            classification,
            downstream_started,
        } => (classification.clone(), *downstream_started),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn quota_exhaustion_before_the_first_byte_fails_as_429_without_a_reply() {
    for wire in WIRES {
        let mut cfg = sim_config();
        cfg.accounts[0].quota = Quota {
            requests: Some(0),
            tokens: None,
        };
        let mut rig = Rig::start(cfg, wire, params(&chat("hello"), wire));
        rig.run_until_quiet(MINUTE);
        let (c, started) = failure(&rig);
        assert_eq!(
            (c.kind, c.client_status),
            (FailureKind::QuotaExhausted, 429)
        );
        assert!(c.try_another_account, "another account may serve it");
        assert!(!started, "{wire:?}: nothing reached the client");
        assert!(!rig.turn.downstream_started());
        assert!(rig.replies().is_empty(), "{wire:?}: {:?}", rig.replies());
    }
}

#[test]
fn an_error_after_the_first_delta_is_an_error_event_then_a_started_failure() {
    for wire in WIRES {
        let mut rig = Rig::start(
            with_fault(Fault::ErrorAfter {
                after_updates: 14,
                code: Code::Unavailable,
                cursor_error: Some(CursorError::ProviderError as i32),
            }),
            wire,
            params(&chat("lorem 200"), wire),
        );
        rig.run_until_quiet(MINUTE);
        assert!(!rig.text().is_empty(), "{wire:?}: some text went out first");
        let (c, started) = failure(&rig);
        assert_eq!(c.kind, FailureKind::ProviderTransient);
        assert!(started);
        let replies = rig.replies();
        assert!(matches!(replies[0], ReplyEvent::Start { .. }));
        assert_eq!(replies.last(), Some(&&ReplyEvent::Error(c.clone())));
        assert!(
            !replies.iter().any(|r| matches!(r, ReplyEvent::Stop { .. })),
            "never a silent normal stop"
        );
    }
}

#[test]
fn a_stalled_upstream_fails_as_stalled_after_the_stall_timeout() {
    for wire in WIRES {
        let mut rig = Rig::start(
            with_fault(Fault::Stall { after_updates: 3 }),
            wire,
            params(&chat("hello"), wire),
        );
        let started_at = rig.now;
        rig.run_until_quiet(5 * MINUTE);
        let (c, started) = failure(&rig);
        assert_eq!(c.kind, FailureKind::Transport);
        assert!(c.message.contains("stalled"), "{}", c.message);
        assert!(c.try_another_account);
        assert!(!started);
        let elapsed = rig.now - started_at;
        assert!(elapsed >= Duration::from_secs(90), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(92), "{elapsed:?}");
        assert!(
            rig.client_heartbeats() >= 17,
            "{wire:?}: heartbeats until the end"
        );
    }
}

#[test]
fn a_reset_before_the_first_byte_is_retryable_and_unstarted() {
    let mut rig = Rig::start(
        with_fault(Fault::RstStream {
            after_updates: 0,
            code: 7,
        }),
        Wire::Run,
        params(&chat("hello"), Wire::Run),
    );
    rig.run_until_quiet(MINUTE);
    let (c, started) = failure(&rig);
    assert_eq!(c.kind, FailureKind::Transport);
    assert!(c.try_another_account && !started);
}

#[test]
fn an_unknown_token_fails_as_unauthenticated_with_a_refresh_first() {
    let mut rig = Rig::ask(Wire::Run, "hello");
    rig.token = "not-a-token".to_owned();
    let p = params(&chat("again"), Wire::Run);
    rig.next_run(p);
    rig.run_until_quiet(MINUTE);
    let (c, started) = failure(&rig);
    assert_eq!(
        (c.kind, c.client_status),
        (FailureKind::Unauthenticated, 401)
    );
    assert!(c.refresh_token_first && !started);
}

#[test]
fn a_connection_dropped_after_turn_ended_and_the_final_checkpoint_still_finishes() {
    let mut clean = Rig::ask(Wire::Run, "hello");
    clean.run_until_quiet(MINUTE);
    let n = u32::try_from(clean.server_messages).expect("small");
    let mut rig = Rig::start(
        with_fault(Fault::DropConnection { after_updates: n }),
        Wire::Run,
        params(&chat("hello"), Wire::Run),
    );
    rig.run_until_quiet(MINUTE);
    assert_eq!(rig.server_messages, clean.server_messages);
    assert!(matches!(
        rig.last_event(),
        Some(TurnEvent::Finished {
            checkpoint: Some(_),
            ..
        })
    ));

    // One message fewer (the final checkpoint missing): a failure.
    let mut rig = Rig::start(
        with_fault(Fault::DropConnection {
            after_updates: n - 1,
        }),
        Wire::Run,
        params(&chat("hello"), Wire::Run),
    );
    rig.run_until_quiet(MINUTE);
    let (c, started) = failure(&rig);
    assert_eq!(c.kind, FailureKind::Transport);
    assert!(started, "the reply had already stopped");
}

#[test]
fn the_client_going_away_cancels_the_run_upstream() {
    for wire in WIRES {
        let mut rig = Rig::start(
            with_fault(Fault::Trickle {
                interval: Duration::from_secs(1),
            }),
            wire,
            params(&chat("lorem 50"), wire),
        );
        rig.advance(Duration::from_secs(20));
        assert!(!rig.text().is_empty());
        let now = rig.now;
        rig.turn.handle_client_gone(now);
        rig.pump();
        assert!(rig.upstream_closed);
        assert!(matches!(
            rig.last_event(),
            Some(TurnEvent::Finished {
                checkpoint: None,
                ..
            })
        ));
        assert!(rig.turn.poll_timeout().is_none());
        assert_eq!(rig.sim.account_counters("a").expect("a").cancels, 1);
    }
}
