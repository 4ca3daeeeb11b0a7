//! Rebuilding a conversation from a replayed `conversation_state` (spec §5.3, §6.3, §9.15).
//!
//! The state references blobs by SHA-256 id; the [`Loader`] resolves them from
//! `pre_fetched_blobs` first and asks the client (`get_blob_args`) for the rest, level by level
//! (state → turns → user messages and steps → text blobs), verifying every hash. A blob the
//! client does not have ends the run with `internal` `"Blob not found: <hex>"`.

use std::collections::HashMap;

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use prost::Message as _;
use sha2::{Digest, Sha256};

use super::brain::History;

/// A blob id (normally 32 bytes; whatever bytes the state holds are used as an id).
pub(crate) type BlobId = Bytes;

/// SHA-256 of `data`, as a blob id.
pub(crate) fn blob_id(data: &[u8]) -> BlobId {
    Bytes::copy_from_slice(&Sha256::digest(data))
}

/// What a referenced blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobKind {
    /// A JSON model message of `root_prompt_messages_json`.
    RootJson,
    /// A `ConversationTurnStructure`.
    Turn,
    /// A `UserMessage`.
    UserMessage,
    /// A `ConversationStep`.
    Step,
    /// UTF-8 text (`UserMessage.text_blob_id`).
    Text,
}

/// Why loading failed; both end the run with `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LoadError {
    /// The client has no such blob.
    #[error("Blob not found: {0}")]
    NotFound(String),
    /// The client returned bytes whose SHA-256 is not the id.
    #[error("Blob hash mismatch: {0}")]
    HashMismatch(String),
    /// The blob is not the message its reference says.
    #[error("Malformed blob {0}: {1}")]
    Malformed(String, String),
}

/// Resolves every blob a conversation state references.
#[derive(Debug)]
pub(crate) struct Loader {
    state: pb::ConversationStateStructure,
    prefetched: HashMap<BlobId, Bytes>,
    resolved: HashMap<BlobId, Bytes>,
    missing: Vec<(BlobId, BlobKind)>,
    outstanding: usize,
    /// Blobs taken from `pre_fetched_blobs`.
    pub(crate) from_prefetch: u64,
}

impl Loader {
    /// Starts resolving `state` with the client's `pre_fetched_blobs`.
    pub(crate) fn new(
        state: pb::ConversationStateStructure,
        prefetched: &[pb::PreFetchedBlob],
    ) -> Result<Self, LoadError> {
        let mut l = Self {
            state,
            prefetched: prefetched
                .iter()
                .map(|b| (b.id.clone(), b.value.clone()))
                .collect(),
            resolved: HashMap::new(),
            missing: Vec::new(),
            outstanding: 0,
            from_prefetch: 0,
        };
        let roots: Vec<BlobId> = l.state.root_prompt_messages_json.clone();
        for id in roots {
            l.want(id, BlobKind::RootJson)?;
        }
        let turns: Vec<BlobId> = l.state.turns.clone();
        for id in turns {
            l.want(id, BlobKind::Turn)?;
        }
        Ok(l)
    }

    /// The decoded state being loaded.
    pub(crate) fn state(&self) -> &pb::ConversationStateStructure {
        &self.state
    }

    /// Blobs to request from the client now (each becomes outstanding).
    pub(crate) fn take_missing(&mut self) -> Vec<(BlobId, BlobKind)> {
        let m = std::mem::take(&mut self.missing);
        self.outstanding += m.len();
        m
    }

    /// Every referenced blob is resolved.
    pub(crate) fn is_done(&self) -> bool {
        self.outstanding == 0 && self.missing.is_empty()
    }

    /// The client's answer to a `get_blob_args` for `id`.
    pub(crate) fn got(
        &mut self,
        id: BlobId,
        kind: BlobKind,
        data: Option<Bytes>,
    ) -> Result<(), LoadError> {
        self.outstanding = self.outstanding.saturating_sub(1);
        let data = data.ok_or_else(|| LoadError::NotFound(hex::encode(&id)))?;
        if blob_id(&data) != id {
            return Err(LoadError::HashMismatch(hex::encode(&id)));
        }
        self.resolve(id, kind, data)
    }

    fn want(&mut self, id: BlobId, kind: BlobKind) -> Result<(), LoadError> {
        if self.resolved.contains_key(&id) || self.missing.iter().any(|(m, _)| *m == id) {
            return Ok(());
        }
        match self.prefetched.get(&id) {
            Some(data) if blob_id(data) == id => {
                let data = data.clone();
                self.from_prefetch += 1;
                self.resolve(id, kind, data)
            }
            _ => {
                self.missing.push((id, kind));
                Ok(())
            }
        }
    }

