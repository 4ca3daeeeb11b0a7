//! The command line's options shared by `cursorpool` and `cursorpool-lite` (each binary
//! names its own subcommands).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cursorpool_core::conductor::{PoolConfig, Strategy};
use cursorpool_core::conversation::StoreConfig;
use cursorpool_core::headers::ClientIdentity;
use cursorpool_core::turn::{ModelMap, TurnConfig};

use crate::app::AppConfig;

/// Options of `cursorpool login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Name of the account (the file becomes `cursor.<NAME>.json`; default: a hash of the
    /// account's subject).
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Only print the login URL; do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Add the account by a Cursor API key instead of the browser login: the key is
    /// exchanged for tokens (and kept in the credential file to renew them). Prefer the
    /// environment: command lines are visible to other users.
    #[arg(
        long,
        value_name = "KEY",
        env = "CURSOR_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Where credential files are kept. Default: `~/.cursorpool/auth`.
    #[arg(long, value_name = "DIR", env = "CURSORPOOL_AUTH_DIR")]
    pub auth_dir: Option<PathBuf>,
    /// Cursor's API base URL, polled for the login result (or asked to exchange the API key).
    #[arg(
        long,
        default_value = cursorpool_core::conductor::login::API_BASE,
        env = "CURSORPOOL_UPSTREAM"
    )]
    pub upstream: String,
    /// Extra trusted root certificate (PEM) for the upstream.
    #[arg(long, value_name = "PEM_FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// The site the login page is on.
    #[arg(long, value_name = "URL", default_value = cursorpool_core::conductor::login::LOGIN_SITE)]
    pub login_site: String,
}

impl LoginArgs {
    /// The login these options describe (default poll schedule, progress dots on).
    pub fn login_options(&self) -> Result<crate::login::LoginOptions, CliError> {
        let upstream_root_pem = match &self.upstream_ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(crate::login::LoginOptions {
            label: self.label.clone(),
            auth_dir: self
                .auth_dir
                .clone()
                .unwrap_or_else(crate::persist::default_auth_dir),
            upstream: self.upstream.clone(),
            upstream_root_pem,
            login_site: self.login_site.clone(),
            schedule: cursorpool_core::conductor::login::PollSchedule::new(),
            progress: true,
        })
    }
}

