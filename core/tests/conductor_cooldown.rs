//! Cooldowns with simulated time: the quota backoff (1 s doubling, capped at 30 min, reset on
//! success, overridden by Cursor's hint), 401 → refresh → disable, 403 → 30 min, 5xx → 1 min,
//! refresh failures, management resets, and "all cooling" with the earliest recovery.

mod conductor_support;

use std::time::Duration;

use conductor_support::*;
use cursorpool_core::conductor::cooldown::{FailureEffect, Scope};
use cursorpool_core::conductor::refresh::RefreshFailure;
use cursorpool_core::conductor::{Pick, PoolEvent, Strategy, TokenGrant};

const MODEL: &str = "claude-4-sonnet";

#[test]
fn quota_backoff_doubles_from_one_second_and_caps_at_thirty_minutes() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let mut now = epoch();
    let mut rests = Vec::new();
    for _ in 0..14 {
        let effect = pool.report_failure(a, MODEL, &quota(), now);
        let FailureEffect::Cooling { scope, rest } = effect else {
            panic!("quota failure must rest the account, got {effect:?}");
        };
        assert_eq!(scope, Scope::Model(MODEL.to_owned()));
        rests.push(rest.as_secs());
        // Resting exactly that long: unusable just before the end, usable at it.
        assert!(!pool.is_usable(a, MODEL, now + rest - Duration::from_millis(1)));
        now += rest;
        assert!(pool.is_usable(a, MODEL, now));
    }
    assert_eq!(
        rests,
        [
            1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1800, 1800, 1800
        ]
    );
}

#[test]
fn success_resets_the_quota_backoff_to_one_second() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let mut now = epoch();
    for expected in [1, 2, 4] {
        let FailureEffect::Cooling { rest, .. } = pool.report_failure(a, MODEL, &quota(), now)
        else {
            panic!("expected a rest");
        };
        assert_eq!(rest, secs(expected));
        now += rest;
    }
    pool.report_success(a, MODEL, now);
    let effect = pool.report_failure(a, MODEL, &quota(), now);
    assert_eq!(
        effect,
        FailureEffect::Cooling {
            scope: Scope::Model(MODEL.to_owned()),
            rest: secs(1)
        }
    );
}

#[test]
fn cursor_retry_hint_overrides_the_backoff_step() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    let effect = pool.report_failure(a, MODEL, &quota_with_hint(secs(90)), now);
    assert_eq!(
        effect,
        FailureEffect::Cooling {
            scope: Scope::Model(MODEL.to_owned()),
            rest: secs(90)
        }
    );
    assert!(!pool.is_usable(a, MODEL, now + secs(89)));
    assert!(pool.is_usable(a, MODEL, now + secs(90)));
    // A short hint is honoured too (not rounded up to the backoff step).
    let later = now + secs(90);
    pool.report_failure(
        a,
        MODEL,
        &quota_with_hint(Duration::from_millis(300)),
        later,
    );
    assert!(pool.is_usable(a, MODEL, later + Duration::from_millis(300)));
}

#[test]
fn an_exhausted_account_recovers_when_its_cooldown_ends_and_is_picked_again() {
    let (mut pool, ids) = pool_of(Strategy::FillFirst, &["a", "b"]);
    let (a, b) = (ids[0], ids[1]);
    let now = epoch();
    assert_eq!(pool.pick(MODEL, None, &[], now), Pick::Account(a));
    pool.report_failure(a, MODEL, &quota(), now);
    assert_eq!(pool.pick(MODEL, None, &[], now), Pick::Account(b));
    assert_eq!(pool.cooldown_remaining(a, MODEL, now), secs(1));
    let recovered = now + secs(1);
    assert_eq!(pool.cooldown_remaining(a, MODEL, recovered), Duration::ZERO);
    assert_eq!(pool.pick(MODEL, None, &[], recovered), Pick::Account(a));
}

#[test]
fn failures_of_requests_already_running_do_not_climb_the_backoff() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    pool.report_failure(a, MODEL, &quota(), now);
    // Four more requests that were in flight fail during the rest.
    for i in 1..=4 {
        pool.report_failure(a, MODEL, &quota(), now + Duration::from_millis(100 * i));
    }
    // The rest is still about one step, not 2^5 s.
    assert!(pool.is_usable(a, MODEL, now + Duration::from_millis(1400)));
    // The next genuine failure after the rest is the second step.
    let later = now + secs(2);
    let FailureEffect::Cooling { rest, .. } = pool.report_failure(a, MODEL, &quota(), later) else {
        panic!("expected a rest");
    };
    assert_eq!(rest, secs(2));
}

