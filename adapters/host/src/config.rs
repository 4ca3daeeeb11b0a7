//! The configuration file: one YAML file (`~/.cursorpool/config.yaml` unless `--config` or
//! `CURSORPOOL_CONFIG` names another) whose keys mirror the command line's options.
//!
//! Precedence, lowest first: built-in defaults < the file < environment variables < command-line
//! flags. The command line is parsed first (clap reads flags and environment variables and says
//! where each value came from); the file then fills every option that neither a flag nor a
//! variable set ([`FileConfig::apply`]).
//!
//! Unknown keys are an error naming the key (a typo never silently does nothing); so is a value
//! of the wrong type or out of range. `config.example.yaml` at the repository's root documents
//! every key and is parsed by a test, so the documentation cannot drift from the code.
//!
//! Adding a key: a field here, a line in [`FileConfig::apply`] (and one in the example file).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{RoutingStrategy, ServeArgs};

/// The file's contents. Every key is optional; absent keys keep the lower layer's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Address to listen on (with `port`; `--listen HOST:PORT` overrides both).
    pub host: Option<IpAddr>,
    /// Port to listen on.
    pub port: Option<u16>,
    /// Cursor's API base URL.
    pub upstream: Option<String>,
    /// Extra trusted root certificate (PEM file) for the upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Where credential files are kept.
    pub auth_dir: Option<PathBuf>,
    /// Where conversations and the pool's state are kept.
    pub state_dir: Option<PathBuf>,
    /// Keep conversations in memory only.
    pub memory_only: Option<bool>,
    /// A file of `[LABEL=]TOKEN` lines (accounts by access token).
    pub token_file: Option<PathBuf>,
    /// Client API keys (any one is accepted; none: every client is served).
    pub api_keys: Option<Vec<String>>,
    /// The management API's secret (also guards `/metrics` and the status page's data).
    pub management_secret: Option<String>,
    /// Account selection.
    pub routing: Option<Routing>,
    /// Accounts tried for one request before the client gets the failure.
    pub request_retry: Option<u32>,
    /// Client model → Cursor model.
    pub models: Option<BTreeMap<String, String>>,
    /// Cursor model for client models without a mapping.
    pub default_model: Option<String>,
    /// Seconds without an upstream frame before a run counts as stalled.
    pub stall_timeout_secs: Option<u64>,
    /// Seconds a tool call waits for its result.
    pub park_ttl_secs: Option<u64>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Seconds a client may take to send a request head (or leave a body without a byte).
    pub header_timeout_secs: Option<u64>,
    /// Seconds a kept-alive client connection may wait for its next request.
    pub idle_timeout_secs: Option<u64>,
    /// Minutes a conversation's checkpoint is kept after its last use.
    pub conversation_ttl_mins: Option<u64>,
    /// Bound on re-sent history, in bytes.
    pub max_history_bytes: Option<usize>,
    /// Log filter (`info`, `debug`, `cursorpool_host=debug,info`, …).
    pub log_level: Option<String>,
    /// Log line format.
    pub log_format: Option<LogFormat>,
}

/// `routing:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Routing {
    /// `round-robin` or `fill-first`.
    pub strategy: Option<RoutingStrategy>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the configuration cannot be used. Blame: the user's file or options; exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` / `CURSORPOOL_CONFIG` cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed, or a key is unknown or has a value of the wrong type (the
    /// message names the key and the line).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Where the file is looked for when neither `--config` nor `CURSORPOOL_CONFIG` names one.
pub fn default_path() -> PathBuf {
    crate::persist::default_root().join("config.yaml")
}

/// The configuration file in force: where it is (if anywhere) and what it says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The file read, `None` when the default file does not exist.
    pub path: Option<PathBuf>,
    /// Its settings.
    pub config: FileConfig,
}

/// Reads the configuration: `explicit` (from `--config`) must exist; the default file may be
/// absent (all defaults).
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (default_path(), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded::default());
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let config = parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.clone(),
        message,
    })?;
    Ok(Loaded {
        path: Some(path),
        config,
    })
}

/// Parses and checks the file's text; the error names the key at fault.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    // An empty file (or one with only comments) is an empty configuration.
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(FileConfig::default());
    }
    let config: FileConfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    config.check()?;
    Ok(config)
}

