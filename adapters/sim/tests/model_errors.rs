//! Errors a run ends with: invalid requests, missing blobs, quota exhaustion, bad tokens.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_sim::model::{Control, Quota, Transport};
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

fn finish(h: &mut Harness, first: &pb::AgentClientMessage) -> Transcript {
    let token = h.token("a");
    let mut run = h.open_h2(&token, Policy::default(), first);
    h.run_to_end(&mut run, MINUTE);
    run.client.t
}

#[test]
fn missing_conversation_state_ends_with_invalid_argument() {
    let mut h = Harness::new(config());
    let t = finish(&mut h, &run_request("hi", None, &[], "default", &[]));
    assert!(t.finished);
    assert!(t.messages.is_empty(), "nothing before the error");
    let err = t.end.unwrap().error.unwrap();
    assert_eq!(err.code.as_str(), "invalid_argument");
    assert_eq!(err.message, "Conversation state is required");
    assert_eq!(h.sim.counters().invalid_runs, 1);
    assert_eq!(
        h.sim
            .account_counters("a")
            .unwrap()
            .errors
            .get("invalid_argument"),
        Some(&1)
    );
}

#[test]
fn missing_action_ends_with_invalid_argument() {
    let mut h = Harness::new(config());
    let mut req = run_request("hi", Some(Bytes::new()), &[], "default", &[]);
    if let Some(pb::agent_client_message::Message::RunRequest(r)) = &mut req.message {
        r.action = None;
    }
    let t = finish(&mut h, &req);
    assert_eq!(t.error_code(), Some("invalid_argument"));
}

#[test]
fn retried_run_without_run_request_ends_with_invalid_argument() {
    // §10.8: a retried `Run` arrives with a heartbeat as its first envelope.
    let mut h = Harness::new(config());
    let t = finish(&mut h, &heartbeat());
    assert_eq!(t.error_code(), Some("invalid_argument"));
    assert!(t.messages.is_empty());
}

#[test]
fn malformed_request_envelope_ends_with_invalid_argument() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let hd = headers(&token, "application/connect+proto", None);
    let id = h.sim.open_run(Transport::Run, &hd, h.now, h.wall).unwrap();
    h.sim.handle_run_body(id, &[0x80, 0, 0, 0, 1, 0], h.now);
    let mut out = Vec::new();
    while let Some(o) = h.sim.poll_output() {
        out.push(o);
    }
    assert!(matches!(
        out.last(),
        Some((_, cursorpool_sim::model::RunOutput::Finished))
    ));
    assert_eq!(
        h.sim
            .account_counters("a")
            .unwrap()
            .errors
            .get("invalid_argument"),
        Some(&1)
    );
}

#[test]
fn wrong_content_type_is_refused_before_opening_a_run() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let hd = headers(&token, "application/json", None);
    let err = h
        .sim
        .open_run(Transport::Run, &hd, h.now, h.wall)
        .unwrap_err();
    assert_eq!(err.status, 415);
    assert_eq!(h.sim.open_runs(), 0);
}

#[test]
fn missing_blob_ends_with_internal_blob_not_found() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let state = h
        .simple_turn(&token, "remember this", None)
        .last_checkpoint()
        .unwrap();
    let turn_id = decode_state(&state).turns[0].clone();
    h.store.remove(&turn_id); // the client lost a blob
    let t = h.simple_turn(&token, "again", Some(state));
    let err = t.end.clone().unwrap().error.unwrap();
    assert_eq!(err.code.as_str(), "internal");
    assert_eq!(
        err.message,
        format!("Blob not found: {}", hex::encode(&turn_id))
    );
    assert!(t.turn_ended.is_none());
    let c = h.sim.account_counters("a").unwrap();
    assert_eq!(c.blobs_missing, 1);
    assert_eq!(c.errors.get("internal"), Some(&1));
}

#[test]
fn inline_data_where_a_blob_id_belongs_is_blob_not_found() {
    let mut h = Harness::new(config());
    let state = pb::ConversationStateStructure {
        root_prompt_messages_json: vec![Bytes::from_static(br#"{"role":"user","content":"x"}"#)],
        ..Default::default()
    };
    let bytes = Bytes::from(prost::Message::encode_to_vec(&state));
    let t = finish(&mut h, &run_request("hi", Some(bytes), &[], "default", &[]));
    let err = t.end.unwrap().error.unwrap();
    assert!(
        err.message.starts_with("Blob not found: "),
        "{}",
        err.message
    );
}

#[test]
fn set_blob_error_ends_with_internal() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        fail_sets: true,
        ..Policy::default()
    };
    let mut run = h.open_h2(
        &token,
        policy,
        &run_request("hi", Some(Bytes::new()), &[], "default", &[]),
    );
    h.run_to_end(&mut run, MINUTE);
    assert_eq!(run.client.t.error_code(), Some("internal"));
    assert!(run.client.t.checkpoints.is_empty());
}

