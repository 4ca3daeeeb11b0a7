//! The `serve` and `login` subcommands as both binaries run them: configuration → proxy state
//! → accounts from the auth directory → saved pool state → background upkeep; at shutdown
//! conversations are flushed and the pool state saved. The adapter only listens and serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cursorpool_core::conductor::Secret;

use crate::app::App;
use crate::cli::{LoginArgs, ServeArgs};
use crate::logging::LogControl;
use crate::persist::AuthDir;
use crate::reload::{Reloader, Startup};
use crate::tasks::{self, Background};
use crate::upstream::Platform;
use crate::{auth_sync, login, pool_state};

/// How often parked tool calls and stored conversations past their TTL are closed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait at shutdown for finished replies' runs to record their conversations.
pub const RECORD_WAIT: Duration = Duration::from_secs(5);

/// A proxy ready to serve, with its background upkeep running.
#[derive(Debug)]
pub struct Serving {
    /// The proxy's state; hand it to the adapter's server.
    pub app: Arc<App>,
    /// Where to listen.
    pub listen: SocketAddr,
    state_dir: Option<PathBuf>,
    /// Puts a changed configuration in force (the adapter calls it on SIGHUP; the file is
    /// also watched). `None` when built by [`prepare`] alone.
    pub reloader: Option<Arc<Reloader>>,
    _upkeep: Vec<Background>,
}

/// Why `serve` could not start: what to print, and the exit code (2: configuration).
#[derive(Debug)]
pub struct StartError {
    /// For the user.
    pub message: String,
    /// The process's exit code.
    pub code: u8,
}

