//! cursorpool's runtime-neutral host: everything between core and a runtime adapter that is
//! not about sockets or a particular HTTP library — routing HTTP requests onto core's parsers
//! and renderers, the account pool's upkeep, conversation and credential files, the
//! management API, the CLI's arguments. The tokio adapter (`cursorpool`) and the smol adapter
//! (`cursorpool-lite`) each plug a [`upstream::Platform`] into it and serve its answers.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth_sync;
pub mod body;
pub mod cli;
pub mod client_auth;
pub mod commands;
pub mod config;
pub mod conn_watch;
pub mod live;
pub mod logging;
pub mod login;
mod management;
pub mod metrics;
pub mod persist;
pub mod pool_state;
pub mod relay;
pub mod reload;
pub mod request_log;
pub mod serve;
mod sse_reply;
mod status_page;
pub mod tasks;
pub mod upstream;
