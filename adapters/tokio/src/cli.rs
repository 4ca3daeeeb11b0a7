//! The `cursorpool` command line (its options are the host's, shared with `cursorpool-lite`).

use clap::{Parser, Subcommand};
use cursorpool_host::cli::{LoginArgs, ServeArgs};

pub use cursorpool_host::cli::demo_config;

/// cursorpool: Claude Code, the Anthropic and OpenAI SDKs and any OpenAI-compatible app on a
/// pool of Cursor accounts.
#[derive(Debug, Parser)]
#[command(name = "cursorpool", version, about, long_about = None)]
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
    /// Run a real conversation with a tool call through the proxy against the embedded
    /// simulated Cursor backend, and print it. Needs no account.
    Demo,
    /// Log in to a Cursor account in the browser and store its credential file in the auth
    /// directory (picked up by a running `serve`).
    Login(LoginArgs),
}
