//! `cursorpool`: the proxy binary.

use std::process::ExitCode;

use clap::Parser;
use cursorpool_host::serve;
use cursorpool_tokio::cli::{Cli, Command, demo_config};
use cursorpool_tokio::platform::TokioPlatform;
use cursorpool_tokio::{demo, server};

const BINARY: &str = "cursorpool";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own transcript; keep its log to warnings unless asked otherwise.
    let filter = match (&cli.command, cli.log.as_str()) {
        (Command::Demo, "info") => "warn",
        (_, f) => f,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{BINARY}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Demo => match demo::run(demo_config()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("\n{BINARY} demo: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Login(args) => serve::login(&args, TokioPlatform::shared(), BINARY).await,
            Command::Serve(args) => {
                let serving = match serve::prepare(&args, TokioPlatform::shared(), BINARY).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("{BINARY}: {}", e.message);
                        return ExitCode::from(e.code);
                    }
                };
                let listener = match tokio::net::TcpListener::bind(serving.listen).await {
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
