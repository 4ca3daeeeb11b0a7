//! The `cursorpool` command line: the subcommands shared with `cursorpool-lite` (the host's) and
//! `demo`.

use clap::{Parser, Subcommand};
use cursorpool_host::cli::GlobalArgs;
use cursorpool_host::commands::Shared;

pub use cursorpool_host::cli::demo_config;

/// cursorpool: Claude Code, the Anthropic and OpenAI SDKs and any OpenAI-compatible app on a
/// pool of Cursor accounts.
///
/// Configuration: `~/.cursorpool/config.yaml` (or `--config FILE`); environment variables
/// override the file, flags override both.
#[derive(Debug, Parser)]
#[command(name = "cursorpool", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options of every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a real conversation with a tool call through the proxy against the embedded
    /// simulated Cursor backend, and print it. Needs no account.
    Demo,
    /// The subcommands `cursorpool-lite` has too.
    #[command(flatten)]
    Shared(Shared),
}
