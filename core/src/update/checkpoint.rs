//! Peeking into a checkpoint (`ConversationStateStructure`, §5.3) without owning it.
//!
//! The checkpoint itself is opaque and is replayed byte-for-byte; these helpers only read what a
//! client needs from it: context-window usage, outstanding tool calls, and the blob ids it
//! references (the graph the SDK walks to build `pre_fetched_blobs`, §6.3/§6.4). Blob ids come
//! out as zero-copy slices of the input.

use bytes::Bytes;
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::conversation_turn_structure::Turn;
use prost::Message;

use super::DecodeError;

/// What a client needs to know about a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointSummary {
    /// `token_details.used_tokens`: tokens occupying the model context (`None` when the
    /// checkpoint carries no `token_details`, as the very first one may not).
    pub used_tokens: Option<u32>,
    /// `token_details.max_tokens`: the context window (`None` without `token_details`).
    pub max_tokens: Option<u32>,
    /// Tool calls still outstanding; non-empty while a tool batch is pending.
    pub pending_tool_calls: Vec<String>,
    /// The blob ids the checkpoint references directly, in field order (`file_states` by key).
    pub blobs: Vec<BlobRef>,
}

impl CheckpointSummary {
    /// The referenced blob ids without their kinds.
    pub fn blob_ids(&self) -> impl Iterator<Item = &Bytes> {
        self.blobs.iter().map(|b| &b.id)
    }
}

/// A reference to a blob: its id (32 bytes = SHA-256 of the blob) and what the blob contains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The blob id as found in the referencing message.
    pub id: Bytes,
    /// What the referenced blob holds, which tells [`blob_references`] how to walk it.
    pub kind: BlobKind,
}

/// The content of a blob, per the reference table of §5.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A serialized `ConversationStateStructure` (`UserMessage.conversation_state_blob_id`).
    ConversationState,
    /// A serialized `ConversationTurnStructure` (`turns[]`).
    Turn,
    /// A UTF-8 JSON model message (`root_prompt_messages_json[]`, summary archive messages).
    JsonMessage,
    /// A serialized `TodoItem`.
    Todo,
    /// A serialized `ConversationSummary`.
    Summary,
    /// A serialized `ConversationPlan`.
    Plan,
    /// A serialized `ConversationSummaryArchive`.
    SummaryArchive,
    /// A serialized `FileState` (`file_states` values).
    FileState,
    /// UTF-8 text (file contents, user message text).
    Text,
    /// A serialized `UserMessage`.
    UserMessage,
    /// A serialized `ConversationStep`.
    Step,
    /// A serialized `ShellCommand`.
    ShellCommand,
    /// A serialized `ShellOutput`.
    ShellOutput,
}

/// Decodes the checkpoint bytes of a [`super::ServerEvent::Checkpoint`] and summarises them.
pub fn checkpoint_summary(checkpoint: &Bytes) -> Result<CheckpointSummary, DecodeError> {
    let state = pb::ConversationStateStructure::decode(checkpoint.clone())
        .map_err(|e| DecodeError::Blob("ConversationStateStructure", e))?;
    let (used_tokens, max_tokens) = match &state.token_details {
        Some(t) => (Some(t.used_tokens), Some(t.max_tokens)),
        None => (None, None),
    };
    let blobs = state_refs(&state);
    Ok(CheckpointSummary {
        used_tokens,
        max_tokens,
        pending_tool_calls: state.pending_tool_calls,
        blobs,
    })
}

/// The blob ids that the blob `data` of kind `kind` references in turn (one step of the graph
/// walk of §5.3). Leaf kinds (text, JSON, steps, todos, …) reference nothing.
pub fn blob_references(kind: BlobKind, data: &Bytes) -> Result<Vec<BlobRef>, DecodeError> {
    let mut out = Vec::new();
    match kind {
        BlobKind::ConversationState => {
            let state = pb::ConversationStateStructure::decode(data.clone())
                .map_err(|e| DecodeError::Blob("ConversationStateStructure", e))?;
            out = state_refs(&state);
        }
        BlobKind::Turn => {
            let turn = pb::ConversationTurnStructure::decode(data.clone())
                .map_err(|e| DecodeError::Blob("ConversationTurnStructure", e))?;
            match turn.turn {
                Some(Turn::AgentConversationTurn(t)) => {
                    push(&mut out, BlobKind::UserMessage, t.user_message);
                    extend(&mut out, BlobKind::Step, t.steps);
                }
                Some(Turn::ShellConversationTurn(t)) => {
                    push(&mut out, BlobKind::ShellCommand, t.shell_command);
                    push(&mut out, BlobKind::ShellOutput, t.shell_output);
                }
                None => {}
            }
        }
        BlobKind::UserMessage => {
            let m = pb::UserMessage::decode(data.clone())
                .map_err(|e| DecodeError::Blob("UserMessage", e))?;
            extend(&mut out, BlobKind::Text, m.text_blob_id);
            extend(&mut out, BlobKind::Text, m.rich_text_blob_id);
            push(
                &mut out,
                BlobKind::ConversationState,
                m.conversation_state_blob_id,
            );
        }
        BlobKind::SummaryArchive => {
            let a = pb::ConversationSummaryArchive::decode(data.clone())
                .map_err(|e| DecodeError::Blob("ConversationSummaryArchive", e))?;
            extend(&mut out, BlobKind::JsonMessage, a.summarized_messages);
            push(&mut out, BlobKind::JsonMessage, a.summary_message);
        }
        BlobKind::JsonMessage
        | BlobKind::Todo
        | BlobKind::Summary
        | BlobKind::Plan
        | BlobKind::FileState
        | BlobKind::Text
        | BlobKind::Step
        | BlobKind::ShellCommand
        | BlobKind::ShellOutput => {}
    }
    Ok(out)
}