#[test]
fn forbidden_rests_the_whole_account_for_thirty_minutes() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    let effect = pool.report_failure(a, MODEL, &forbidden(), now);
    assert_eq!(
        effect,
        FailureEffect::Cooling {
            scope: Scope::Account,
            rest: secs(30 * 60)
        }
    );
    assert!(!pool.is_usable(a, "gpt-5", now + secs(30 * 60 - 1)));
    assert!(pool.is_usable(a, "gpt-5", now + secs(30 * 60)));
}

#[test]
fn server_errors_and_broken_transport_rest_the_model_briefly_then_up_to_a_minute() {
    for c in [unavailable(), http_500(), reset(), goaway()] {
        let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
        let a = ids[0];
        let mut now = epoch();
        let mut rests = Vec::new();
        for _ in 0..9 {
            let FailureEffect::Cooling { scope, rest } = pool.report_failure(a, MODEL, &c, now)
            else {
                panic!("{:?} rests the account", c.kind);
            };
            assert_eq!(scope, Scope::Model(MODEL.to_owned()));
            assert!(!pool.is_usable(a, MODEL, now + rest - Duration::from_millis(1)));
            assert!(pool.is_usable(a, "other-model", now));
            now += rest;
            assert!(pool.is_usable(a, MODEL, now));
            rests.push(rest.as_secs());
        }
        assert_eq!(rests, [1, 2, 4, 8, 16, 32, 60, 60, 60], "{:?}", c.kind);
        // A success forgives: the next failure rests one second again.
        pool.report_success(a, MODEL, now);
        assert_eq!(
            pool.report_failure(a, MODEL, &c, now),
            FailureEffect::Cooling {
                scope: Scope::Model(MODEL.to_owned()),
                rest: secs(1)
            }
        );
    }
}

#[test]
fn failures_of_requests_already_running_do_not_climb_the_transient_backoff() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    // A dropped connection fails every run that was on it at once.
    for _ in 0..20 {
        pool.report_failure(a, MODEL, &reset(), now);
    }
    assert!(pool.is_usable(a, MODEL, now + secs(1)));
}

#[test]
fn a_client_fault_does_not_rest_the_account() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let now = epoch();
    assert_eq!(
        pool.report_failure(ids[0], MODEL, &bad_request(), now),
        FailureEffect::Nothing
    );
    assert!(pool.is_usable(ids[0], MODEL, now));
}

#[test]
fn unauthenticated_asks_for_a_refresh_first_and_a_401_after_the_refresh_disables_with_a_reason() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    assert_eq!(
        pool.report_failure(a, MODEL, &unauthenticated(), now),
        FailureEffect::RefreshFirst
    );
    assert!(
        pool.is_usable(a, MODEL, now),
        "not disabled before the refresh"
    );
    assert_eq!(pool.poll_event(), None);
    // The background refresher sees it too.
    assert_eq!(pool.refresh_due(UNIX0), vec![a]);
    assert!(pool.update_tokens(a, &grant_for("a", UNIX0 + 3600), UNIX0));
    assert_eq!(pool.poll_event(), Some(PoolEvent::RecordChanged(a)));
    assert_eq!(pool.refresh_due(UNIX0), vec![]);
    let effect = pool.report_failure(a, MODEL, &unauthenticated(), now);
    let FailureEffect::Disabled { reason } = effect else {
        panic!("a 401 with the renewed token must disable, got {effect:?}");
    };
    assert!(
        reason.contains("unauthenticated after a token refresh"),
        "{reason}"
    );
    assert!(!pool.is_usable(a, MODEL, now + secs(24 * 3600)));
    assert_eq!(pool.record(a).unwrap().disabled.as_deref(), Some(&*reason));
    // The disabled flag is part of the credential file: the adapter is told to write it.
    assert_eq!(pool.poll_event(), Some(PoolEvent::RecordChanged(a)));
    assert!(pool.enable(a));
    assert!(pool.is_usable(a, MODEL, now));
}

fn grant_for(label: &str, exp: u64) -> TokenGrant {
    TokenGrant {
        access_token: access_token(&format!("auth0|user_{label}"), exp).into(),
        refresh_token: None,
        auth_id: None,
    }
}

#[test]
fn concurrent_401s_with_the_same_token_ask_for_a_refresh_but_never_disable() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    // Five requests were running with the token that just expired.
    for _ in 0..5 {
        assert_eq!(
            pool.report_failure(a, MODEL, &unauthenticated(), now),
            FailureEffect::RefreshFirst
        );
    }
    assert!(pool.record(a).unwrap().disabled.is_none());
    // Renewed: the account works again.
    pool.update_tokens(a, &grant_for("a", UNIX0 + 3600), UNIX0);
    pool.report_success(a, MODEL, now);
    assert!(pool.is_usable(a, MODEL, now));
}

