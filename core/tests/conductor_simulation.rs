//! The pool under load with simulated time: three accounts with small quotas (Cursor's side is
//! a [`FakeAccount`] whose quota returns a few seconds after it ran dry) serve 200 requests
//! through the full failover policy ([`Attempts`] over a round-robin [`Pool`]).
//!
//! - With Cursor's retry hint and a sustainable rate: no client-visible error, rotation,
//!   exhausted accounts skipped exactly until their quota returns, then used again.
//! - Without hints: the backoff probes (1 s, 2 s, 4 s, …) and every request is still served.
//! - Overloaded: the only client-visible errors are 429s while *no* account has quota left,
//!   each with `retry-after` at the earliest recovery.
//!
//! Why the sustainable rate matters: the quota only returns after an account ran dry, so round
//! robin (which spreads use evenly) eventually drains all three together; at twice the rate
//! that happens, and then a 429 is the right answer.

mod conductor_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conductor_support::*;
use cursorpool_core::classify::Classification;
use cursorpool_core::conductor::usage::UsageRecord;
use cursorpool_core::conductor::{AccountId, Attempts, Pool, Strategy, Verdict};

const MODEL: &str = "claude-4-sonnet";

/// Cursor's side of one account: `quota` requests, refilled `refill_after` after the first
/// refusal.
#[derive(Debug)]
struct FakeAccount {
    quota: u32,
    used: u32,
    refill_after: Duration,
    refill_at: Option<Instant>,
}

