//! Shared harness of the end-to-end tests: the simulated Cursor backend and the proxy, both
//! in-process on loopback, a small HTTP/1.1 client (hyper) with an SSE splitter, and the
//! runner of the official Python SDK scripts in `e2e/`.
//!
//! Every test file includes it with `mod support;` and uses a different part of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_host::app::{App, AppConfig};
pub use cursorpool_host::live::LiveCounts;
use cursorpool_sim::model::{
    AccountConfig, AccountCounters, Counters, Fault, FaultRule, FaultRuns, Quota, SimConfig,
};
use cursorpool_sim::server::{ServerConfig, SimHandle, spawn};
use cursorpool_tokio::platform::TokioPlatform;
use cursorpool_tokio::{cli, server};

use crate::Target;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound on one whole test (start-up, every request, shutdown).
pub const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Bound on one HTTP exchange (headers and the whole body).
pub const REQUEST_LIMIT: Duration = Duration::from_secs(60);
/// Bound on one SDK script run.
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

/// The client API key every test request carries (`x-api-key` / `Authorization: Bearer`).
pub const CLIENT_KEY: &str = "sk-e2e-client";

/// The runtime adapter of the binary under test (for calls made without a running proxy,
/// e.g. `login`).
pub fn platform() -> std::sync::Arc<dyn cursorpool_host::upstream::Platform> {
    match Target::current() {
        Target::Cursorpool => TokioPlatform::shared(),
        Target::Lite => cursorpool_smol::platform::SmolPlatform::shared(),
    }
}

/// A fresh, empty directory under the system temp dir, named for the test and the binary under
/// test (the caller removes it when done).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cursorpool-{name}-{}-{}",
        Target::current().binary(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

/// Runs `fut` under [`TEST_LIMIT`]: a hung proxy fails the test instead of hanging CI.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_LIMIT:?}"),
    }
}

/// An account the proxy is configured with.
#[derive(Debug, Clone)]
pub enum ProxyAccount {
    /// A fresh token the sim issued for its account with this label.
    Sim(String),
    /// A token the sim does not know: every run on it ends `unauthenticated`.
    BadToken(String),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sim's accounts, by label (api key `key-<label>`), each with its quota.
    pub accounts: Vec<(String, Quota)>,
    /// The proxy's accounts, in round-robin order; `None` = every sim account, in order.
    pub proxy_accounts: Option<Vec<ProxyAccount>>,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// HTTP/2 initial window the sim grants for request bodies.
    pub initial_window: Option<u32>,
    /// Characters per streamed text delta.
    pub chunk_chars: usize,
    /// Delay between two streamed deltas.
    pub token_interval: Duration,
    /// Serve the sim over TLS (self-signed; the proxy is told to trust its certificate).
    pub tls: bool,
    /// Changes to the proxy's configuration (after the harness filled it in).
    pub configure: Option<fn(&mut AppConfig)>,
    /// The sim's server heartbeat interval (default: Cursor's 5 s).
    pub heartbeat_interval: Option<Duration>,
    /// Lifetime of the tokens the sim issues (default: an hour).
    pub token_ttl: Option<Duration>,
    /// The proxy's state directory (default: conversations in memory only).
    pub state_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            accounts: vec![("main".to_owned(), Quota::default())],
            proxy_accounts: None,
            faults: Vec::new(),
            initial_window: None,
            chunk_chars: 8,
            token_interval: Duration::ZERO,
            tls: false,
            configure: None,
            heartbeat_interval: None,
            token_ttl: None,
            state_dir: None,
        }
    }
}

impl Options {
    /// Sim accounts with unlimited quota, used by the proxy in this order.
    pub fn with_accounts(labels: &[&str]) -> Self {
        Self {
            accounts: labels
                .iter()
                .map(|l| ((*l).to_owned(), Quota::default()))
                .collect(),
            ..Self::default()
        }
    }

    /// Two sim accounts in this order: `spent` (no quota left: its first run fails with a
    /// quota error and it rests) and `fresh` (unlimited), which takes over.
    pub fn spent_then_fresh() -> Self {
        Self {
            accounts: vec![
                (
                    "spent".to_owned(),
                    Quota {
                        requests: Some(0),
                        tokens: None,
                    },
                ),
                ("fresh".to_owned(), Quota::default()),
            ],
            ..Self::default()
        }
    }

