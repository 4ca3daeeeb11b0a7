//! `cursor-sim`: a simulated Cursor backend on a loopback port, for tests, benchmarks and the
//! proxy's demo. Prints the base URL and, per account, an access token and the API key, then
//! serves until Ctrl-C or SIGTERM. Logs go to stderr.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use cursorpool_sim::model::{AccountConfig, FaultRule, Quota, SimConfig};
use cursorpool_sim::server::{self, ServerConfig, SimHandle, spec};

/// The proxy's allocator, so that the benchmarks' floor (the sim) is not dearer than it needs
/// to be: on 2 shared cores every microsecond the sim spends is one the proxy cannot.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A simulated Cursor agent backend (agent.v1.AgentService over h2/h2c `Run` and HTTP/1.1
/// `RunSSE` + `BidiAppend`, plus the unary and auth endpoints) on one loopback port.
///
/// With no options it listens on a free port of 127.0.0.1 with one account (`default`, API key
/// `sim-key`), prints the base URL, an access token and the API key, and serves until stopped.
#[derive(Debug, Parser)]
#[command(name = "cursor-sim", version, about, long_about)]
struct Cli {
    /// Address to listen on (port 0 = a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Create N accounts labelled a1..aN with API keys sim-key-a1..sim-key-aN (unlimited
    /// quota). Combined with --account, these come first.
    #[arg(long, value_name = "N")]
    accounts: Option<u32>,

    /// Add an account: LABEL:API_KEY[:QUOTA], QUOTA = unlimited | N (runs) |
    /// requests=N,tokens=N. Repeatable. Without --account/--accounts there is one account
    /// `default` with API key `sim-key`.
    #[arg(long = "account", value_name = "SPEC", value_parser = spec::parse_account)]
    account: Vec<AccountConfig>,

    /// Seed for every random choice (token keys, ids, the model's answers).
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Characters of answer text per text_delta update.
    #[arg(long, default_value_t = 8, value_name = "N")]
    chunk_chars: usize,

    /// Delay between two streamed deltas, in milliseconds (0 = all at once).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    token_interval_ms: u64,

    /// Interval of server heartbeats while a run lives, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    heartbeat_ms: u64,

    /// What GetServerConfig answers in http2_config, which decides the SDK's transport:
    /// the force-all-enabled / force-bidi-enabled values make it use h2c `Run`.
    #[arg(long, value_enum, default_value_t = Http2Config::Unspecified)]
    http2_config: Http2Config,

    /// HTTP/2 initial stream window for request bodies, in bytes (protocol default 65535).
    /// A client sending more than this on a stream gets FLOW_CONTROL_ERROR.
    #[arg(long, value_name = "BYTES")]
    initial_window: Option<u32>,

    /// HTTP/2 SETTINGS_MAX_FRAME_SIZE the server accepts (16384..=16777215, default 16384).
    #[arg(long, value_name = "BYTES")]
    max_frame_size: Option<u32>,

    /// Serve TLS with a self-signed certificate generated at start (ALPN h2, http/1.1);
    /// the base URL becomes https://.
    #[arg(long)]
    tls: bool,

    /// With --tls: write the generated certificate (PEM) to this file so clients can trust it.
    #[arg(long, value_name = "PATH", requires = "tls")]
    cert_out: Option<PathBuf>,

    /// Inject a fault: KIND[:key=value]… with KIND rst | goaway | drop | stall | trickle |
    /// delay | error; keys after=N (messages before the fault), code=H2 code name/number (rst,
    /// goaway) or Connect code (error), interval=MS (trickle), ms=MS (delay), cursor_error=N
    /// (error), account=LABEL, runs=N|all. Example: rst:after=3:account=a. A JSON FaultRule
    /// is accepted too. Repeatable.
    #[arg(long = "fault", value_name = "SPEC", value_parser = spec::parse_fault)]
    fault: Vec<FaultRule>,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    token_ttl_secs: u64,

    /// Print one machine-readable JSON line on stdout at start instead of the human text:
    /// {"base_url":…,"accounts":[{"label","api_key","access_token"}]} (plus "cert_pem_path"
    /// with --cert-out).
    #[arg(long)]
    print_json: bool,

