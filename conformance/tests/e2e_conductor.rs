//! The conductor end to end: several simulated Cursor accounts behind one proxy. Quota runs out
//! account by account without the client noticing, exhausted accounts rest instead of being
//! asked again, a client mistake is never replayed on other accounts, a failure after the
//! first byte marks its account, and a conversation stays on its account. The sim's counters
//! per account show what each account was asked.

use cursorpool_conformance as support;

use std::time::Duration;

use cursorpool_core::conductor::state::AccountState;
use cursorpool_core::connect::code::Code;
use cursorpool_sim::model::{Fault, Quota};
use serde_json::{Value, json};
use support::{
    Harness, Options, anthropic_stream, anthropic_text_request, bounded, openai_text_request,
};

fn quota(requests: u64) -> Quota {
    Quota {
        requests: Some(requests),
        tokens: None,
    }
}

/// Quota rests long enough that no exhausted account recovers while a test runs: each is
/// refused exactly once, whatever the machine's speed.
fn long_quota_rests(c: &mut cursorpool_tokio::app::AppConfig) {
    c.pool.cooldown.quota_initial = Duration::from_secs(600);
}

fn answered(r: &support::Response, prompt: &str) {
    assert_eq!(r.status, 200, "{prompt}: {}", r.text());
    let text = r.json()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains(&format!("last user message: \"{prompt}\"")),
        "{prompt}: {text}"
    );
}

async fn small_quotas_serve_every_request_until_all_are_spent() {
    bounded(async {
        let quotas = [("a", 3), ("b", 4), ("c", 5)];
        let h = Harness::start(Options {
            accounts: quotas
                .iter()
                .map(|(l, q)| ((*l).to_owned(), quota(*q)))
                .collect(),
            configure: Some(long_quota_rests),
            ..Options::default()
        })
        .await;
        let total: u64 = quotas.iter().map(|(_, q)| q).sum();
        for i in 0..total {
            // A new conversation each time, so round-robin (not stickiness) spreads them.
            let prompt = format!("request {i}");
            if i % 2 == 0 {
                answered(
                    &h.anthropic(&anthropic_text_request(&prompt, false)).await,
                    &prompt,
                );
            } else {
                let s =
                    anthropic_stream(&h.anthropic(&anthropic_text_request(&prompt, true)).await);
                assert!(s.error.is_none(), "{prompt}: {s:?}");
                assert!(
                    s.text.contains(&format!("last user message: \"{prompt}\"")),
                    "{prompt}: {}",
                    s.text
                );
            }
        }
        for (label, q) in quotas {
            let c = h.account(label);
            // Every account served (rotation), each up to its whole quota.
            assert_eq!(
                c.turns_completed, q,
                "every request of {label}'s quota was used: {c:?}"
            );
            let refused = c.errors.get("resource_exhausted").copied().unwrap_or(0);
            assert!(refused <= 1, "{label} was asked again while resting: {c:?}");
        }
        // Every account spent: 429 with the time until the earliest recovery, in both APIs.
        let r = h
            .anthropic(&anthropic_text_request("one too many", false))
            .await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "rate_limit_error");
        let after: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("retry-after: {:?}", r.headers));
        assert!(after > 0 && after <= 600, "{after}");
        let r = h.openai(&openai_text_request("and another", true)).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        for (label, _) in quotas {
            let c = h.account(label);
            assert_eq!(
                c.errors.get("resource_exhausted"),
                Some(&1),
                "each account refused once, then rested: {c:?}"
            );
        }
        h.shutdown().await;
    })
    .await;
}

async fn every_account_exhausted_is_a_429_with_retry_after() {
    bounded(async {
        // The default policy: the first quota rest is one second.
        let h = Harness::start(Options {
            accounts: vec![("x".to_owned(), quota(0)), ("y".to_owned(), quota(0))],
            ..Options::default()
        })
        .await;
        let r = h.anthropic(&anthropic_text_request("hi", true)).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.json()["type"], "error");
        assert_eq!(r.json()["error"]["type"], "rate_limit_error");
        let after: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("retry-after: {:?}", r.headers));
        assert!(after >= 1, "{after}");
        for label in ["x", "y"] {
            let c = h.account(label);
            assert_eq!(
                c.errors.get("resource_exhausted"),
                Some(&1),
                "{label}: {c:?}"
            );
        }
        let s = h.app.pool_status();
        assert!(
            s.accounts.iter().all(|a| a.state == AccountState::Cooling),
            "{:?}",
            s.accounts
        );
        h.shutdown().await;
    })
    .await;
}

