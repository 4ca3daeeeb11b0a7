//! The tokio adapter of cursorpool: hyper downstream, `h2` over rustls upstream. It moves bytes
//! and time between sockets and the sans-IO core and takes no protocol decision itself.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth_sync;
pub mod body;
pub mod cli;
pub mod client_auth;
pub mod demo;
pub mod login;
mod management;
pub mod persist;
pub mod pool_state;
pub mod run;
pub mod server;
pub mod upstream;