impl StartError {
    fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

/// Builds the proxy `args` describe on `platform` (`binary` names it in messages).
pub async fn prepare(
    args: &ServeArgs,
    platform: Arc<dyn Platform>,
    binary: &str,
) -> Result<Serving, StartError> {
    let config = args
        .app_config()
        .map_err(|e| StartError::config(e.to_string()))?;
    let state_dir = config.state_dir.clone();
    if !args.listen.ip().is_loopback() && config.api_keys.is_empty() {
        let warning = format!(
            "{binary}: WARNING: listening on {} (not loopback) WITHOUT client API keys: \
             anyone who can reach this address can use your Cursor accounts. \
             Set --api-key (or CURSORPOOL_API_KEYS).",
            args.listen
        );
        eprintln!("\n*** {warning}\n");
        tracing::warn!("{warning}");
    }
    let app = App::new(config, platform).map_err(|e| StartError::config(e.to_string()))?;
    let auth_dir = AuthDir::new(args.auth_dir());
    auth_sync::load(&app, &auth_dir).await;
    if app.pool_status().accounts.is_empty() {
        return Err(StartError::config(format!(
            "no Cursor account: run `{binary} login`, or pass --token or --token-file"
        )));
    }
    if let Some(dir) = &state_dir {
        pool_state::load(&app, dir).await;
    }
    let mut upkeep = vec![
        sweeper(&app),
        auth_sync::spawn(
            &app,
            &auth_dir,
            auth_sync::WATCH_INTERVAL,
            auth_sync::REFRESH_INTERVAL,
        ),
    ];
    if let Some(dir) = state_dir.as_deref() {
        upkeep.push(pool_state::spawn(&app, dir, pool_state::SAVE_INTERVAL));
    }
    Ok(Serving {
        app,
        listen: args.listen,
        state_dir,
        reloader: None,
        _upkeep: upkeep,
    })
}

/// `serve` as the binaries run it: `args` (flags and environment) completed by the
/// configuration file, the proxy built by [`prepare`], and the file watched for changes.
pub async fn start(
    startup: Startup,
    args: &ServeArgs,
    log: LogControl,
    platform: Arc<dyn Platform>,
    binary: &str,
) -> Result<Serving, StartError> {
    let effective = startup.serve_args(args);
    if let Some(path) = &startup.file.path {
        tracing::info!(file = %path.display(), "configuration file read");
    }
    let mut serving = prepare(&effective, platform, binary).await?;
    let reloader = Reloader::new(startup, args.clone(), &serving.app, log);
    if let Some(guard) = reloader.watch(crate::reload::WATCH_INTERVAL) {
        serving._upkeep.push(guard);
    }
    serving.reloader = Some(reloader);
    Ok(serving)
}

impl Serving {
    /// After the server stopped: lets the runs whose replies went out record their
    /// conversations (bounded by [`RECORD_WAIT`]; parked runs are not waited for), makes
    /// conversations durable and saves the pool state.
    pub async fn finish(self, binary: &str) -> ExitCode {
        let deadline = std::time::Instant::now() + RECORD_WAIT;
        loop {
            let live = self.app.live_counts();
            if live.runs <= live.parked || std::time::Instant::now() >= deadline {
                break;
            }
            self.app.platform().sleep(Duration::from_millis(10)).await;
        }
        self.app.flush();
        if let Some(dir) = &self.state_dir
            && let Err(e) = pool_state::save(&self.app, dir).await
        {
            eprintln!("{binary}: cannot save the pool state: {e}");
        }
        ExitCode::SUCCESS
    }
}

/// Connections the kernel may hold for `accept` on the listening socket (capped by
/// `net.core.somaxconn`). The usual default of 128 overflows when a team's clients (or a
/// thousand concurrent streams) connect at once: the kernel then drops handshakes, each
/// costing the client a one-second retransmit, or answers data with a reset.
pub const LISTEN_BACKLOG: u32 = 4096;

/// `serve` from start to exit code (the configuration and log control as
/// [`crate::commands::startup`] made them), around the adapter's runtime pieces: [`start`], then
/// `on_sighup` gets the reloader (to call on SIGHUP), `bind` opens the listener, `serve` serves
/// until the shutdown signal, and [`Serving::finish`] saves what must survive.
pub async fn run<L>(
    (startup, log): (Startup, LogControl),
    args: &ServeArgs,
    platform: Arc<dyn Platform>,
    binary: &str,
    on_sighup: impl FnOnce(Arc<Reloader>),
    bind: impl AsyncFnOnce(SocketAddr) -> std::io::Result<L>,
    serve: impl AsyncFnOnce(L, Arc<App>),
) -> ExitCode {
    let serving = match start(startup, args, log, platform, binary).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{binary}: {}", e.message);
            return ExitCode::from(e.code);
        }
    };
    if let Some(reloader) = serving.reloader.clone() {
        on_sighup(reloader);
    }
    let listener = match bind(serving.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{binary}: cannot listen on {}: {e}", serving.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("{binary} listening on http://{}", serving.listen);
    serve(listener, serving.app.clone()).await;
    serving.finish(binary).await
}

/// Closes parked runs and stored conversations past their TTL every [`SWEEP_INTERVAL`] until
/// the guard is dropped.
pub fn sweeper(app: &Arc<App>) -> Background {
    let guard = Background::new();
    let weak = Arc::downgrade(app);
    tasks::every(
        app.platform(),
        guard.signal(),
        SWEEP_INTERVAL,
        SWEEP_INTERVAL,
        move || {
            let app = weak.upgrade();
            async move {
                match app {
                    Some(app) => {
                        app.expire_parked();
                        true
                    }
                    None => false,
                }
            }
        },
    );
    guard
}

/// `login`: the browser login, or an API-key exchange with `--api-key`.
pub async fn login(args: &LoginArgs, platform: Arc<dyn Platform>, binary: &str) -> ExitCode {
    let opts = match args.login_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => login::cli_api_key(platform.as_ref(), &opts, &Secret::new(key)).await,
        None => login::cli(platform.as_ref(), &opts, args.no_browser).await,
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary} login: {e}");
            ExitCode::FAILURE
        }
    }
}
