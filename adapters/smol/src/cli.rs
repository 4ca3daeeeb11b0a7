//! The `cursorpool-lite` command line: the subcommands that make sense without the embedded
//! simulated backend (its options are the host's, shared with `cursorpool`).

use clap::{Parser, Subcommand};
use cursorpool_host::cli::{LoginArgs, ServeArgs};

/// cursorpool-lite: the cursorpool proxy on smol with HTTP/1.1 upstream (`RunSSE` +
/// `BidiAppend`), for small boxes and HTTP/1.1-only egress.
#[derive(Debug, Parser)]
#[command(name = "cursorpool-lite", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter, e.g. `info`, `debug`, `cursorpool=debug`.
    #[arg(long, global = true, default_value = "info", env = "CURSORPOOL_LOG")]
    pub log: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Anthropic and OpenAI APIs on a local port.
    Serve(Box<ServeArgs>),
    /// Log in to a Cursor account in the browser and store its credential file in the auth
    /// directory (picked up by a running `serve`).
    Login(LoginArgs),
}