#[test]
fn unacknowledged_set_blobs_hold_back_the_checkpoint() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let policy = Policy {
        ack_sets: false,
        ..Policy::default()
    };
    let mut run = h.open_h2(
        &token,
        policy,
        &run_request("hi", Some(Bytes::new()), &[], "default", &[]),
    );
    h.advance(&mut run, 5 * MINUTE);
    let t = &run.client.t;
    assert!(t.sets > 0);
    assert!(t.checkpoints.is_empty() && t.turn_ended.is_none());
    assert!(!t.finished);
}

#[test]
fn request_quota_exhaustion_gives_resource_exhausted_with_usage_limit_details_then_reset() {
    let mut cfg = config();
    cfg.accounts[0].quota = Quota {
        requests: Some(1),
        tokens: None,
    };
    let mut h = Harness::new(cfg);
    let token = h.token("a");
    assert!(h.simple_turn(&token, "one", None).finished);
    let t = h.simple_turn(&token, "two", None);
    assert!(t.messages.is_empty());
    let err = t.end.clone().unwrap().error.unwrap();
    assert_eq!(err.code.as_str(), "resource_exhausted");
    let d = err.cursor_details().expect("ErrorDetails");
    assert_eq!(d.error, CursorError::ProUserUsageLimit as i32);
    let custom = d.details.unwrap();
    assert_eq!(custom.title, "Usage limit");
    assert!(!custom.detail.is_empty());
    assert_eq!(custom.is_retryable, Some(false));
    let c = h.sim.account_counters("a").unwrap();
    assert_eq!(c.errors.get("resource_exhausted"), Some(&1));
    assert_eq!(c.quota_requests_used, 1);

    // Account b is unaffected.
    let tb = h.token("b");
    assert_eq!(h.simple_turn(&tb, "b", None).error_code(), None);

    // Reset on demand (control), then it works again.
    let v = h
        .sim
        .control(
            Control::ResetQuota {
                account: Some("a".to_owned()),
            },
            h.now,
            h.wall,
        )
        .unwrap();
    assert_eq!(v, json!({"reset": ["a"]}));
    assert_eq!(h.simple_turn(&token, "three", None).error_code(), None);
    // And through the HTTP control endpoint.
    assert_eq!(
        h.simple_turn(&token, "four", None).error_code(),
        Some("resource_exhausted")
    );
    let r = h.request(
        "POST",
        "/__sim/quota/reset",
        "",
        &http::HeaderMap::new(),
        b"{}",
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(h.simple_turn(&token, "five", None).error_code(), None);
}

#[test]
fn token_quota_exhaustion_after_the_tokens_are_used() {
    let mut cfg = config();
    cfg.accounts[0].quota = Quota {
        requests: None,
        tokens: Some(10),
    };
    let mut h = Harness::new(cfg);
    let token = h.token("a");
    let t = h.simple_turn(&token, "a long enough question to use tokens", None);
    assert_eq!(t.error_code(), None);
    let used = h.sim.account_counters("a").unwrap().quota_tokens_used;
    let e = t.turn_ended.unwrap();
    assert_eq!(
        used as i64,
        e.input_tokens.unwrap() + e.output_tokens.unwrap()
    );
    assert_eq!(
        h.simple_turn(&token, "more", None).error_code(),
        Some("resource_exhausted")
    );
}

#[test]
fn unknown_token_ends_with_unauthenticated_before_any_message() {
    let mut h = Harness::new(config());
    let mut run = h.open_h2(
        "not-a-token",
        Policy::default(),
        &run_request("hi", Some(Bytes::new()), &[], "default", &[]),
    );
    h.run_to_end(&mut run, MINUTE);
    let t = &run.client.t;
    assert!(t.finished);
    assert!(t.messages.is_empty());
    assert_eq!(t.error_code(), Some("unauthenticated"));
    assert_eq!(h.sim.counters().unauthenticated_runs, 1);
    assert_eq!(h.sim.counters().total.runs, 0);
}

#[test]
fn expired_token_ends_with_unauthenticated() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    // Time passes beyond the 1 h token lifetime.
    h.wall += Duration::from_secs(3601);
    let t = h.simple_turn(&token, "hi", None);
    assert_eq!(t.error_code(), Some("unauthenticated"));

    // Expiry on demand.
    let fresh = h.token("a");
    let v = h
        .sim
        .control(
            Control::ExpireTokens {
                account: Some("a".to_owned()),
            },
            h.now,
            h.wall,
        )
        .unwrap();
    assert_eq!(v["expired"], 1);
    assert_eq!(
        h.simple_turn(&fresh, "hi", None).error_code(),
        Some("unauthenticated")
    );
}

#[test]
fn sse_without_request_id_ends_with_invalid_argument() {
    let mut h = Harness::new(config());
    let token = h.token("a");
    let hd = headers(&token, "application/connect+proto", None);
    let id = h
        .sim
        .open_run(
            Transport::RunSse {
                request_id: String::new(),
            },
            &hd,
            h.now,
            h.wall,
        )
        .unwrap();
    let mut run = HRun {
        id,
        client: ClientRun::new(Policy::default()),
        wire: Wire::H2,
        token,
    };
    h.pump(&mut run);
    assert_eq!(run.client.t.error_code(), Some("invalid_argument"));
}
