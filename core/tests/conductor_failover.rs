//! Failover for one client request ([`Attempts`]): invisible retries before the first byte,
//! never a replay of the client's own mistake, no retry after the first byte, refresh-once on
//! 401, bounded attempts, and the 429 / 503 answers when no account can serve.

mod conductor_support;

use conductor_support::*;
use cursorpool_core::api::{ApiError, ErrorType};
use cursorpool_core::classify::{Classification, CoolDown, FailureKind};
use cursorpool_core::conductor::refresh::RefreshFailure;
use cursorpool_core::conductor::{Attempts, Strategy, TokenGrant, Verdict};

const MODEL: &str = "claude-4-sonnet";

#[test]
fn a_transport_failure_before_the_first_byte_moves_to_the_next_account() {
    for failure in [reset(), goaway(), unavailable()] {
        let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
        let now = epoch();
        let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
        assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
        let verdict = attempts.on_failure(&mut pool, &failure, false, now);
        assert_eq!(verdict, Verdict::RetryOn(ids[1]), "{:?}", failure.kind);
        // The second account answers: the client sees a normal reply.
        attempts.on_success(&mut pool, now);
        assert_eq!(attempts.attempts_made(), 2);
        assert_eq!(attempts.tried(), &ids[..2]);
        // The account that broke rests (a first transient failure: 1 s) and is skipped
        // meanwhile.
        assert!(!pool.is_usable(ids[0], MODEL, now + std::time::Duration::from_millis(900)));
        assert!(pool.is_usable(ids[0], MODEL, now + secs(1)));
    }
}

#[test]
fn a_bad_request_is_returned_once_and_never_replayed() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
    let verdict = attempts.on_failure(&mut pool, &bad_request(), false, now);
    let Verdict::GiveUp(c) = verdict else {
        panic!("a 400 must not be replayed, got {verdict:?}");
    };
    assert_eq!(c.client_status, 400);
    assert_eq!(attempts.attempts_made(), 1);
    // The account did nothing wrong.
    assert!(pool.is_usable(ids[0], MODEL, now));
    assert_eq!(ApiError::from(&c).error_type, ErrorType::InvalidRequest);
}

#[test]
fn an_error_every_account_would_repeat_is_not_replayed() {
    let (mut pool, _) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let outdated = Classification {
        kind: FailureKind::OutdatedClient,
        client_status: 502,
        cool_down: CoolDown::None,
        try_another_account: false,
        refresh_token_first: false,
        retry_after: None,
        message: "outdated client".into(),
    };
    let mut attempts = Attempts::new(4, MODEL, None);
    attempts.next(&mut pool, now).unwrap();
    assert_eq!(
        attempts.on_failure(&mut pool, &outdated, false, now),
        Verdict::GiveUp(outdated)
    );
}

#[test]
fn after_the_first_byte_the_request_gives_up_and_the_account_is_marked() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
    let verdict = attempts.on_failure(&mut pool, &quota(), true, now);
    assert_eq!(verdict, Verdict::GiveUp(quota()));
    assert_eq!(attempts.attempts_made(), 1);
    assert!(!pool.is_usable(ids[0], MODEL, now));
    let status = pool.status(now, UNIX0);
    assert_eq!(
        status.accounts[0].last_error.as_ref().unwrap().kind,
        "quota_exhausted"
    );
    assert_eq!(status.accounts[0].usage.total.errors["quota_exhausted"], 1);
}

#[test]
fn attempts_are_bounded() {
    let labels = ["a", "b", "c", "d", "e", "f"];
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &labels);
    let now = epoch();
    let mut attempts = Attempts::new(3, MODEL, None);
    let mut account = attempts.next(&mut pool, now).unwrap();
    let mut runs = vec![account];
    let last = loop {
        match attempts.on_failure(&mut pool, &reset(), false, now) {
            Verdict::RetryOn(next) => {
                account = next;
                runs.push(account);
            }
            Verdict::GiveUp(c) => break c,
            Verdict::Refresh(_) => panic!("no refresh for a transport failure"),
        }
    };
    assert_eq!(runs, &ids[..3]);
    assert_eq!(last.kind, FailureKind::Transport);
    // Untried accounts were left alone.
    assert!(pool.is_usable(ids[3], MODEL, now));
}

