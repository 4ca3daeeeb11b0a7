//! The configuration file with the built binaries: a reload (SIGHUP, or the file changing)
//! swaps the client API keys while a streamed answer is in flight — the stream finishes intact
//! and the new key works right after; a file that no longer parses changes nothing; an invalid
//! file at start is refused with exit code 2 and a message naming the key.

use cursorpool_conformance as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cursorpool_sim::model::{AccountConfig, Fault, FaultRule, FaultRuns, Quota, SimConfig};
use cursorpool_sim::server::{ServerConfig, SimHandle, spawn};
use support::{Client, Process, anthropic_text_request, bounded, free_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A sim whose runs trickle (one message every 100 ms): a long answer streams for seconds.
async fn slow_sim() -> SimHandle {
    spawn(ServerConfig::new(SimConfig {
        accounts: vec![AccountConfig {
            label: "main".to_owned(),
            api_key: "key-main".to_owned(),
            quota: Quota::default(),
        }],
        faults: vec![FaultRule {
            account: None,
            runs: FaultRuns::All,
            fault: Fault::Trickle {
                interval: Duration::from_millis(100),
            },
        }],
        ..SimConfig::default()
    }))
    .await
    .expect("the sim starts")
}

fn write_config(path: &Path, port: u16, sim: &SimHandle, dir: &Path, keys: &[&str]) {
    let text = format!(
        "port: {port}\nupstream: {}\nauth-dir: {}\nmemory-only: true\ntoken-file: {}\n\
         api-keys: [{}]\n",
        sim.base_url(),
        dir.join("auth").display(),
        dir.join("tokens").display(),
        keys.join(", ")
    );
    std::fs::write(path, text).expect("config written");
}

/// `serve --config FILE` of the binary under test, with no configuration from the environment.
fn serve(config: &Path) -> Process {
    let mut cmd = Command::new(support::binary_path());
    cmd.args(["serve", "--config"]).arg(config);
    for var in [
        "CURSORPOOL_API_KEYS",
        "CURSORPOOL_LISTEN",
        "CURSORPOOL_UPSTREAM",
        "CURSORPOOL_TOKENS",
        "CURSORPOOL_LOG",
    ] {
        cmd.env_remove(var);
    }
    Process::spawn(cmd)
}

async fn status_with_key(addr: std::net::SocketAddr, key: &str) -> u16 {
    let body = anthropic_text_request("which key", false).to_string();
    Client::connect(addr)
        .await
        .send(
            "POST",
            "/v1/messages",
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("x-api-key", key),
            ],
            body.into(),
        )
        .await
        .status
}

/// Reads from `stream` into `buf` until it contains `needle` (bounded by the test's limit).
async fn read_until(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, needle: &str) {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        let n = stream.read(&mut chunk).await.expect("read the stream");
        assert!(
            n > 0,
            "the stream ended before {needle:?}:\n{}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn a_reload_swaps_api_keys_without_cutting_a_stream_in_flight() {
    bounded(async {
        let sim = slow_sim().await;
        let dir = support::temp_dir("config-reload");
        let token = sim.access_token("main").expect("token");
        std::fs::write(dir.join("tokens"), format!("main={token}\n")).expect("token file");
        let config = dir.join("config.yaml");
        let port = free_port();
        write_config(&config, port, &sim, &dir, &["old-key"]);
        let mut proxy = serve(&config);
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        proxy.wait_listening(addr).await;
        assert_eq!(status_with_key(addr, "new-key").await, 401);

        // A long streamed answer starts with the old key.
        let body = anthropic_text_request("lorem 40", true).to_string();
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             anthropic-version: 2023-06-01\r\nx-api-key: old-key\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("request sent");
        let mut got = Vec::new();
        read_until(&mut stream, &mut got, "content_block_delta").await;
        let before = String::from_utf8_lossy(&got).into_owned();
        assert!(before.starts_with("HTTP/1.1 200"), "{before}");
        assert!(
            !before.contains("message_stop"),
            "still streaming: {before}"
        );

        // SIGHUP with a new key while the answer streams.
        write_config(&config, port, &sim, &dir, &["old-key", "new-key"]);
        let at = proxy.wait_for_log("", 0).await;
        proxy.signal("HUP");
        let at = proxy.wait_for_log("configuration reloaded", at).await;
        assert_eq!(status_with_key(addr, "new-key").await, 200);

        // The stream in flight goes on to its normal end.
        read_until(&mut stream, &mut got, "event: message_stop").await;
        let after = String::from_utf8_lossy(&got[before.len()..]).into_owned();
        assert!(after.contains("content_block_delta"), "{after}");
        assert!(!after.contains("event: error"), "{after}");

        // The file changing is enough too (no signal): the old key goes away.
        write_config(&config, port, &sim, &dir, &["newest-key"]);
        let deadline = std::time::Instant::now() + support::PROCESS_LIMIT;
        while status_with_key(addr, "newest-key").await != 200 {
            assert!(std::time::Instant::now() < deadline, "{}", proxy.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            proxy.log()[at..].contains("trigger=\"file changed\""),
            "{}",
            proxy.log()
        );
        assert_eq!(status_with_key(addr, "old-key").await, 401);

        // A broken file changes nothing.
        let at = proxy.log().len();
        std::fs::write(&config, "api-keys: [x]\nprot: 1\n").expect("broken config");
        proxy.signal("HUP");
        let at = proxy.wait_for_log("configuration not reloaded", at).await;
        proxy.wait_for_log("unknown field `prot`", at).await;
        assert_eq!(status_with_key(addr, "newest-key").await, 200);
        assert_eq!(status_with_key(addr, "x").await, 401);

        // A change that needs a restart says so.
        let at = proxy.log().len();
        write_config(&config, free_port(), &sim, &dir, &["newest-key"]);
        proxy.signal("HUP");
        proxy.wait_for_log("only after a restart", at).await;

        let (status, log) = proxy.stop().await;
        assert_eq!(status.code(), Some(0), "{log}");
        assert!(!log.contains(&token), "no token in the log");
        assert!(!log.contains("newest-key"), "no client key in the log");
        assert_eq!(
            sim.counters().accounts.get("main").map(|a| a.runs),
            Some(4),
            "every request above reached the sim once"
        );
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn an_invalid_config_is_refused_with_exit_code_2_naming_the_key() {
    bounded(async {
        let dir = support::temp_dir("config-invalid");
        let config = dir.join("config.yaml");
        for (text, key) in [
            ("port: 8317\nroutng:\n  strategy: fill-first\n", "routng"),
            ("routing:\n  strategy: random\n", "routing.strategy"),
            ("request-retry: 0\n", "request-retry"),
        ] {
            std::fs::write(&config, text).expect("config written");
            for sub in ["serve", "check"] {
                let mut cmd = Command::new(support::binary_path());
                cmd.args([sub, "--config"]).arg(&config);
                let (status, log) = Process::spawn(cmd).wait().await;
                assert_eq!(status.code(), Some(2), "{sub} with {text:?}: {log}");
                assert!(
                    log.contains(key) && log.contains("config.yaml"),
                    "{sub}: the message names the key and the file: {log}"
                );
            }
        }
        let mut cmd = Command::new(support::binary_path());
        cmd.args(["serve", "--config"])
            .arg(dir.join("missing.yaml"));
        let (status, log) = Process::spawn(cmd).wait().await;
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.contains("missing.yaml"), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

support::both_binaries!(
    a_reload_swaps_api_keys_without_cutting_a_stream_in_flight,
    an_invalid_config_is_refused_with_exit_code_2_naming_the_key,
);
