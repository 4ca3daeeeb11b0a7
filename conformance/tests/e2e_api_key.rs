//! Accounts added by API key (spec §7.3) and the selection strategy, end to end against the
//! simulated backend: `cursorpool login --api-key` writes a private credential file that keeps
//! the key and that the proxy serves on; a refused key fails clearly (exit code 1) and writes
//! nothing; `POST /v0/management/accounts` adds an account that then serves, without ever
//! answering the key or a token; fill-first keeps to the first account while round-robin
//! alternates.

use cursorpool_conformance as support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use clap::Parser as _;
use cursorpool_core::conductor::{AccountRecord, Strategy};
use cursorpool_host::auth_sync;
use cursorpool_host::commands::Shared;
use cursorpool_tokio::app::AppConfig;
use cursorpool_tokio::cli::{Cli, Command as CliCommand};
use cursorpool_tokio::persist::AuthDir;
use serde_json::{Value, json};
use support::{Client, Harness, Options, anthropic_text_request, bounded};

const SECRET: &str = "mgmt-secret-for-api-key-tests";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self(std::env::temp_dir().join(format!(
            "cursorpool-e2e-api-key-{name}-{}-{}-{nanos}",
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `cursorpool login --label LABEL --auth-dir DIR --upstream SIM` with the key from `--api-key`
/// or from `CURSOR_API_KEY`; the process ends on its own (a refused key or a written file).
async fn cli_login(upstream: String, dir: &Path, label: &str, key: &str, by_env: bool) -> Output {
    let dir = dir.to_path_buf();
    let (label, key) = (label.to_owned(), key.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(support::binary_path());
        cmd.args(["login", "--no-browser", "--label", &label, "--upstream"])
            .arg(&upstream)
            .arg("--auth-dir")
            .arg(&dir)
            .env_remove("CURSOR_API_KEY")
            .env_remove("CURSORPOOL_AUTH_DIR")
            .env_remove("CURSORPOOL_UPSTREAM")
            .stdin(Stdio::null());
        if by_env {
            cmd.env("CURSOR_API_KEY", &key);
        } else {
            cmd.args(["--api-key", &key]);
        }
        cmd.output().expect("the binary runs")
    })
    .await
    .expect("the login process is awaited")
}

fn no_proxy_accounts() -> Options {
    Options {
        accounts: vec![
            ("alice".to_owned(), Default::default()),
            ("bob".to_owned(), Default::default()),
        ],
        proxy_accounts: Some(Vec::new()),
        ..Options::default()
    }
}

async fn ask(h: &Harness, prompt: &str) {
    let r = h.anthropic(&anthropic_text_request(prompt, false)).await;
    assert_eq!(r.status, 200, "{prompt}: {}", r.text());
    let text = r.json()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains(&format!("last user message: \"{prompt}\"")),
        "{text}"
    );
}

async fn login_by_api_key_writes_a_private_file_the_proxy_serves_on() {
    bounded(async {
        let h = Harness::start(no_proxy_accounts()).await;
        let dir = TempDir::new("cli");
        let out = cli_login(h.sim.base_url(), dir.path(), "work", "key-alice", true).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("cursor.work.json"), "{stdout}");
        for shown in [&stdout, &stderr] {
            assert!(!shown.contains("key-alice"), "the key was shown: {shown}");
        }
        let path = dir.path().join("cursor.work.json");
        assert_eq!(mode(&path), 0o600);
        let record = AccountRecord::from_json(&std::fs::read(&path).expect("read")).expect("valid");
        assert_eq!(record.subject, "auth0|user_sim_alice");
        assert_eq!(record.label.as_deref(), Some("work"));
        assert_eq!(
            record.api_key.as_ref().map(|k| k.expose()),
            Some("key-alice"),
            "the key is kept so refreshes exchange it again"
        );

        assert_eq!(auth_sync::load(&h.app, &AuthDir::new(dir.path())).await, 1);
        ask(&h, "hello from an API-key account").await;
        assert_eq!(h.account("alice").runs, 1);

        h.shutdown().await;
    })
    .await;
}

async fn a_refused_api_key_fails_clearly_and_writes_nothing() {
    bounded(async {
        let h = Harness::start(no_proxy_accounts()).await;
        let dir = TempDir::new("bad");
        let out = cli_login(h.sim.base_url(), dir.path(), "work", "key-nobody", false).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot add the account by API key"),
            "{stderr}"
        );
        assert!(stderr.contains("401"), "{stderr}");
        assert!(
            !stderr.contains("key-nobody"),
            "the key was shown: {stderr}"
        );
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
        h.shutdown().await;
    })
    .await;
}

