//! Which account serves a request: round-robin and fill-first, priority tiers, per-model
//! availability, sticky conversations, disabled and removed accounts.

mod conductor_support;

use conductor_support::*;
use cursorpool_core::conductor::{AccountId, Pick, Pool, Strategy};

const MODEL: &str = "claude-4-sonnet";

fn picks(pool: &mut Pool, model: &str, n: usize, now: std::time::Instant) -> Vec<AccountId> {
    (0..n)
        .map(|_| match pool.pick(model, None, &[], now) {
            Pick::Account(id) => id,
            other => panic!("expected an account, got {other:?}"),
        })
        .collect()
}

#[test]
fn round_robin_rotates_across_three_accounts() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let got = picks(&mut pool, MODEL, 9, epoch());
    let expected: Vec<AccountId> = ids.iter().copied().cycle().take(9).collect();
    assert_eq!(got, expected);
}

#[test]
fn round_robin_skips_a_cooling_account_and_takes_it_back_after_its_rest() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    pool.report_failure(ids[1], MODEL, &quota(), now);
    assert_eq!(
        picks(&mut pool, MODEL, 4, now),
        [ids[0], ids[2], ids[0], ids[2]]
    );
    // b rested longest unpicked: it comes first once usable.
    assert_eq!(
        picks(&mut pool, MODEL, 3, now + secs(1)),
        [ids[1], ids[0], ids[2]]
    );
}

#[test]
fn fill_first_stays_on_the_first_account_until_it_cools() {
    let (mut pool, ids) = pool_of(Strategy::FillFirst, &["a", "b", "c"]);
    let now = epoch();
    assert_eq!(picks(&mut pool, MODEL, 5, now), vec![ids[0]; 5]);
    pool.report_failure(ids[0], MODEL, &quota(), now);
    assert_eq!(picks(&mut pool, MODEL, 3, now), vec![ids[1]; 3]);
    pool.report_failure(ids[1], MODEL, &quota(), now);
    assert_eq!(picks(&mut pool, MODEL, 2, now), vec![ids[2]; 2]);
    // The first recovers: back to it.
    assert_eq!(picks(&mut pool, MODEL, 2, now + secs(1)), vec![ids[0]; 2]);
}

#[test]
fn higher_priority_tier_is_used_first_and_the_lower_tier_only_while_it_cools() {
    let mut pool = Pool::default();
    let low = pool.upsert(record("low", 0));
    let high1 = pool.upsert(record("high1", 10));
    let high2 = pool.upsert(record("high2", 10));
    let now = epoch();
    assert_eq!(
        picks(&mut pool, MODEL, 4, now),
        [high1, high2, high1, high2]
    );
    pool.report_failure(high1, MODEL, &quota(), now);
    pool.report_failure(high2, MODEL, &unavailable_with_hint(secs(60)), now);
    assert_eq!(picks(&mut pool, MODEL, 2, now), [low, low]);
    assert_eq!(picks(&mut pool, MODEL, 2, now + secs(1)), [high1, high1]);
    // Priorities can change at run time.
    assert!(pool.set_priority(low, 20));
    assert_eq!(picks(&mut pool, MODEL, 1, now + secs(1)), [low]);
}

#[test]
fn a_cooldown_for_one_model_leaves_the_account_available_for_others() {
    let (mut pool, ids) = pool_of(Strategy::FillFirst, &["a", "b"]);
    let now = epoch();
    pool.report_failure(ids[0], MODEL, &quota(), now);
    assert_eq!(picks(&mut pool, MODEL, 1, now), [ids[1]]);
    assert_eq!(picks(&mut pool, "gpt-5", 1, now), [ids[0]]);
    assert!(pool.is_usable(ids[0], "gpt-5", now));
    assert!(!pool.is_usable(ids[0], MODEL, now));
}