/// Options of `cursorpool serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8317", env = "CURSORPOOL_LISTEN")]
    pub listen: SocketAddr,
    /// Cursor's API base URL (`http://` for the simulated backend, over h2c).
    #[arg(
        long,
        default_value = "https://api2.cursor.sh",
        env = "CURSORPOOL_UPSTREAM"
    )]
    pub upstream: String,
    /// Extra trusted root certificate (PEM) for the upstream, e.g. `cursor-sim --cert-out`.
    #[arg(long, value_name = "PEM_FILE", env = "CURSORPOOL_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// A Cursor access token, as `LABEL=TOKEN` or just `TOKEN` (repeatable: one per account).
    /// Prefer `--token-file` or the environment: command lines are visible to other users.
    #[arg(
        long = "token",
        value_name = "[LABEL=]TOKEN",
        env = "CURSORPOOL_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub tokens: Vec<String>,
    /// A file with one `[LABEL=]TOKEN` per line.
    #[arg(long, value_name = "FILE", env = "CURSORPOOL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Where credential files (`cursorpool login`) are kept; every one is served, and files
    /// added, changed or removed while serving are picked up. Default: `~/.cursorpool/auth`.
    #[arg(long, value_name = "DIR", env = "CURSORPOOL_AUTH_DIR")]
    pub auth_dir: Option<PathBuf>,
    /// Map a client model to a Cursor model: `CLIENT=CURSOR` (repeatable).
    #[arg(
        long = "model",
        value_name = "CLIENT=CURSOR",
        env = "CURSORPOOL_MODELS",
        value_delimiter = ','
    )]
    pub models: Vec<String>,
    /// Cursor model used for client models without a mapping.
    #[arg(long, default_value = "default", env = "CURSORPOOL_DEFAULT_MODEL")]
    pub default_model: String,
    /// Seconds without any upstream frame before a run counts as stalled.
    #[arg(long, default_value_t = 90, env = "CURSORPOOL_STALL_TIMEOUT_SECS")]
    pub stall_timeout_secs: u64,
    /// Seconds a tool call waits for its result before its upstream run is closed.
    #[arg(long, default_value_t = 1800, env = "CURSORPOOL_PARK_TTL_SECS")]
    pub park_ttl_secs: u64,
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 32 * 1024 * 1024, env = "CURSORPOOL_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers) accepted, in bytes (431 above).
    /// `cursorpool-lite`'s HTTP library never reads heads over 8 KiB.
    #[arg(long, default_value_t = 64 * 1024, env = "CURSORPOOL_MAX_HEADER_BYTES")]
    pub max_header_bytes: usize,
    /// Seconds a client may take to send a request head (from its first byte), and may leave
    /// a request body without a byte, before its connection is closed.
    #[arg(long, default_value_t = 30, env = "CURSORPOOL_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive client connection may wait for its next request.
    /// (`cursorpool-lite`'s HTTP library closes it after 60 s whatever this says.)
    #[arg(long, default_value_t = 60, env = "CURSORPOOL_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: u64,
    /// Where conversations (checkpoints and their blobs) are kept across restarts.
    /// Default: `~/.cursorpool/state`.
    #[arg(long, value_name = "DIR", env = "CURSORPOOL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep conversations in memory only (a restart starts them over from the client's
    /// history).
    #[arg(long, conflicts_with = "state_dir", env = "CURSORPOOL_MEMORY_ONLY")]
    pub memory_only: bool,
    /// Minutes a conversation's checkpoint is kept after its last use.
    #[arg(long, default_value_t = 30, env = "CURSORPOOL_CONVERSATION_TTL_MINS")]
    pub conversation_ttl_mins: u64,
    /// When a conversation must be re-sent in full (no usable checkpoint), leave out its oldest
    /// messages beyond this many bytes, with a marker saying so. Default: never cut.
    #[arg(long, value_name = "BYTES", env = "CURSORPOOL_MAX_HISTORY_BYTES")]
    pub max_history_bytes: Option<usize>,
    /// A client API key (repeatable): when any is set, requests must carry one in `x-api-key`
    /// or `Authorization: Bearer`. Default: every client is served (fine on localhost only).
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "CURSORPOOL_API_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub api_keys: Vec<String>,
    /// The management API's secret (`Authorization: Bearer` or `x-management-key`). Without
    /// it `/v0/management` is off.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CURSORPOOL_MANAGEMENT_SECRET",
        hide_env_values = true
    )]
    pub management_secret: Option<String>,
    /// How an account is picked among the usable ones of the highest priority.
    #[arg(
        long,
        value_enum,
        default_value_t = RoutingStrategy::RoundRobin,
        env = "CURSORPOOL_ROUTING_STRATEGY"
    )]
    pub routing_strategy: RoutingStrategy,
    /// Accounts tried for one request (failover before the first byte) before the client gets
    /// the failure.
    #[arg(
        long,
        value_name = "N",
        default_value_t = cursorpool_core::conductor::Attempts::DEFAULT_MAX,
        value_parser = clap::value_parser!(u32).range(1..),
        env = "CURSORPOOL_REQUEST_RETRY"
    )]
    pub request_retry: u32,
}

/// `--routing-strategy` (`routing.strategy` in the configuration file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingStrategy {
    /// Spread requests over the accounts (the least recently picked first).
    RoundRobin,
    /// Use the first account until it rests, then the next.
    FillFirst,
}

impl From<RoutingStrategy> for Strategy {
    fn from(s: RoutingStrategy) -> Self {
        match s {
            RoutingStrategy::RoundRobin => Strategy::RoundRobin,
            RoutingStrategy::FillFirst => Strategy::FillFirst,
        }
    }
}

/// Why the command line cannot be used. Blame: the user's invocation; exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file named on the command line cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `CLIENT=CURSOR` mapping without `=`.
    #[error("--model {0:?}: expected CLIENT=CURSOR")]
    BadModelMap(String),
}

impl ServeArgs {
    /// The auth directory to serve.
    pub fn auth_dir(&self) -> PathBuf {
        self.auth_dir
            .clone()
            .unwrap_or_else(crate::persist::default_auth_dir)
    }