    /// Adds a fault rule for every run of `account` (`None` = all accounts).
    pub fn fault_all(mut self, account: Option<&str>, fault: Fault) -> Self {
        self.faults.push(FaultRule {
            account: account.map(str::to_owned),
            runs: FaultRuns::All,
            fault,
        });
        self
    }
}

/// The sim and the proxy, running.
#[derive(Debug)]
pub struct Harness {
    /// The simulated backend.
    pub sim: SimHandle,
    /// The proxy's state (counters of runs, parked turns, connections).
    pub app: Arc<App>,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    proxy: Option<Proxy>,
}

/// A proxy serving on loopback with the code of the binary under test.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Proxy {
    /// Serves `app` on a fresh loopback port with the server of the binary under test.
    pub async fn serve(app: Arc<App>) -> Self {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let loopback = ([127, 0, 0, 1], 0).into();
        // Each binary's own listening socket (its accept-queue size included).
        let (addr, server) = match Target::current() {
            Target::Cursorpool => {
                let listener = server::listen(loopback).expect("bind a loopback port");
                let addr = listener.local_addr().expect("local addr");
                (addr, tokio::spawn(server::serve(listener, app, shutdown)))
            }
            Target::Lite => {
                let listener =
                    cursorpool_smol::server::listen(loopback).expect("bind a loopback port");
                let addr = listener.local_addr().expect("local addr");
                (addr, lite_serve(listener, app, shutdown))
            }
        };
        Self { addr, stop, server }
    }

    /// Stops accepting and drains the in-flight replies (bounded), like a shutdown signal.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }

    /// Stops at once (in-flight replies are cut).
    pub async fn abort(self) {
        let _ = self.stop.send(());
        self.server.abort();
        let _ = self.server.await;
    }
}

/// `cursorpool-lite`'s server for `listener` (its tasks run on smol's executor; the returned
/// handle ends when the server does).
fn lite_serve(
    listener: smol::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let task =
        cursorpool_smol::executor::spawn(cursorpool_smol::server::serve(listener, app, shutdown));
    // Aborting the tokio handle drops the smol task, which cancels the server.
    tokio::spawn(task)
}

impl Harness {
    /// Starts the sim and the proxy with the default options (one healthy account).
    pub async fn start_default() -> Self {
        Self::start(Options::default()).await
    }

    /// Starts the sim and the proxy.
    pub async fn start(opts: Options) -> Self {
        let sim_config = SimConfig {
            seed: 7,
            accounts: opts
                .accounts
                .iter()
                .map(|(label, quota)| AccountConfig {
                    label: label.clone(),
                    api_key: format!("key-{label}"),
                    quota: *quota,
                })
                .collect(),
            chunk_chars: opts.chunk_chars,
            token_interval: opts.token_interval,
            faults: opts.faults.clone(),
            heartbeat_interval: opts
                .heartbeat_interval
                .unwrap_or(SimConfig::default().heartbeat_interval),
            token_ttl: opts.token_ttl.unwrap_or(SimConfig::default().token_ttl),
            ..SimConfig::default()
        };
        let mut server_config = ServerConfig::new(sim_config);
        server_config.initial_window = opts.initial_window;
        server_config.tls = opts.tls;
        let sim = spawn(server_config).await.expect("the sim starts");
        let proxy_accounts = opts.proxy_accounts.clone().unwrap_or_else(|| {
            opts.accounts
                .iter()
                .map(|(l, _)| ProxyAccount::Sim(l.clone()))
                .collect()
        });
        let accounts = proxy_accounts
            .iter()
            .map(|a| match a {
                ProxyAccount::Sim(label) => (
                    label.clone(),
                    sim.access_token(label).expect("the sim knows the account"),
                ),
                ProxyAccount::BadToken(label) => {
                    (label.clone(), format!("not-a-cursor-token-{label}"))
                }
            })
            .collect();
        let mut config = AppConfig {
            upstream_url: sim.base_url(),
            upstream_root_pem: sim.cert_pem().map(|p| p.as_bytes().to_vec()),
            accounts,
            seed: 11,
            state_dir: opts.state_dir.clone(),
            ..cli::demo_config()
        };
        if let Some(configure) = opts.configure {
            configure(&mut config);
        }
        let app = App::new(config, platform()).expect("the proxy builds");
        let proxy = Proxy::serve(app.clone()).await;
        Self {
            sim,
            app,
            addr: proxy.addr,
            proxy: Some(proxy),
        }
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every counter of the sim.
    pub fn counters(&self) -> Counters {
        self.sim.counters()
    }

    /// The sim's counters of one account.
    pub fn account(&self, label: &str) -> AccountCounters {
        self.counters()
            .accounts
            .get(label)
            .cloned()
            .unwrap_or_default()
    }

    /// What the proxy holds alive now (tasks, runs, parked calls, upstream connections).
    pub fn live(&self) -> LiveCounts {
        self.app.live_counts()
    }

    /// The live counts to come back to: taken once the server answers (its own tasks run).
    pub async fn baseline(&self) -> LiveCounts {
        let r = self.get("/", &[]).await;
        assert_eq!(r.status, 200, "the proxy answers: {}", r.text());
        self.live()
    }

    /// Waits (bounded by [`SETTLE_LIMIT`]) until the proxy holds nothing beyond `baseline`:
    /// no more tasks, no run, no parked call, no upstream connection outside its pool. Panics
    /// with the counts when it does not settle: something leaked.
    pub async fn assert_settled(&self, baseline: &LiveCounts, what: &str) -> LiveCounts {
        settled(&self.app, baseline, what).await
    }

    /// Stops the proxy (the in-flight replies get a bounded drain) and the sim.
    pub async fn shutdown(mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.abort().await;
        }
        let Self { sim, .. } = self;
        sim.shutdown().await;
    }

