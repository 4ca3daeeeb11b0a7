//! `cursorpool`: the proxy binary.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, FromArgMatches as _};
use cursorpool_host::reload::Reloader;
use cursorpool_host::{commands, serve};
use cursorpool_tokio::cli::{Cli, Command, demo_config};
use cursorpool_tokio::platform::TokioPlatform;
use cursorpool_tokio::{demo, server};

/// Environment variable: the runtime's worker threads (default: one per core).
const THREADS_VAR: &str = "CURSORPOOL_THREADS";
const BINARY: &str = "cursorpool";

/// mimalloc rather than glibc's malloc: under load glibc's arena locks, chunk
/// unlinking and fastbin consolidation took about a fifth of the proxy's CPU
/// (a request allocates and frees a few hundred small buffers across threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The demo prints its own transcript; keep its log to warnings unless asked otherwise.
    let default_filter = match cli.command {
        Command::Demo => "warn",
        Command::Shared(_) => cursorpool_host::logging::DEFAULT_FILTER,
    };
    let (startup, log) = match commands::startup(&cli.global, &matches, default_filter, BINARY) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // One worker per core unless `CURSORPOOL_THREADS` says otherwise.
    match commands::threads_from_env(THREADS_VAR) {
        Ok(Some(n)) => {
            builder.worker_threads(n.get());
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("{BINARY}: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{BINARY}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shared = match cli.command {
            Command::Demo => {
                return match demo::run(demo_config()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("\n{BINARY} demo: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Shared(s) => s,
        };
        let platform = TokioPlatform::shared();
        let args =
            match commands::run(shared, &startup, platform.clone(), BINARY, Cli::command()).await {
                Ok(code) => return code,
                Err(args) => args,
            };
        serve::run(
            (startup, log),
            &args,
            platform,
            BINARY,
            reload_on_sighup,
            async |addr| server::listen(addr),
            async |listener, app| server::serve(listener, app, shutdown_signal()).await,
        )
        .await
    })
}

/// Reloads the configuration on every SIGHUP (the handler is installed before this returns,
/// so a SIGHUP never ends the process once serving).
fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = reloader.reload("SIGHUP").await;
                    }
                });
            }
            Err(e) => tracing::warn!("cannot watch for SIGHUP ({e}); the file is still watched"),
        }
    }
    #[cfg(not(unix))]
    drop(reloader);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
