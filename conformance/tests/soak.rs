//! Load and soak, against both binaries: 1,000 concurrent streaming conversations (Anthropic
//! and OpenAI, each on its own keep-alive connection) for a bounded run, with random client
//! disconnects mid-stream and upstream faults injected all along (before the first byte and
//! after it). Every answer is checked line by line against what the sim's deterministic model
//! writes for that conversation; an answer is either complete and exact, or a clean error in
//! the API's shape (after an injected fault), or a disconnect the client chose: zero lost or
//! corrupted. At the end nothing is left alive (tasks, runs, connections back to their
//! baseline) and the process's RSS is reported.
//!
//! `CURSORPOOL_SOAK_SECS` (default 30) sets the duration, `CURSORPOOL_SOAK_CONVERSATIONS`
//! (default 1000) the concurrency; each binary prints one `soak:` line with its figures.

use cursorpool_conformance as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::connect::code::Code;
use cursorpool_sim::model::{Control, Fault, FaultRule, FaultRuns};
use serde_json::{Value, json};
use support::{Client, Harness, Options, Response, anthropic_stream, openai_stream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic generator (each conversation has its own seed).
struct Rand(u64);

impl Rand {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every account stays in rotation whatever fails; the conversation store is bounded at
/// 16 MiB (every question here starts a conversation of its own: the store fills up early and
/// then evicts, so the process's memory must stay flat after that).
fn configure(c: &mut cursorpool_tokio::app::AppConfig) {
    support::no_rests(c);
    c.conversations.max_bytes = 16 * 1024 * 1024;
}

/// Bound on one request: a thousand streams at once on two cores (and a debug build) can keep
/// a request waiting far longer than a single one; never forever.
const REQUEST_BOUND: Duration = Duration::from_secs(180);

/// What happened to each request.
#[derive(Debug, Default)]
struct Tally {
    complete: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    bytes: AtomicU64,
    /// The slowest complete exchange, in milliseconds.
    slowest_ms: AtomicU64,
}

/// The request of conversation `i` with `question` (its own system prompt, so that a crossed
/// stream shows).
fn request(openai: bool, i: u64, question: &str) -> (&'static str, Value) {
    let system = format!("soak client {i}");
    if openai {
        let body = json!({
            "model": "gpt-5",
            "stream": true,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
        });
        ("/v1/chat/completions", body)
    } else {
        let body = json!({
            "model": "claude-sonnet-5",
            "max_tokens": 8192,
            "stream": true,
            "system": system,
            "messages": [{"role": "user", "content": question}],
        });
        ("/v1/messages", body)
    }
}

/// Checks an answer line by line against the sim model's format for this conversation.
fn check_answer(text: &str, i: u64, question: &str, lorem: u64) -> Result<(), String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let expected = [
        format!("user turns: 1; tool results: 0; last user message: \"{question}\""),
        format!("system prompt: \"soak client {i}\""),
        "tools available: 0; model: default".to_owned(),
    ];
    let n = expected.len();
    if lines.len() != n + usize::from(lorem > 0) + 1 {
        return Err(format!("{} lines: {text:?}", lines.len()));
    }
    for (k, want) in expected.iter().enumerate() {
        if lines[k] != want {
            return Err(format!("line {k}: {:?} != {want:?}", lines[k]));
        }
    }
    if lorem > 0 && lines[n].split(' ').count() as u64 != lorem {
        return Err(format!("{lorem} lorem words expected: {:?}", lines[n]));
    }
    let last = lines[lines.len() - 1];
    if !last.ends_with('.') || last.len() > 40 {
        return Err(format!("sign-off: {last:?}"));
    }
    Ok(())
}

/// Reads a stream until its first text, then goes away.
async fn disconnect_mid_stream(addr: std::net::SocketAddr, path: &str, body: &Value) {
    let body = body.to_string();
    let Ok(mut sock) = tokio::net::TcpStream::connect(addr).await else {
        panic!("connect");
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-api-key: {}\r\ncontent-length: {}\r\n\r\n",
        support::CLIENT_KEY,
        body.len()
    );
    sock.write_all(head.as_bytes()).await.expect("head");
    sock.write_all(body.as_bytes()).await.expect("body");
    let mut buf = [0u8; 4096];
    let mut seen = 0;
    // Any bytes of the body will do (a fault may end it early: that is fine too).
    let read = async {
        while seen < 400 {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    };
    if tokio::time::timeout(REQUEST_BOUND, read).await.is_err() {
        panic!("{path}: no byte within {REQUEST_BOUND:?}");
    }
}

/// Classifies a complete response: `Ok(true)` exact answer, `Ok(false)` a clean error.
fn classify(r: &Response, openai: bool, i: u64, q: &str, lorem: u64) -> Result<bool, String> {
    if r.status != 200 {
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
        let shaped = if openai {
            v["error"]["message"].is_string()
        } else {
            v["type"] == "error" && v["error"]["message"].is_string()
        };
        return if shaped {
            Ok(false)
        } else {
            Err(format!("error without the API's shape: {v}"))
        };
    }
    let (text, error, stop) = if openai {
        let s = openai_stream(r);
        (s.content, s.error, s.finish_reason)
    } else {
        let s = anthropic_stream(r);
        (s.text, s.error, s.stop_reason)
    };
    if error.is_some() {
        return Ok(false);
    }
    let want = if openai { "stop" } else { "end_turn" };
    if stop.as_deref() != Some(want) {
        return Err(format!("stop {stop:?} without an error"));
    }
    check_answer(&text, i, q, lorem).map(|()| true)
}

/// One conversation: questions until `deadline`.
async fn conversation(h: Arc<Harness>, i: u64, deadline: Instant, tally: Arc<Tally>) {
    let mut rng = Rand(0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let connect = || async { Client::connect(h.addr).await.with_limit(REQUEST_BOUND) };
    let mut client = connect().await;
    let mut j = 0;
    // Every conversation asks at least once (and never walks away from its first question).
    while j == 0 || Instant::now() < deadline {
        j += 1;
        let lorem = rng.below(40);
        let question = format!("question {j} of {i} lorem {lorem}");
        let openai = rng.below(2) == 1;
        let (path, body) = request(openai, i, &question);
        if j > 1 && rng.below(10) == 0 {
            disconnect_mid_stream(h.addr, path, &body).await;
            tally.disconnects.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // A kept-alive connection the server closed (idle while this conversation waited on
        // another socket) is replaced, as HTTP clients do.
        if client.is_closed() {
            client = connect().await;
        }
        let sent = Instant::now();
        let r = client.post(path, Bytes::from(body.to_string())).await;
        let ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
        tally.slowest_ms.fetch_max(ms, Ordering::Relaxed);
        tally
            .bytes
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        match classify(&r, openai, i, &question, lorem) {
            Ok(true) => tally.complete.fetch_add(1, Ordering::Relaxed),
            Ok(false) => tally.errors.fetch_add(1, Ordering::Relaxed),
            Err(e) => panic!("conversation {i} question {j}: lost or corrupted: {e}"),
        };
        if r.header("connection") == Some("close") {
            client = connect().await;
        }
    }
}

/// Adds one random fault rule every few hundred milliseconds until `deadline`.
async fn inject_faults(h: Arc<Harness>, deadline: Instant) -> u64 {
    let mut rng = Rand(0x5eed);
    let mut n = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let account = ["a", "b", "c", "d"][rng.below(4) as usize].to_owned();
        let fault = match rng.below(5) {
            0 => Fault::RstStream {
                after_updates: 0,
                code: 2,
            },
            1 => Fault::DropConnection { after_updates: 0 },
            2 => Fault::ErrorAfter {
                after_updates: 0,
                code: Code::Unavailable,
                cursor_error: None,
            },
            3 => Fault::ErrorAfter {
                after_updates: 12,
                code: Code::Internal,
                cursor_error: None,
            },
            _ => Fault::RstStream {
                after_updates: 12,
                code: 2,
            },
        };
        let rule = FaultRule {
            account: Some(account),
            runs: FaultRuns::Next(1),
            fault,
        };
        h.sim
            .control(Control::AddFault { rule })
            .expect("the sim takes the rule");
        n += 1;
    }
    n
}

/// One soak at a time (both binaries' tests share this process and its two cores).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn a_thousand_concurrent_conversations_under_faults_lose_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let secs = env("CURSORPOOL_SOAK_SECS", 30);
    let conversations = env("CURSORPOOL_SOAK_CONVERSATIONS", 1000);
    let bound = Duration::from_secs(secs + 180);
    let run = async {
        let h = Arc::new(
            Harness::start(Options {
                chunk_chars: 8,
                token_interval: Duration::from_millis(1),
                configure: Some(configure),
                ..Options::with_accounts(&["a", "b", "c", "d"])
            })
            .await,
        );
        let baseline = h.baseline().await;
        let rss_start = support::rss_kib();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(secs);
        let tally = Arc::new(Tally::default());
        let faults = tokio::spawn(inject_faults(h.clone(), deadline));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..conversations {
            tasks.spawn(conversation(h.clone(), i, deadline, tally.clone()));
        }
        let mut peak = h.live();
        let mut rss_peak = rss_start.unwrap_or(0);
        let half_time = started + Duration::from_secs(secs / 2);
        let mut rss_half = None;
        while !tasks.is_empty() {
            tokio::select! {
                done = tasks.join_next() => {
                    if let Some(Err(e)) = done {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    let now = h.live();
                    peak.runs = peak.runs.max(now.runs);
                    peak.tasks = peak.tasks.max(now.tasks);
                    peak.upstream.open = peak.upstream.open.max(now.upstream.open);
                    let rss = support::rss_kib().unwrap_or(0);
                    rss_peak = rss_peak.max(rss);
                    if rss_half.is_none() && Instant::now() >= half_time {
                        rss_half = Some(rss);
                    }
                }
            }
        }
        let injected_rules = faults.await.expect("fault injector");
        let elapsed = started.elapsed();
        let settled = h.assert_settled(&baseline, "after the soak").await;
        let rss_end = support::rss_kib();
        let c = h.counters().total;
        let (complete, errors, disconnects) = (
            tally.complete.load(Ordering::Relaxed),
            tally.errors.load(Ordering::Relaxed),
            tally.disconnects.load(Ordering::Relaxed),
        );
        assert!(
            complete + errors >= conversations,
            "every conversation was answered"
        );
        assert!(
            errors == 0 || c.faults_injected > 0,
            "errors only where faults were injected"
        );
        // Memory flat: the second half adds no more than the first half's level again (a gross
        // leak of a few KiB per request would show; the live counts above are the exact check).
        if let (Some(half), Some(end)) = (rss_half, rss_end) {
            assert!(
                end <= 2 * half + 64 * 1024,
                "RSS grew from {half} KiB at half time to {end} KiB"
            );
        }
        eprintln!(
            "soak: {} | {conversations} concurrent conversations for {:.0} s | {} requests: \
             {complete} complete and exact, {errors} clean errors, {disconnects} client \
             disconnects, 0 lost or corrupted | {} fault rules, {} faults met upstream, {} \
             upstream cancels | {:.1} MB streamed, slowest exchange {:.1} s | peak: {} runs, {} tasks, {} upstream \
             connections | after: {settled:?} | RSS (whole test process: sim, clients, proxy) \
             start {} KiB, half-time {} KiB, peak {rss_peak} KiB, end {} KiB",
            support::Target::current().binary(),
            elapsed.as_secs_f64(),
            complete + errors + disconnects,
            injected_rules,
            c.faults_injected,
            c.cancels,
            tally.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            tally.slowest_ms.load(Ordering::Relaxed) as f64 / 1e3,
            peak.runs,
            peak.tasks,
            peak.upstream.open,
            rss_start.unwrap_or(0),
            rss_half.unwrap_or(0),
            rss_end.unwrap_or(0),
        );
        if let Ok(h) = Arc::try_unwrap(h) {
            h.shutdown().await;
        }
    };
    match tokio::time::timeout(bound, run).await {
        Ok(()) => {}
        Err(_) => panic!("the soak did not finish within {bound:?}"),
    }
}

support::both_binaries!(a_thousand_concurrent_conversations_under_faults_lose_nothing);