#[test]
fn a_401_between_successes_asks_for_a_refresh_again() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    assert_eq!(
        pool.report_failure(a, MODEL, &unauthenticated(), now),
        FailureEffect::RefreshFirst
    );
    pool.report_success(a, MODEL, now);
    assert_eq!(
        pool.report_failure(a, MODEL, &unauthenticated(), now + secs(3600)),
        FailureEffect::RefreshFirst
    );
}

#[test]
fn an_account_that_cannot_refresh_is_disabled_on_its_first_401() {
    let (mut pool, _) = pool_of(Strategy::RoundRobin, &[]);
    let mut r = record("bare", 0);
    r.refresh_token = None;
    let a = pool.upsert(r);
    let effect = pool.report_failure(a, MODEL, &unauthenticated(), epoch());
    assert!(
        matches!(effect, FailureEffect::Disabled { .. }),
        "{effect:?}"
    );
}

#[test]
fn a_rejected_refresh_disables_the_account_with_a_visible_reason() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let failure = RefreshFailure::Rejected("the session ended (shouldLogout); log in again".into());
    let effect = pool.report_refresh_failed(ids[0], &failure, now);
    assert!(matches!(effect, FailureEffect::Disabled { .. }));
    let status = pool.status(now, UNIX0);
    let a = &status.accounts[0];
    assert!(
        a.disabled_reason
            .as_deref()
            .unwrap()
            .contains("log in again")
    );
    assert_eq!(a.last_error.as_ref().unwrap().kind, "refresh_failed");
    assert_eq!(pool.pick(MODEL, None, &[], now), Pick::Account(ids[1]));
}

#[test]
fn a_transient_refresh_failure_rests_briefly_and_new_tokens_end_the_rest() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let now = epoch();
    let effect = pool.report_refresh_failed(a, &RefreshFailure::Transient("HTTP 502".into()), now);
    assert_eq!(
        effect,
        FailureEffect::Cooling {
            scope: Scope::Account,
            rest: secs(60)
        }
    );
    assert!(!pool.is_usable(a, MODEL, now));
    assert!(pool.update_tokens(a, &grant_for("a", UNIX0 + 7200), UNIX0));
    assert!(pool.is_usable(a, MODEL, now));
    assert_eq!(pool.record(a).unwrap().expires_at, UNIX0 + 7200);
    assert_eq!(pool.poll_event(), Some(PoolEvent::RecordChanged(a)));
}

#[test]
fn all_accounts_cooling_answers_with_the_earliest_recovery() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    pool.report_failure(ids[0], MODEL, &forbidden(), now);
    pool.report_failure(ids[1], MODEL, &unavailable_with_hint(secs(60)), now);
    pool.report_failure(ids[2], MODEL, &quota_with_hint(secs(45)), now);
    assert_eq!(
        pool.pick(MODEL, None, &[], now + secs(5)),
        Pick::AllCooling {
            retry_after: secs(40)
        }
    );
    // Another model is unaffected by the per-model rests.
    assert_eq!(
        pool.pick("gpt-5", None, &[], now + secs(5)),
        Pick::Account(ids[1])
    );
}

#[test]
fn no_accounts_when_none_is_configured_or_all_are_disabled() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &[]);
    assert!(ids.is_empty());
    assert_eq!(pool.pick(MODEL, None, &[], epoch()), Pick::NoAccounts);
    let a = pool.upsert(record("a", 0));
    pool.disable(a, "operator");
    assert_eq!(pool.pick(MODEL, None, &[], epoch()), Pick::NoAccounts);
}

#[test]
fn reset_cooldown_unsticks_an_account_in_one_call() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let a = ids[0];
    let mut now = epoch();
    for _ in 0..12 {
        if let FailureEffect::Cooling { rest, .. } = pool.report_failure(a, MODEL, &quota(), now) {
            now += rest;
        }
    }
    pool.report_failure(a, MODEL, &quota(), now);
    pool.report_failure(a, MODEL, &forbidden(), now);
    assert!(!pool.is_usable(a, MODEL, now + secs(60)));
    assert!(pool.reset_cooldown(a));
    assert!(pool.is_usable(a, MODEL, now));
    // The backoff starts over too.
    let FailureEffect::Cooling { rest, .. } = pool.report_failure(a, MODEL, &quota(), now) else {
        panic!("expected a rest");
    };
    assert_eq!(rest, secs(1));
}

#[test]
fn poll_timeout_is_the_earliest_recovery() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    assert_eq!(pool.poll_timeout(now), None);
    pool.report_failure(ids[0], MODEL, &unavailable_with_hint(secs(60)), now);
    pool.report_failure(ids[1], MODEL, &quota(), now);
    assert_eq!(pool.poll_timeout(now), Some(now + secs(1)));
    assert_eq!(pool.poll_timeout(now + secs(1)), Some(now + secs(60)));
}
