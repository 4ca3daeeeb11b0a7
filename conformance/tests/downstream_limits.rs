//! Limits on what a client connection may hold, against both binaries: a head over the limit
//! is a 431 in the client API's error shape, a 100 MB body a 413 (default limit), a head sent
//! slowly (slow-loris), a body that stops arriving and an idle keep-alive connection are
//! closed — and the server keeps serving everyone else, holding nothing afterwards; a burst of
//! connections waits in the listener's accept queue instead of being dropped.

use cursorpool_conformance as support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_host::app::AppConfig;
use serde_json::Value;
use support::{Client, Harness, LiveCounts, Options, anthropic_text_request, bounded};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Short timeouts so that the closes happen within the test's bounds.
fn short_timeouts(c: &mut AppConfig) {
    c.conn_limits.header_timeout = Duration::from_secs(1);
    c.conn_limits.idle_timeout = Duration::from_secs(2);
}

/// A proxy with [`short_timeouts`], its baseline, and a raw connection to it.
async fn short_timeouts_proxy() -> (Harness, LiveCounts, TcpStream) {
    let h = Harness::start(Options {
        configure: Some(short_timeouts),
        ..Options::default()
    })
    .await;
    let baseline = h.baseline().await;
    let sock = TcpStream::connect(h.addr).await.expect("connect");
    (h, baseline, sock)
}

/// The server still answers a good request, then holds nothing beyond `baseline`.
async fn serves_on_without_leaks(h: Harness, baseline: &LiveCounts, what: &str) {
    still_serves(&h).await;
    h.assert_settled(baseline, what).await;
    h.shutdown().await;
}

/// Reads until the server closes the connection (bounded), returning what it sent.
async fn read_until_closed(sock: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read_all = async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(support::REQUEST_LIMIT, read_all)
        .await
        .is_err()
    {
        panic!("the server never closed the connection");
    }
    out
}

/// Checks a raw HTTP response: status and the API's error shape.
fn assert_error_response(raw: &[u8], status: u16, openai: bool) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status}")),
        "status {status}: {head}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    if openai {
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    } else {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
}

async fn still_serves(h: &Harness) {
    let r = h
        .anthropic(&anthropic_text_request("still serving", false))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn headers_over_the_limit_are_a_431_in_the_api_shape() {
    bounded(async {
        let h = Harness::start_default().await;
        let baseline = h.baseline().await;
        // 100 KiB of headers: over the default 64 KiB (and over cursorpool-lite's 8 KiB).
        let junk = "x".repeat(1000);
        for (path, openai) in [("/v1/messages", false), ("/v1/chat/completions", true)] {
            let mut sock = TcpStream::connect(h.addr).await.expect("connect");
            let mut head = format!("POST {path} HTTP/1.1\r\nhost: {}\r\n", h.addr);
            for i in 0..100 {
                head.push_str(&format!("x-junk-{i}: {junk}\r\n"));
            }
            head.push_str("content-length: 2\r\n\r\n{}");
            // The server may answer and close before it read everything: ignore write errors.
            let _ = sock.write_all(head.as_bytes()).await;
            let raw = read_until_closed(&mut sock).await;
            assert_error_response(&raw, 431, openai);
        }
        assert_eq!(h.counters().total.runs, 0);
        serves_on_without_leaks(h, &baseline, "431").await;
    })
    .await;
}

async fn a_100_mb_body_is_a_413_with_the_default_limit() {
    bounded(async {
        let h = Harness::start_default().await;
        let baseline = h.baseline().await;
        let default_limit = cursorpool_host::cli::demo_config().max_body_bytes;
        let body = Bytes::from(vec![b' '; 100 * 1024 * 1024]);
        assert!(body.len() > default_limit);
        let mut client = Client::connect(h.addr).await;
        let r = client
            .send(
                "POST",
                "/v1/messages",
                &[
                    ("content-type", "application/json"),
                    ("x-api-key", support::CLIENT_KEY),
                ],
                body,
            )
            .await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "request_too_large");
        assert_eq!(h.counters().total.runs, 0);
        serves_on_without_leaks(h, &baseline, "413").await;
    })
    .await;
}

async fn a_slow_loris_head_is_cut_at_the_header_timeout() {
    bounded(async {
        let (h, baseline, mut sock) = short_timeouts_proxy().await;
        sock.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: slow\r\n")
            .await
            .expect("the first bytes");
        // One more header byte now and then, never the end of the head: the server closes
        // the connection (the head's clock runs from its first byte), and a write then fails.
        let deadline = Instant::now() + support::REQUEST_LIMIT;
        let mut closed = false;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if sock.write_all(b"x").await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(closed, "the slow head was never cut");
        serves_on_without_leaks(h, &baseline, "slow-loris").await;
    })
    .await;
}

