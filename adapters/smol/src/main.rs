//! `cursorpool-lite`: the proxy on smol + async-h1, HTTP/1.1 upstream.

use std::process::ExitCode;

use clap::Parser;
use cursorpool_host::serve;
use cursorpool_smol::cli::{Cli, Command};
use cursorpool_smol::platform::SmolPlatform;
use cursorpool_smol::server;
use futures_lite::StreamExt as _;

const BINARY: &str = "cursorpool-lite";

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    smol::block_on(async move {
        match cli.command {
            Command::Login(args) => serve::login(&args, SmolPlatform::shared(), BINARY).await,
            Command::Serve(args) => {
                let serving = match serve::prepare(&args, SmolPlatform::shared(), BINARY).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{BINARY}: {}", e.message);
                        return ExitCode::from(e.code);
                    }
                };
                let listener = match smol::net::TcpListener::bind(serving.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("{BINARY}: cannot listen on {}: {e}", serving.listen);
                        return ExitCode::FAILURE;
                    }
                };
                tracing::info!("{BINARY} listening on http://{}", serving.listen);
                server::serve(listener, serving.app.clone(), shutdown_signal()).await;
                serving.finish(BINARY).await
            }
        }
    })
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