impl FakeAccount {
    fn new(quota: u32, refill_after: Duration) -> Self {
        FakeAccount {
            quota,
            used: 0,
            refill_after,
            refill_at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.refill_at.is_some_and(|t| now >= t) {
            self.used = 0;
            self.refill_at = None;
        }
    }

    /// Serves one request, or refuses it with `resource_exhausted`.
    fn serve(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.used < self.quota {
            self.used += 1;
            return true;
        }
        self.refill_at.get_or_insert(now + self.refill_after);
        false
    }

    fn has_quota(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.used < self.quota
    }
}

#[derive(Debug, Default)]
struct Trace {
    /// (time, account) of every served request.
    served: Vec<(Instant, AccountId)>,
    /// (time of the refusal, account, when the pool lets it serve again).
    refusals: Vec<(Instant, AccountId, Instant)>,
    /// (time, account) of every run started.
    runs: Vec<(Instant, AccountId)>,
    /// (time, error) of every client-visible error.
    client_errors: Vec<(Instant, Classification)>,
}

/// One simulated load run.
struct Load {
    quotas: [u32; 3],
    refill_after: Duration,
    /// Whether a refusal carries Cursor's retry hint (the time until the quota returns).
    hints: bool,
    requests: u32,
    interval: Duration,
}

/// Drives `load` through [`Attempts`] over a round-robin [`Pool`] of three accounts, playing
/// Cursor with [`FakeAccount`]s. Asserts on the way that a client only ever gets an error when
/// no account had quota left, and with `retry-after` at the pool's earliest recovery.
fn simulate(load: &Load) -> (Trace, Pool, Vec<AccountId>, Instant) {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let mut upstream: BTreeMap<AccountId, FakeAccount> = ids
        .iter()
        .zip(load.quotas)
        .map(|(id, quota)| (*id, FakeAccount::new(quota, load.refill_after)))
        .collect();
    let start = epoch();
    let mut trace = Trace::default();
    for i in 0..load.requests {
        let now = start + load.interval * i;
        let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
        let mut next = attempts.next(&mut pool, now);
        loop {
            let account = match next {
                Ok(account) => account,
                Err(c) => {
                    let any_left = upstream.values_mut().any(|f| f.has_quota(now));
                    assert!(
                        !any_left,
                        "request {i}: client got {c:?} while an account had quota"
                    );
                    let earliest = ids
                        .iter()
                        .filter_map(|id| pool.recovery(*id, MODEL, now))
                        .min();
                    assert_eq!(c.retry_after, earliest.map(|t| t - now), "request {i}");
                    trace.client_errors.push((now, c));
                    break;
                }
            };
            trace.runs.push((now, account));
            let fake = upstream.get_mut(&account).unwrap();
            if fake.serve(now) {
                attempts.on_success(&mut pool, now);
                pool.record_usage(
                    Some(account),
                    &UsageRecord {
                        model: MODEL,
                        client: Some("key-test"),
                        input_tokens: 10,
                        output_tokens: 5,
                        error: None,
                    },
                );
                trace.served.push((now, account));
                break;
            }
            let refusal = match fake.refill_at {
                Some(at) if load.hints => quota_with_hint(at - now),
                _ => quota(),
            };
            let verdict = attempts.on_failure(&mut pool, &refusal, false, now);
            let back = pool
                .recovery(account, MODEL, now)
                .expect("a refused account rests");
            trace.refusals.push((now, account, back));
            next = match verdict {
                Verdict::RetryOn(a) => Ok(a),
                Verdict::GiveUp(c) => Err(c),
                Verdict::Refresh(_) => panic!("no refresh for a quota failure"),
            };
        }
    }
    (trace, pool, ids, start)
}

/// Every account ran dry at least once, was not used while it rested, and served again later.
fn assert_skipped_while_resting_and_used_again(trace: &Trace, ids: &[AccountId]) {
    for id in ids {
        let refusals: Vec<_> = trace.refusals.iter().filter(|r| r.1 == *id).collect();
        assert!(
            !refusals.is_empty(),
            "{id} never ran dry: quotas too large for the test"
        );
        for (at, _, back) in &refusals {
            let early = trace
                .runs
                .iter()
                .find(|(t, a)| a == id && t > at && t < back);
            assert!(early.is_none(), "{id} used during its rest: {early:?}");
            let after = trace.served.iter().find(|(t, a)| a == id && t >= back);
            let end = trace.runs.last().unwrap().0;
            assert!(
                after.is_some() || *back + secs(10) > end,
                "{id} never served again after its rest ending {back:?}"
            );
        }
    }
}

#[test]
fn three_accounts_with_small_quotas_serve_200_requests_without_a_client_visible_error() {
    let (trace, pool, ids, start) = simulate(&Load {
        quotas: [5, 8, 12],
        refill_after: secs(3),
        hints: true,
        requests: 200,
        interval: secs(1),
    });
    assert_eq!(trace.client_errors, []);
    assert_eq!(trace.served.len(), 200);

    // Rotation: the first requests go a, b, c, a, …
    let first: Vec<AccountId> = trace.served.iter().take(4).map(|(_, a)| *a).collect();
    assert_eq!(first, [ids[0], ids[1], ids[2], ids[0]]);
    assert_skipped_while_resting_and_used_again(&trace, &ids);
    // With Cursor's hint the pool rests an account exactly until its quota returns: one
    // refused run per exhaustion, never a second probe.
    for (at, id, back) in &trace.refusals {
        assert_eq!(*back, *at + secs(3), "{id}");
    }

    // Usage was counted per account and per client.
    let status = pool.status(start + secs(200), UNIX0 + 200);
    let served: u64 = status.accounts.iter().map(|a| a.usage.total.requests).sum();
    assert_eq!(served, 200);
    assert_eq!(status.clients["key-test"].total.requests, 200);
    assert_eq!(status.clients["key-test"].total.output_tokens, 1000);
    let refused: u64 = status
        .accounts
        .iter()
        .map(|a| {
            a.usage
                .total
                .errors
                .get("quota_exhausted")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(refused as usize, trace.refusals.len());
}

#[test]
fn without_retry_hints_the_backoff_probes_exhausted_accounts_and_every_request_is_served() {
    let (trace, _, ids, _) = simulate(&Load {
        quotas: [5, 8, 12],
        refill_after: secs(3),
        hints: false,
        requests: 200,
        interval: secs(2),
    });
    assert_eq!(trace.client_errors, []);
    assert_eq!(trace.served.len(), 200);
    assert_skipped_while_resting_and_used_again(&trace, &ids);
    // Probing costs a few refused runs per exhaustion (1 s, 2 s, 4 s, …), not one per request.
    assert!(
        trace.refusals.len() < 50,
        "{} refused runs",
        trace.refusals.len()
    );
}

#[test]
fn under_overload_clients_get_429_only_while_no_account_has_quota() {
    // Twice the rate the quotas sustain: some requests must fail; `simulate` checks that each
    // failure happened with every account dry and carried the earliest recovery.
    let (trace, _, ids, _) = simulate(&Load {
        quotas: [5, 8, 12],
        refill_after: secs(3),
        hints: true,
        requests: 200,
        interval: Duration::from_millis(500),
    });
    assert!(!trace.client_errors.is_empty());
    assert!(trace.served.len() > 150, "{} served", trace.served.len());
    assert!(
        trace
            .client_errors
            .iter()
            .all(|(_, c)| c.client_status == 429)
    );
    assert_skipped_while_resting_and_used_again(&trace, &ids);
}

#[test]
fn when_every_quota_is_gone_clients_get_429_until_the_earliest_recovery_then_service_resumes() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let mut upstream: BTreeMap<AccountId, FakeAccount> = ids
        .iter()
        .map(|id| (*id, FakeAccount::new(1, secs(10))))
        .collect();
    let now = epoch();
    let mut outcomes = Vec::new();
    for i in 0..4u32 {
        let t = now + secs(u64::from(i));
        let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
        let mut next = attempts.next(&mut pool, t);
        let outcome = loop {
            let account = match next {
                Ok(a) => a,
                Err(c) => break Err(c),
            };
            if upstream.get_mut(&account).unwrap().serve(t) {
                attempts.on_success(&mut pool, t);
                break Ok(account);
            }
            next = match attempts.on_failure(&mut pool, &quota_with_hint(secs(10)), false, t) {
                Verdict::RetryOn(a) => Ok(a),
                Verdict::GiveUp(c) => Err(c),
                Verdict::Refresh(_) => unreachable!("no refresh for a quota failure"),
            };
        };
        outcomes.push(outcome);
    }
    assert_eq!(outcomes[0], Ok(ids[0]));
    assert_eq!(outcomes[1], Ok(ids[1]));
    // Request 3 at t=2 s: both refuse, each rests 10 s; a recovers first (at 12 s).
    let err = outcomes[2].clone().unwrap_err();
    assert_eq!(err.client_status, 429);
    assert_eq!(err.retry_after, Some(secs(10)));
    // Request 4 at t=3 s does not even reach Cursor.
    let err = outcomes[3].clone().unwrap_err();
    assert_eq!(err.retry_after, Some(secs(9)));
    // After the advertised wait the quota has refilled and service resumes.
    let t = now + secs(12);
    let mut attempts = Attempts::new(Attempts::DEFAULT_MAX, MODEL, None);
    let account = attempts.next(&mut pool, t).unwrap();
    assert!(upstream.get_mut(&account).unwrap().serve(t));
}