#[test]
fn a_401_refreshes_the_token_and_retries_the_same_account() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let a = attempts.next(&mut pool, now).unwrap();
    assert_eq!(a, ids[0]);
    assert_eq!(
        attempts.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::Refresh(a)
    );
    // The adapter refreshes (here: successfully) and asks again: the same account.
    let grant = TokenGrant {
        access_token: access_token("auth0|user_a", UNIX0 + 3600).into(),
        refresh_token: Some("refresh-a-2".into()),
        auth_id: None,
    };
    assert!(pool.update_tokens(a, &grant, UNIX0));
    assert_eq!(attempts.next(&mut pool, now), Ok(a));
    attempts.on_success(&mut pool, now);
    assert_eq!(
        pool.record(a)
            .unwrap()
            .refresh_token
            .as_ref()
            .unwrap()
            .expose(),
        "refresh-a-2"
    );
    assert!(pool.record(a).unwrap().disabled.is_none());
}

#[test]
fn a_second_401_after_the_refresh_disables_the_account_and_fails_over() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let a = attempts.next(&mut pool, now).unwrap();
    assert_eq!(
        attempts.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::Refresh(a)
    );
    let grant = TokenGrant {
        access_token: access_token("auth0|user_a", UNIX0 + 3600).into(),
        refresh_token: None,
        auth_id: None,
    };
    assert!(pool.update_tokens(a, &grant, UNIX0));
    assert_eq!(attempts.next(&mut pool, now), Ok(a));
    assert_eq!(
        attempts.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::RetryOn(ids[1])
    );
    let reason = pool.record(a).unwrap().disabled.clone().expect("disabled");
    assert!(reason.contains("unauthenticated"), "{reason}");
}

#[test]
fn a_failed_refresh_moves_the_request_to_another_account() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let a = attempts.next(&mut pool, now).unwrap();
    assert_eq!(
        attempts.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::Refresh(a)
    );
    pool.report_refresh_failed(a, &RefreshFailure::Rejected("403".into()), now);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[1]));
}

#[test]
fn a_401_is_refreshed_at_most_once_per_request_and_a_stale_token_never_disables() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let a = attempts.next(&mut pool, now).unwrap();
    assert_eq!(a, ids[0]);
    attempts.on_failure(&mut pool, &unauthenticated(), false, now);
    // The refresh was not reported (no new token): the retry gets 401 again with the same
    // token. No second refresh in this request, and with no other account the client gets
    // the 401; the account is not disabled (its token was never renewed).
    assert_eq!(attempts.next(&mut pool, now), Ok(a));
    let verdict = attempts.on_failure(&mut pool, &unauthenticated(), false, now);
    let Verdict::GiveUp(c) = verdict else {
        panic!("expected GiveUp, got {verdict:?}");
    };
    assert_eq!(c.client_status, 401);
    assert!(pool.record(a).unwrap().disabled.is_none());
    assert_eq!(pool.refresh_due(UNIX0), vec![a]);
}

#[test]
fn every_account_cooling_gives_429_with_the_earliest_recovery() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    pool.report_failure(ids[1], MODEL, &quota_with_hint(secs(120)), now);
    pool.report_failure(ids[2], MODEL, &unavailable(), now);
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
    // a runs dry too (1 s rest): everything rests, the earliest recovery is a's.
    let verdict = attempts.on_failure(&mut pool, &quota(), false, now);
    let Verdict::GiveUp(c) = verdict else {
        panic!("expected GiveUp, got {verdict:?}");
    };
    assert_eq!(c.client_status, 429);
    assert_eq!(c.retry_after, Some(secs(1)));
    let api = ApiError::from(&c);
    assert_eq!(api.error_type, ErrorType::RateLimit);
    assert_eq!(api.retry_after, Some(secs(1)));
}