async fn a_client_error_is_not_replayed_on_other_accounts() {
    bounded(async {
        let h = Harness::start(Options::with_accounts(&["a", "b", "c"]).fault_all(
            None,
            Fault::ErrorAfter {
                after_updates: 0,
                code: Code::InvalidArgument,
                cursor_error: None,
            },
        ))
        .await;
        let r = h.anthropic(&anthropic_text_request("bad", false)).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        assert_eq!(h.counters().total.runs, 1, "only one account saw the run");
        let r = h.openai(&openai_text_request("bad again", false)).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(h.counters().total.runs, 2, "one run per request");
        // The client's mistake rests no account.
        let s = h.app.pool_status();
        assert!(
            s.accounts.iter().all(|a| a.state == AccountState::Ready),
            "{:?}",
            s.accounts
        );
        h.shutdown().await;
    })
    .await;
}

async fn every_account_unavailable_rests_them_and_answers_429() {
    bounded(async {
        let h = Harness::start(Options::with_accounts(&["a", "b"]).fault_all(
            None,
            Fault::ErrorAfter {
                after_updates: 0,
                code: Code::Unavailable,
                cursor_error: None,
            },
        ))
        .await;
        let r = h.anthropic(&anthropic_text_request("hi", false)).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        let runs = h.counters().total.runs;
        assert_eq!(runs, 2, "both accounts were tried");
        let r = h
            .anthropic(&anthropic_text_request("hi again", false))
            .await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(
            h.counters().total.runs,
            runs,
            "resting accounts are not asked"
        );
        h.shutdown().await;
    })
    .await;
}