    /// POSTs `body` as an Anthropic client would (`/v1/messages`).
    pub async fn anthropic(&self, body: &Value) -> Response {
        self.post("/v1/messages", body.to_string().into()).await
    }

    /// POSTs `body` as an OpenAI client would (`/v1/chat/completions`).
    pub async fn openai(&self, body: &Value) -> Response {
        self.post("/v1/chat/completions", body.to_string().into())
            .await
    }

    /// POSTs raw bytes to `path` on a fresh connection.
    pub async fn post(&self, path: &str, body: Bytes) -> Response {
        let mut client = Client::connect(self.addr).await;
        client.post(path, body).await
    }

    /// GETs `path` on a fresh connection with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut client = Client::connect(self.addr).await;
        client.send("GET", path, headers, Bytes::new()).await
    }
}

/// The conductor without rests: every request meets the upstream again, so a test that checks
/// how each failure *maps* onto the client's API sees the same failure on every request, and a
/// load test keeps every account in rotation whatever fails. (With the default policy a failed
/// account rests and the next request is answered by the conductor instead; `e2e_conductor.rs`
/// covers that.)
pub fn no_rests(c: &mut AppConfig) {
    c.pool.cooldown = cursorpool_core::conductor::CooldownPolicy {
        quota_initial: Duration::ZERO,
        quota_max: Duration::ZERO,
        forbidden: Duration::ZERO,
        short_initial: Duration::ZERO,
        short: Duration::ZERO,
        refresh_retry: Duration::ZERO,
    };
}

/// Every file below `dir` (recursively; nothing when it does not exist).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bound on waiting for a proxy to release what a scenario held (bounded polling; never a
/// timing assertion: a healthy proxy settles in milliseconds).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Waits (bounded by [`SETTLE_LIMIT`]) until `app` holds nothing beyond `baseline`; panics with
/// the counts otherwise.
pub async fn settled(app: &App, baseline: &LiveCounts, what: &str) -> LiveCounts {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let now = app.live_counts();
        if now.settled_to(baseline) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: leaked after {SETTLE_LIMIT:?}: {now:?} (baseline {baseline:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The test process's resident set size in KiB (`/proc/self/status`), where the OS says.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One HTTP/1.1 keep-alive connection to the proxy.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
    limit: Duration,
}

impl Client {
    /// Opens a connection.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Self {
            addr,
            sender,
            limit: REQUEST_LIMIT,
        }
    }

    /// The same connection with another bound on each exchange (e.g. under heavy load).
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Whether the server closed this keep-alive connection (e.g. its idle timeout).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// POSTs a JSON body with both APIs' headers (the proxy routes by path).
    pub async fn post(&mut self, path: &str, body: Bytes) -> Response {
        self.send(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("x-api-key", CLIENT_KEY),
            ],
            body,
        )
        .await
    }

    /// Sends one request and reads the whole response, bounded by [`REQUEST_LIMIT`].
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Response {
        let exchange = async {
            self.sender.ready().await.expect("connection ready");
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(body)).expect("valid request");
            let resp = self.sender.send_request(req).await.expect("response head");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("whole response body")
                .to_bytes();
            Response {
                status,
                headers,
                body,
            }
        };
        let limit = self.limit;
        match tokio::time::timeout(limit, exchange).await {
            Ok(r) => r,
            Err(_) => panic!("{method} {path}: no complete response within {limit:?}"),
        }
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as SSE events (comments skipped).
    pub fn sse(&self) -> Vec<SseEvent> {
        parse_sse(&self.text())
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

impl SseEvent {
    /// The data as JSON (`None` for `[DONE]` or non-JSON data).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Splits an SSE body into events (`\n\n` separated; `:` comments ignored).
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let mut event = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if event.is_some() || !data.is_empty() {
            out.push(SseEvent {
                event,
                data: data.join("\n"),
            });
        }
    }
    out
}

