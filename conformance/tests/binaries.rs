//! The binaries themselves, as a user runs them: `serve` against the sim answers a streamed
//! conversation, and SIGTERM ends it with exit code 0 after the in-flight reply.

use cursorpool_conformance as support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, spawn};
use support::{Client, anthropic_stream, anthropic_text_request, bounded};

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

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
        let child = Command::new(support::binary_path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &sim.base_url(), "--state-dir"])
            .arg(&state)
            .args(["--auth-dir"])
            .arg(state.join("auth"))
            .env("CURSORPOOL_TOKENS", format!("sim={token}"))
            .env_remove("CURSORPOOL_API_KEYS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut running = Running(Some(child));
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the binary never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
        let mut child = running.0.take().expect("running");
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
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