    fn resolve(&mut self, id: BlobId, kind: BlobKind, data: Bytes) -> Result<(), LoadError> {
        let malformed =
            |e: prost::DecodeError| LoadError::Malformed(hex::encode(&id), e.to_string());
        match kind {
            BlobKind::Turn => {
                let t = pb::ConversationTurnStructure::decode(data.clone()).map_err(malformed)?;
                if let Some(pb::conversation_turn_structure::Turn::AgentConversationTurn(a)) =
                    t.turn
                {
                    self.want(a.user_message.clone(), BlobKind::UserMessage)?;
                    for s in a.steps {
                        self.want(s, BlobKind::Step)?;
                    }
                }
            }
            BlobKind::UserMessage => {
                let m = pb::UserMessage::decode(data.clone()).map_err(malformed)?;
                if let Some(t) = m.text_blob_id.filter(|_| m.text.is_empty()) {
                    self.want(t, BlobKind::Text)?;
                }
            }
            BlobKind::Step => {
                pb::ConversationStep::decode(data.clone()).map_err(malformed)?;
            }
            BlobKind::RootJson | BlobKind::Text => {}
        }
        self.resolved.insert(id, data);
        Ok(())
    }

    /// The conversation so far. With `split_last`, the last agent turn is left out of the
    /// history and its user message returned (a `resume_action` redoes that turn).
    pub(crate) fn history(&self, split_last: bool) -> (History, Option<pb::UserMessage>) {
        let mut h = History::default();
        for id in &self.state.root_prompt_messages_json {
            if let Some(b) = self.resolved.get(id) {
                root_message(&mut h, b);
            }
        }
        let mut turns: Vec<&BlobId> = self.state.turns.iter().collect();
        let last = if split_last { turns.pop() } else { None };
        for id in turns {
            let Some((user, steps)) = self.turn(id) else {
                continue;
            };
            h.user_messages.push(self.user_text(&user));
            for step in steps {
                match step.message {
                    Some(pb::conversation_step::Message::AssistantMessage(a)) => {
                        h.assistant_messages.push(a.text);
                    }
                    Some(pb::conversation_step::Message::ToolCall(tc)) => {
                        if let Some(r) = tool_result_text(&tc) {
                            h.tool_results.push(r);
                        }
                    }
                    Some(pb::conversation_step::Message::ThinkingMessage(_)) | None => {}
                }
            }
        }
        let last_user = last.and_then(|id| self.turn(id)).map(|(u, _)| u);
        (h, last_user)
    }

    /// The text of a user message (inline, or from its text blob).
    pub(crate) fn user_text(&self, m: &pb::UserMessage) -> String {
        if !m.text.is_empty() {
            return m.text.clone();
        }
        m.text_blob_id
            .as_ref()
            .and_then(|id| self.resolved.get(id))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    fn turn(&self, id: &BlobId) -> Option<(pb::UserMessage, Vec<pb::ConversationStep>)> {
        let t = pb::ConversationTurnStructure::decode(self.resolved.get(id)?.clone()).ok()?;
        let Some(pb::conversation_turn_structure::Turn::AgentConversationTurn(a)) = t.turn else {
            return None;
        };
        let user = self
            .resolved
            .get(&a.user_message)
            .and_then(|b| pb::UserMessage::decode(b.clone()).ok())
            .unwrap_or_default();
        let steps = a
            .steps
            .iter()
            .filter_map(|s| self.resolved.get(s))
            .filter_map(|b| pb::ConversationStep::decode(b.clone()).ok())
            .collect();
        Some((user, steps))
    }
}

/// Adds one root prompt JSON message (`{"role", "content"}`, AI-SDK style) to the history.
fn root_message(h: &mut History, blob: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(blob) else {
        return;
    };
    let text = match &v["content"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| {
                p["text"]
                    .as_str()
                    .or_else(|| p["output"]["value"].as_str())
                    .or_else(|| p["result"].as_str())
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    match v["role"].as_str() {
        Some("system") => h.system.push(text),
        Some("user") => h.user_messages.push(text),
        Some("assistant") => h.assistant_messages.push(text),
        Some("tool") => h.tool_results.push(text),
        _ => {}
    }
}

/// The result text of a recorded tool call, if it has a result.
pub(crate) fn tool_result_text(tc: &pb::ToolCall) -> Option<String> {
    let Some(pb::tool_call::Tool::McpToolCall(m)) = &tc.tool else {
        return None;
    };
    use pb::mcp_tool_result::Result as R;
    Some(match m.result.as_ref()?.result.as_ref()? {
        R::Success(s) => mcp_content_text(&s.content),
        R::Error(e) => format!("error: {}", e.error),
        R::Rejected(r) => format!("rejected: {}", r.reason),
        R::PermissionDenied(p) => format!("permission denied: {}", p.error),
    })
}

/// The concatenated text items of an MCP result.
pub(crate) fn mcp_content_text(items: &[pb::McpToolResultContentItem]) -> String {
    items
        .iter()
        .filter_map(|c| match &c.content {
            Some(pb::mcp_tool_result_content_item::Content::Text(t)) => Some(t.text.clone()),
            Some(pb::mcp_tool_result_content_item::Content::Image(i)) => {
                Some(format!("[image {} bytes]", i.data.len()))
            }
            None => None,
        })
        .collect::<Vec<_>>()
        .join("")
}
