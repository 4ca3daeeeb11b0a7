//! The `cursor-sim` binary: its help documents every option, and with no options it starts on
//! a free loopback port, announces where and with which credentials, and serves.
#![cfg(feature = "server")]

mod common;
mod server_support;

use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use server_support::{self as net, TIMEOUT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cursor-sim");

#[test]
fn help_documents_every_option() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run cursor-sim --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    for option in [
        "--listen",
        "--accounts",
        "--account",
        "--seed",
        "--chunk-chars",
        "--token-interval-ms",
        "--heartbeat-ms",
        "--http2-config",
        "--initial-window",
        "--max-frame-size",
        "--tls",
        "--cert-out",
        "--fault",
        "--token-ttl-secs",
        "--print-json",
        "--verbose",
        "--threads",
        "force-bidi-enabled",
    ] {
        assert!(help.contains(option), "--help mentions {option}");
    }
}

#[test]
fn bad_fault_spec_is_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args(["--fault", "explode:after=1"])
        .output()
        .expect("run cursor-sim");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown fault kind"), "stderr explains: {err}");
}

#[tokio::test]
async fn starts_on_a_free_loopback_port_and_prints_base_url_and_credentials() {
    let mut child = Command::new(BIN)
        .args([
            "--print-json",
            "--account",
            "a:key-a",
            "--account",
            "b:key-b:5",
            // One worker, as the benchmarks run it.
            "--threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cursor-sim");
    let stdout = child.stdout.take().expect("stdout");
    tokio::time::timeout(TIMEOUT, async {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("a startup line");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON startup line");
        let base_url = json["base_url"].as_str().expect("base_url");
        let addr: SocketAddr = base_url
            .strip_prefix("http://")
            .expect("cleartext base URL")
            .parse()
            .expect("host:port");
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        let accounts = json["accounts"].as_array().expect("accounts");
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0]["label"], "a");
        assert_eq!(accounts[1]["api_key"], "key-b");
        let token = accounts[0]["access_token"].as_str().expect("token");
        assert!(!token.is_empty());

        let headers = net::sdk_headers(token, &net::request_id(), "application/proto");
        let (status, _, _) = net::h1_unary(
            addr,
            "POST",
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 200);
    })
    .await
    .expect("bounded");
    child.kill().await.expect("stop cursor-sim");
}
