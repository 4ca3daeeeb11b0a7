//! The binaries themselves, as a user runs them: `serve` against the sim answers a streamed
//! conversation; SIGTERM stops accepting, lets the in-flight stream finish, saves the state and
//! exits 0; SIGKILL mid-stream loses at most that turn — the stored conversation and the
//! credential file survive intact (atomic 0600 files) and a restart continues the
//! conversation from its checkpoint; listening beyond loopback without client keys warns; the
//! worker-thread variable sets the threads, and a bad value is refused.

use cursorpool_conformance as support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cursorpool_core::conductor::AccountRecord;
use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, SimHandle, spawn};
use serde_json::{Value, json};
use support::{Client, anthropic_stream, anthropic_text_request, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A child process that is killed if the test ends early.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Running {
    fn pid(&self) -> String {
        self.0
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill {sig}");
    }

    /// Waits (bounded) for the exit.
    async fn exit(&mut self) -> ExitStatus {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh directory for one test (removed by the test when it passes), with an empty
/// configuration file the binaries are pointed at (never the user's `~/.cursorpool/config.yaml`).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cursorpool-binaries-{name}-{}-{}-{}",
        support::Target::current().binary(),
        std::process::id(),
        cursorpool_host::cli::seed_from_clock()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("no-config.yaml"), "# empty\n").expect("config");
    dir
}

/// `serve` on a free loopback port with `dir/state` and `dir/auth` and the given token (if any); stderr goes to `dir/stderr-N`. Returns once it listens.
async fn serve(sim: &SimHandle, dir: &Path, token: Option<&str>) -> (Running, SocketAddr, PathBuf) {
    serve_with_env(sim, dir, token, &[]).await
}

/// [`serve`] with `env` added to the child's environment.
async fn serve_with_env(
    sim: &SimHandle,
    dir: &Path,
    token: Option<&str>,
    env: &[(&str, &str)],
) -> (Running, SocketAddr, PathBuf) {
    let port = free_port();
    let log = dir.join(format!("stderr-{port}"));
    let mut cmd = Command::new(support::binary_path());
    cmd.env("CURSORPOOL_CONFIG", dir.join("no-config.yaml"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &sim.base_url(), "--state-dir"])
        .arg(dir.join("state"))
        .arg("--auth-dir")
        .arg(dir.join("auth"))
        .env_remove("CURSORPOOL_API_KEYS")
        .env_remove("CURSORPOOL_TOKENS")
        .env("CURSORPOOL_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"));
    if let Some(t) = token {
        cmd.env("CURSORPOOL_TOKENS", format!("sim={t}"));
    }
    cmd.envs(env.iter().copied());
    let running = Running(Some(cmd.spawn().expect("the binary starts")));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the binary never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (running, addr, log)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Checks that no log the binary wrote under `dir` (`stderr-*`, at debug level) holds any of
/// `secrets`.
fn assert_logs_hold_no(dir: &Path, secrets: &[&str]) {
    for p in support::files_below(dir) {
        let is_log = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("stderr-"));
        if !is_log {
            continue;
        }
        let log = std::fs::read_to_string(&p).unwrap_or_default();
        for s in secrets {
            assert!(!log.contains(s), "a secret reached {}", p.display());
        }
    }
}

