//! [`ReplyEvent`]s → one non-streaming Anthropic `message` body: the same blocks, in the same
//! order, that [`super::StreamRenderer`] would stream.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::wire::{WireBlock, WireMessage, WireUsage, stop_reason, thinking_signature};
use crate::api::sse;
use crate::chat::{ReplyEvent, StopReason, Usage};
use crate::classify::{Classification, Failure, TransportFailure, classify};

/// Collects one response's [`ReplyEvent`]s and renders the `message` JSON at the end.
#[derive(Debug, Default)]
pub struct MessageAccumulator {
    id: String,
    model: String,
    blocks: Vec<Block>,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
enum Block {
    Text(String),
    Thinking(String),
    ToolUse {
        id: String,
        name: String,
        input: Map<String, Value>,
    },
}

#[derive(Debug)]
enum Outcome {
    Stop {
        reason: StopReason,
        stop_sequence: Option<String>,
        usage: Usage,
    },
    Error(Classification),
}

impl MessageAccumulator {
    /// An empty accumulator for a new response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a stop or an error arrived (later events are ignored).
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// Takes one event.
    pub fn handle(&mut self, event: &ReplyEvent) {
        if self.outcome.is_some() {
            return;
        }
        match event {
            ReplyEvent::Start { id, model, .. } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            ReplyEvent::TextDelta(text) if !text.is_empty() => match self.blocks.last_mut() {
                Some(Block::Text(open)) => open.push_str(text),
                _ => self.blocks.push(Block::Text(text.clone())),
            },
            ReplyEvent::ThinkingDelta(text) if !text.is_empty() => match self.blocks.last_mut() {
                Some(Block::Thinking(open)) => open.push_str(text),
                _ => self.blocks.push(Block::Thinking(text.clone())),
            },
            ReplyEvent::ToolCall { id, name, input } => self.blocks.push(Block::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            ReplyEvent::Stop {
                reason,
                stop_sequence,
                usage,
            } => {
                self.outcome = Some(Outcome::Stop {
                    reason: *reason,
                    stop_sequence: stop_sequence.clone(),
                    usage: *usage,
                });
            }
            ReplyEvent::Error(c) => self.outcome = Some(Outcome::Error(c.clone())),
            ReplyEvent::TextDelta(_) | ReplyEvent::ThinkingDelta(_) | ReplyEvent::Ping => {}
        }
    }

    /// The `message` body, or the failure to answer with instead (render it with
    /// [`crate::api::render_error`]). A reply that ended without a stop is a failure too
    /// ([`TransportFailure::EndedWithoutTurnEnded`]), never a truncated success.
    pub fn finish(self) -> Result<Bytes, Classification> {
        let (reason, stop_sequence, usage) = match self.outcome {
            Some(Outcome::Stop {
                reason,
                stop_sequence,
                usage,
            }) => (reason, stop_sequence, usage),
            Some(Outcome::Error(c)) => return Err(c),
            None => {
                return Err(classify(Failure::Transport(
                    TransportFailure::EndedWithoutTurnEnded,
                )));
            }
        };
        let signatures: Vec<String> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Thinking(text) => thinking_signature(text),
                _ => String::new(),
            })
            .collect();
        let content = self
            .blocks
            .iter()
            .zip(&signatures)
            .map(|(b, signature)| match b {
                Block::Text(text) => WireBlock::Text { text },
                Block::Thinking(thinking) => WireBlock::Thinking {
                    thinking,
                    signature,
                },
                Block::ToolUse { id, name, input } => WireBlock::ToolUse { id, name, input },
            })
            .collect();
        let message = WireMessage {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason: Some(stop_reason(reason)),
            stop_sequence: stop_sequence.as_deref(),
            usage: WireUsage::from(&usage),
        };
        let mut out = BytesMut::with_capacity(256);
        sse::write_json(&mut out, &message);
        Ok(out.freeze())
    }
}