async fn a_failure_after_the_first_byte_marks_the_account() {
    bounded(async {
        let h = Harness::start(Options::with_accounts(&["flaky", "solid"]).fault_all(
            Some("flaky"),
            Fault::ErrorAfter {
                after_updates: 30,
                code: Code::Internal,
                cursor_error: None,
            },
        ))
        .await;
        // Round-robin gives the first request to `flaky`: its answer breaks off visibly.
        let s = anthropic_stream(
            &h.anthropic(&anthropic_text_request(
                "a long answer please lorem 400",
                true,
            ))
            .await,
        );
        assert!(!s.text.is_empty(), "{s:?}");
        assert!(s.error.is_some(), "{:?}", s.events);
        // The run's end reaches the pool just after the client's error event.
        loop {
            let status = h.app.pool_status();
            let flaky = status
                .accounts
                .iter()
                .find(|a| a.label.as_deref() == Some("flaky"))
                .expect("flaky");
            if flaky.state == AccountState::Cooling {
                assert!(flaky.last_error.is_some(), "{flaky:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // While it rests, every new conversation goes to the other account.
        for i in 0..4 {
            let prompt = format!("after the break {i}");
            answered(
                &h.anthropic(&anthropic_text_request(&prompt, false)).await,
                &prompt,
            );
        }
        assert_eq!(h.account("flaky").runs, 1, "{:?}", h.account("flaky"));
        assert_eq!(h.account("solid").turns_completed, 4);
        h.shutdown().await;
    })
    .await;
}

async fn a_conversation_stays_on_its_account_and_usage_is_counted() {
    bounded(async {
        let h = Harness::start(Options::with_accounts(&["a", "b", "c"])).await;
        let mut messages: Vec<Value> = Vec::new();
        for i in 0..4 {
            let question = format!("turn {i}");
            messages.push(json!({"role": "user", "content": question}));
            let r = h
                .anthropic(&json!({
                    "model": "claude-sonnet-5",
                    "max_tokens": 256,
                    "messages": messages,
                }))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let text = r.json()["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            messages.push(json!({"role": "assistant", "content": text}));
        }
        let served: Vec<u64> = ["a", "b", "c"]
            .iter()
            .map(|l| h.account(l).turns_completed)
            .collect();
        assert!(
            served.contains(&4),
            "one account served every turn: {served:?}"
        );
        assert_eq!(served.iter().sum::<u64>(), 4, "{served:?}");
        // Usage reaches the pool when each run ends (just after its answer).
        loop {
            let status = h.app.pool_status();
            let requests: u64 = status.accounts.iter().map(|a| a.usage.total.requests).sum();
            if requests == 4 {
                assert!(
                    status
                        .accounts
                        .iter()
                        .any(|a| a.usage.total.requests == 4 && a.usage.total.output_tokens > 0),
                    "{:?}",
                    status.accounts
                );
                assert_eq!(
                    status.clients.len(),
                    1,
                    "one client key: {:?}",
                    status.clients
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.shutdown().await;
    })
    .await;
}

/// Where the restart test keeps its state (one per test process).
fn restart_state_dir() -> std::path::PathBuf {
    // Per binary under test: both binaries' tests run in this process, maybe at once.
    std::env::temp_dir().join(format!(
        "cursorpool-conductor-restart-{}-{}",
        std::process::id(),
        support::Target::current().binary()
    ))
}

async fn after_a_restart_a_conversation_returns_to_the_account_holding_its_checkpoint() {
    use cursorpool_tokio::app::{App, AppConfig};

    bounded(async {
        let dir = restart_state_dir();
        let _ = std::fs::remove_dir_all(&dir);
        let h = Harness::start(Options {
            configure: Some(|c| c.state_dir = Some(restart_state_dir())),
            ..Options::with_accounts(&["a", "b", "c"])
        })
        .await;
        // Two other conversations first: round-robin then gives this one to `c`.
        for prompt in ["warm-up 1", "warm-up 2"] {
            answered(
                &h.anthropic(&anthropic_text_request(prompt, false)).await,
                prompt,
            );
        }
        let mut messages = vec![json!({"role": "user", "content": "remember me"})];
        let r = h
            .anthropic(
                &json!({"model": "claude-sonnet-5", "max_tokens": 256, "messages": messages}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(h.account("c").turns_completed, 1, "{:?}", h.counters());
        messages.push(json!({"role": "assistant", "content": r.json()["content"].clone()}));
        messages.push(json!({"role": "user", "content": "after the restart"}));
        while h.app.conversations_len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.app.flush();

        // A new proxy process on the same state and accounts: its pool is fresh (round-robin
        // would start with `a`), its conversation store remembers `c`.
        let config = AppConfig {
            upstream_url: h.sim.base_url(),
            accounts: ["a", "b", "c"]
                .iter()
                .map(|l| ((*l).to_owned(), h.sim.access_token(l).expect("token")))
                .collect(),
            state_dir: Some(dir.clone()),
            ..cursorpool_tokio::cli::demo_config()
        };
        let app = App::new(config, support::platform()).expect("proxy");
        let proxy = support::Proxy::serve(app.clone()).await;
        let mut client = support::Client::connect(proxy.addr).await;
        let body = json!({"model": "claude-sonnet-5", "max_tokens": 256, "messages": messages});
        let r = client.post("/v1/messages", body.to_string().into()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let c = h.account("c");
        assert_eq!(c.turns_completed, 2, "{:?}", h.counters());
        assert_eq!(c.replayed_checkpoints, 1, "{c:?}");
        proxy.stop().await;
        h.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

support::both_binaries!(
    small_quotas_serve_every_request_until_all_are_spent,
    every_account_exhausted_is_a_429_with_retry_after,
    a_client_error_is_not_replayed_on_other_accounts,
    every_account_unavailable_rests_them_and_answers_429,
    a_failure_after_the_first_byte_marks_the_account,
    a_conversation_stays_on_its_account_and_usage_is_counted,
    after_a_restart_a_conversation_returns_to_the_account_holding_its_checkpoint,
);
