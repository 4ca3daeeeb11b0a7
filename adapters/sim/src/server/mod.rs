//! The loopback server around the sans-IO [`Sim`]: it moves bytes and time in and out of the
//! model and takes no protocol decision itself.
//!
//! One listening port serves HTTP/1.1 (hyper: every unary/JSON call, and `RunSSE` whose
//! client messages arrive as `BidiAppend` calls) and HTTP/2 (the `h2` crate: full-duplex
//! `Run` and the unary calls), told apart by ALPN under TLS or by the HTTP/2 preface in
//! cleartext (prior-knowledge h2c). With [`ServerConfig::tls`] the same is served over TLS with
//! a self-signed certificate generated at start ([`SimHandle::cert_pem`]).
//!
//! [`spawn`] starts the server on the current tokio runtime and returns a [`SimHandle`] for the
//! test or program that owns it. The `cursor-sim` binary is a thin CLI over it.

mod accept;
mod driver;
mod http1;
mod http2;
mod respond;
pub mod spec;
mod tls;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::model::{Control, Counters, Sim, SimConfig};
use accept::ConnContext;
use driver::Shared;
use http2::H2Settings;

/// How to run the loopback server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:0` (a free loopback port).
    pub listen: SocketAddr,
    /// The model's configuration: accounts, pacing, faults.
    pub sim: SimConfig,
    /// Serve TLS (self-signed certificate, ALPN `h2` and `http/1.1`) instead of cleartext.
    pub tls: bool,
    /// HTTP/2 `SETTINGS_INITIAL_WINDOW_SIZE` for request bodies; `None` = 65,535. A client
    /// that sends more than this on a stream gets `FLOW_CONTROL_ERROR`.
    pub initial_window: Option<u32>,
    /// HTTP/2 `SETTINGS_MAX_FRAME_SIZE` the server accepts (16,384 ..= 16,777,215);
    /// `None` = 16,384.
    pub max_frame_size: Option<u32>,
}

impl ServerConfig {
    /// A cleartext server on a free loopback port running `sim`.
    pub fn new(sim: SimConfig) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            sim,
            tls: false,
            initial_window: None,
            max_frame_size: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(SimConfig::default())
    }
}

/// Why the server could not start. Blame: the local configuration or machine.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The self-signed certificate or the TLS configuration could not be built.
    #[error("TLS set-up failed: {0}")]
    Certificate(String),
    /// An HTTP/2 setting is out of its legal range.
    #[error("invalid HTTP/2 setting: {0}")]
    Setting(&'static str),
}

impl From<ServerError> for io::Error {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Setting(_) => io::Error::new(io::ErrorKind::InvalidInput, e),
            ServerError::Certificate(_) => io::Error::other(e),
        }
    }
}

/// Starts the server on the current tokio runtime (any flavour) and returns once it listens.
pub async fn spawn(config: ServerConfig) -> io::Result<SimHandle> {
    if config.initial_window.is_some_and(|w| w > 0x7fff_ffff) {
        return Err(ServerError::Setting("initial window above 2^31-1").into());
    }
    if config
        .max_frame_size
        .is_some_and(|m| !(16_384..=16_777_215).contains(&m))
    {
        return Err(ServerError::Setting("max frame size outside 16384..=16777215").into());
    }
    let tls = if config.tls {
        Some(tls::Tls::generate()?)
    } else {
        None
    };
    let listener = listen(config.listen)?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config.sim, Instant::now(), SystemTime::now());
    let shared = Shared::new(sim);
    let cert_pem = tls.as_ref().map(|t| t.cert_pem.clone());
    let ctx = ConnContext {
        shared: Arc::clone(&shared),
        tls,
        h2: H2Settings {
            initial_window: config.initial_window,
            max_frame_size: config.max_frame_size,
        },
    };
    let tasks = vec![
        tokio::spawn(driver::run_timer(Arc::clone(&shared))),
        tokio::spawn(accept::accept_loop(listener, ctx)),
    ];
    tracing::info!(%addr, tls = cert_pem.is_some(), "cursor-sim listening");
    Ok(SimHandle {
        addr,
        cert_pem,
        shared,
        tasks,
    })
}

/// A running simulated backend. Dropping it stops the server (like [`SimHandle::shutdown`],
/// without waiting).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    cert_pem: Option<String>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for every RPC: `http://127.0.0.1:PORT`, or `https://…` with TLS
    /// (the certificate is valid for `127.0.0.1`, `::1` and `localhost`).
    pub fn base_url(&self) -> String {
        let scheme = if self.cert_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The self-signed certificate (PEM) when serving TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// Issues a fresh access token for the account `label` (`None` for an unknown label).
    pub fn access_token(&self, label: &str) -> Option<String> {
        self.shared
            .apply(|sim, _, wall| sim.issue_token(label, wall))
    }

    /// Every counter of the model.
    pub fn counters(&self) -> Counters {
        self.shared.with_sim(|sim| sim.counters())
    }

    /// Runs a control operation (the same as the `/__sim/…` endpoints).
    pub fn control(&self, cmd: Control) -> Result<serde_json::Value, String> {
        self.shared
            .apply(|sim, now, wall| sim.control(cmd, now, wall))
    }

    /// Runs `f` on the model; outputs it causes are delivered and timers re-armed afterwards.
    /// `f` runs under the model's lock: it must not call back into this handle.
    pub fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        self.shared.with_sim(f)
    }

    /// Stops accepting, closes every connection and waits until the tasks are gone (the port
    /// is free when this returns).
    pub async fn shutdown(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in std::mem::take(&mut self.tasks) {
            // Cancelled is the expected outcome; a panic was already reported by tokio.
            let _ = task.await;
        }
        tracing::info!(addr = %self.addr, "cursor-sim stopped");
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connections the kernel may queue for `accept` (capped by `net.core.somaxconn`): a real
/// server's front takes a burst of a thousand clients' connections; the usual 128 would
/// drop handshakes and reset connections under the benchmark's load.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
