//! Fault injection: every fault kind, per account or per run, set at start-up, through
//! control, the HTTP control endpoint or the `x-sim-fault` header.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use cursorpool_core::connect::code::Code;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_sim::model::{Control, Fault, FaultRule, FaultRuns, RunOutput, SimConfig};

const MINUTE: Duration = Duration::from_secs(60);

fn with_fault(fault: Fault) -> SimConfig {
    let mut cfg = config();
    cfg.faults = vec![FaultRule {
        account: None,
        runs: FaultRuns::All,
        fault,
    }];
    cfg
}

fn turn(h: &mut Harness, label: &str, limit: Duration) -> HRun {
    let token = h.token(label);
    let req = run_request("hello faults", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.run_to_end(&mut run, limit);
    run
}

#[test]
fn rst_stream_after_n_updates() {
    let mut h = Harness::new(with_fault(Fault::RstStream {
        after_updates: 3,
        code: 2,
    }));
    let run = turn(&mut h, "a", MINUTE);
    assert_eq!(
        run.client.t.transport_end,
        Some(RunOutput::Reset { code: 2 })
    );
    assert_eq!(run.client.t.messages.len(), 3);
    assert!(!run.client.t.finished && run.client.t.end.is_none());
    assert_eq!(h.sim.account_counters("a").unwrap().faults_injected, 1);
    assert_eq!(h.sim.open_runs(), 0);
}

#[test]
fn rst_stream_before_the_first_byte() {
    let mut h = Harness::new(with_fault(Fault::RstStream {
        after_updates: 0,
        code: 7,
    }));
    let run = turn(&mut h, "a", MINUTE);
    assert_eq!(
        run.client.t.transport_end,
        Some(RunOutput::Reset { code: 7 })
    );
    assert_eq!(run.client.t.bytes, 0);
}

#[test]
fn goaway_after_n_updates() {
    let mut h = Harness::new(with_fault(Fault::GoAway {
        after_updates: 5,
        code: 0,
    }));
    let run = turn(&mut h, "a", MINUTE);
    assert_eq!(
        run.client.t.transport_end,
        Some(RunOutput::GoAway { code: 0 })
    );
    assert_eq!(run.client.t.messages.len(), 5);
}

#[test]
fn drop_connection_after_turn_ended_and_checkpoint_but_before_end_stream() {
    // Count the messages of a clean turn, then drop right before the end-stream.
    let mut clean = Harness::new(config());
    let n = turn(&mut clean, "a", MINUTE).client.t.messages.len();
    let mut h = Harness::new(with_fault(Fault::DropConnection {
        after_updates: u32::try_from(n).unwrap(),
    }));
    let run = turn(&mut h, "a", MINUTE);
    let t = &run.client.t;
    assert_eq!(t.transport_end, Some(RunOutput::DropConnection));
    assert!(t.turn_ended.is_some() && !t.checkpoints.is_empty());
    assert!(t.end.is_none());
}

#[test]
fn stall_sends_nothing_at_all_not_even_heartbeats() {
    let mut h = Harness::new(with_fault(Fault::Stall { after_updates: 2 }));
    let token = h.token("a");
    let req = run_request("stall", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.advance(&mut run, 5 * MINUTE);
    let t = &run.client.t;
    assert_eq!(t.messages.len(), 2);
    assert_eq!(t.heartbeats, 0);
    assert!(!t.finished && t.transport_end.is_none());
    assert_eq!(h.sim.open_runs(), 1);
    // The client gives up: the run is forgotten without output.
    h.sim.handle_run_closed(run.id, h.now);
    assert!(h.sim.poll_output().is_none());
    assert_eq!(h.sim.open_runs(), 0);
}

#[test]
fn trickle_spaces_every_message() {
    let mut h = Harness::new(with_fault(Fault::Trickle {
        interval: Duration::from_secs(1),
    }));
    let token = h.token("a");
    let req = run_request("slowly", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.pump(&mut run);
    assert_eq!(run.client.t.messages.len(), 1);
    h.advance(&mut run, Duration::from_millis(2500));
    assert_eq!(run.client.t.messages.len(), 3);
    h.run_to_end(&mut run, 60 * MINUTE);
    assert!(run.client.t.finished);
    assert_eq!(run.client.t.end_json.as_deref(), Some("{}"));
}

#[test]
fn delay_first_byte_holds_everything_back() {
    let mut h = Harness::new(with_fault(Fault::DelayFirstByte(Duration::from_secs(10))));
    let token = h.token("a");
    let req = run_request("wait for it", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_h2(&token, Policy::default(), &req);
    h.advance(&mut run, Duration::from_millis(9900));
    assert_eq!(run.client.t.bytes, 0);
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished);
    assert!(t.text.contains("wait for it"));
}

#[test]
fn error_after_n_updates_with_provider_error_details() {
    let mut h = Harness::new(with_fault(Fault::ErrorAfter {
        after_updates: 4,
        code: Code::Unavailable,
        cursor_error: Some(CursorError::ProviderError as i32),
    }));
    let run = turn(&mut h, "a", MINUTE);
    let t = &run.client.t;
    assert!(t.finished);
    assert_eq!(t.messages.len(), 4);
    let err = t.end.clone().unwrap().error.unwrap();
    assert_eq!(err.code, Code::Unavailable);
    assert_eq!(
        err.cursor_details().unwrap().error,
        CursorError::ProviderError as i32
    );
    assert_eq!(
        h.sim
            .account_counters("a")
            .unwrap()
            .errors
            .get("unavailable"),
        Some(&1)
    );
}

#[test]
fn internal_error_mid_stream_without_details() {
    let mut h = Harness::new(with_fault(Fault::ErrorAfter {
        after_updates: 10,
        code: Code::Internal,
        cursor_error: None,
    }));
    let run = turn(&mut h, "a", MINUTE);
    let err = run.client.t.end.clone().unwrap().error.unwrap();
    assert_eq!(err.code, Code::Internal);
    assert!(err.details.is_empty());
    assert_eq!(run.client.t.messages.len(), 10);
}

#[test]
fn fault_rules_are_per_account_and_next_n_runs() {
    let mut cfg = config();
    cfg.faults = vec![FaultRule {
        account: Some("b".to_owned()),
        runs: FaultRuns::Next(1),
        fault: Fault::RstStream {
            after_updates: 1,
            code: 2,
        },
    }];
    let mut h = Harness::new(cfg);
    assert!(
        turn(&mut h, "a", MINUTE).client.t.finished,
        "account a unaffected"
    );
    assert!(
        turn(&mut h, "b", MINUTE).client.t.transport_end.is_some(),
        "next run of b"
    );
    assert!(turn(&mut h, "b", MINUTE).client.t.finished, "rule spent");
}

#[test]
fn faults_set_through_control_and_the_http_endpoint() {
    let mut h = Harness::new(config());
    let rule = FaultRule {
        account: Some("a".to_owned()),
        runs: FaultRuns::Next(1),
        fault: Fault::DropConnection { after_updates: 0 },
    };
    h.sim
        .control(Control::AddFault { rule }, h.now, h.wall)
        .unwrap();
    assert_eq!(
        turn(&mut h, "a", MINUTE).client.t.transport_end,
        Some(RunOutput::DropConnection)
    );
    assert!(turn(&mut h, "a", MINUTE).client.t.finished);

    let body = br#"{"faults":[{"account":"a","runs":{"next":1},"fault":{"error_after":{"after_updates":0,"code":"unavailable"}}}]}"#;
    let r = h.request("POST", "/__sim/faults", "", &http::HeaderMap::new(), body);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        turn(&mut h, "a", MINUTE).client.t.error_code(),
        Some("unavailable")
    );
    let r = h.request(
        "POST",
        "/__sim/faults/clear",
        "",
        &http::HeaderMap::new(),
        b"",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn per_run_fault_from_the_x_sim_fault_header() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let mut hd = headers(&token, "application/connect+proto", None);
    hd.insert(
        "x-sim-fault",
        r#"{"rst_stream":{"after_updates":2,"code":8}}"#.parse().unwrap(),
    );
    let id = h
        .sim
        .open_run(cursorpool_sim::model::Transport::Run, &hd, h.now, h.wall)
        .unwrap();
    let mut run = HRun {
        id,
        client: ClientRun::new(Policy::default()),
        wire: Wire::H2,
        token,
    };
    let req = run_request("x", Some(Bytes::new()), &[], "default", &[]);
    h.send(&mut run, &req);
    h.run_to_end(&mut run, MINUTE);
    assert_eq!(
        run.client.t.transport_end,
        Some(RunOutput::Reset { code: 8 })
    );
    assert!(turn(&mut h, "a", MINUTE).client.t.finished, "only that run");
}
