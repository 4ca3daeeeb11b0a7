//! Accounts from the auth directory end to end against the simulated backend: the browser
//! login through the CLI's code path writes a private credential file the proxy then serves
//! on; a file dropped into (or removed from) the auth directory while serving reaches the
//! pool without a restart; a token close to expiry is renewed, written back, and used.

use cursorpool_conformance as support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cursorpool_core::conductor::login::PollSchedule;
use cursorpool_core::conductor::{AccountRecord, Secret, TokenGrant};
use cursorpool_host::auth_sync;
use cursorpool_host::login::{self, LoginDone, LoginOptions};
use cursorpool_host::tasks::Background;
use cursorpool_sim::model::{AccountConfig, Control, Quota, SimConfig};
use cursorpool_sim::server::{ServerConfig, SimHandle, spawn};
use cursorpool_tokio::app::{App, AppConfig};
use cursorpool_tokio::cli;
use cursorpool_tokio::persist::AuthDir;
use support::{Client, anthropic_text_request, bounded};
use tokio::sync::oneshot;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "cursorpool-e2e-login-{name}-{}-{}-{nanos}",
            support::Target::current().binary(),
            std::process::id()
        ));
        Self(path)
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

async fn start_sim(token_ttl: Duration) -> SimHandle {
    let accounts = ["alice", "bob"]
        .iter()
        .map(|l| AccountConfig {
            label: (*l).to_owned(),
            api_key: format!("key-{l}"),
            quota: Quota::default(),
        })
        .collect();
    spawn(ServerConfig::new(SimConfig {
        seed: 7,
        accounts,
        token_ttl,
        ..SimConfig::default()
    }))
    .await
    .expect("the sim starts")
}

fn login_options(sim: &SimHandle, dir: &Path, label: Option<&str>) -> LoginOptions {
    LoginOptions {
        label: label.map(str::to_owned),
        auth_dir: dir.to_path_buf(),
        upstream: sim.base_url(),
        upstream_root_pem: None,
        login_site: "http://login.sim.invalid".to_owned(),
        // Fast polls; the bound on attempts is far above what a loopback login needs.
        schedule: PollSchedule::custom(Duration::from_millis(20), Duration::from_millis(100), 600),
        progress: false,
    }
}

/// Runs the CLI's login against the sim and completes it in the sim's "browser" as
/// `account` with the uuid and challenge the login announced.
async fn login_as(sim: &SimHandle, opts: &LoginOptions, account: &str) -> LoginDone {
    let (tx, rx) = oneshot::channel();
    let platform = support::platform();
    let login = login::run(platform.as_ref(), opts, move |started| {
        let _ = tx.send(started.clone());
    });
    let browser = async {
        let started = rx.await.expect("the login announces its URL");
        assert!(
            started
                .url
                .starts_with("http://login.sim.invalid/loginDeepControl?")
        );
        assert!(
            started
                .url
                .contains(&format!("challenge={}", started.challenge))
        );
        assert!(started.url.contains(&format!("uuid={}", started.uuid)));
        // Let the client poll (and be told "not yet") before the user confirms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        sim.control(Control::CompleteLogin {
            uuid: started.uuid,
            account: account.to_owned(),
            challenge: started.challenge,
        })
        .expect("the sim completes the login");
    };
    let (done, ()) = tokio::join!(login, browser);
    done.expect("the login succeeds")
}

/// The proxy serving the accounts of an auth directory.
struct Proxy {
    app: Arc<App>,
    addr: std::net::SocketAddr,
    proxy: support::Proxy,
    _tasks: Background,
}

impl Proxy {
    async fn start(sim: &SimHandle, dir: &Path) -> Self {
        let config = AppConfig {
            upstream_url: sim.base_url(),
            seed: 11,
            ..cli::demo_config()
        };
        let app = App::new(config, support::platform()).expect("the proxy builds");
        let auth = AuthDir::new(dir);
        auth_sync::load(&app, &auth).await;
        // Quick scans; the periodic refresh is left to the test (it calls `refresh_due`).
        let tasks = auth_sync::spawn(
            &app,
            &auth,
            Duration::from_millis(50),
            Duration::from_secs(3600),
        );
        let proxy = support::Proxy::serve(app.clone()).await;
        Self {
            app,
            addr: proxy.addr,
            proxy,
            _tasks: tasks,
        }
    }

