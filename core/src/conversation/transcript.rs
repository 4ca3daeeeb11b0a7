//! The fingerprint of a client transcript: which messages a stored checkpoint already covers.
//!
//! Cursor may only continue from a checkpoint when the client's transcript is an exact
//! extension of what the checkpoint committed (spec §6.3). Clients resend the whole conversation
//! on every request, so the store keeps, next to each checkpoint, a [`Transcript`]: the number
//! of messages it covers and a SHA-256 hash chain over them (`h₀ = SHA-256(domain)`,
//! `hᵢ₊₁ = SHA-256(hᵢ ‖ digest(messageᵢ))`). A request continues the checkpoint when its first
//! `n` messages hash to the stored `hₙ`.
//!
//! The digest of a message covers what the conversation *says*, not how the client happened to
//! serialize it this time:
//!
//! - the role; all text parts concatenated **with every whitespace character removed** (Claude
//!   Code collapses an older multi-block user prompt into one string, and text may come back
//!   re-trimmed); images by the SHA-256 of their bytes; tool calls by id, name and input (as
//!   canonical JSON: keys sorted); tool results by id, error flag and content;
//! - the text, the images, and the tool calls and results are hashed as separate sequences, so
//!   text placed before or after the tool calls of a message does not matter (OpenAI carries an
//!   assistant's text and its `tool_calls` in separate fields);
//! - left out: reasoning blocks and their signatures (clients drop or re-sign them),
//!   `cache_control` (moves to the newest message every request; the API front drops it) and
//!   the system prompt (not a message; its billing header changes every request).
//!
//! The reply the proxy sent becomes part of the covered transcript: [`ReplyRecorder`] turns
//! the reply's events into the assistant message the client will echo back.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chat::{ChatMessage, Part, ReplyEvent, Role};

/// A fingerprint of the first [`Transcript::messages`] messages of a conversation (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transcript {
    messages: u32,
    hash: [u8; 32],
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcript {
    /// The fingerprint of an empty transcript.
    pub fn new() -> Self {
        Self {
            messages: 0,
            hash: Sha256::digest(b"cursorpool transcript v1\0").into(),
        }
    }

    /// The fingerprint of `messages`.
    pub fn of<'a>(messages: impl IntoIterator<Item = &'a ChatMessage>) -> Self {
        let mut t = Self::new();
        for m in messages {
            t.push(m);
        }
        t
    }

    /// Extends the fingerprint by one message.
    pub fn push(&mut self, message: &ChatMessage) {
        let mut h = Sha256::new();
        h.update(self.hash);
        h.update(message_digest(message));
        self.hash = h.finalize().into();
        self.messages = self.messages.saturating_add(1);
    }

    /// How many messages the fingerprint covers.
    pub fn messages(&self) -> usize {
        self.messages as usize
    }

    /// The hash chain's value after the last covered message.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Whether `messages` starts with exactly the transcript this fingerprint covers.
    pub fn is_prefix_of(&self, messages: &[ChatMessage]) -> bool {
        messages.len() >= self.messages() && Self::of(&messages[..self.messages()]) == *self
    }

    /// A fingerprint from its stored parts.
    pub(crate) fn from_parts(messages: u32, hash: [u8; 32]) -> Self {
        Self { messages, hash }
    }
}

/// The digest of one message, normalized as described in the module docs.
pub(crate) fn message_digest(message: &ChatMessage) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([match message.role {
        Role::User => b'u',
        Role::Assistant => b'a',
        Role::System => b's',
    }]);
    content_digest(&mut h, &message.content);
    for p in &message.content {
        match p {
            Part::ToolUse { id, name, input } => {
                h.update(b"U");
                field(&mut h, id.as_bytes());
                field(&mut h, name.as_bytes());
                let mut json = String::new();
                canonical_object(&mut json, input);
                field(&mut h, json.as_bytes());
            }
            Part::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                h.update(b"R");
                field(&mut h, tool_use_id.as_bytes());
                h.update([u8::from(*is_error)]);
                content_digest(&mut h, content);
            }
            Part::Text(_) | Part::Image { .. } | Part::Thinking { .. } => {}
        }
    }
    h.update(b".");
    h.finalize().into()
}

/// The text (whitespace removed, terminated by a newline — which the text can no longer
/// contain) and the images of `parts`.
fn content_digest(h: &mut Sha256, parts: &[Part]) {
    h.update(b"T");
    for p in parts {
        if let Part::Text(t) = p {
            for piece in t.split_whitespace() {
                h.update(piece.as_bytes());
            }
        }
    }
    h.update(b"\n");
    for p in parts {
        if let Part::Image { data, .. } = p {
            h.update(b"I");
            h.update(Sha256::digest(data));
        }
    }
}

/// A length-prefixed field.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// JSON with object keys sorted at every level (independent of `serde_json`'s map order).
fn canonical_object(out: &mut String, map: &Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        canonical(out, &map[k]);
    }
    out.push('}');
}

fn canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(m) => canonical_object(out, m),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Collects what the proxy sent in one downstream reply as the assistant message the client
/// will echo in its next request: the text deltas joined, then the tool calls. Feed it every
/// [`ReplyEvent`] of a turn in order; each `Start` begins a new reply, so after a turn that
/// parked and resumed it holds the last reply (the one that followed the request passed to
/// [`super::ConversationStore::record`]). Reasoning is not collected (the fingerprint ignores
/// it).
#[derive(Debug, Clone, Default)]
pub struct ReplyRecorder {
    started: bool,
    text: String,
    tool_calls: Vec<Part>,
}

impl ReplyRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one reply event into account.
    pub fn handle(&mut self, event: &ReplyEvent) {
        match event {
            ReplyEvent::Start { .. } => {
                *self = Self {
                    started: true,
                    ..Self::default()
                };
            }
            ReplyEvent::TextDelta(t) => self.text.push_str(t),
            ReplyEvent::ToolCall { id, name, input } => self.tool_calls.push(Part::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            ReplyEvent::ThinkingDelta(_)
            | ReplyEvent::Ping
            | ReplyEvent::Stop { .. }
            | ReplyEvent::Error(_) => {}
        }
    }

    /// The reply as the messages it adds to the transcript: one assistant message, or none
    /// when no reply began.
    pub fn messages(&self) -> Vec<ChatMessage> {
        if !self.started {
            return Vec::new();
        }
        let mut content = Vec::with_capacity(1 + self.tool_calls.len());
        if !self.text.is_empty() {
            content.push(Part::Text(self.text.clone()));
        }
        content.extend(self.tool_calls.iter().cloned());
        vec![ChatMessage {
            role: Role::Assistant,
            content,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let Value::Object(m) = json!({"b": [1, {"d": 2, "c": "x"}], "a": null}) else {
            unreachable!()
        };
        let mut s = String::new();
        canonical_object(&mut s, &m);
        assert_eq!(s, r#"{"a":null,"b":[1,{"c":"x","d":2}]}"#);
    }
}
