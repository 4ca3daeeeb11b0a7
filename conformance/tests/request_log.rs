//! The request log of the built binaries: one INFO line per request with the client's
//! fingerprint, the model, the account, the status, the duration and the tokens —
//! `--log-format json` makes each a JSON object — and never the prompt, a client key or an
//! access token.

use cursorpool_conformance as support;

use std::process::Command;

use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, spawn};
use serde_json::Value;
use support::{Client, Process, bounded, free_port};

const PROMPT: &str = "PROMPT-TEXT-THAT-MUST-NOT-BE-LOGGED";
const KEY: &str = "sk-client-key-that-must-not-be-logged";

async fn one_json_line_per_request_without_prompt_key_or_token() {
    bounded(async {
        let sim = spawn(ServerConfig::new(SimConfig::default()))
            .await
            .expect("the sim starts");
        let token = sim.access_token("default").expect("token");
        let dir = support::temp_dir("request-log");
        std::fs::write(dir.join("config.yaml"), "log-format: json\n").expect("config");
        let port = free_port();
        let mut cmd = Command::new(support::binary_path());
        cmd.args([
            "serve",
            "--memory-only",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--upstream", &sim.base_url(), "--auth-dir"])
        .arg(dir.join("auth"))
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .env("CURSORPOOL_TOKENS", format!("work={token}"))
        .env("CURSORPOOL_API_KEYS", KEY)
        .env_remove("CURSORPOOL_LOG")
        .env_remove("CURSORPOOL_LOG_FORMAT");
        let mut proxy = Process::spawn(cmd);
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        proxy.wait_listening(addr).await;
        let mut c = Client::connect(addr).await;
        let anthropic = serde_json::json!({
            "model": "claude-sonnet-5", "max_tokens": 100, "stream": true,
            "messages": [{"role": "user", "content": PROMPT}],
        });
        let openai = serde_json::json!({
            "model": "gpt-5",
            "messages": [{"role": "user", "content": PROMPT}],
        });
        let headers = [
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", KEY),
        ];
        let r = c
            .send(
                "POST",
                "/v1/messages",
                &headers,
                anthropic.to_string().into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c
            .send(
                "POST",
                "/v1/chat/completions",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {KEY}")),
                ],
                openai.to_string().into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c
            .send(
                "POST",
                "/v1/messages",
                &[("x-api-key", "wrong")],
                anthropic.to_string().into(),
            )
            .await;
        assert_eq!(r.status, 401);

        let (status, log) = proxy.stop().await;
        assert_eq!(status.code(), Some(0), "{log}");
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let requests: Vec<&Value> = lines
            .iter()
            .filter(|l| l["target"] == "cursorpool::request")
            .collect();
        assert_eq!(requests.len(), 3, "one line per request:\n{log}");
        for (line, (api, model, status)) in requests.iter().zip([
            ("anthropic", "claude-sonnet-5", 200),
            ("openai", "gpt-5", 200),
            ("anthropic", "-", 401),
        ]) {
            assert_eq!(line["level"], "INFO", "{line}");
            assert_eq!(line["api"], api, "{line}");
            assert_eq!(line["model"], model, "{line}");
            assert_eq!(line["status"], status, "{line}");
            assert!(line["duration_ms"].is_u64(), "{line}");
            assert!(
                line["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("key-")),
                "the client is a fingerprint: {line}"
            );
            if status == 200 {
                assert_eq!(line["account"], "work", "{line}");
                assert!(
                    line["input_tokens"].as_u64().is_some_and(|n| n > 0),
                    "{line}"
                );
                assert!(
                    line["output_tokens"].as_u64().is_some_and(|n| n > 0),
                    "{line}"
                );
            }
        }
        assert_eq!(
            requests[0]["client"], requests[1]["client"],
            "the same key is the same client in both APIs"
        );
        assert_ne!(requests[0]["client"], requests[2]["client"]);
        assert!(!log.contains(PROMPT), "no prompt text at INFO");
        assert!(!log.contains(KEY), "no client key");
        assert!(!log.contains(&token), "no access token");
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

support::both_binaries!(one_json_line_per_request_without_prompt_key_or_token);