    async fn ask(&self, prompt: &str) {
        let mut client = Client::connect(self.addr).await;
        let r = client
            .post(
                "/v1/messages",
                anthropic_text_request(prompt, false).to_string().into(),
            )
            .await;
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

    /// Waits (bounded by the test's limit) until the pool agrees with `pred`.
    async fn until(&self, mut pred: impl FnMut(&App) -> bool) {
        while !pred(&self.app) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.proxy.abort().await;
    }
}

fn runs(sim: &SimHandle, label: &str) -> u64 {
    sim.counters().accounts.get(label).map_or(0, |c| c.runs)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

async fn browser_login_writes_a_private_file_the_proxy_serves_on() {
    bounded(async {
        let sim = start_sim(Duration::from_secs(3600)).await;
        let dir = TempDir::new("serve");
        let done = login_as(
            &sim,
            &login_options(&sim, dir.path(), Some("work")),
            "alice",
        )
        .await;
        assert_eq!(done.path, dir.path().join("cursor.work.json"));
        assert_eq!(mode(&done.path), 0o600);
        let on_disk =
            AccountRecord::from_json(&std::fs::read(&done.path).expect("read")).expect("valid");
        assert_eq!(on_disk.subject, "auth0|user_sim_alice");
        assert!(on_disk.refresh_token.is_some());
        assert_eq!(on_disk, done.record);

        let proxy = Proxy::start(&sim, dir.path()).await;
        assert!(proxy.app.account_record("work").is_some());
        proxy.ask("hello from a logged-in account").await;
        assert_eq!(runs(&sim, "alice"), 1);
        proxy.stop().await;
        sim.shutdown().await;
    })
    .await;
}

async fn files_added_and_removed_while_serving_reach_the_pool() {
    bounded(async {
        let sim = start_sim(Duration::from_secs(3600)).await;
        let dir = TempDir::new("watch");
        let first = login_as(
            &sim,
            &login_options(&sim, dir.path(), Some("work")),
            "alice",
        )
        .await;
        let proxy = Proxy::start(&sim, dir.path()).await;

        // Another process drops bob's credential file into the directory.
        let issued = sim
            .control(Control::IssueToken {
                account: "bob".to_owned(),
            })
            .expect("the sim issues a token");
        let grant = TokenGrant {
            access_token: Secret::new(issued["access_token"].as_str().expect("access token")),
            refresh_token: issued["refresh_token"].as_str().map(Secret::new),
            auth_id: None,
        };
        let bob = AccountRecord::from_grant(grant, Some("bob".to_owned()), 0).expect("record");
        std::fs::write(dir.path().join(bob.file_name()), bob.to_json()).expect("write");
        proxy.until(|app| app.account_record("bob").is_some()).await;

        // Alice's file goes: only bob can serve now.
        std::fs::remove_file(&first.path).expect("remove");
        proxy
            .until(|app| app.account_record("work").is_none())
            .await;
        proxy.ask("served by the dropped-in account").await;
        assert_eq!(runs(&sim, "bob"), 1);
        assert_eq!(runs(&sim, "alice"), 0);
        proxy.stop().await;
        sim.shutdown().await;
    })
    .await;
}

async fn tokens_close_to_expiry_are_refreshed_written_back_and_used() {
    bounded(async {
        // Two-minute tokens: inside the five-minute refresh margin from the start, yet valid
        // for every request of the test.
        let sim = start_sim(Duration::from_secs(120)).await;
        let dir = TempDir::new("refresh");
        let done = login_as(&sim, &login_options(&sim, dir.path(), None), "alice").await;
        let key = done.record.key();
        assert_eq!(
            done.path,
            dir.path().join(format!("cursor.{key}.json")),
            "an unlabelled account is named by its subject's hash"
        );
        assert_eq!(key.len(), 8);
        let proxy = Proxy::start(&sim, dir.path()).await;
        proxy.ask("before the refresh").await;

        assert!(proxy.app.refresh_due().await >= 1);
        let renewed = proxy.app.account_record(&key).expect("still in the pool");
        assert_ne!(renewed.access_token, done.record.access_token);
        assert!(renewed.disabled.is_none());
        assert_eq!(renewed.refresh_token, done.record.refresh_token);
        // A renewed record was written back, privately (the periodic task may have renewed
        // it once more in the meantime, so only "not the login's token" is certain).
        let on_disk =
            AccountRecord::from_json(&std::fs::read(&done.path).expect("read")).expect("valid");
        assert_ne!(on_disk.access_token, done.record.access_token);
        assert_eq!(on_disk.refresh_token, done.record.refresh_token);
        assert_eq!(mode(&done.path), 0o600);

        proxy.ask("after the refresh").await;
        assert_eq!(runs(&sim, "alice"), 2);
        proxy.stop().await;
        sim.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    browser_login_writes_a_private_file_the_proxy_serves_on,
    files_added_and_removed_while_serving_reach_the_pool,
    tokens_close_to_expiry_are_refreshed_written_back_and_used,
);
