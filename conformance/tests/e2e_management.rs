//! Client API keys and the management API end to end against the simulated backend: wrong or
//! missing client keys are refused in each API's shape; the management API is off without a
//! secret, refuses wrong secrets and then throttles them; it lists accounts without any
//! credential, disables, resets rests, runs a browser login whose account then serves, and
//! the pool's rests survive a restart.

use cursorpool_conformance as support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use cursorpool_core::conductor::login::PollSchedule;
use cursorpool_core::conductor::state::AccountState;
use cursorpool_host::pool_state;
use cursorpool_sim::model::{Control, Quota};
use cursorpool_tokio::app::AppConfig;
use cursorpool_tokio::persist::AuthDir;
use serde_json::Value;
use support::{
    CLIENT_KEY, Client, Harness, Options, ProxyAccount, anthropic_text_request, bounded,
    openai_text_request,
};

const SECRET: &str = "mgmt-secret-for-tests";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self(std::env::temp_dir().join(format!(
            "cursorpool-e2e-mgmt-{name}-{}-{}-{nanos}",
            support::Target::current().binary(),
            std::process::id()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_keys(c: &mut AppConfig) {
    c.api_keys = vec![CLIENT_KEY.to_owned(), "sk-second".to_owned()];
}

fn with_secret(c: &mut AppConfig) {
    c.management_secret = Some(SECRET.to_owned());
    c.pool.cooldown.quota_initial = Duration::from_secs(600);
    c.login_site = "http://login.sim.invalid".to_owned();
    c.login_schedule =
        PollSchedule::custom(Duration::from_millis(20), Duration::from_millis(100), 600);
}

fn quota(requests: u64) -> Quota {
    Quota {
        requests: Some(requests),
        tokens: None,
    }
}

async fn mgmt(h: &Harness, method: &str, path: &str, secret: Option<&str>) -> support::Response {
    let auth = secret.map(|s| format!("Bearer {s}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    Client::connect(h.addr)
        .await
        .send(method, path, &headers, Bytes::new())
        .await
}

async fn ask(h: &Harness, prompt: &str) -> support::Response {
    h.anthropic(&anthropic_text_request(prompt, false)).await
}

fn account_id(accounts: &Value, key: &str) -> u64 {
    accounts["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["id"].as_u64())
        .unwrap_or_else(|| panic!("no account {key}: {accounts}"))
}

async fn client_keys_are_required_when_configured() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(with_keys),
            ..Options::default()
        })
        .await;
        let body = anthropic_text_request("hi", false).to_string();
        let openai = openai_text_request("hi", false).to_string();
        let mut c = Client::connect(h.addr).await;
        for headers in [
            vec![("anthropic-version", "2023-06-01")],
            vec![
                ("anthropic-version", "2023-06-01"),
                ("x-api-key", "sk-wrong"),
            ],
        ] {
            let r = c
                .send("POST", "/v1/messages", &headers, body.clone().into())
                .await;
            assert_eq!(r.status, 401, "{}", r.text());
            assert_eq!(r.json()["type"], "error");
            assert_eq!(r.json()["error"]["type"], "authentication_error");
            assert!(!r.text().contains("sk-wrong"), "{}", r.text());
        }
        for auth in [None, Some("Bearer sk-wrong")] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            let r = c
                .send(
                    "POST",
                    "/v1/chat/completions",
                    &headers,
                    openai.clone().into(),
                )
                .await;
            assert_eq!(r.status, 401, "{}", r.text());
            assert!(r.json()["error"]["message"].is_string(), "{}", r.text());
        }
        let r = c.send("GET", "/v1/models", &[], Bytes::new()).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.json()["error"].is_object(), "{}", r.text());
        // The right key, in either header.
        let r = ask(&h, "with the key").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c
            .send(
                "POST",
                "/v1/chat/completions",
                &[
                    ("content-type", "application/json"),
                    ("authorization", "Bearer sk-second"),
                ],
                openai.into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The management API stays off without its secret.
        let r = mgmt(&h, "GET", "/v0/management/accounts", Some(CLIENT_KEY)).await;
        assert_eq!(r.status, 404, "{}", r.text());
        h.shutdown().await;
    })
    .await;
}

