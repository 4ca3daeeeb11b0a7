//! The `cursorpool-lite` command line: the host's subcommands, shared with `cursorpool` (all
//! but `demo`, which needs the embedded simulated backend).

use clap::{Parser, Subcommand};
use cursorpool_host::cli::GlobalArgs;
use cursorpool_host::commands::Shared;

/// cursorpool-lite: the cursorpool proxy on smol with HTTP/1.1 upstream (`RunSSE` +
/// `BidiAppend`), for small boxes and HTTP/1.1-only egress.
///
/// Configuration: `~/.cursorpool/config.yaml` (or `--config FILE`); environment variables
/// override the file, flags override both.
#[derive(Debug, Parser)]
#[command(name = "cursorpool-lite", version, about, long_about)]
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
    /// The subcommands `cursorpool` has too.
    #[command(flatten)]
    Shared(Shared),
}
