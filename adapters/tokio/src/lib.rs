//! The tokio adapter of cursorpool: hyper downstream (HTTP/1.1 and HTTP/2), `h2` over rustls
//! upstream (`Run`). It moves bytes and time between sockets and the host/core and takes no
//! protocol decision itself.
#![forbid(unsafe_code)]

pub mod body;
pub mod cli;
pub mod coalesce;
pub mod demo;
pub mod platform;
pub mod run;
pub mod server;
pub mod upstream;
pub mod watched;

pub use cursorpool_host::{app, persist};