/// Opens a streamed request on a raw socket and reads until the first text delta.
async fn start_stream(addr: SocketAddr, prompt: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut body = anthropic_text_request(prompt, true);
    // Room for the whole long answer (a max_tokens stop would cancel the run).
    body["max_tokens"] = json!(64_000);
    let body = body.to_string();
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         anthropic-version: 2023-06-01\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    sock.write_all(body.as_bytes()).await.expect("body");
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&seen).contains("text_delta") {
        let n = sock.read(&mut buf).await.expect("read");
        assert!(n > 0, "ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    (sock, seen)
}

/// A sim whose answers stream slowly enough that a signal lands mid-stream.
async fn slow_sim() -> SimHandle {
    spawn(ServerConfig::new(SimConfig {
        chunk_chars: 4,
        token_interval: Duration::from_millis(2),
        ..SimConfig::default()
    }))
    .await
    .expect("the sim starts")
}

/// A long answer (thousands of deltas at the slow sim's pace).
const LONG: &str = "a long answer please lorem 2500";

async fn serve_answers_and_stops_on_sigterm() {
    bounded(async {
        let sim = spawn(ServerConfig::new(SimConfig::default()))
            .await
            .expect("the sim starts");
        let token = sim.access_token("default").expect("token");
        let dir = temp_dir("sigterm");
        let (mut running, addr, log) = serve(&sim, &dir, Some(&token)).await;
        let mut client = Client::connect(addr).await;
        let r = client
            .post(
                "/v1/messages",
                anthropic_text_request("through the binary", true)
                    .to_string()
                    .into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let s = anthropic_stream(&r);
        assert!(s.error.is_none(), "{s:?}");
        assert!(
            s.text.contains("last user message: \"through the binary\""),
            "{}",
            s.text
        );
        // SIGTERM: a graceful stop, exit code 0, the pool state saved.
        running.signal("-TERM");
        let status = running.exit().await;
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(
            dir.join("state/pool.json").exists(),
            "the pool state is saved at shutdown"
        );
        assert!(!err.contains(&token), "the token never reaches the log");
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn sigterm_finishes_the_in_flight_stream_and_refuses_new_connections() {
    bounded(async {
        let sim = slow_sim().await;
        let token = sim.access_token("default").expect("token");
        let dir = temp_dir("drain");
        let (mut running, addr, log) = serve(&sim, &dir, Some(&token)).await;
        let (mut sock, mut seen) = start_stream(addr, LONG).await;
        running.signal("-TERM");
        // New connections are refused while the stream still flows (bounded wait).
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Read to the end of the response (the server closes the connection after it).
        let mut buf = [0u8; 8192];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("event: message_stop"),
            "the in-flight stream finished: …{}",
            &text[text.len().saturating_sub(300)..]
        );
        assert!(!text.contains("event: error"), "no error: {text}");
        drop(sock);
        let status = running.exit().await;
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "{err}");
        assert_logs_hold_no(&dir, &[&token]);
        let state = dir.join("state");
        let saved = support::files_below(&state);
        assert!(saved.iter().any(|p| p.ends_with("pool.json")), "{saved:?}");
        assert!(saved.len() >= 2, "the conversation is saved: {saved:?}");
        assert_eq!(sim.counters().total.turns_completed, 1);
        for p in &saved {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// One non-streamed turn of the conversation `messages` (the reply is appended).
async fn turn(addr: SocketAddr, messages: &mut Vec<Value>, question: &str) -> String {
    messages.push(json!({"role": "user", "content": question}));
    let body = json!({
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "system": "binaries crash test",
        "messages": messages,
    });
    let r = Client::connect(addr)
        .await
        .post("/v1/messages", body.to_string().into())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["content"].clone();
    messages.push(json!({"role": "assistant", "content": content.clone()}));
    content[0]["text"].as_str().unwrap_or_default().to_owned()
}

async fn sigkill_mid_stream_keeps_stored_conversations_and_credentials() {
    bounded(async {
        let sim = slow_sim().await;
        let dir = temp_dir("sigkill");
        // A credential file from `login --api-key` (the sim's default account: `sim-key`).
        let login = Command::new(support::binary_path())
            .env("CURSORPOOL_CONFIG", dir.join("no-config.yaml"))
            .args(["login", "--no-browser", "--label", "work", "--upstream"])
            .arg(sim.base_url())
            .arg("--auth-dir")
            .arg(dir.join("auth"))
            .args(["--api-key", "sim-key"])
            .env_remove("CURSORPOOL_AUTH_DIR")
            .env_remove("CURSORPOOL_UPSTREAM")
            .stdin(Stdio::null())
            .output()
            .expect("login runs");
        assert!(login.status.success(), "{login:?}");
        let cred = dir.join("auth/cursor.work.json");
        let before = std::fs::read(&cred).expect("the credential file");

        let (mut running, addr, _) = serve(&sim, &dir, None).await;
        let mut messages = Vec::new();
        turn(addr, &mut messages, "remember this").await;
        // The stored conversation is durable once its file is renamed into place (a background
        // writer; a `.tmp` file is one still being written).
        let conversations = dir.join("state/conversations");
        let deadline = Instant::now() + Duration::from_secs(30);
        let stored = || {
            support::files_below(&conversations)
                .iter()
                .any(|p| p.extension().is_none_or(|e| e != "tmp"))
        };
        while !stored() {
            assert!(
                Instant::now() < deadline,
                "the conversation was never stored"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A second conversation is mid-stream when the process is killed.
        let (sock, _) = start_stream(addr, LONG).await;
        running.signal("-KILL");
        let status = running.exit().await;
        assert_eq!(status.code(), None, "killed by a signal");
        drop(sock);

        // Nothing torn: the credential file is the one written, 0600, and parses.
        assert_eq!(std::fs::read(&cred).expect("still there"), before);
        assert_eq!(mode(&cred), 0o600);
        for p in support::files_below(&dir.join("state")) {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }

        // A restart continues the stored conversation from its checkpoint.
        let replayed = sim.counters().total.replayed_checkpoints;
        let (mut running, addr, log) = serve(&sim, &dir, None).await;
        let text = turn(addr, &mut messages, "after the crash").await;
        assert!(text.contains("user turns: 2;"), "{text}");
        assert_eq!(
            sim.counters().total.replayed_checkpoints,
            replayed + 1,
            "the stored checkpoint was replayed"
        );
        running.signal("-TERM");
        let status = running.exit().await;
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status.code(), Some(0), "{err}");
        // Neither life of the process logged a credential (debug level).
        let record = AccountRecord::from_json(&before).expect("the record");
        let mut secrets = vec![record.access_token.expose(), "sim-key"];
        secrets.extend(record.refresh_token.as_ref().map(|t| t.expose()));
        assert_logs_hold_no(&dir, &secrets);
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn listening_beyond_loopback_without_client_keys_warns_loudly() {
    bounded(async {
        let dir = temp_dir("warn");
        // No account: `serve` warns, then exits 2 before it binds anything.
        let run = |keys: Option<&str>| {
            let mut cmd = Command::new(support::binary_path());
            cmd.env("CURSORPOOL_CONFIG", dir.join("no-config.yaml"));
            cmd.args(["serve", "--listen", "0.0.0.0:1", "--memory-only"])
                .arg("--auth-dir")
                .arg(dir.join("auth"))
                .env_remove("CURSORPOOL_API_KEYS")
                .env_remove("CURSORPOOL_TOKENS")
                .stdin(Stdio::null());
            if let Some(k) = keys {
                cmd.args(["--api-key", k]);
            }
            cmd.output().expect("the binary runs")
        };
        let out = run(None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("WARNING") && err.contains("not loopback") && err.contains("--api-key"),
            "{err}"
        );
        let out = run(Some("sk-shared"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!err.contains("WARNING"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// The worker-thread variable of the binary under test, the name its worker threads carry
/// (`/proc/PID/task/*/comm`, cut at 15 bytes), and how many other threads carry that name too
/// (the lite binary's main thread has its name).
fn threads_var() -> (&'static str, &'static str, usize) {
    match support::Target::current() {
        support::Target::Cursorpool => ("CURSORPOOL_THREADS", "tokio-rt-worker", 0),
        support::Target::Lite => ("CURSORPOOL_LITE_THREADS", "cursorpool-lite", 1),
    }
}

fn threads_named(pid: &str, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

async fn worker_threads_follow_the_environment_and_a_bad_value_is_refused() {
    bounded(async {
        let (var, worker, others) = threads_var();
        let dir = temp_dir("threads");
        for bad in ["0", "many", "-1"] {
            let out = Command::new(support::binary_path())
                .env("CURSORPOOL_CONFIG", dir.join("no-config.yaml"))
                .env(var, bad)
                .args(["serve", "--listen", "127.0.0.1:0", "--memory-only"])
                .stdin(Stdio::null())
                .output()
                .expect("the binary runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{var}={bad}: {err}");
            assert!(err.contains(var) && err.contains(bad), "{err}");
        }
        // Five workers (the defaults here are one per core, and one for the lite binary), and
        // the server answers on them.
        let sim = spawn(ServerConfig::new(SimConfig::default()))
            .await
            .expect("the sim starts");
        let token = sim.access_token("default").expect("token");
        let (running, addr, _log) = serve_with_env(&sim, &dir, Some(&token), &[(var, "5")]).await;
        let mut client = Client::connect(addr).await;
        let r = client
            .post(
                "/v1/messages",
                anthropic_text_request("on five threads", false)
                    .to_string()
                    .into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let n = threads_named(&running.pid(), worker);
        assert_eq!(n, 5 + others, "threads named {worker:?}");
        drop(running);
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

support::both_binaries!(
    worker_threads_follow_the_environment_and_a_bad_value_is_refused,
    serve_answers_and_stops_on_sigterm,
    sigterm_finishes_the_in_flight_stream_and_refuses_new_connections,
    sigkill_mid_stream_keeps_stored_conversations_and_credentials,
    listening_beyond_loopback_without_client_keys_warns_loudly,
);
