//! [`ReplyEvent`]s → Anthropic Messages SSE, in exactly Anthropic's order:
//!
//! ```text
//! message_start
//! (content_block_start, content_block_delta*, content_block_stop)*   indexes 0, 1, 2, …
//! message_delta {stop_reason, stop_sequence, usage}
//! message_stop
//! ```
//!
//! with `ping` wherever a [`ReplyEvent::Ping`] comes. Text and thinking deltas extend the open
//! block of their kind and open a new one otherwise; a thinking block gets a `signature_delta`
//! (see [`thinking_signature`](super::thinking_signature)) right before its stop; a tool call is
//! one complete block (`input_json_delta` with the whole input). An error ends the stream with
//! `event: error` and nothing after it — never a `message_delta`/`message_stop`, which Claude
//! Code would take for a normal end. Claude Code needs `message_start` and every
//! `content_block_stop` (blocks are committed only at their stop), so a renderer fed content
//! before `Start` writes a `message_start` first.

use bytes::{BufMut, BytesMut};
use serde_json::Map;
use sha2::{Digest, Sha256};

use super::wire::{
    WireBlock, WireDelta, WireEvent, WireMessage, WireStop, WireUsage, signature_hasher,
    signature_of, stop_reason,
};
use crate::api::error::ApiError;
use crate::api::sse;
use crate::chat::{ApiKind, ReplyEvent, Usage};

/// Renders one downstream response's [`ReplyEvent`]s as Anthropic SSE bytes. One renderer per
/// response: a resumed tool loop is a new response with a new renderer.
#[derive(Debug, Default)]
pub struct StreamRenderer {
    started: bool,
    finished: bool,
    open: Option<OpenBlock>,
    /// Index of the open block, or of the next one when none is open.
    index: u32,
}

#[derive(Debug)]
enum OpenBlock {
    Text,
    ToolUse,
    /// The running digest of the thinking text, for its signature.
    Thinking(Box<Sha256>),
}

impl StreamRenderer {
    /// A renderer for a new response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the response is complete (a stop or an error was written); later events are
    /// ignored.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether `message_start` was written. Before that nothing but `ping` or `error` can have
    /// been sent, so an adapter that has written no bytes yet may still answer an error with an
    /// HTTP status instead (see [`crate::api::render_error`]).
    pub fn has_started(&self) -> bool {
        self.started
    }

    /// Appends the SSE bytes for `event` to `out`.
    pub fn handle(&mut self, event: &ReplyEvent, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        match event {
            ReplyEvent::Start { id, model, usage } => {
                if !self.started {
                    self.start(id, model, usage, out);
                }
            }
            ReplyEvent::TextDelta(text) => {
                if text.is_empty() {
                    return;
                }
                self.ensure_started(out);
                if !matches!(self.open, Some(OpenBlock::Text)) {
                    self.close_block(out);
                    self.open_block(OpenBlock::Text, WireBlock::Text { text: "" }, out);
                }
                self.delta(WireDelta::Text { text }, out);
            }
            ReplyEvent::ThinkingDelta(thinking) => {
                if thinking.is_empty() {
                    return;
                }
                self.ensure_started(out);
                if !matches!(self.open, Some(OpenBlock::Thinking(_))) {
                    self.close_block(out);
                    let block = WireBlock::Thinking {
                        thinking: "",
                        signature: "",
                    };
                    self.open_block(
                        OpenBlock::Thinking(Box::new(signature_hasher())),
                        block,
                        out,
                    );
                }
                if let Some(OpenBlock::Thinking(hasher)) = &mut self.open {
                    hasher.update(thinking.as_bytes());
                }
                self.delta(WireDelta::Thinking { thinking }, out);
            }
            ReplyEvent::ToolCall { id, name, input } => {
                self.ensure_started(out);
                self.close_block(out);
                let empty = Map::new();
                let start = WireBlock::ToolUse {
                    id,
                    name,
                    input: &empty,
                };
                self.open_block(OpenBlock::ToolUse, start, out);
                // A map of JSON values always serializes.
                let partial_json = serde_json::to_string(input).unwrap_or_else(|_| "{}".into());
                self.delta(
                    WireDelta::InputJson {
                        partial_json: &partial_json,
                    },
                    out,
                );
                self.close_block(out);
            }
            ReplyEvent::Ping => write(out, &WireEvent::Ping),
            ReplyEvent::Stop {
                reason,
                stop_sequence,
                usage,
            } => {
                self.ensure_started(out);
                self.close_block(out);
                let delta = WireEvent::MessageDelta {
                    delta: WireStop {
                        stop_reason: stop_reason(*reason),
                        stop_sequence: stop_sequence.as_deref(),
                    },
                    usage: WireUsage::from(usage),
                };
                write(out, &delta);
                write(out, &WireEvent::MessageStop);
                self.finished = true;
            }
            ReplyEvent::Error(classification) => {
                let error = ApiError::from(classification);
                out.extend_from_slice(b"event: error\ndata: ");
                error.write_body(ApiKind::Anthropic, out);
                out.extend_from_slice(b"\n\n");
                self.finished = true;
            }
        }
    }

