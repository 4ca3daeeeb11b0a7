//! Pool state across a restart (through JSON, with the monotonic clock starting over) and the
//! status page's view.

mod conductor_support;

use std::time::Duration;

use conductor_support::*;
use cursorpool_core::classify::FailureKind;
use cursorpool_core::conductor::cooldown::{CoolCause, FailureEffect};
use cursorpool_core::conductor::state::AccountState;
use cursorpool_core::conductor::usage::UsageRecord;
use cursorpool_core::conductor::{Pick, PoolState, Strategy};

const MODEL: &str = "claude-4-sonnet";

#[test]
fn pool_state_survives_a_restart_through_json_with_cooldowns_preserved() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let t0 = epoch();
    assert_eq!(
        pool.pick(MODEL, Some("conv-x"), &[], t0),
        Pick::Account(ids[0])
    );
    pool.report_failure(ids[0], MODEL, &quota_with_hint(secs(600)), t0);
    pool.report_failure(ids[1], MODEL, &forbidden(), t0);
    pool.report_failure(ids[2], MODEL, &unavailable(), t0);

    // Saved 100 s later, the process restarts 50 s after that with a fresh monotonic clock.
    let saved_at = t0 + secs(100);
    let json = serde_json::to_string(&pool.state(saved_at, UNIX0 + 100)).unwrap();
    let state: PoolState = serde_json::from_str(&json).unwrap();

    let (mut restarted, new_ids) = pool_of(Strategy::RoundRobin, &["c", "b", "a"]);
    let t1 = epoch() + secs(7); // unrelated to t0
    restarted.restore(&state, t1, UNIX0 + 150);
    let (a, b, c) = (new_ids[2], new_ids[1], new_ids[0]);

    // a: 600 s from UNIX0 → 450 s left; b: 1800 s → 1650 s left; c's 60 s rest ended.
    assert_eq!(restarted.cooldown_remaining(a, MODEL, t1), secs(450));
    assert_eq!(restarted.cooldown_remaining(b, "any-model", t1), secs(1650));
    assert!(restarted.is_usable(c, MODEL, t1));
    assert!(!restarted.is_usable(a, MODEL, t1 + secs(449)));
    assert!(restarted.is_usable(a, MODEL, t1 + secs(450)));
    assert_eq!(restarted.pick(MODEL, None, &[], t1), Pick::Account(c));
    // The conversation binding came back (to the account's new id).
    assert_eq!(restarted.sticky_account("conv-x"), Some(a));
}

#[test]
fn the_quota_backoff_level_survives_a_restart() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let mut now = epoch();
    for _ in 0..3 {
        if let FailureEffect::Cooling { rest, .. } =
            pool.report_failure(ids[0], MODEL, &quota(), now)
        {
            now += rest;
        }
    }
    let state = pool.state(now, UNIX0 + 7);
    let (mut restarted, new_ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let t1 = epoch();
    restarted.restore(&state, t1, UNIX0 + 7);
    let effect = restarted.report_failure(new_ids[0], MODEL, &quota(), t1);
    let FailureEffect::Cooling { rest, .. } = effect else {
        panic!("expected a rest");
    };
    assert_eq!(rest, secs(8), "the fourth step, not the first");
}

#[test]
fn saving_rounds_a_partial_second_up_so_a_restart_never_shortens_a_rest() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let t0 = epoch();
    pool.report_failure(
        ids[0],
        MODEL,
        &quota_with_hint(Duration::from_millis(2500)),
        t0,
    );
    let state = pool.state(t0, UNIX0);
    let until = state.accounts["a"].models[MODEL].cooling.unwrap().until;
    assert_eq!(until, UNIX0 + 3);
    assert_eq!(
        state.accounts["a"].models[MODEL].cooling.unwrap().cause,
        CoolCause::Quota
    );
}

#[test]
fn state_for_unknown_accounts_is_ignored_and_usage_is_kept() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "gone"]);
    let t0 = epoch();
    pool.record_usage(
        Some(ids[0]),
        &UsageRecord {
            model: MODEL,
            client: Some("alice"),
            input_tokens: 100,
            output_tokens: 40,
            error: None,
        },
    );
    pool.record_usage(
        None,
        &UsageRecord {
            model: MODEL,
            client: Some("alice"),
            input_tokens: 0,
            output_tokens: 0,
            error: Some(FailureKind::RateLimited),
        },
    );
    pool.report_failure(ids[1], MODEL, &forbidden(), t0);
    let state = pool.state(t0, UNIX0);
    let (mut restarted, new_ids) = pool_of(Strategy::RoundRobin, &["a"]);
    restarted.restore(&state, epoch(), UNIX0 + 1);
    let status = restarted.status(epoch(), UNIX0 + 1);
    assert_eq!(status.accounts.len(), 1);
    let a = &status.accounts[0];
    assert_eq!(a.id, new_ids[0]);
    assert_eq!(a.usage.total.requests, 1);
    assert_eq!(a.usage.by_model[MODEL].input_tokens, 100);
    assert_eq!(a.usage.by_client["alice"].output_tokens, 40);
    let alice = &status.clients["alice"];
    assert_eq!(alice.total.requests, 2);
    assert_eq!(alice.total.errors["rate_limited"], 1);
    assert_eq!(alice.by_model[MODEL].input_tokens, 100);
}

#[test]
fn the_status_shows_each_accounts_state_cooldowns_last_error_and_no_credentials() {
    let mut pool = cursorpool_core::conductor::Pool::default();
    let ready = pool.upsert(record("ready", 0));
    let cooling = pool.upsert(record("cooling", 0));
    let disabled = pool.upsert(record("disabled", 0));
    let mut expiring = record("expiring", 0);
    expiring.expires_at = UNIX0 + 120;
    let expiring = pool.upsert(expiring);
    let now = epoch();
    pool.report_failure(cooling, MODEL, &quota_with_hint(secs(90)), now);
    pool.disable(disabled, "operator: billing issue");

    let status = pool.status(now + secs(30), UNIX0 + 30);
    let by_id = |id| status.accounts.iter().find(|a| a.id == id).unwrap();
    assert_eq!(by_id(ready).state, AccountState::Ready);
    assert_eq!(by_id(expiring).state, AccountState::NeedsRefresh);
    assert!(by_id(expiring).needs_refresh);
    let d = by_id(disabled);
    assert_eq!(d.state, AccountState::Disabled);
    assert_eq!(
        d.disabled_reason.as_deref(),
        Some("operator: billing issue")
    );
    let c = by_id(cooling);
    assert_eq!(c.state, AccountState::Cooling);
    assert_eq!(c.cooldowns.len(), 1);
    assert_eq!(c.cooldowns[0].model.as_deref(), Some(MODEL));
    assert_eq!(c.cooldowns[0].remaining_secs, 60);
    assert_eq!(c.cooldowns[0].until, UNIX0 + 90);
    let err = c.last_error.as_ref().unwrap();
    assert_eq!(
        (err.kind.as_str(), err.status, err.at),
        ("quota_exhausted", 429, UNIX0)
    );
    assert_eq!(c.file_name, "cursor.cooling.json");

    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains("\"state\":\"cooling\""), "{json}");
    assert!(
        !json.contains("refresh-"),
        "a credential leaked into the status: {json}"
    );
    assert!(
        !json.contains("eyJ"),
        "a token leaked into the status: {json}"
    );
    assert_eq!(pool.refresh_due(UNIX0 + 30), vec![expiring]);
}