async fn wrong_management_secrets_are_refused_then_throttled() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..Options::default()
        })
        .await;
        for i in 0..5 {
            let secret = (i % 2 == 0).then_some("not-the-secret");
            let r = mgmt(&h, "GET", "/v0/management/accounts", secret).await;
            assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
            assert!(r.json()["error"].is_string(), "{}", r.text());
        }
        let r = mgmt(&h, "GET", "/v0/management/accounts", Some("still-wrong")).await;
        assert_eq!(r.status, 429, "{}", r.text());
        let after: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("retry-after: {:?}", r.headers));
        assert!(after > 0 && after <= 60, "{after}");
        // Throttled for the rest of the window, the right secret included.
        let r = mgmt(&h, "GET", "/v0/management/accounts", Some(SECRET)).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(!r.text().contains(SECRET));
        h.shutdown().await;
    })
    .await;
}

async fn accounts_are_listed_without_credentials_and_can_be_disabled() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..Options::with_accounts(&["a", "b"])
        })
        .await;
        let r = mgmt(&h, "GET", "/v0/management/accounts", Some(SECRET)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        for label in ["a", "b"] {
            let token = h.sim.access_token(label).expect("sim token");
            assert!(!r.text().contains(&token), "a token leaked: {}", r.text());
        }
        assert!(!r.text().contains(SECRET));
        let a = account_id(&r.json(), "a");
        let b = account_id(&r.json(), "b");
        let r = mgmt(
            &h,
            "POST",
            &format!("/v0/management/accounts/{a}/disable"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["state"], "disabled", "{}", r.text());
        let before_a = h.account("a").runs;
        for i in 0..4 {
            let r = ask(&h, &format!("disabled {i}")).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        assert_eq!(
            h.account("a").runs,
            before_a,
            "the disabled account was asked"
        );
        assert!(h.account("b").runs >= 4, "{:?}", h.account("b"));
        let r = mgmt(
            &h,
            "POST",
            &format!("/v0/management/accounts/{a}/enable"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["state"], "ready", "{}", r.text());
        // Usage per account, model and client (a run's usage lands when its task ends, just
        // after its answer: wait for it).
        let mut tries = 0;
        let (usage, b_usage) = loop {
            let r = mgmt(&h, "GET", "/v0/management/usage", Some(SECRET)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let usage = r.json();
            let b_usage = usage["accounts"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["id"] == b))
                .cloned()
                .expect("b's usage");
            tries += 1;
            if b_usage["usage"]["total"]["requests"].as_u64() >= Some(4) || tries > 200 {
                break (usage, b_usage);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert!(
            b_usage["usage"]["total"]["requests"].as_u64() >= Some(4),
            "{usage}"
        );
        assert!(
            b_usage["usage"]["by_model"]
                .as_object()
                .is_some_and(|m| !m.is_empty()),
            "{usage}"
        );
        assert!(
            usage["clients"].as_object().is_some_and(|c| !c.is_empty()),
            "{usage}"
        );
        assert!(!r.text().contains(CLIENT_KEY), "{}", r.text());
        // Unknown accounts and routes.
        let r = mgmt(
            &h,
            "POST",
            "/v0/management/accounts/999/reset",
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.text());
        let r = mgmt(
            &h,
            "DELETE",
            &format!("/v0/management/accounts/{a}"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["deleted"], true);
        let r = mgmt(&h, "GET", "/v0/management/accounts", Some(SECRET)).await;
        assert_eq!(r.json()["accounts"].as_array().map(Vec::len), Some(1));
        h.shutdown().await;
    })
    .await;
}

async fn reset_makes_an_exhausted_account_usable_again() {
    bounded(async {
        let h = Harness::start(Options {
            accounts: vec![("x".to_owned(), quota(0))],
            configure: Some(with_secret),
            ..Options::default()
        })
        .await;
        let r = ask(&h, "no quota").await;
        assert_eq!(r.status, 429, "{}", r.text());
        h.sim
            .control(Control::SetQuota {
                account: "x".to_owned(),
                quota: Quota::default(),
            })
            .expect("quota raised");
        let r = ask(&h, "still resting").await;
        assert_eq!(
            r.status,
            429,
            "resting accounts are not asked: {}",
            r.text()
        );
        let runs = h.account("x").runs;
        let list = mgmt(&h, "GET", "/v0/management/accounts", Some(SECRET)).await;
        assert_eq!(
            list.json()["accounts"][0]["state"],
            "cooling",
            "{}",
            list.text()
        );
        let x = account_id(&list.json(), "x");
        let r = mgmt(
            &h,
            "POST",
            &format!("/v0/management/accounts/{x}/reset"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["state"], "ready", "{}", r.text());
        let r = ask(&h, "after the reset").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(h.account("x").runs, runs + 1);
        h.shutdown().await;
    })
    .await;
}

async fn management_login_adds_an_account_that_serves() {
    bounded(async {
        let h = Harness::start(Options {
            accounts: vec![
                ("alice".to_owned(), Quota::default()),
                ("bob".to_owned(), Quota::default()),
            ],
            proxy_accounts: Some(vec![ProxyAccount::Sim("alice".to_owned())]),
            configure: Some(with_secret),
            ..Options::default()
        })
        .await;
        let dir = TempDir::new("login");
        assert!(h.app.set_auth_dir(AuthDir::new(dir.path())));
        let r = mgmt(
            &h,
            "GET",
            "/v0/management/cursor-auth-url?label=bob",
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let started = r.json();
        let url = started["url"].as_str().expect("url").to_owned();
        let uuid = started["state"].as_str().expect("state").to_owned();
        assert!(url.contains(&format!("uuid={uuid}")), "{url}");
        let challenge = url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("challenge="))
            .expect("challenge in the URL")
            .to_owned();
        let status_path = format!("/v0/management/cursor-auth-status?state={uuid}");
        let r = mgmt(&h, "GET", &status_path, Some(SECRET)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            ["pending", "done"].contains(&r.json()["status"].as_str().unwrap_or_default()),
            "{}",
            r.text()
        );
        h.sim
            .control(Control::CompleteLogin {
                uuid: uuid.clone(),
                account: "bob".to_owned(),
                challenge,
            })
            .expect("the sim completes the login");
        let done = loop {
            let r = mgmt(&h, "GET", &status_path, Some(SECRET)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            match v["status"].as_str() {
                Some("pending") => tokio::time::sleep(Duration::from_millis(20)).await,
                Some("done") => break v,
                _ => panic!("login failed: {v}"),
            }
        };
        assert_eq!(done["file"], "cursor.bob.json", "{done}");
        assert!(dir.path().join("cursor.bob.json").exists());
        let list = mgmt(&h, "GET", "/v0/management/accounts", Some(SECRET)).await;
        let token = h.sim.access_token("bob").unwrap_or_default();
        assert!(!list.text().contains(&token));
        let alice = account_id(&list.json(), "alice");
        let bob = account_id(&list.json(), "bob");
        let r = mgmt(
            &h,
            "POST",
            &format!("/v0/management/accounts/{alice}/disable"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = ask(&h, "through bob").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(h.account("bob").runs, 1, "{:?}", h.account("bob"));
        // Deleting a logged-in account removes its credential file too.
        let r = mgmt(
            &h,
            "DELETE",
            &format!("/v0/management/accounts/{bob}"),
            Some(SECRET),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["file_deleted"], true, "{}", r.text());
        assert!(!dir.path().join("cursor.bob.json").exists());
        h.shutdown().await;
    })
    .await;
}

/// The state directory of the restart test, per binary under test (the harness's
/// `configure` is a plain fn; both binaries' tests may run at once).
static STATE_DIR: std::sync::Mutex<Vec<(support::Target, PathBuf)>> =
    std::sync::Mutex::new(Vec::new());

fn with_state_dir(c: &mut AppConfig) {
    with_secret(c);
    let target = support::Target::current();
    c.state_dir = STATE_DIR
        .lock()
        .expect("state dirs")
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, d)| d.clone());
}

async fn pool_state_survives_a_restart() {
    bounded(async {
        let dir = TempDir::new("state");
        STATE_DIR
            .lock()
            .expect("state dirs")
            .push((support::Target::current(), dir.path().to_path_buf()));
        let opts = Options {
            accounts: vec![("x".to_owned(), quota(0))],
            configure: Some(with_state_dir),
            ..Options::default()
        };
        let h = Harness::start(opts.clone()).await;
        let r = ask(&h, "no quota").await;
        assert_eq!(r.status, 429, "{}", r.text());
        pool_state::save(&h.app, dir.path()).await.expect("saved");
        h.shutdown().await;

        let h = Harness::start(opts).await;
        assert!(pool_state::load(&h.app, dir.path()).await);
        let status = h.app.pool_status();
        assert_eq!(
            status.accounts[0].state,
            AccountState::Cooling,
            "{status:?}"
        );
        let r = ask(&h, "after the restart").await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(h.account("x").runs, 0, "the resting account was asked");
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    client_keys_are_required_when_configured,
    wrong_management_secrets_are_refused_then_throttled,
    accounts_are_listed_without_credentials_and_can_be_disabled,
    reset_makes_an_exhausted_account_usable_again,
    management_login_adds_an_account_that_serves,
    pool_state_survives_a_restart,
);
