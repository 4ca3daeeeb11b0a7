//! The status page in a real browser (Debian's headless Chromium driven by playwright-core,
//! `e2e/browser/status_page.mjs`): the page asks for the management secret and refuses a wrong
//! one, then shows the sim's accounts; after a quota error one of them shows its cooldown and
//! the error is listed; the login button produces the login URL. Also: the page and its data
//! are off without a management secret, and the HTML carries no data of its own.

use cursorpool_conformance as support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cursorpool_core::conductor::login::PollSchedule;
use cursorpool_tokio::app::AppConfig;
use cursorpool_tokio::persist::AuthDir;
use support::{Harness, Options, anthropic_text_request, bounded};

const SECRET: &str = "status-page-secret";
const LOGIN_SITE: &str = "http://login.sim.invalid";

fn with_secret(c: &mut AppConfig) {
    c.management_secret = Some(SECRET.to_owned());
    c.pool.cooldown.quota_initial = Duration::from_secs(600);
    c.login_site = LOGIN_SITE.to_owned();
    c.login_schedule =
        PollSchedule::custom(Duration::from_millis(50), Duration::from_millis(200), 600);
}

async fn the_status_page_shows_accounts_cooldowns_and_starts_a_login_in_a_browser() {
    let Some(browser) = support::browser("status_page") else {
        return;
    };
    bounded(async {
        // "spent" is asked first (round-robin, insertion order) and has no quota left.
        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..Options::spent_then_fresh()
        })
        .await;
        let auth = support::temp_dir("status-auth");
        assert!(h.app.set_auth_dir(AuthDir::new(&auth)));
        let r = h
            .anthropic(&anthropic_text_request("moves to the fresh account", false))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());

        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "status-page-{}.png",
            support::Target::current().binary()
        ));
        let mut cmd = Command::new(&browser.node);
        cmd.arg(browser.dir.join("status_page.mjs"))
            .current_dir(&browser.dir)
            .env("CURSORPOOL_URL", h.base_url())
            .env("CURSORPOOL_SECRET", SECRET)
            .env("CURSORPOOL_COOLING", "spent")
            .env("CHROMIUM", &browser.chromium)
            .env("SCREENSHOT", &shot)
            .env("NO_PROXY", "127.0.0.1,localhost");
        let page = support::run_json(cmd, "status_page.mjs", support::SCRIPT_LIMIT).await;

        assert_eq!(page["status"], 200, "{page}");
        assert_eq!(page["title"], "cursorpool status", "{page}");
        assert_eq!(page["asked_for_secret"], true, "{page}");
        assert!(
            page["wrong_secret_error"]
                .as_str()
                .is_some_and(|e| e.contains("wrong or missing management secret")),
            "{page}"
        );
        let accounts = page["accounts"].as_array().expect("accounts");
        let names: Vec<&str> = accounts.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names, ["spent", "fresh"], "{page}");
        let spent = &accounts[0];
        assert_eq!(spent["state"], "cooling", "{page}");
        let cooldown = spent["cooldown"].as_str().unwrap_or_default();
        assert!(
            cooldown.contains("quota") && (cooldown.contains('m') || cooldown.contains('s')),
            "the cooldown shows its cause and time left: {cooldown:?}"
        );
        assert_eq!(accounts[1]["state"], "ready", "{page}");
        assert!(
            page["error_kinds"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "quota_exhausted")),
            "the quota error is listed: {page}"
        );
        let url = page["login_url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with(LOGIN_SITE) && url.contains("challenge="),
            "the login button shows the login URL: {url:?}"
        );
        assert_eq!(page["login_status"], "pending", "{page}");
        assert_eq!(page["page_errors"], serde_json::json!([]), "{page}");
        assert!(shot.exists(), "a screenshot was taken");
        h.shutdown().await;
        let _ = std::fs::remove_dir_all(&auth);
    })
    .await;
}

async fn the_status_page_is_off_without_a_secret_and_holds_no_data() {
    bounded(async {
        let h = Harness::start_default().await;
        let r = h.get("/status", &[]).await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(r.text().contains("management secret"), "{}", r.text());
        h.shutdown().await;

        let h = Harness::start(Options {
            configure: Some(with_secret),
            ..Options::with_accounts(&["zebra-account"])
        })
        .await;
        let r = h.get("/status", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{:?}",
            r.headers
        );
        let html = r.text();
        assert!(html.contains("/v0/management"), "reads the management API");
        assert!(
            !html.contains("zebra-account"),
            "no account in the page itself"
        );
        assert!(!html.contains(SECRET));
        let mut c = support::Client::connect(h.addr).await;
        let r = c
            .send("GET", "/v0/management/errors", &[], Bytes::new())
            .await;
        assert_eq!(r.status, 401, "the page's data needs the secret");
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    the_status_page_shows_accounts_cooldowns_and_starts_a_login_in_a_browser,
    the_status_page_is_off_without_a_secret_and_holds_no_data,
);