impl FileConfig {
    /// Range checks serde's types cannot express.
    fn check(&self) -> Result<(), String> {
        if self.port == Some(0) {
            return Err("port: must be between 1 and 65535".to_owned());
        }
        if self.request_retry == Some(0) {
            return Err("request-retry: must be at least 1".to_owned());
        }
        for (key, value) in [
            ("max-header-bytes", self.max_header_bytes.map(|v| v as u64)),
            ("header-timeout-secs", self.header_timeout_secs),
            ("idle-timeout-secs", self.idle_timeout_secs),
        ] {
            if value == Some(0) {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if self.max_body_bytes == Some(0) {
            return Err("max-body-bytes: must be at least 1".to_owned());
        }
        if self.memory_only == Some(true) && self.state_dir.is_some() {
            return Err("memory-only: cannot be true when state-dir is set".to_owned());
        }
        if let Some(level) = &self.log_level {
            crate::logging::check_filter(level).map_err(|e| format!("log-level: {e}"))?;
        }
        if let Some(keys) = &self.api_keys
            && keys.iter().any(|k| k.trim().is_empty())
        {
            return Err("api-keys: a key is empty".to_owned());
        }
        for (name, value) in [
            ("upstream", self.upstream.as_deref()),
            ("default-model", self.default_model.as_deref()),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                return Err(format!("{name}: must not be empty"));
            }
        }
        if let Some(models) = &self.models
            && let Some((client, _)) = models
                .iter()
                .find(|(c, m)| c.trim().is_empty() || m.trim().is_empty())
        {
            return Err(format!("models: the mapping of {client:?} is empty"));
        }
        Ok(())
    }

    /// Fills every option of `args` that `explicit` does not claim (set by a flag or an
    /// environment variable) and that this file sets. Paths may start with `~/`.
    pub fn apply(&self, args: &mut ServeArgs, explicit: &Explicit) {
        let keep = |id: &str| explicit.contains(id);
        macro_rules! fill {
            ($id:literal, $field:ident, $value:expr) => {
                if !keep($id)
                    && let Some(v) = $value
                {
                    args.$field = v;
                }
            };
        }
        if !keep("listen") && (self.host.is_some() || self.port.is_some()) {
            let host = self.host.unwrap_or(args.listen.ip());
            let port = self.port.unwrap_or(args.listen.port());
            args.listen = SocketAddr::new(host, port);
        }
        fill!("upstream", upstream, self.upstream.clone());
        fill!(
            "upstream_ca",
            upstream_ca,
            self.upstream_ca.as_deref().map(expand).map(Some)
        );
        fill!(
            "auth_dir",
            auth_dir,
            self.auth_dir.as_deref().map(expand).map(Some)
        );
        fill!(
            "token_file",
            token_file,
            self.token_file.as_deref().map(expand).map(Some)
        );
        if !keep("state_dir") && !keep("memory_only") {
            if let Some(dir) = &self.state_dir {
                args.state_dir = Some(expand(dir));
            }
            if let Some(m) = self.memory_only {
                args.memory_only = m;
            }
        }
        fill!("api_keys", api_keys, self.api_keys.clone());
        fill!(
            "management_secret",
            management_secret,
            self.management_secret.clone().map(Some)
        );
        fill!(
            "routing_strategy",
            routing_strategy,
            self.routing.as_ref().and_then(|r| r.strategy)
        );
        fill!("request_retry", request_retry, self.request_retry);
        fill!(
            "models",
            models,
            self.models.as_ref().map(|m| m
                .iter()
                .map(|(client, cursor)| format!("{client}={cursor}"))
                .collect())
        );
        fill!("default_model", default_model, self.default_model.clone());
        fill!(
            "stall_timeout_secs",
            stall_timeout_secs,
            self.stall_timeout_secs
        );
        fill!("park_ttl_secs", park_ttl_secs, self.park_ttl_secs);
        fill!("max_body_bytes", max_body_bytes, self.max_body_bytes);
        fill!("max_header_bytes", max_header_bytes, self.max_header_bytes);
        fill!(
            "header_timeout_secs",
            header_timeout_secs,
            self.header_timeout_secs
        );
        fill!(
            "idle_timeout_secs",
            idle_timeout_secs,
            self.idle_timeout_secs
        );
        fill!(
            "conversation_ttl_mins",
            conversation_ttl_mins,
            self.conversation_ttl_mins
        );
        fill!(
            "max_history_bytes",
            max_history_bytes,
            self.max_history_bytes.map(Some)
        );
    }
}

/// The options a flag or an environment variable set: the file does not override them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explicit(std::collections::BTreeSet<String>);

impl Explicit {
    /// The ids (clap's, the field names) of every argument of `matches` — and of its
    /// subcommand's, recursively — that came from the command line or the environment.
    pub fn from_matches(matches: &clap::ArgMatches) -> Self {
        let mut set = std::collections::BTreeSet::new();
        let mut m = Some(matches);
        while let Some(cur) = m {
            for id in cur.ids() {
                if matches!(
                    cur.value_source(id.as_str()),
                    Some(
                        clap::parser::ValueSource::CommandLine
                            | clap::parser::ValueSource::EnvVariable
                    )
                ) {
                    set.insert(id.as_str().to_owned());
                }
            }
            m = cur.subcommand().map(|(_, sub)| sub);
        }
        Self(set)
    }

    /// Names given explicitly (tests).
    pub fn of(ids: &[&str]) -> Self {
        Self(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    /// Whether `id` was set by a flag or an environment variable.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// `~/x` → `$HOME/x` (other paths unchanged).
pub fn expand(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(rest),
            _ => path.to_path_buf(),
        },
        Err(_) => path.to_path_buf(),
    }
}