    /// More logging on stderr (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Worker threads of the runtime (default: one per core). The benchmarks run the sim on
    /// one, so that the floor they measure against costs the shared cores as little as it can.
    #[arg(long)]
    threads: Option<std::num::NonZeroUsize>,
}

/// `aiserver.v1.GetServerConfigResponse.http2_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Http2Config {
    /// 0: the client decides (the SDK keeps HTTP/1.1 on an http:// base).
    Unspecified,
    /// 1: HTTP/1.1 for everything.
    ForceAllDisabled,
    /// 2: HTTP/2 for everything.
    ForceAllEnabled,
    /// 3: HTTP/1.1 RunSSE + BidiAppend for runs.
    ForceBidiDisabled,
    /// 4: HTTP/2 Run for runs.
    ForceBidiEnabled,
}

impl Http2Config {
    fn value(self) -> i32 {
        match self {
            Self::Unspecified => 0,
            Self::ForceAllDisabled => 1,
            Self::ForceAllEnabled => 2,
            Self::ForceBidiDisabled => 3,
            Self::ForceBidiEnabled => 4,
        }
    }
}

impl Cli {
    fn server_config(&self) -> ServerConfig {
        let mut accounts: Vec<AccountConfig> = (1..=self.accounts.unwrap_or(0))
            .map(|i| AccountConfig {
                label: format!("a{i}"),
                api_key: format!("sim-key-a{i}"),
                quota: Quota::default(),
            })
            .collect();
        accounts.extend(self.account.iter().cloned());
        let defaults = SimConfig::default();
        let sim = SimConfig {
            seed: self.seed,
            accounts: if accounts.is_empty() {
                defaults.accounts
            } else {
                accounts
            },
            chunk_chars: self.chunk_chars.max(1),
            token_interval: Duration::from_millis(self.token_interval_ms),
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms),
            http2_config: self.http2_config.value(),
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            faults: self.fault.clone(),
        };
        ServerConfig {
            listen: self.listen,
            sim,
            tls: self.tls,
            initial_window: self.initial_window,
            max_frame_size: self.max_frame_size,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cursor-sim failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::io::Result<()> {
    let config = cli.server_config();
    let labels: Vec<(String, String)> = config
        .sim
        .accounts
        .iter()
        .map(|a| (a.label.clone(), a.api_key.clone()))
        .collect();
    let handle = server::spawn(config).await?;
    if let (Some(path), Some(pem)) = (&cli.cert_out, handle.cert_pem()) {
        std::fs::write(path, pem)?;
    }
    announce(&cli, &handle, &labels)?;
    wait_for_stop().await?;
    handle.shutdown().await;
    Ok(())
}

/// Prints where to connect and what credentials to use, on stdout.
fn announce(cli: &Cli, handle: &SimHandle, accounts: &[(String, String)]) -> std::io::Result<()> {
    let tokens: Vec<(&str, &str, String)> = accounts
        .iter()
        .map(|(label, key)| {
            let token = handle.access_token(label).unwrap_or_default();
            (label.as_str(), key.as_str(), token)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if cli.print_json {
        let accounts: Vec<_> = tokens
            .iter()
            .map(|(label, key, token)| {
                serde_json::json!({ "label": label, "api_key": key, "access_token": token })
            })
            .collect();
        let mut line = serde_json::json!({ "base_url": handle.base_url(), "accounts": accounts });
        if let Some(path) = &cli.cert_out {
            line["cert_pem_path"] = serde_json::json!(path.display().to_string());
        }
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "cursor-sim listening on {}", handle.base_url())?;
        if let Some(path) = &cli.cert_out {
            writeln!(out, "certificate (PEM): {}", path.display())?;
        }
        for (label, key, token) in &tokens {
            writeln!(out, "account {label}: api key {key}")?;
            writeln!(out, "  access token: {token}")?;
        }
        writeln!(
            out,
            "use CURSOR_BACKEND_URL={} with one of the API keys; Ctrl-C stops",
            handle.base_url()
        )?;
    }
    out.flush()
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix.
async fn wait_for_stop() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
