//! cursorpool's fuzz targets. Each target's body lives in [`targets`] so that the committed
//! corpus is replayed by a stable `cargo test` in the main workspace
//! (`core/tests/fuzz_corpus.rs` includes the same file).

pub mod conversations;
pub mod render;
pub mod script;
pub mod targets;
