//! HTTP/2 send-side flow control as values: the window ledger and the DATA chunker.

pub mod chunker;
pub mod window;