/// Direct references of a conversation state. Empty ids (an unset `bytes`) are skipped.
fn state_refs(state: &pb::ConversationStateStructure) -> Vec<BlobRef> {
    let mut out = Vec::new();
    extend(
        &mut out,
        BlobKind::JsonMessage,
        state.root_prompt_messages_json.iter().cloned(),
    );
    extend(&mut out, BlobKind::Turn, state.turns.iter().cloned());
    extend(&mut out, BlobKind::Todo, state.todos.iter().cloned());
    extend(&mut out, BlobKind::Summary, state.summary.clone());
    extend(&mut out, BlobKind::Plan, state.plan.clone());
    extend(
        &mut out,
        BlobKind::SummaryArchive,
        state.summary_archive.clone(),
    );
    let mut file_states: Vec<_> = state.file_states.iter().collect();
    file_states.sort_by(|a, b| a.0.cmp(b.0));
    extend(
        &mut out,
        BlobKind::FileState,
        file_states.into_iter().map(|(_, id)| id.clone()),
    );
    let mut files_v2: Vec<_> = state.file_states_v2.iter().collect();
    files_v2.sort_by(|a, b| a.0.cmp(b.0));
    for (_, f) in files_v2 {
        extend(&mut out, BlobKind::Text, f.content.clone());
        extend(&mut out, BlobKind::Text, f.initial_content.clone());
    }
    extend(
        &mut out,
        BlobKind::SummaryArchive,
        state.summary_archives.iter().cloned(),
    );
    out
}

fn push(out: &mut Vec<BlobRef>, kind: BlobKind, id: Bytes) {
    if !id.is_empty() {
        out.push(BlobRef { id, kind });
    }
}

fn extend(out: &mut Vec<BlobRef>, kind: BlobKind, ids: impl IntoIterator<Item = Bytes>) {
    for id in ids {
        push(out, kind, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Bytes {
        Bytes::from(vec![n; 32])
    }

    fn refs(kind: BlobKind, msg: &impl Message) -> Vec<(u8, BlobKind)> {
        let data = Bytes::from(msg.encode_to_vec());
        let found = blob_references(kind, &data).unwrap_or_else(|e| panic!("{e}"));
        found.iter().map(|r| (r.id[0], r.kind)).collect()
    }

    #[test]
    fn blob_references_walk_turns_user_messages_and_archives() {
        let agent_turn = pb::ConversationTurnStructure {
            turn: Some(Turn::AgentConversationTurn(
                pb::AgentConversationTurnStructure {
                    user_message: id(1),
                    steps: vec![id(2)],
                    ..Default::default()
                },
            )),
        };
        assert_eq!(
            refs(BlobKind::Turn, &agent_turn),
            [(1, BlobKind::UserMessage), (2, BlobKind::Step)]
        );
        let shell_turn = pb::ConversationTurnStructure {
            turn: Some(Turn::ShellConversationTurn(
                pb::ShellConversationTurnStructure {
                    shell_command: id(3),
                    shell_output: id(4),
                },
            )),
        };
        assert_eq!(
            refs(BlobKind::Turn, &shell_turn),
            [(3, BlobKind::ShellCommand), (4, BlobKind::ShellOutput)]
        );
        let user = pb::UserMessage {
            text: "hi".into(),
            text_blob_id: Some(id(5)),
            conversation_state_blob_id: id(6),
            ..Default::default()
        };
        assert_eq!(
            refs(BlobKind::UserMessage, &user),
            [(5, BlobKind::Text), (6, BlobKind::ConversationState)]
        );
        let archive = pb::ConversationSummaryArchive {
            summarized_messages: vec![id(7)],
            summary_message: id(8),
            ..Default::default()
        };
        assert_eq!(
            refs(BlobKind::SummaryArchive, &archive),
            [(7, BlobKind::JsonMessage), (8, BlobKind::JsonMessage)]
        );
        let state = pb::ConversationStateStructure {
            turns: vec![id(9)],
            ..Default::default()
        };
        assert_eq!(
            refs(BlobKind::ConversationState, &state),
            [(9, BlobKind::Turn)]
        );
        // Leaves are not decoded at all.
        let text = Bytes::from_static(b"not protobuf \xff");
        assert_eq!(blob_references(BlobKind::Text, &text), Ok(vec![]));
    }
}
