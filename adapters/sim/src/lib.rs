//! The simulated Cursor backend.
//!
//! - [`model`]: the sans-IO model (accounts, tokens, runs, the deterministic brain, faults),
//!   usable in-process by tests with no runtime and no sockets.
//! - `server` (feature `server`, on by default): the tokio loopback server behind the
//!   `cursor-sim` binary, speaking h2/h2c `Run`, HTTP/1.1 `RunSSE` + `BidiAppend` and TLS.
#![forbid(unsafe_code)]

pub mod model;
#[cfg(feature = "server")]
pub mod server;
