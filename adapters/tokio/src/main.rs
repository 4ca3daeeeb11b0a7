//! `cursorpool`: the proxy binary.

use std::process::ExitCode;

use clap::Parser;
use cursorpool_core::conductor::Secret;
use cursorpool_tokio::cli::{Cli, Command, demo_config};
use cursorpool_tokio::persist::AuthDir;
use cursorpool_tokio::{app::App, auth_sync, demo, login, pool_state, server};

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
            eprintln!("cursorpool: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Demo => match demo::run(demo_config()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("\ncursorpool demo: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Login(args) => {
                let opts = match args.login_options() {
                    Ok(o) => o,
                    Err(e) => {
                        eprintln!("cursorpool: {e}");
                        return ExitCode::from(2);
                    }
                };
                let result = match args.api_key.as_deref().filter(|k| !k.is_empty()) {
                    Some(key) => login::cli_api_key(&opts, &Secret::new(key)).await,
                    None => login::cli(&opts, args.no_browser).await,
                };
                match result {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("cursorpool login: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Serve(args) => {
                let config = match args.app_config() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("cursorpool: {e}");
                        return ExitCode::from(2);
                    }
                };
                let state_dir = config.state_dir.clone();
                if !args.listen.ip().is_loopback() && config.api_keys.is_empty() {
                    let warning = format!(
                        "cursorpool: WARNING: listening on {} (not loopback) WITHOUT client API keys: \
                         anyone who can reach this address can use your Cursor accounts. \
                         Set --api-key (or CURSORPOOL_API_KEYS).",
                        args.listen
                    );
                    eprintln!("\n*** {warning}\n");
                    tracing::warn!("{warning}");
                }
                let app = match App::new(config) {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("cursorpool: {e}");
                        return ExitCode::from(2);
                    }
                };
                let auth_dir = AuthDir::new(args.auth_dir());
                auth_sync::load(&app, &auth_dir).await;
                if app.pool_status().accounts.is_empty() {
                    eprintln!(
                        "cursorpool: no Cursor account: run `cursorpool login`, or pass --token or --token-file"
                    );
                    return ExitCode::from(2);
                }
                if let Some(dir) = &state_dir {
                    pool_state::load(&app, dir).await;
                }
                let _state_saver = state_dir
                    .as_deref()
                    .map(|dir| pool_state::spawn(&app, dir, pool_state::SAVE_INTERVAL));
                let _auth_tasks = auth_sync::spawn(
                    &app,
                    &auth_dir,
                    auth_sync::WATCH_INTERVAL,
                    auth_sync::REFRESH_INTERVAL,
                );
                let listener = match tokio::net::TcpListener::bind(args.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("cursorpool: cannot listen on {}: {e}", args.listen);
                        return ExitCode::FAILURE;
                    }
                };
                tracing::info!("cursorpool listening on http://{}", args.listen);
                server::serve(listener, app.clone(), shutdown_signal()).await;
                app.flush();
                if let Some(dir) = &state_dir
                    && let Err(e) = pool_state::save(&app, dir).await
                {
                    eprintln!("cursorpool: cannot save the pool state: {e}");
                }
                ExitCode::SUCCESS
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
