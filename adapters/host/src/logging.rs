//! Logging for both binaries: `tracing` to stderr, human-readable lines by default or one JSON
//! object per line (`--log-format json`), filtered by an env-filter expression whose level can
//! be changed while serving (a configuration reload).
//!
//! What is logged: one INFO line per client request (see [`crate::request_log`]), account and
//! configuration changes at INFO, failures at WARN, protocol details at DEBUG. Never a token or
//! a key at any level, never prompt text above DEBUG.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

/// The filter used when neither a flag, the environment nor the file sets one.
pub const DEFAULT_FILTER: &str = "info";

/// Changes the running process's log filter.
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogControl {
    /// A control that changes nothing (logging set up elsewhere, e.g. in tests).
    pub fn none() -> Self {
        Self { handle: None }
    }

    /// Replaces the filter (`filter` was checked by [`check_filter`]).
    pub fn set_filter(&self, filter: &str) -> Result<(), String> {
        let Some(handle) = &self.handle else {
            return Ok(());
        };
        let f = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    }
}

/// Whether `filter` is a valid env-filter expression.
pub fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))
}

/// Installs the global subscriber: stderr, `format`, `filter` (an invalid filter falls back to
/// [`DEFAULT_FILTER`] with a warning). Colours only when stderr is a terminal.
pub fn init(filter: &str, format: LogFormat) -> LogControl {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(DEFAULT_FILTER), Some(e.to_string())),
    };
    let (filter_layer, handle) = reload::Layer::new(env_filter);
    let ansi = std::io::stderr().is_terminal();
    let fmt: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init()
        .is_ok();
    if let Some(e) = bad {
        tracing::warn!("invalid log filter {filter:?} ({e}); using {DEFAULT_FILTER:?}");
    }
    LogControl {
        handle: installed.then_some(handle),
    }
}