async fn a_body_that_stops_arriving_is_cut() {
    bounded(async {
        let (h, baseline, mut sock) = short_timeouts_proxy().await;
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":",
            support::CLIENT_KEY
        );
        sock.write_all(head.as_bytes()).await.expect("head");
        let started = Instant::now();
        let _ = read_until_closed(&mut sock).await;
        assert!(started.elapsed() < support::REQUEST_LIMIT);
        assert_eq!(h.counters().total.runs, 0);
        serves_on_without_leaks(h, &baseline, "stalled body").await;
    })
    .await;
}

async fn an_idle_keep_alive_connection_is_closed() {
    bounded(async {
        let (h, baseline, mut sock) = short_timeouts_proxy().await;
        sock.write_all(format!("GET / HTTP/1.1\r\nhost: {}\r\n\r\n", h.addr).as_bytes())
            .await
            .expect("request");
        // The answer comes, then (no further request) the close.
        let raw = read_until_closed(&mut sock).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("cursorpool"), "{text}");
        serves_on_without_leaks(h, &baseline, "idle").await;
    })
    .await;
}

#[test]
fn the_connection_limits_come_from_the_command_line() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: cursorpool_host::cli::ServeArgs,
    }
    let cli = Cli::parse_from([
        "serve",
        "--max-header-bytes",
        "1000",
        "--header-timeout-secs",
        "7",
        "--idle-timeout-secs",
        "9",
        "--max-body-bytes",
        "5000",
        "--token",
        "t",
    ]);
    let c = cli.serve.app_config().expect("config");
    assert_eq!(c.conn_limits.max_header_bytes, 1000);
    assert_eq!(c.conn_limits.header_timeout, Duration::from_secs(7));
    assert_eq!(c.conn_limits.idle_timeout, Duration::from_secs(9));
    assert_eq!(c.max_body_bytes, 5000);
    let defaults = Cli::parse_from(["serve", "--token", "t"])
        .serve
        .app_config()
        .expect("config");
    assert_eq!(
        defaults.conn_limits,
        cursorpool_host::conn_watch::ConnLimits::default()
    );
}

/// The accept queue of the loopback listener on `port`, from `/proc/net/tcp` (for a listening
/// socket its `rx_queue` column counts the connections waiting for `accept`).
fn accept_queue(port: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&local.as_str()) || cols.get(3) != Some(&"0A") {
            return None;
        }
        let (_, rx) = cols.get(4)?.split_once(':')?;
        usize::from_str_radix(rx, 16).ok()
    })
}

/// A team's clients connecting at once are all queued for `accept`, not dropped: the binary's
/// listening socket holds far more than the usual 128 waiting connections. (Nothing accepts
/// here, so the queue fills; with a backlog of 128 it stops at 129.)
async fn a_burst_of_connections_waits_in_the_accept_queue() {
    bounded(async {
        const BURST: usize = 400;
        let loopback = ([127, 0, 0, 1], 0).into();
        let (port, _listener): (u16, Box<dyn std::any::Any + Send>) =
            match support::Target::current() {
                support::Target::Cursorpool => {
                    let l = cursorpool_tokio::server::listen(loopback).expect("listen");
                    (l.local_addr().expect("addr").port(), Box::new(l))
                }
                support::Target::Lite => {
                    let l = cursorpool_smol::server::listen(loopback).expect("listen");
                    (l.local_addr().expect("addr").port(), Box::new(l))
                }
            };
        let Some(0) = accept_queue(port) else {
            eprintln!("NOTICE: /proc/net/tcp does not show the listener; accept queue not checked");
            return;
        };
        // The kernel caps every backlog at net.core.somaxconn (4096 by default since Linux 5.4).
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let want = BURST.min(cap + 1);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let clients: Vec<_> = (0..BURST)
            .map(|_| tokio::spawn(TcpStream::connect(addr)))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut queued = 0;
        while Instant::now() < deadline {
            queued = accept_queue(port).unwrap_or(0);
            if queued >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for c in clients {
            c.abort();
        }
        assert_eq!(
            queued, want,
            "connections waiting for accept (somaxconn {cap})"
        );
    })
    .await;
}

support::both_binaries!(
    a_burst_of_connections_waits_in_the_accept_queue,
    headers_over_the_limit_are_a_431_in_the_api_shape,
    a_100_mb_body_is_a_413_with_the_default_limit,
    a_slow_loris_head_is_cut_at_the_header_timeout,
    a_body_that_stops_arriving_is_cut,
    an_idle_keep_alive_connection_is_closed,
);