    /// The proxy configuration these options describe.
    pub fn app_config(&self) -> Result<AppConfig, CliError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        let accounts = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| match t.split_once('=') {
                Some((label, token)) if !label.contains('.') => {
                    (label.to_owned(), token.to_owned())
                }
                _ => (format!("account-{}", i + 1), t.clone()),
            })
            .collect();
        let mut models = ModelMap {
            default: self.default_model.clone(),
            ..ModelMap::default()
        };
        for m in &self.models {
            let (client, cursor) = m
                .split_once('=')
                .ok_or_else(|| CliError::BadModelMap(m.clone()))?;
            models.entries.insert(client.to_owned(), cursor.to_owned());
        }
        let upstream_root_pem = match &self.upstream_ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let turn = TurnConfig {
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
            ..TurnConfig::default()
        };
        Ok(AppConfig {
            upstream_url: self.upstream.clone(),
            upstream_root_pem,
            accounts,
            listed_models: default_listed_models(),
            models,
            turn,
            park_ttl: Duration::from_secs(self.park_ttl_secs),
            identity: ClientIdentity::default(),
            max_body_bytes: self.max_body_bytes,
            conn_limits: crate::conn_watch::ConnLimits {
                max_header_bytes: self.max_header_bytes,
                header_timeout: Duration::from_secs(self.header_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            },
            seed: seed_from_clock(),
            conversations: StoreConfig {
                ttl: Duration::from_secs(self.conversation_ttl_mins * 60),
                ..StoreConfig::default()
            },
            state_dir: if self.memory_only {
                None
            } else {
                Some(
                    self.state_dir
                        .clone()
                        .unwrap_or_else(crate::persist::default_state_dir),
                )
            },
            max_history_bytes: self.max_history_bytes,
            pool: PoolConfig {
                strategy: self.routing_strategy.into(),
                ..PoolConfig::default()
            },
            api_keys: self
                .api_keys
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
            management_secret: self.management_secret.clone().filter(|s| !s.is_empty()),
            request_retry: self.request_retry,
            login_site: cursorpool_core::conductor::login::LOGIN_SITE.to_owned(),
            login_schedule: cursorpool_core::conductor::login::PollSchedule::new(),
        })
    }
}

/// Model ids `GET /v1/models` lists by default: the Claude names clients ask for.
pub fn default_listed_models() -> Vec<String> {
    [
        "claude-opus-4-8",
        "claude-sonnet-5",
        "claude-haiku-4-5-20251001",
        "gpt-5",
        "default",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// A seed for ids that differs between processes (ids need uniqueness, not secrecy).
pub fn seed_from_clock() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Defaults for the demo (no accounts: the demo supplies the sim's).
pub fn demo_config() -> AppConfig {
    AppConfig {
        upstream_url: String::new(),
        upstream_root_pem: None,
        accounts: Vec::new(),
        models: ModelMap::default(),
        listed_models: default_listed_models(),
        turn: TurnConfig::default(),
        park_ttl: Duration::from_secs(1800),
        identity: ClientIdentity::default(),
        max_body_bytes: 32 * 1024 * 1024,
        conn_limits: crate::conn_watch::ConnLimits::default(),
        seed: seed_from_clock(),
        conversations: StoreConfig::default(),
        state_dir: None,
        max_history_bytes: None,
        pool: PoolConfig::default(),
        api_keys: Vec::new(),
        management_secret: None,
        request_retry: cursorpool_core::conductor::Attempts::DEFAULT_MAX,
        login_site: cursorpool_core::conductor::login::LOGIN_SITE.to_owned(),
        login_schedule: cursorpool_core::conductor::login::PollSchedule::new(),
    }
}

/// Options every subcommand of both binaries takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// The configuration file (YAML; see `config.example.yaml`). Default:
    /// `~/.cursorpool/config.yaml` when it exists. Flags and environment variables override it.
    #[arg(long, global = true, value_name = "FILE", env = "CURSORPOOL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `cursorpool_host=debug,info` (default `info`; the
    /// file's `log-level`).
    #[arg(long, global = true, value_name = "FILTER", env = "CURSORPOOL_LOG")]
    pub log: Option<String>,
    /// Log line format (default `text`; the file's `log-format`).
    #[arg(long, global = true, value_enum, env = "CURSORPOOL_LOG_FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,
}

impl LoginArgs {
    /// Fills the options of `login` that the configuration file sets and no flag or
    /// environment variable did (`auth-dir`, `upstream`, `upstream-ca`).
    pub fn apply_file(
        &mut self,
        file: &crate::config::FileConfig,
        explicit: &crate::config::Explicit,
    ) {
        if !explicit.contains("auth_dir")
            && let Some(dir) = &file.auth_dir
        {
            self.auth_dir = Some(crate::config::expand(dir));
        }
        if !explicit.contains("upstream")
            && let Some(u) = &file.upstream
        {
            self.upstream.clone_from(u);
        }
        if !explicit.contains("upstream_ca")
            && let Some(ca) = &file.upstream_ca
        {
            self.upstream_ca = Some(crate::config::expand(ca));
        }
    }
}
