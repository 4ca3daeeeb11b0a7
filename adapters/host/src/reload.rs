//! How the configuration is put together at start-up ([`Startup`]: command line, environment,
//! file) and put together again while serving ([`Reloader`]) — on SIGHUP (the adapter listens
//! for it) or when the file changes (polled here).
//!
//! A reload rebuilds the configuration exactly as start-up did (flags and environment variables
//! still win over the file) and swaps what can change live in one step: client API keys, the
//! management secret, model mapping and default model, routing strategy, request retries, body
//! and history limits, stall timeout, log level. Requests, streams and parked tool calls in
//! flight keep what they started with; nothing is dropped. What cannot change live (listen
//! address, upstream, accounts by token, state directory, TTLs) is logged as needing a restart.
//! A file that does not parse changes nothing (the error is logged; the running configuration
//! stays).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::app::App;
use crate::cli::{GlobalArgs, ServeArgs};
use crate::config::{self, ConfigError, Explicit, Loaded, LogFormat};
use crate::logging::{self, LogControl};
use crate::tasks::{self, Background};

/// How often the configuration file is checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The command line as parsed, which options it (or the environment) set, and the file.
#[derive(Debug, Clone)]
pub struct Startup {
    /// `--config`, `--log`, `--log-format`.
    pub global: GlobalArgs,
    /// The options set by a flag or an environment variable.
    pub explicit: Explicit,
    /// The configuration file.
    pub file: Loaded,
}

impl Startup {
    /// Reads the configuration file `global` names (or the default one).
    pub fn new(global: &GlobalArgs, matches: &clap::ArgMatches) -> Result<Self, ConfigError> {
        Ok(Self {
            global: global.clone(),
            explicit: Explicit::from_matches(matches),
            file: config::load(global.config.as_deref())?,
        })
    }

    /// The log filter: `--log`/`CURSORPOOL_LOG`, else the file's `log-level`, else `default`.
    pub fn log_filter(&self, default: &str) -> String {
        self.global
            .log
            .clone()
            .or_else(|| self.file.config.log_level.clone())
            .unwrap_or_else(|| default.to_owned())
    }

    /// The log format: `--log-format`, else the file's `log-format`, else text.
    pub fn log_format(&self) -> LogFormat {
        self.global
            .log_format
            .or(self.file.config.log_format)
            .unwrap_or_default()
    }

    /// `args` (as the command line and environment set them) completed by the file.
    pub fn serve_args(&self, args: &ServeArgs) -> ServeArgs {
        let mut out = args.clone();
        self.file.config.apply(&mut out, &self.explicit);
        out
    }

    /// The file watched for changes: the one read, else where the default one would be.
    pub fn watched_path(&self) -> PathBuf {
        self.global
            .config
            .clone()
            .unwrap_or_else(config::default_path)
    }
}

/// Rebuilds and swaps the configuration of a running proxy.
#[derive(Debug)]
pub struct Reloader {
    startup: Mutex<Startup>,
    /// `serve`'s options before the file was applied.
    base: ServeArgs,
    /// The address listened on (changes need a restart).
    listen: SocketAddr,
    /// The auth directory served (changes need a restart).
    auth_dir: PathBuf,
    app: Weak<App>,
    log: LogControl,
    /// The file's last seen modification time and length.
    seen: Mutex<Option<(SystemTime, u64)>>,
}

impl Reloader {
    /// A reloader for `app`, started from `startup` with `base` as the command line's options.
    pub fn new(startup: Startup, base: ServeArgs, app: &Arc<App>, log: LogControl) -> Arc<Self> {
        let effective = startup.serve_args(&base);
        let seen = file_stamp(&startup.watched_path());
        Arc::new(Self {
            listen: effective.listen,
            auth_dir: effective.auth_dir(),
            startup: Mutex::new(startup),
            base,
            app: Arc::downgrade(app),
            log,
            seen: Mutex::new(seen),
        })
    }

    /// Reads the file again and puts its configuration in force. `trigger` says why (logged).
    /// On error the running configuration stays and the error is returned (and logged).
    pub async fn reload(&self, trigger: &str) -> Result<(), String> {
        let Some(app) = self.app.upgrade() else {
            return Err("the proxy is stopping".to_owned());
        };
        let (global, explicit) = {
            let s = lock(&self.startup);
            (s.global.clone(), s.explicit.clone())
        };
        let base = self.base.clone();
        let path = global.config.clone();
        let built = blocking::unblock(move || {
            let file = config::load(path.as_deref()).map_err(|e| e.to_string())?;
            let startup = Startup {
                global,
                explicit,
                file,
            };
            let args = startup.serve_args(&base);
            let app_config = args.app_config().map_err(|e| e.to_string())?;
            Ok::<_, String>((startup, args, app_config))
        })
        .await;
        let (startup, args, app_config) = match built {
            Ok(b) => b,
            Err(e) => {
                app.metrics().reload(false);
                tracing::warn!(
                    trigger,
                    "configuration not reloaded: {e}; the running configuration stays"
                );
                return Err(e);
            }
        };
        let mut restart = app.reconfigure(app_config);
        if args.listen != self.listen {
            restart.push("host/port");
        }
        if args.auth_dir() != self.auth_dir {
            restart.push("auth-dir");
        }
        if startup.global.log.is_none() {
            let filter = startup.log_filter(logging::DEFAULT_FILTER);
            if let Err(e) = self.log.set_filter(&filter) {
                tracing::warn!("log level not changed: {e}");
            }
        }
        *lock(&self.seen) = file_stamp(&startup.watched_path());
        let file = startup.file.path.as_ref().map_or_else(
            || "defaults (no file)".to_owned(),
            |p| p.display().to_string(),
        );
        *lock(&self.startup) = startup;
        app.metrics().reload(true);
        tracing::info!(trigger, file, "configuration reloaded");
        for key in restart {
            tracing::warn!(
                key,
                "configuration changed `{key}`, which takes effect only after a restart"
            );
        }
        Ok(())
    }

    /// Whether the watched file changed since the last look (and remembers it).
    fn file_changed(&self) -> bool {
        let path = lock(&self.startup).watched_path();
        let now = file_stamp(&path);
        let mut seen = lock(&self.seen);
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    /// Reloads whenever the file changes (checked every `interval`) until the returned guard
    /// or the app is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> Option<Background> {
        let app = self.app.upgrade()?;
        let guard = Background::new();
        let this = Arc::downgrade(self);
        tasks::every(
            app.platform(),
            guard.signal(),
            interval,
            interval,
            move || {
                let this = this.clone();
                async move {
                    let Some(this) = this.upgrade() else {
                        return false;
                    };
                    if this.file_changed() {
                        let _ = this.reload("file changed").await;
                    }
                    true
                }
            },
        );
        Some(guard)
    }
}

/// Modification time and length of `path` (`None`: absent or unreadable).
fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
