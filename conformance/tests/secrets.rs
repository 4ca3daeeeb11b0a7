//! Secrets stay secret, against both binaries: every log line at every level (a TRACE
//! subscriber captures all of this test binary's output, the HTTP libraries' included), every
//! response body and header of a session that logs in by API key, refreshes tokens, serves
//! and fails requests and uses the management API — none carries an access token, a refresh
//! token, the Cursor API key, the management secret or a client key. Credential and state
//! files are 0600. The management API refuses without its secret and is off without one.

use cursorpool_conformance as support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cursorpool_core::conductor::AccountRecord;
use cursorpool_host::{auth_sync, pool_state};
use cursorpool_sim::model::Quota;
use cursorpool_tokio::app::AppConfig;
use cursorpool_tokio::persist::AuthDir;
use serde_json::json;
use support::{
    CLIENT_KEY, Client, Harness, Options, ProxyAccount, Response, anthropic_text_request, bounded,
    openai_text_request,
};

const SECRET: &str = "mgmt-secret-never-logged";
const CURSOR_API_KEY: &str = "key-alice";

/// Everything every subscriber-visible log line of this test binary said.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "cursorpool-secrets-{}-{}-{nanos}",
            support::Target::current().binary(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_secret_and_keys(c: &mut AppConfig) {
    c.management_secret = Some(SECRET.to_owned());
    c.api_keys = vec![CLIENT_KEY.to_owned()];
}

/// The responses of a session, kept for the scan.
#[derive(Default)]
struct Seen(Vec<Response>);

impl Seen {
    fn keep(&mut self, r: Response) -> Response {
        self.0.push(r.clone());
        r
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for r in &self.0 {
            for (k, v) in &r.headers {
                out.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
            }
            out.push_str(&r.text());
        }
        out
    }
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Response {
    Client::connect(h.addr)
        .await
        .send(method, path, headers, Bytes::from(body))
        .await
}

async fn mgmt(h: &Harness, method: &str, path: &str, secret: &str, body: String) -> Response {
    let auth = format!("Bearer {secret}");
    send(
        h,
        method,
        &format!("/v0/management/{path}"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

async fn no_secret_reaches_a_log_a_response_or_a_loose_file() {
    let log = log();
    bounded(async {
        let root = TempDir::new();
        let (auth, state) = (root.0.join("auth"), root.0.join("state"));
        std::fs::create_dir_all(&auth).expect("mkdir");
        let h = Harness::start(Options {
            accounts: vec![
                ("main".to_owned(), Quota::default()),
                ("alice".to_owned(), Quota::default()),
            ],
            proxy_accounts: Some(vec![
                ProxyAccount::BadToken("bad".to_owned()),
                ProxyAccount::Sim("main".to_owned()),
            ]),
            // Tokens close to expiry from the start: the refresh below is due.
            token_ttl: Some(Duration::from_secs(120)),
            state_dir: Some(state.clone()),
            configure: Some(with_secret_and_keys),
            ..Options::default()
        })
        .await;
        auth_sync::load(&h.app, &AuthDir::new(&auth)).await;
        let mut seen = Seen::default();
        let mut secrets = vec![
            SECRET.to_owned(),
            CURSOR_API_KEY.to_owned(),
            CLIENT_KEY.to_owned(),
            h.sim.access_token("main").expect("main's token"),
            "not-a-cursor-token-bad".to_owned(),
        ];

        // Login by API key through the management API: access and refresh tokens on file.
        let r = seen.keep(
            mgmt(
                &h,
                "POST",
                "accounts",
                SECRET,
                json!({"api_key": CURSOR_API_KEY, "label": "alice"}).to_string(),
            )
            .await,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let file = auth.join("cursor.alice.json");
        let record = |p: &Path| AccountRecord::from_json(&std::fs::read(p).expect("read"));
        let before = record(&file).expect("a credential file");
        secrets.push(before.access_token.expose().to_owned());
        secrets.extend(before.refresh_token.iter().map(|t| t.expose().to_owned()));

        // A refresh through the refresh token.
        assert!(h.app.refresh_due().await >= 1, "the refresh was due");
        let after = record(&file).expect("the file after the refresh");
        assert_ne!(
            after.access_token.expose(),
            before.access_token.expose(),
            "the token was renewed"
        );
        secrets.push(after.access_token.expose().to_owned());
        secrets.extend(after.refresh_token.iter().map(|t| t.expose().to_owned()));

        // Serving: both APIs, streamed and not (the bad-token account fails first).
        for stream in [false, true] {
            let prompt = format!("secret scan {stream}");
            let r = seen.keep(h.anthropic(&anthropic_text_request(&prompt, stream)).await);
            assert_eq!(r.status, 200, "{}", r.text());
            let r = seen.keep(h.openai(&openai_text_request(&prompt, stream)).await);
            assert_eq!(r.status, 200, "{}", r.text());
        }
        // Refusals: a wrong client key, a wrong management secret, no secret at all.
        let r = seen.keep(
            send(
                &h,
                "POST",
                "/v1/messages",
                &[
                    ("x-api-key", "sk-wrong"),
                    ("content-type", "application/json"),
                ],
                anthropic_text_request("hi", false).to_string(),
            )
            .await,
        );
        assert_eq!(r.status, 401, "{}", r.text());
        let r = seen.keep(mgmt(&h, "GET", "accounts", "wrong-secret", String::new()).await);
        assert_eq!(r.status, 401, "{}", r.text());
        let r = seen.keep(send(&h, "GET", "/v0/management/accounts", &[], String::new()).await);
        assert_eq!(r.status, 401, "{}", r.text());
        // The management views.
        for path in ["accounts", "usage"] {
            let r = seen.keep(mgmt(&h, "GET", path, SECRET, String::new()).await);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
        }
        let refused = seen.keep(
            mgmt(
                &h,
                "POST",
                "accounts",
                SECRET,
                json!({"api_key": "key-nobody"}).to_string(),
            )
            .await,
        );
        assert_eq!(refused.status, 400, "{}", refused.text());
        secrets.push("key-nobody".to_owned());

        // Files: the credential file and everything under the state directory are 0600.
        h.app.flush();
        pool_state::save(&h.app, &state).await.expect("saved");
        let state_files = support::files_below(&state);
        assert!(
            state_files.iter().any(|p| p.ends_with("pool.json")),
            "{state_files:?}"
        );
        assert!(
            state_files.len() >= 2,
            "conversations were stored: {state_files:?}"
        );
        for p in support::files_below(&auth).iter().chain(&state_files) {
            let mode = std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
        }
        h.shutdown().await;

        let logged =
            String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert!(
            logged.contains("TRACE") && logged.contains("DEBUG"),
            "the subscriber captured every level"
        );
        for line in [
            "starting upstream run",
            "access token refreshed",
            "run failed",
        ] {
            assert!(logged.contains(line), "the scenario was logged: {line:?}");
        }
        let answered = seen.text();
        for s in &secrets {
            assert!(!s.is_empty());
            for (what, text) in [("the log", &logged), ("a response", &answered)] {
                if let Some(at) = text.find(s.as_str()) {
                    let from = at.saturating_sub(200);
                    panic!(
                        "a secret ({}…) reached {what}: …{}…",
                        &s[..s.len().min(6)],
                        &text[from..(at + s.len() + 50).min(text.len())]
                    );
                }
            }
        }
        eprintln!(
            "secrets: {} log bytes and {} response bytes scanned for {} secrets: 0 found",
            logged.len(),
            answered.len(),
            secrets.len()
        );
    })
    .await;
}

async fn the_management_api_is_off_without_a_secret() {
    bounded(async {
        let h = Harness::start_default().await;
        for secret in ["", "anything"] {
            let r = mgmt(&h, "GET", "accounts", secret, String::new()).await;
            assert_eq!(r.status, 404, "{}", r.text());
        }
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    no_secret_reaches_a_log_a_response_or_a_loose_file,
    the_management_api_is_off_without_a_secret,
);