#[test]
fn a_sticky_conversation_stays_on_its_account_while_it_is_healthy() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    let first = pool.pick(MODEL, Some("conv-1"), &[], now);
    assert_eq!(first, Pick::Account(ids[0]));
    // Other traffic rotates; conv-1 keeps coming back to a.
    for _ in 0..5 {
        pool.pick(MODEL, None, &[], now);
        assert_eq!(
            pool.pick(MODEL, Some("conv-1"), &[], now),
            Pick::Account(ids[0])
        );
    }
    assert_eq!(pool.sticky_account("conv-1"), Some(ids[0]));
    // A second conversation is placed by rotation, then sticks too.
    let Pick::Account(other) = pool.pick(MODEL, Some("conv-2"), &[], now) else {
        panic!("expected an account");
    };
    assert_ne!(other, ids[0]);
    assert_eq!(
        pool.pick(MODEL, Some("conv-2"), &[], now),
        Pick::Account(other)
    );
}

#[test]
fn a_sticky_conversation_moves_when_its_account_cools_and_stays_on_the_new_one() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b", "c"]);
    let now = epoch();
    assert_eq!(
        pool.pick(MODEL, Some("conv"), &[], now),
        Pick::Account(ids[0])
    );
    pool.report_failure(ids[0], MODEL, &quota(), now);
    let Pick::Account(moved) = pool.pick(MODEL, Some("conv"), &[], now) else {
        panic!("expected an account");
    };
    assert_ne!(moved, ids[0]);
    assert_eq!(pool.sticky_account("conv"), Some(moved));
    // a recovers, but the conversation's checkpoint now lives on `moved`: it stays there.
    assert_eq!(
        pool.pick(MODEL, Some("conv"), &[], now + secs(5)),
        Pick::Account(moved)
    );
}

#[test]
fn a_sticky_conversation_moves_when_its_account_is_excluded_or_disabled() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    assert_eq!(
        pool.pick(MODEL, Some("c1"), &[], now),
        Pick::Account(ids[0])
    );
    assert_eq!(
        pool.pick(MODEL, Some("c1"), &[ids[0]], now),
        Pick::Account(ids[1])
    );
    pool.disable(ids[1], "operator");
    assert_eq!(
        pool.pick(MODEL, Some("c1"), &[], now),
        Pick::Account(ids[0])
    );
}

#[test]
fn excluded_accounts_are_not_picked() {
    let (mut pool, ids) = pool_of(Strategy::FillFirst, &["a", "b"]);
    let now = epoch();
    assert_eq!(
        pool.pick(MODEL, None, &[ids[0]], now),
        Pick::Account(ids[1])
    );
    assert_eq!(pool.pick(MODEL, None, &ids, now), Pick::NoAccounts);
}

#[test]
fn disabled_accounts_are_never_picked_until_enabled() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    pool.disable(ids[0], "maintenance");
    assert_eq!(picks(&mut pool, MODEL, 3, now), vec![ids[1]; 3]);
    pool.enable(ids[0]);
    assert_eq!(picks(&mut pool, MODEL, 1, now), [ids[0]]);
}

#[test]
fn logging_in_again_to_the_same_account_updates_it_in_place() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a"]);
    let now = epoch();
    pool.report_failure(ids[0], MODEL, &quota(), now);
    let mut again = record("a", 0);
    again.access_token = access_token("auth0|user_a", UNIX0 + 999_999).into();
    let id = pool.upsert(again);
    assert_eq!(id, ids[0]);
    assert_eq!(pool.len(), 1);
    // Its rest is kept: new credentials do not refill a quota.
    assert!(!pool.is_usable(id, MODEL, now));
    assert_eq!(pool.find("a"), Some(id));
}

#[test]
fn a_removed_account_is_gone_and_its_conversations_move() {
    let (mut pool, ids) = pool_of(Strategy::RoundRobin, &["a", "b"]);
    let now = epoch();
    assert_eq!(pool.pick(MODEL, Some("c"), &[], now), Pick::Account(ids[0]));
    let removed = pool.remove(ids[0]).expect("was there");
    assert_eq!(removed.file_name(), "cursor.a.json");
    assert_eq!(pool.sticky_account("c"), None);
    assert_eq!(pool.pick(MODEL, Some("c"), &[], now), Pick::Account(ids[1]));
    assert!(pool.remove(ids[0]).is_none());
    // Ids are not reused.
    let c = pool.upsert(record("c", 0));
    assert_ne!(c, ids[0]);
}
