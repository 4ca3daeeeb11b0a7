//! The child processes of a run (cursor-sim and the proxies): started on loopback, registered in
//! one list that is emptied — every child killed and reaped — on normal exit, on Ctrl-C and
//! from the panic hook.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every live child, by pid.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Kills and reaps every registered child (idempotent; safe from a panic hook).
pub(crate) fn kill_all() {
    let mut list = match CHILDREN.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    for mut c in list.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Kills and reaps one registered child.
pub(crate) fn kill(pid: u32) {
    let mut list = match CHILDREN.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(i) = list.iter().position(|c| c.id() == pid) {
        let mut c = list.remove(i);
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Installs a panic hook that kills every child before the default hook runs.
pub(crate) fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        default(info);
    }));
}

/// Kills every child when dropped (the end of `main`, also while unwinding).
#[derive(Debug)]
pub(crate) struct KillOnDrop;

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_all();
    }
}

fn register(child: Child) -> u32 {
    let pid = child.id();
    match CHILDREN.lock() {
        Ok(mut l) => l.push(child),
        Err(poisoned) => poisoned.into_inner().push(child),
    }
    pid
}

/// A running cursor-sim.
#[derive(Debug, Clone)]
pub(crate) struct Sim {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base_url: String,
    /// An access token of its one account.
    pub(crate) access_token: String,
    /// Its address (for `/__sim/counters`).
    pub(crate) addr: SocketAddr,
    /// Its pid (for its CPU time).
    pub(crate) pid: u32,
}

/// Starts `cursor-sim --token-interval-ms 0 --print-json --threads THREADS` and reads its JSON
/// line.
pub(crate) fn start_sim(bin: &Path, threads: NonZeroUsize, log: &Path) -> Result<Sim, String> {
    let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(bin)
        .args(["--token-interval-ms", "0", "--print-json", "--threads"])
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let pid = register(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut r = BufReader::new(stdout);
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = String::new();
        while r.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .map_err(|_| "cursor-sim printed nothing within 15 s".to_owned())?;
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("cursor-sim said {line:?}: {e}"))?;
    let base_url = v["base_url"].as_str().ok_or("no base_url")?.to_owned();
    let access_token = v["accounts"][0]["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned();
    Ok(Sim {
        pid,
        addr: base_url
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("base_url {base_url:?} is not http://IP:PORT"))?,
        base_url,
        access_token,
    })
}

/// A running proxy.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    /// Its pid.
    pub(crate) pid: u32,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

/// A free loopback port (bound and released; a race with another process is possible but
/// harmless here: the proxy then fails to start and the run reports it).
pub(crate) fn free_port() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map_err(|e| e.to_string())
}

/// Starts `<bin> serve` against the sim with its own empty auth directory (and HOME),
/// conversations in memory only, and `threads` runtime workers (`CURSORPOOL_THREADS` for
/// cursorpool, `CURSORPOOL_LITE_THREADS` for cursorpool-lite), and waits until it accepts
/// connections.
pub(crate) fn start_proxy(
    bin: &Path,
    sim: &Sim,
    threads: NonZeroUsize,
    scratch: &Path,
    name: &str,
) -> Result<Proxy, String> {
    let addr = free_port()?;
    let dir: PathBuf = scratch.join(name);
    let auth = dir.join("auth");
    std::fs::create_dir_all(&auth).map_err(|e| e.to_string())?;
    let log = dir.join("stderr.log");
    let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--upstream")
        .arg(&sim.base_url)
        .arg("--token")
        .arg(format!("bench={}", sim.access_token))
        .arg("--memory-only")
        .arg("--auth-dir")
        .arg(&auth)
        .arg("--log")
        .arg(std::env::var("BENCH_PROXY_LOG").unwrap_or_else(|_| "warn".into()))
        .env("HOME", &dir)
        .env("CURSORPOOL_THREADS", threads.to_string())
        .env("CURSORPOOL_LITE_THREADS", threads.to_string())
        .env_remove("CURSORPOOL_TOKENS")
        .env_remove("CURSORPOOL_API_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = register(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Proxy { pid, addr });
        }
        if !alive(pid) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            kill(pid);
            return Err(format!("{name} exited at start-up: {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(pid);
    Err(format!("{name} did not listen on {addr} within 20 s"))
}

/// Whether the registered child `pid` is still running.
fn alive(pid: u32) -> bool {
    let mut list = match CHILDREN.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    list.iter_mut()
        .find(|c| c.id() == pid)
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}