#[test]
fn an_account_resting_after_a_transient_failure_is_tried_when_nothing_else_can_serve() {
    // One account, one dropped connection: clients must not get 429s until its rest ends.
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["only"]);
    let now = epoch();
    pool.report_failure(ids[0], MODEL, &reset(), now);
    assert!(!pool.is_usable(ids[0], MODEL, now));
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
    // A broken connection again: once more on a fresh one, then the client hears it.
    assert_eq!(
        attempts.on_failure(&mut pool, &reset(), false, now),
        Verdict::RetryOn(ids[0])
    );
    let verdict = attempts.on_failure(&mut pool, &goaway(), false, now);
    let Verdict::GiveUp(c) = verdict else {
        panic!("expected GiveUp, got {verdict:?}");
    };
    assert_eq!(c.client_status, 429);
    assert_eq!(attempts.attempts_made(), 2);
    // A healthy account is preferred over the resting one; a quota rest or Cursor's own
    // retry hint is never overridden.
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    pool.report_failure(ids[0], MODEL, &reset(), now);
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[1]));
    for rest in [
        quota(),
        unavailable(),
        unavailable_with_hint(secs(30)),
        forbidden(),
    ] {
        let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["only"]);
        pool.report_failure(ids[0], MODEL, &rest, now);
        let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
        assert!(attempts.next(&mut pool, now).is_err(), "{:?}", rest.kind);
    }
}

#[test]
fn a_request_arriving_while_everything_rests_gets_429_at_once() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    pool.report_failure(ids[0], MODEL, &quota_with_hint(secs(30)), now);
    pool.report_failure(ids[1], MODEL, &quota_with_hint(secs(10)), now);
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let err = attempts.next(&mut pool, now + secs(4)).unwrap_err();
    assert_eq!(err.client_status, 429);
    assert_eq!(err.retry_after, Some(secs(6)));
    assert_eq!(attempts.attempts_made(), 0);
}

#[test]
fn no_usable_account_gives_503_or_the_last_failure() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let now = epoch();
    pool.disable(ids[0], "operator");
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let err = attempts.next(&mut pool, now).unwrap_err();
    assert_eq!(err.client_status, 503);
    assert_eq!(ApiError::from(&err).error_type, ErrorType::Overloaded);

    // One account, a provider hiccup (no rest): nothing else to try, the client gets the 502.
    let (mut pool, _) = pool_of(Strategy::RoundRobin, &["a"]);
    let provider = Classification {
        kind: FailureKind::ProviderTransient,
        client_status: 502,
        cool_down: CoolDown::None,
        try_another_account: true,
        refresh_token_first: false,
        retry_after: None,
        message: "Provider Error".into(),
    };
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    attempts.next(&mut pool, now).unwrap();
    assert_eq!(
        attempts.on_failure(&mut pool, &provider, false, now),
        Verdict::GiveUp(provider)
    );
}

#[test]
fn failover_keeps_the_conversation_on_the_account_that_answered() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, Some("conv"));
    assert_eq!(attempts.next(&mut pool, now), Ok(ids[0]));
    assert_eq!(
        attempts.on_failure(&mut pool, &reset(), false, now),
        Verdict::RetryOn(ids[1])
    );
    attempts.on_success(&mut pool, now);
    assert_eq!(pool.sticky_account("conv"), Some(ids[1]));
}

#[test]
fn a_late_401_from_a_run_started_before_the_refresh_does_not_disable_the_account() {
    let (mut pool, _) = pool_of(Strategy::FillFirst, &["a", "b"]);
    let now = epoch();
    // Two requests start on a with the same (about to be rejected) token.
    let mut first = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let mut second = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let a = first.next(&mut pool, now).unwrap();
    assert_eq!(second.next(&mut pool, now), Ok(a));
    // The first gets 401, refreshes, and its retry works.
    assert_eq!(
        first.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::Refresh(a)
    );
    let grant = TokenGrant {
        access_token: access_token("auth0|user_a", UNIX0 + 3600).into(),
        refresh_token: None,
        auth_id: None,
    };
    pool.update_tokens(a, &grant, UNIX0);
    assert_eq!(first.next(&mut pool, now), Ok(a));
    // The second's 401 arrives now, but it was for the old token: refresh, not disable.
    assert_eq!(
        second.on_failure(&mut pool, &unauthenticated(), false, now),
        Verdict::Refresh(a)
    );
    assert!(pool.record(a).unwrap().disabled.is_none());
    assert_eq!(second.next(&mut pool, now), Ok(a));
    first.on_success(&mut pool, now);
    second.on_success(&mut pool, now);
}
