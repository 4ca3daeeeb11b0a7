//! [`ReplyEvent`]s → one non-streaming `chat.completion` body.

use bytes::{Bytes, BytesMut};

use super::wire::{
    WireChoice, WireCompletion, WireFunction, WireMessage, WireToolCall, WireUsage, finish_reason,
};
use crate::api::sse;
use crate::chat::{ReplyEvent, StopReason, Usage};
use crate::classify::{Classification, Failure, TransportFailure, classify};

/// Collects one response's [`ReplyEvent`]s and renders the `chat.completion` JSON at the end.
#[derive(Debug)]
pub struct CompletionAccumulator {
    /// Unix seconds of the reply (supplied by the adapter).
    created: u64,
    id: String,
    model: String,
    text: String,
    reasoning: String,
    /// `(id, name, arguments as a JSON string)`.
    tool_calls: Vec<(String, String, String)>,
    outcome: Option<Result<(StopReason, Usage), Classification>>,
}

impl CompletionAccumulator {
    /// An empty accumulator for a reply created at `created` (Unix seconds).
    pub fn new(created: u64) -> Self {
        CompletionAccumulator {
            created,
            id: String::new(),
            model: String::new(),
            text: String::new(),
            reasoning: String::new(),
            tool_calls: Vec::new(),
            outcome: None,
        }
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
            ReplyEvent::TextDelta(t) => self.text.push_str(t),
            ReplyEvent::ThinkingDelta(t) => self.reasoning.push_str(t),
            ReplyEvent::ToolCall { id, name, input } => {
                // A map of JSON values always serializes.
                let arguments = serde_json::to_string(input).unwrap_or_else(|_| "{}".into());
                self.tool_calls.push((id.clone(), name.clone(), arguments));
            }
            ReplyEvent::Ping => {}
            ReplyEvent::Stop { reason, usage, .. } => self.outcome = Some(Ok((*reason, *usage))),
            ReplyEvent::Error(c) => self.outcome = Some(Err(c.clone())),
        }
    }

    /// The `chat.completion` body, or the failure to answer with instead (render it with
    /// [`crate::api::render_error`]). A reply that ended without a stop is a failure too.
    pub fn finish(self) -> Result<Bytes, Classification> {
        let (reason, usage) = match self.outcome {
            Some(outcome) => outcome?,
            None => {
                return Err(classify(Failure::Transport(
                    TransportFailure::EndedWithoutTurnEnded,
                )));
            }
        };
        let tool_calls = self
            .tool_calls
            .iter()
            .map(|(id, name, arguments)| WireToolCall {
                index: None,
                id,
                kind: "function",
                function: WireFunction { name, arguments },
            })
            .collect();
        let body = WireCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [WireChoice {
                index: 0,
                message: WireMessage {
                    role: "assistant",
                    content: (!self.text.is_empty() || self.tool_calls.is_empty())
                        .then_some(self.text.as_str()),
                    reasoning_content: (!self.reasoning.is_empty())
                        .then_some(self.reasoning.as_str()),
                    tool_calls,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: finish_reason(reason),
            }],
            usage: WireUsage::from(&usage),
        };
        let mut out = BytesMut::with_capacity(256 + self.text.len());
        sse::write_json(&mut out, &body);
        Ok(out.freeze())
    }
}
