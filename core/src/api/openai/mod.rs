//! The OpenAI Chat Completions API: `POST /v1/chat/completions` (chunks or one JSON body).

mod completion;
mod parse;
mod stream;
mod wire;

pub use completion::CompletionAccumulator;
pub use parse::{parse_chat_request, parse_chat_request_with};
pub use stream::StreamRenderer;
