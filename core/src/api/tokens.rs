//! The input-token estimate: the `count_tokens` answer, and the input tokens of
//! `message_start` when Cursor reports none (clients show them, and never expect 0).
//!
//! The heuristic is deterministic and cheap, and aims to be close for English text and code
//! rather than exact (no tokenizer ships in core):
//!
//! - every byte the model reads counts 1/[`BYTES_PER_TOKEN`] token, summed over the system
//!   pieces, message text, thinking text, tool-call names and input JSON, tool-result text, and
//!   each tool's name, description and input-schema JSON; the sum is rounded up once;
//! - each image costs [`IMAGE_TOKENS`] (Anthropic's cost for an image of about 1.15 megapixels,
//!   the largest it takes without downscaling; decoding dimensions would cost more than the
//!   precision is worth);
//! - each message adds [`MESSAGE_TOKENS`] and each tool [`TOOL_TOKENS`] for the framing around
//!   them;
//! - the result is at least 1.
//!
//! Signatures of thinking blocks are opaque and not counted.

use std::io;

use crate::chat::{ChatRequest, Part};

/// Bytes of text per token (about right for English prose and code with BPE tokenizers).
pub const BYTES_PER_TOKEN: u64 = 4;
/// Tokens per image.
pub const IMAGE_TOKENS: u64 = 1_600;
/// Framing tokens per message (role markers, separators).
pub const MESSAGE_TOKENS: u64 = 4;
/// Framing tokens per tool definition.
pub const TOOL_TOKENS: u64 = 8;

/// The estimated input tokens of `request` (see the module docs), at least 1.
pub fn estimate_input_tokens(request: &ChatRequest) -> u64 {
    let mut tally = Tally::default();
    for piece in &request.system {
        tally.bytes += piece.len() as u64;
    }
    for message in &request.messages {
        tally.fixed += MESSAGE_TOKENS;
        tally.parts(&message.content);
    }
    for tool in &request.tools {
        tally.fixed += TOOL_TOKENS;
        tally.bytes += (tool.name.len() + tool.description.len()) as u64;
        if let Some(schema) = &tool.input_schema {
            tally.bytes += schema.as_str().len() as u64;
        }
    }
    tally
        .bytes
        .div_ceil(BYTES_PER_TOKEN)
        .saturating_add(tally.fixed)
        .max(1)
}

/// The estimated tokens of one text: its bytes / [`BYTES_PER_TOKEN`], rounded up.
pub fn estimate_text_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(BYTES_PER_TOKEN)
}

#[derive(Default)]
struct Tally {
    /// Bytes of text.
    bytes: u64,
    /// Tokens that do not scale with text (images, framing).
    fixed: u64,
}

impl Tally {
    fn parts(&mut self, parts: &[Part]) {
        for part in parts {
            match part {
                Part::Text(text) => self.bytes += text.len() as u64,
                Part::Image { .. } => self.fixed += IMAGE_TOKENS,
                Part::ToolUse { name, input, .. } => {
                    self.bytes += name.len() as u64 + json_len(input);
                }
                Part::ToolResult { content, .. } => self.parts(content),
                Part::Thinking { text, .. } => self.bytes += text.len() as u64,
            }
        }
    }
}

/// The length of `value`'s compact JSON, without building it.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Counting never fails and JSON values always serialize; a failure would only undercount.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
