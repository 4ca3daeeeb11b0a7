//! `RunSSE` + `BidiAppend` delivery: out of order, early (before `RunSSE`), duplicates,
//! binary data, an empty retried `RunSSE` body, garbage and unauthenticated appends.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use cursorpool_core::bidi::{DataEncoding, encode_append};
use cursorpool_sim::model::Transport;

const MINUTE: Duration = Duration::from_secs(60);

/// Opens a `RunSSE` for `rid` with no body (as a retried `RunSSE` arrives, §10.8).
fn open_sse_no_body(h: &mut Harness, token: &str, rid: &str) -> HRun {
    let hd = headers(token, "application/connect+proto", Some(rid));
    let id = h
        .sim
        .open_run(
            Transport::RunSse {
                request_id: rid.to_owned(),
            },
            &hd,
            h.now,
            h.wall,
        )
        .unwrap();
    HRun {
        id,
        client: ClientRun::new(Policy::default()),
        wire: Wire::Sse {
            request_id: rid.to_owned(),
            seqno: 3,
        },
        token: token.to_owned(),
    }
}

#[test]
fn appends_out_of_order_are_delivered_in_seqno_order() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let mut run = open_sse_no_body(&mut h, &token, "ooo");
    for (seq, m) in [
        (2, heartbeat()),
        (1, heartbeat()),
        (
            0,
            run_request("shuffled", Some(Bytes::new()), &[], "default", &[]),
        ),
    ] {
        assert_eq!(h.append(&token, "ooo", seq, &m).status, 200);
    }
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    assert!(
        run.client.t.text.contains("shuffled"),
        "{}",
        run.client.t.text
    );
    assert_eq!(h.sim.counters().bidi_out_of_order, 2);
}

#[test]
fn appends_before_run_sse_opens_are_buffered() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request("early bird", Some(Bytes::new()), &[], "default", &[]);
    assert_eq!(h.append(&token, "early", 0, &req).status, 200);
    assert_eq!(h.append(&token, "early", 1, &heartbeat()).status, 200);
    assert_eq!(h.sim.open_runs(), 0);
    let mut run = open_sse_no_body(&mut h, &token, "early");
    run.wire = Wire::Sse {
        request_id: "early".to_owned(),
        seqno: 2,
    };
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    assert!(run.client.t.text.contains("early bird"));
    assert_eq!(h.sim.counters().bidi_early, 2);
}

#[test]
fn duplicate_appends_are_ignored() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let req = run_request("once", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_sse(&token, "dup", Policy::default(), &req);
    // The same seqno 0 again (an SDK retry of an append), and a duplicate heartbeat.
    assert_eq!(h.append(&token, "dup", 0, &req).status, 200);
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    assert_eq!(run.client.t.error_code(), None);
    assert_eq!(run.client.t.text.matches("last user message").count(), 1);
    assert_eq!(h.sim.counters().bidi_duplicates, 1);
}

#[test]
fn binary_append_data_is_accepted() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let mut run = open_sse_no_body(&mut h, &token, "bin");
    run.wire = Wire::Sse {
        request_id: "bin".to_owned(),
        seqno: 1,
    };
    let req = run_request("binary", Some(Bytes::new()), &[], "default", &[]);
    let body = encode_append("bin", 0, &req, DataEncoding::Binary);
    let hd = headers(&token, "application/proto", Some("bin"));
    let r = h.request(
        "POST",
        "/aiserver.v1.BidiService/BidiAppend",
        "",
        &hd,
        &body,
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.text.contains("binary"));
}

#[test]
fn garbage_append_is_a_connect_error_and_unauthenticated_append_is_401() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let hd = headers(&token, "application/proto", Some("x"));
    let r = h.request(
        "POST",
        "/aiserver.v1.BidiService/BidiAppend",
        "",
        &hd,
        b"\xff\xff\xff",
    );
    assert_eq!(r.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], "invalid_argument");

    let r = h.append("bogus", "x", 0, &heartbeat());
    assert_eq!(r.status, 401);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["code"], "unauthenticated");
}

#[test]
fn a_second_run_sse_for_a_live_request_id_is_refused() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let _first = open_sse_no_body(&mut h, &token, "same");
    let mut second = open_sse_no_body(&mut h, &token, "same");
    h.pump(&mut second);
    assert_eq!(second.client.t.error_code(), Some("already_exists"));
}

#[test]
fn sse_disconnect_cancels_the_run() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let tools = [tool("srv", "echo")];
    let policy = Policy {
        tools: tools.to_vec(),
        ..Policy::default()
    };
    let req = run_request("call echo({})", Some(Bytes::new()), &tools, "default", &[]);
    let mut run = h.open_sse(&token, "gone", policy, &req);
    h.pump(&mut run);
    h.sim.handle_run_closed(run.id, h.now);
    h.pump(&mut run);
    assert_eq!(h.sim.account_counters("a").unwrap().cancels, 1);
    assert_eq!(h.sim.open_runs(), 0);
    // Late appends for the finished run are accepted and dropped.
    assert_eq!(h.append(&token, "gone", 7, &heartbeat()).status, 200);
}

#[test]
fn runs_are_counted_by_the_rpc_that_carried_them() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    assert_eq!(h.simple_turn(&token, "over Run", None).error_code(), None);
    let req = run_request("over RunSSE", Some(Bytes::new()), &[], "default", &[]);
    let mut run = h.open_sse(&token, "by-rpc", Policy::default(), &req);
    h.run_to_end(&mut run, MINUTE);
    assert!(run.client.t.finished);
    // An unauthenticated RunSSE counts as a stream, not as a run of any account.
    let _ = open_sse_no_body(&mut h, "not-a-token", "by-rpc-unauth");

    let c = h.sim.counters();
    let a = &c.accounts["a"];
    assert_eq!(a.runs, 2);
    assert_eq!(a.runs_by_rpc.get("Run"), Some(&1));
    assert_eq!(a.runs_by_rpc.get("RunSSE"), Some(&1));
    assert_eq!(c.total.runs_by_rpc, a.runs_by_rpc);
    assert_eq!(c.streams.get("/agent.v1.AgentService/Run"), Some(&1));
    assert_eq!(c.streams.get("/agent.v1.AgentService/RunSSE"), Some(&2));
    assert_eq!(c.unauthenticated_runs, 1);
}