fn with_secret(c: &mut AppConfig) {
    c.management_secret = Some(SECRET.to_owned());
}

async fn add_account(h: &Harness, body: &Value) -> support::Response {
    let auth = format!("Bearer {SECRET}");
    Client::connect(h.addr)
        .await
        .send(
            "POST",
            "/v0/management/accounts",
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        )
        .await
}

async fn the_management_api_adds_an_account_by_api_key_that_then_serves() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..no_proxy_accounts()
        })
        .await;
        let dir = TempDir::new("mgmt");
        std::fs::create_dir_all(dir.path()).expect("mkdir");
        auth_sync::load(&h.app, &AuthDir::new(dir.path())).await;

        let r = add_account(&h, &json!({"api_key": "key-nobody", "label": "nope"})).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["error"].is_string(), "{}", r.text());
        assert!(!r.text().contains("key-nobody"), "{}", r.text());
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));

        let r = add_account(&h, &json!({"label": "nokey"})).await;
        assert_eq!(r.status, 400, "{}", r.text());

        let r = add_account(&h, &json!({"api_key": "key-bob", "label": "second"})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(!text.contains("key-bob"), "the key was answered: {text}");
        let path = dir.path().join("cursor.second.json");
        let record = AccountRecord::from_json(&std::fs::read(&path).expect("read")).expect("valid");
        assert!(
            !text.contains(record.access_token.expose()),
            "a token was answered: {text}"
        );
        if let Some(refresh) = &record.refresh_token {
            assert!(!text.contains(refresh.expose()), "{text}");
        }
        assert_eq!(r.json()["key"], "second", "{text}");
        assert_eq!(r.json()["file"], "cursor.second.json", "{text}");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(record.api_key.as_ref().map(|k| k.expose()), Some("key-bob"));

        // The proxy started without accounts; the added one serves.
        for i in 0..3 {
            ask(&h, &format!("served by the added account {i}")).await;
        }
        assert_eq!(h.account("bob").runs, 3);
        assert_eq!(h.account("alice").runs, 0);
        h.shutdown().await;
    })
    .await;
}

async fn spread(strategy: Option<Strategy>) -> (u64, u64) {
    fn fill_first(c: &mut AppConfig) {
        c.pool.strategy = Strategy::FillFirst;
    }
    let h = Harness::start(Options {
        configure: match strategy {
            Some(Strategy::FillFirst) => Some(fill_first),
            _ => None,
        },
        ..Options::with_accounts(&["first", "second"])
    })
    .await;
    for i in 0..4 {
        ask(&h, &format!("request number {i}")).await;
    }
    let runs = (h.account("first").runs, h.account("second").runs);
    h.shutdown().await;
    runs
}

async fn fill_first_keeps_to_the_first_account_and_round_robin_alternates() {
    bounded(async {
        assert_eq!(spread(Some(Strategy::FillFirst)).await, (4, 0));
        assert_eq!(spread(None).await, (2, 2));
    })
    .await;
}

#[test]
fn the_routing_strategy_comes_from_the_command_line() {
    let strategy = |args: &[&str]| {
        let cli = Cli::try_parse_from(
            ["cursorpool", "serve", "--memory-only", "--token", "t"]
                .iter()
                .chain(args),
        )
        .expect("valid command line");
        let CliCommand::Shared(Shared::Serve(serve)) = cli.command else {
            panic!("not serve");
        };
        serve.app_config().expect("config").pool.strategy
    };
    assert_eq!(
        strategy(&["--routing-strategy", "fill-first"]),
        Strategy::FillFirst
    );
    assert_eq!(
        strategy(&["--routing-strategy", "round-robin"]),
        Strategy::RoundRobin
    );
    if std::env::var_os("CURSORPOOL_ROUTING_STRATEGY").is_none() {
        assert_eq!(strategy(&[]), Strategy::RoundRobin);
    }
    assert!(Cli::try_parse_from(["cursorpool", "serve", "--routing-strategy", "random"]).is_err());
}

support::both_binaries!(
    login_by_api_key_writes_a_private_file_the_proxy_serves_on,
    a_refused_api_key_fails_clearly_and_writes_nothing,
    the_management_api_adds_an_account_by_api_key_that_then_serves,
    fill_first_keeps_to_the_first_account_and_round_robin_alternates,
);
