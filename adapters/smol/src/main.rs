//! `cursorpool-lite`: the proxy on smol + async-h1, HTTP/1.1 upstream.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, FromArgMatches as _};
use cursorpool_host::reload::Reloader;
use cursorpool_host::{commands, serve};
use cursorpool_smol::cli::{Cli, Command};
use cursorpool_smol::platform::SmolPlatform;
use cursorpool_smol::server;
use futures_lite::StreamExt as _;

/// Environment variable: the executor's threads (default 1).
const THREADS_VAR: &str = "CURSORPOOL_LITE_THREADS";
const BINARY: &str = "cursorpool-lite";

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let (startup, log) = match commands::startup(
        &cli.global,
        &matches,
        cursorpool_host::logging::DEFAULT_FILTER,
        BINARY,
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match commands::threads_from_env(THREADS_VAR) {
        Ok(Some(n)) => {
            cursorpool_smol::executor::set_threads(n);
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("{BINARY}: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    }
    smol::block_on(async move {
        let Command::Shared(shared) = cli.command;
        let platform = SmolPlatform::shared();
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
    use async_signal::{Signal, Signals};
    match Signals::new([Signal::Hup]) {
        Ok(mut hups) => cursorpool_smol::executor::spawn(async move {
            while hups.next().await.is_some() {
                let _ = reloader.reload("SIGHUP").await;
            }
        })
        .detach(),
        Err(e) => tracing::warn!("cannot watch for SIGHUP ({e}); the file is still watched"),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use async_signal::{Signal, Signals};
    match Signals::new([Signal::Term, Signal::Int]) {
        Ok(mut signals) => {
            let _ = signals.next().await;
        }
        Err(e) => {
            tracing::warn!("cannot watch for shutdown signals ({e}); stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