/// What an Anthropic SSE stream said, assembled.
#[derive(Debug, Default, Clone)]
pub struct AnthropicStream {
    /// Event names in order (`ping` excluded).
    pub events: Vec<String>,
    /// Text of all `text_delta`s.
    pub text: String,
    /// Text of all `thinking_delta`s.
    pub thinking: String,
    /// `(id, name, input)` of every tool_use block.
    pub tool_uses: Vec<(String, String, Value)>,
    /// `message_delta.delta.stop_reason`.
    pub stop_reason: Option<String>,
    /// The `error` event's `error` object.
    pub error: Option<Value>,
    /// `message_start.message`.
    pub message: Option<Value>,
}

/// Assembles an Anthropic stream and checks its grammar: `message_start` first, every block
/// started before its deltas and stopped once, `message_stop` (or `error`) last.
pub fn anthropic_stream(resp: &Response) -> AnthropicStream {
    assert_eq!(resp.status, 200, "stream status; body: {}", resp.text());
    let mut s = AnthropicStream::default();
    let mut partial: Vec<(String, String, String)> = Vec::new();
    let mut open: Option<u64> = None;
    for ev in resp.sse() {
        let name = ev.event.clone().unwrap_or_default();
        if name == "ping" {
            continue;
        }
        let v = ev
            .json()
            .unwrap_or_else(|| panic!("event {name} carries JSON: {:?}", ev.data));
        assert_eq!(v["type"], name.as_str(), "event name matches data.type");
        assert!(
            s.events.last().map(String::as_str) != Some("message_stop"),
            "nothing after message_stop: {name}"
        );
        match name.as_str() {
            "message_start" => {
                assert!(s.events.is_empty(), "message_start is first");
                assert!(
                    v["message"]["usage"]["input_tokens"]
                        .as_u64()
                        .is_some_and(|n| n > 0),
                    "input tokens are never 0 in message_start: {v}"
                );
                s.message = Some(v["message"].clone());
            }
            "content_block_start" => {
                assert!(open.is_none(), "blocks do not overlap");
                let i = v["index"].as_u64().expect("index");
                open = Some(i);
                let b = &v["content_block"];
                if b["type"] == "thinking" {
                    assert_eq!(b["thinking"], "", "{v}");
                    assert_eq!(b["signature"], "", "{v}");
                }
                if b["type"] == "tool_use" {
                    partial.push((
                        b["id"].as_str().unwrap_or_default().to_owned(),
                        b["name"].as_str().unwrap_or_default().to_owned(),
                        String::new(),
                    ));
                }
            }
            "content_block_delta" => {
                assert_eq!(v["index"].as_u64(), open, "delta for the open block");
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => s.text.push_str(d["text"].as_str().unwrap_or("")),
                    Some("thinking_delta") => {
                        s.thinking.push_str(d["thinking"].as_str().unwrap_or(""));
                    }
                    Some("input_json_delta") => {
                        let p = partial.last_mut().expect("a tool_use block is open");
                        p.2.push_str(d["partial_json"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open, "stop of the open block");
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta after every block stopped");
                s.stop_reason = v["delta"]["stop_reason"].as_str().map(str::to_owned);
            }
            "message_stop" => {
                assert!(
                    s.events.iter().any(|e| e == "message_delta"),
                    "message_delta before message_stop"
                );
            }
            "error" => s.error = Some(v["error"].clone()),
            other => panic!("unexpected event {other}"),
        }
        s.events.push(name);
    }
    s.tool_uses = partial
        .into_iter()
        .map(|(id, name, json)| {
            let input = if json.is_empty() {
                Value::Object(serde_json::Map::new())
            } else {
                serde_json::from_str(&json).expect("tool input is JSON")
            };
            (id, name, input)
        })
        .collect();
    if s.error.is_none() {
        assert_eq!(
            s.events.first().map(String::as_str),
            Some("message_start"),
            "events: {:?}",
            s.events
        );
        assert_eq!(
            s.events.last().map(String::as_str),
            Some("message_stop"),
            "events: {:?}",
            s.events
        );
    }
    s
}

/// What an OpenAI chunk stream said, assembled.
#[derive(Debug, Default, Clone)]
pub struct OpenAiStream {
    /// The chunks (JSON) in order, `[DONE]` excluded.
    pub chunks: Vec<Value>,
    /// `delta.content`, concatenated.
    pub content: String,
    /// `delta.reasoning_content`, concatenated.
    pub reasoning: String,
    /// The last `finish_reason`.
    pub finish_reason: Option<String>,
    /// An `{"error":…}` chunk's `error`.
    pub error: Option<Value>,
    /// Whether `data: [DONE]` ended the stream.
    pub done: bool,
}

/// Assembles an OpenAI stream (`data: {…}` chunks, then `data: [DONE]`).
pub fn openai_stream(resp: &Response) -> OpenAiStream {
    assert_eq!(resp.status, 200, "stream status; body: {}", resp.text());
    let mut s = OpenAiStream::default();
    for ev in resp.sse() {
        assert!(!s.done, "nothing after [DONE]: {:?}", ev.data);
        if ev.data == "[DONE]" {
            s.done = true;
            continue;
        }
        let v = ev.json().expect("chunk is JSON");
        if v.get("error").is_some() {
            s.error = Some(v["error"].clone());
            s.chunks.push(v);
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk", "chunk: {v}");
        if let Some(first) = s.chunks.iter().find(|c| c.get("error").is_none()) {
            assert_eq!(first["id"], v["id"], "one completion id per stream");
        }
        for c in v["choices"].as_array().into_iter().flatten() {
            let d = &c["delta"];
            s.content.push_str(d["content"].as_str().unwrap_or(""));
            s.reasoning
                .push_str(d["reasoning_content"].as_str().unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish_reason = Some(f.to_owned());
            }
        }
        s.chunks.push(v);
    }
    if s.done && s.error.is_none() {
        assert!(
            s.chunks
                .iter()
                .any(|c| c["usage"]["completion_tokens"].as_u64().is_some()),
            "usage rides on the last chunks: {:?}",
            s.chunks.last()
        );
    }
    s
}

/// A plain streamed Anthropic request with one user message.
pub fn anthropic_text_request(text: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

/// A plain OpenAI request with one user message.
pub fn openai_text_request(text: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": "gpt-5",
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    })
}

// ---- the official SDKs (Python) ----

/// Where the e2e scripts and their venv live.
pub fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e")
}

/// The venv's Python, or `None` (with a loud SKIPPED line) when the clients are not installed.
/// With `CURSORPOOL_REQUIRE_CLIENTS=1` (CI) a missing venv fails the test instead.
pub fn sdk_python(test: &str) -> Option<PathBuf> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let python = e2e_dir().join(".venv/bin/python");
    let ok = *INSTALLED.get_or_init(|| {
        python.exists()
            && Command::new(&python)
                .args(["-c", "import anthropic, openai"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    if ok {
        return Some(python);
    }
    let required = std::env::var("CURSORPOOL_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let how = "install them with `bash .ci/clients-setup` (python3 -m venv e2e/.venv && \
               e2e/.venv/bin/pip install -r e2e/requirements.txt)";
    if required {
        panic!(
            "{test}: the official anthropic/openai Python clients are not installed in \
             e2e/.venv; {how}"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: the official anthropic/openai Python clients are not \
         installed in e2e/.venv; {how} (CURSORPOOL_REQUIRE_CLIENTS=1 makes this a failure)\n"
    );
    None
}

/// Runs `e2e/<script> <scenario>` against the proxy and returns the JSON object the script
/// printed last on stdout. Panics (with the script's stderr) when it fails or times out.
pub async fn run_sdk(python: &Path, h: &Harness, script: &str, scenario: &str) -> Value {
    let base = h.base_url();
    let mut cmd = Command::new(python);
    cmd.arg(e2e_dir().join(script))
        .arg(scenario)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", CLIENT_KEY)
        .env("OPENAI_BASE_URL", format!("{base}/v1"))
        .env("OPENAI_API_KEY", CLIENT_KEY)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env("NO_PROXY", "127.0.0.1,localhost");
    run_json(cmd, &format!("{script} {scenario}"), SCRIPT_LIMIT).await
}

/// Runs `cmd` (stdin closed, both pipes drained) under `limit` and returns the JSON object it
/// printed last on stdout. Panics, with its output, when it fails, times out or prints none.
pub async fn run_json(mut cmd: Command, label: &str, limit: Duration) -> Value {
    let label = label.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the script");
        // Drain both pipes on their own threads so a chatty script never blocks on a full pipe.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait().expect("wait for the script") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        (status, stdout, stderr)
    })
    .await
    .expect("the script runner does not panic");
    let (status, stdout, stderr) = out;
    let stdout = String::from_utf8_lossy(&stdout);
    let stderr = String::from_utf8_lossy(&stderr);
    let Some(status) = status else {
        panic!("{label} timed out after {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    };
    assert!(
        status.success(),
        "{label} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match last.and_then(|l| serde_json::from_str::<Value>(l).ok()) {
        Some(v) => v,
        None => panic!("{label} printed no JSON result\nstdout:\n{stdout}\nstderr:\n{stderr}"),
    }
}

// ---- a real browser (Debian's chromium, driven by playwright-core) ----

/// What drives the browser tests: `node`, the script directory (with playwright-core
/// installed) and the Chromium executable.
#[derive(Debug, Clone)]
pub struct Browser {
    /// The Node.js executable.
    pub node: PathBuf,
    /// `e2e/browser`.
    pub dir: PathBuf,
    /// The Chromium executable.
    pub chromium: PathBuf,
}

/// The browser tools, or `None` (with a loud SKIPPED line) when they are not installed. With
/// `CURSORPOOL_REQUIRE_BROWSER=1` (CI) a missing piece fails the test instead.
pub fn browser(test: &str) -> Option<Browser> {
    let dir = e2e_dir().join("browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node = PathBuf::from("node");
    let node_ok = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<&str> = [
        (!chromium.exists()).then_some("chromium (apt-get install chromium)"),
        (!node_ok).then_some("node"),
        (!dir
            .join("node_modules/playwright-core/package.json")
            .exists())
        .then_some("playwright-core (npm ci --prefix e2e/browser)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return Some(Browser {
            node,
            dir,
            chromium,
        });
    }
    let how = format!(
        "missing: {}; `bash .ci/browser-setup` installs them",
        missing.join(", ")
    );
    if std::env::var("CURSORPOOL_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{test}: the browser test's tools are not installed ({how})");
    }
    eprintln!(
        "\n*** SKIPPED {test}: the browser test's tools are not installed ({how}; \
         CURSORPOOL_REQUIRE_BROWSER=1 makes this a failure)\n"
    );
    None
}

/// The executable of the binary under test, next to the test executables
/// (`target/<profile>/`): `cargo test --workspace` builds both.
pub fn binary_path() -> PathBuf {
    let name = Target::current().binary();
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<binary>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("the test runs from a target directory");
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p {}` (cargo test --workspace builds it)",
        path.display(),
        match Target::current() {
            Target::Cursorpool => "cursorpool-tokio",
            Target::Lite => "cursorpool-smol",
        }
    );
    path
}

/// Anthropic's "overloaded" status as the binary under test sends it: 529 from `cursorpool`;
/// `cursorpool-lite`'s HTTP library (http-types) knows only registered statuses and sends 503,
/// which clients retry alike.
pub fn overloaded_status() -> u16 {
    match Target::current() {
        Target::Cursorpool => 529,
        Target::Lite => 503,
    }
}