    fn start(&mut self, id: &str, model: &str, usage: &Usage, out: &mut BytesMut) {
        let message = WireMessage {
            id,
            kind: "message",
            role: "assistant",
            model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: WireUsage::from(usage),
        };
        write(out, &WireEvent::MessageStart { message });
        self.started = true;
    }

    /// Content before `Start` is a turn-machine bug; the client still gets a valid stream.
    fn ensure_started(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.start("", "", &Usage::default(), out);
        }
    }

    fn open_block(&mut self, kind: OpenBlock, start: WireBlock<'_>, out: &mut BytesMut) {
        write(
            out,
            &WireEvent::ContentBlockStart {
                index: self.index,
                content_block: start,
            },
        );
        self.open = Some(kind);
    }

    fn delta(&self, delta: WireDelta<'_>, out: &mut BytesMut) {
        // The per-token events, written directly (the same bytes as the serde form below).
        let (kind, field, text) = match &delta {
            WireDelta::Text { text } => ("text_delta", "text", *text),
            WireDelta::Thinking { thinking } => ("thinking_delta", "thinking", *thinking),
            _ => ("", "", ""),
        };
        if !kind.is_empty() {
            out.reserve(text.len() + 128);
            out.put_slice(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
            );
            sse::write_u32(out, self.index);
            out.put_slice(b",\"delta\":{\"type\":\"");
            out.put_slice(kind.as_bytes());
            out.put_slice(b"\",\"");
            out.put_slice(field.as_bytes());
            out.put_slice(b"\":");
            sse::write_json_str(out, text);
            out.put_slice(b"}}\n\n");
            return;
        }
        write(
            out,
            &WireEvent::ContentBlockDelta {
                index: self.index,
                delta,
            },
        );
    }

    /// Stops the open block (a thinking block gets its signature first).
    fn close_block(&mut self, out: &mut BytesMut) {
        let Some(open) = self.open.take() else {
            return;
        };
        if let OpenBlock::Thinking(hasher) = open {
            let signature = signature_of(*hasher);
            self.delta(
                WireDelta::Signature {
                    signature: &signature,
                },
                out,
            );
        }
        write(out, &WireEvent::ContentBlockStop { index: self.index });
        self.index += 1;
    }
}

fn write(out: &mut BytesMut, event: &WireEvent<'_>) {
    sse::write_event(out, event.name(), event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written per-token events are byte for byte the serde form.
        #[test]
        fn token_deltas_render_as_their_serde_form(text in "(?s).{1,30}", index in 0u32..100_000) {
            for thinking in [false, true] {
                let r = StreamRenderer { index, ..StreamRenderer::default() };
                let delta = if thinking {
                    WireDelta::Thinking { thinking: &text }
                } else {
                    WireDelta::Text { text: &text }
                };
                let mut fast = BytesMut::new();
                r.delta(delta, &mut fast);
                let delta = if thinking {
                    WireDelta::Thinking { thinking: &text }
                } else {
                    WireDelta::Text { text: &text }
                };
                let mut slow = BytesMut::new();
                write(&mut slow, &WireEvent::ContentBlockDelta { index, delta });
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
