//! cursorpool's lightweight runtime adapter: smol and async-h1, with Cursor's HTTP/1.1
//! transport upstream (`RunSSE` + `BidiAppend`, spec §2.5). Everything that decides anything
//! lives in `cursorpool-core`; the shared host logic in `cursorpool-host`. This crate moves
//! bytes and time: [`server`] (async-h1 downstream), [`upstream`] (connections, TLS, the
//! keep-alive pool), [`run`] (the run driver) and [`platform`] (spawn, sleep, connect).
#![forbid(unsafe_code)]

pub mod cli;
pub mod executor;
pub mod platform;
pub mod run;
pub mod server;
pub mod upstream;
pub mod watched;

pub use platform::SmolPlatform;
pub use upstream::H1Upstream;
