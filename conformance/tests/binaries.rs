//! The binaries themselves, as a user runs them: `serve` against the sim answers a streamed
//! conversation, and SIGTERM ends it with exit code 0 after the in-flight reply.

use cursorpool_conformance as support;

use std::process::Command;

use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, spawn};
use support::{Client, Process, anthropic_stream, anthropic_text_request, bounded, free_port};

async fn serve_answers_and_stops_on_sigterm() {
    bounded(async {
        let sim = spawn(ServerConfig::new(SimConfig::default()))
            .await
            .expect("the sim starts");
        let token = sim.access_token("default").expect("token");
        let state = std::env::temp_dir().join(format!(
            "cursorpool-binaries-{}-{}",
            support::Target::current().binary(),
            std::process::id()
        ));
        let port = free_port();
        let mut cmd = Command::new(support::binary_path());
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &sim.base_url(), "--state-dir"])
            .arg(&state)
            .args(["--auth-dir"])
            .arg(state.join("auth"))
            .env("CURSORPOOL_TOKENS", format!("sim={token}"))
            .env("CURSORPOOL_CONFIG", state.join("no-config.yaml"))
            .env_remove("CURSORPOOL_API_KEYS");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::write(state.join("no-config.yaml"), "# empty\n").expect("config");
        let mut running = Process::spawn(cmd);
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        running.wait_listening(addr).await;
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
        let (status, err) = running.stop().await;
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(
            state.join("pool.json").exists(),
            "the pool state is saved at shutdown"
        );
        assert!(!err.contains(&token), "the token never reaches the log");
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&state);
    })
    .await;
}

support::both_binaries!(serve_answers_and_stops_on_sigterm);
