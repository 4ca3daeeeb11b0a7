//! Connect-RPC over HTTP: the streaming envelope, end-stream trailers, error codes and errors.

pub mod code;
pub mod end_stream;
pub mod envelope;
pub mod error;
