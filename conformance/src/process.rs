//! The built binaries as child processes: started with a command line and environment, their
//! stderr (the log) collected as it comes so a test can wait for a line, signalled like a user
//! would (`kill -HUP`, `kill -TERM`), and killed if the test ends early.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on waiting for a process to listen, log a line or exit.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// A free loopback port (bound and released; good enough for a test's child process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running child whose stderr is collected; killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `cmd` (stdin closed, stdout discarded, stderr collected).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        Self {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until `addr` accepts connections (panics with the log if the process exits or
    /// [`PROCESS_LIMIT`] passes).
    pub async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + PROCESS_LIMIT;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "the binary exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the binary never listened:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log, past its first `from` bytes, contains `needle`; returns the log's
    /// length after the match (pass it as the next `from`).
    pub async fn wait_for_log(&self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + PROCESS_LIMIT;
        loop {
            let log = self.log();
            if let Some(at) = log.get(from..).and_then(|l| l.find(needle)) {
                return from + at + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {PROCESS_LIMIT:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`HUP`, `TERM`, …) with `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -{signal} failed");
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the whole log.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait().await
    }

    /// Waits for the process to exit by itself; returns the status and the whole log.
    pub async fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PROCESS_LIMIT;
        let mut child = self.child.take().expect("running");
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within {PROCESS_LIMIT:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.log())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
