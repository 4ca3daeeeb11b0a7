//! [`ReplyEvent`]s → OpenAI `chat.completion.chunk` SSE:
//!
//! ```text
//! data: {…"delta":{"role":"assistant","content":""}…}          on Start
//! data: {…"delta":{"content":"…"}…}                             text
//! data: {…"delta":{"reasoning_content":"…"}…}                   thinking
//! data: {…"delta":{"tool_calls":[{"index":0,"id","type":"function","function":{"name","arguments"}}]}…}
//! data: {…"delta":{},"finish_reason":"stop"|"tool_calls"|"length"…, "usage":{…}}
//! data: [DONE]
//! ```
//!
//! Usage rides on the finish chunk, so the last chunk always carries it, unless the client set
//! `stream_options.include_usage`: then, as OpenAI does, it comes in one more chunk with empty
//! `choices`. A ping is an SSE comment (`: ping`). An error after the first byte is a chunk
//! `{"error":{…}}` followed by `[DONE]`, never a normal finish.

use bytes::BytesMut;

use super::wire::{
    WireChunk, WireChunkChoice, WireDelta, WireFunction, WireToolCall, WireUsage, finish_reason,
};
use crate::api::error::ApiError;
use crate::api::sse;
use crate::chat::{ApiKind, ChatRequest, ReplyEvent};

/// Renders one downstream response's [`ReplyEvent`]s as OpenAI chunks.
#[derive(Debug)]
pub struct StreamRenderer {
    /// Unix seconds of the reply (core has no clock: the adapter supplies it).
    created: u64,
    include_usage: bool,
    id: String,
    model: String,
    started: bool,
    finished: bool,
    tool_calls: u32,
    /// Every chunk's bytes up to its delta's first field (`data: {"id":…,"delta":{"`), made
    /// once the id and model are known: a token's chunk is this, one string, and a fixed tail.
    head: Vec<u8>,
}

impl StreamRenderer {
    /// A renderer for a reply created at `created` (Unix seconds); `include_usage` is the
    /// request's `stream_options.include_usage`.
    pub fn new(created: u64, include_usage: bool) -> Self {
        StreamRenderer {
            created,
            include_usage,
            id: String::new(),
            model: String::new(),
            started: false,
            finished: false,
            tool_calls: 0,
            head: Vec::new(),
        }
    }

    /// A renderer for the reply to `request`.
    pub fn for_request(request: &ChatRequest, created: u64) -> Self {
        Self::new(created, request.include_usage)
    }

    /// Whether `[DONE]` was written; later events are ignored.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the first chunk was written (before that, only pings can have been sent).
    pub fn has_started(&self) -> bool {
        self.started
    }

    /// Appends the SSE bytes for `event` to `out`.
    pub fn handle(&mut self, event: &ReplyEvent, out: &mut BytesMut) {
        if self.finished {
            return;
        }
        match event {
            ReplyEvent::Start { id, model, .. } => {
                if !self.started {
                    self.id.clone_from(id);
                    self.model.clone_from(model);
                    self.start(out);
                }
            }
            ReplyEvent::TextDelta(text) if !text.is_empty() => {
                self.ensure_started(out);
                self.token_chunk("content", text, out);
            }
            ReplyEvent::ThinkingDelta(text) if !text.is_empty() => {
                self.ensure_started(out);
                self.token_chunk("reasoning_content", text, out);
            }
            ReplyEvent::ToolCall { id, name, input } => {
                self.ensure_started(out);
                // A map of JSON values always serializes.
                let arguments = serde_json::to_string(input).unwrap_or_else(|_| "{}".into());
                let call = WireToolCall {
                    index: Some(self.tool_calls),
                    id,
                    kind: "function",
                    function: WireFunction {
                        name,
                        arguments: &arguments,
                    },
                };
                self.tool_calls += 1;
                let delta = WireDelta {
                    tool_calls: Some([call]),
                    ..WireDelta::default()
                };
                self.chunk(delta, None, None, out);
            }
            ReplyEvent::TextDelta(_) | ReplyEvent::ThinkingDelta(_) => {}
            ReplyEvent::Ping => out.extend_from_slice(b": ping\n\n"),
            ReplyEvent::Stop { reason, usage, .. } => {
                self.ensure_started(out);
                let finish = Some(finish_reason(*reason));
                if self.include_usage {
                    self.chunk(WireDelta::default(), finish, None, out);
                    sse::write_data(
                        out,
                        &WireChunk {
                            id: &self.id,
                            object: "chat.completion.chunk",
                            created: self.created,
                            model: &self.model,
                            choices: &[],
                            usage: Some(WireUsage::from(usage)),
                        },
                    );
                } else {
                    self.chunk(
                        WireDelta::default(),
                        finish,
                        Some(WireUsage::from(usage)),
                        out,
                    );
                }
                self.done(out);
            }
            ReplyEvent::Error(classification) => {
                out.extend_from_slice(b"data: ");
                ApiError::from(classification).write_body(ApiKind::OpenAi, out);
                out.extend_from_slice(b"\n\n");
                self.done(out);
            }
        }
    }

    fn start(&mut self, out: &mut BytesMut) {
        let delta = WireDelta {
            role: Some("assistant"),
            content: Some(""),
            ..WireDelta::default()
        };
        self.started = true;
        self.chunk(delta, None, None, out);
    }

    /// Content before `Start` is a turn-machine bug; the client still gets a valid stream.
    fn ensure_started(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.start(out);
        }
    }

    fn chunk(
        &self,
        delta: WireDelta<'_>,
        finish_reason: Option<&'static str>,
        usage: Option<WireUsage>,
        out: &mut BytesMut,
    ) {
        let choice = WireChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        };
        sse::write_data(
            out,
            &WireChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: std::slice::from_ref(&choice),
                usage,
            },
        );
    }

    /// A chunk whose delta is the one string field `field` (a token): the same bytes as
    /// [`StreamRenderer::chunk`] writes for it, without a serde round per token.
    fn token_chunk(&mut self, field: &str, text: &str, out: &mut BytesMut) {
        if self.head.is_empty() {
            let mut head = BytesMut::new();
            head.extend_from_slice(b"data: {\"id\":");
            sse::write_json_str(&mut head, &self.id);
            head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            head.extend_from_slice(self.created.to_string().as_bytes());
            head.extend_from_slice(b",\"model\":");
            sse::write_json_str(&mut head, &self.model);
            head.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{\"");
            self.head = head.to_vec();
        }
        out.reserve(self.head.len() + field.len() + text.len() + 48);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        sse::write_json_str(out, text);
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    }

    fn done(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The hand-written token chunks are byte for byte the serde form.
        #[test]
        fn token_chunks_render_as_their_serde_form(
            text in "(?s).{1,30}",
            id in "(?s).{0,12}",
            model in "(?s).{0,12}",
            created in any::<u64>(),
        ) {
            let mut r = StreamRenderer::new(created, false);
            r.id = id;
            r.model = model;
            for reasoning in [false, true] {
                let mut fast = BytesMut::new();
                let field = if reasoning { "reasoning_content" } else { "content" };
                r.token_chunk(field, &text, &mut fast);
                let delta = if reasoning {
                    WireDelta { reasoning_content: Some(&text), ..WireDelta::default() }
                } else {
                    WireDelta { content: Some(&text), ..WireDelta::default() }
                };
                let mut slow = BytesMut::new();
                r.chunk(delta, None, None, &mut slow);
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
