//! The end-to-end conformance suite's harness: the simulated Cursor backend and the proxy on
//! loopback — built from either binary's code, `cursorpool` (tokio, HTTP/2 `Run` upstream) or
//! `cursorpool-lite` (smol, HTTP/1.1 `RunSSE` + `BidiAppend` upstream) — a small HTTP/1.1
//! client with an SSE splitter, and the runner of the official Python SDK scripts in `e2e/`.
//!
//! Every test is written once and run against both binaries by [`both_binaries!`]: the
//! harness starts the binary the test runs for ([`Target::current`]).
#![allow(missing_docs)]

mod harness;
mod process;

pub use harness::*;
pub use process::*;

/// Which binary's code serves the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `cursorpool`: tokio + hyper downstream, `h2` (`Run`) upstream.
    Cursorpool,
    /// `cursorpool-lite`: smol + async-h1 downstream, HTTP/1.1 (`RunSSE` + `BidiAppend`).
    Lite,
}

tokio::task_local! {
    static TARGET: Target;
}

impl Target {
    /// The binary the running test is for (`cursorpool` outside [`Target::scope`]).
    pub fn current() -> Self {
        TARGET.try_with(|t| *t).unwrap_or(Self::Cursorpool)
    }

    /// Runs `fut` as a test of this binary.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        TARGET.scope(self, fut).await
    }

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Cursorpool => "cursorpool",
            Self::Lite => "cursorpool-lite",
        }
    }
}

/// Declares each named `async fn` (defined in the test file, no attribute) as two tests: one
/// against `cursorpool` (module `cursorpool`) and one against `cursorpool-lite` (module
/// `cursorpool_lite`).
#[macro_export]
macro_rules! both_binaries {
    ($($name:ident),* $(,)?) => {
        mod cursorpool {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::Target::Cursorpool.scope(super::$name()).await
                }
            )*
        }
        mod cursorpool_lite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::Target::Lite.scope(super::$name()).await
                }
            )*
        }
    };
}
