//! The user message of a new run, built from a whole chat request.
//!
//! Used when no parked upstream stream can take the request (a new conversation, a checkpoint
//! from another account, an expired park, results for unknown tool ids): Cursor then gets one
//! user message, so everything the model must know goes into its text.
//!
//! - The **last user message** becomes the message proper: its text parts (joined by blank
//!   lines), its images as attachments, and its tool results rendered as `<tool_result>` blocks
//!   (no parked stream exists to take them as `mcp_result`s).
//! - **Earlier messages** (user and assistant text, assistant tool calls, tool results,
//!   mid-conversation system notes) come first, flattened into a transcript between
//!   `<conversation_history>` tags, oldest first. Reasoning is left out; images there are named,
//!   not attached.
//! - Messages **after** the last user message (an assistant prefill, a trailing system note)
//!   follow the message text in the same tagged form.
//!
//! When the request has no history and no tool results, the text is the user's text verbatim.
//!
//! [`continuation_input`] renders only the messages a replayed checkpoint does not cover, the
//! same way (see [`crate::conversation`]).
//! A later issue replaces this lossy flattening with a seeded conversation state.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::tools::ToolResultInput;
use crate::chat::{ChatMessage, ChatRequest, Part, Role};
use crate::client::ImageAttachment;
use crate::ids::format_uuid;

/// The user message of one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunInput {
    /// `UserMessage.text`.
    pub text: String,
    /// Images sent with it (`selected_context.selected_images`).
    pub images: Vec<ImageAttachment>,
}

const HISTORY_INTRO: &str = "Earlier messages of this conversation, oldest first, with the \
tool calls made and their results. Continue the conversation from them.";

const SINCE_INTRO: &str = "Messages of this conversation since your last reply, oldest first, \
with the tool calls made and their results. Continue the conversation from them.";

/// The user message for a new run of `req` (see the module docs).
pub fn run_input(req: &ChatRequest) -> RunInput {
    render_input(
        &req.messages,
        &tool_names(&req.messages),
        HISTORY_INTRO,
        None,
    )
}

/// [`run_input`] with the flattened history bounded to `max_history_bytes`: when the earlier
/// messages do not fit, the oldest are left out whole and a marker says how many and why, so the
/// model (and whoever reads the transcript) knows. The current message is never cut.
pub fn run_input_bounded(req: &ChatRequest, max_history_bytes: usize) -> RunInput {
    render_input(
        &req.messages,
        &tool_names(&req.messages),
        HISTORY_INTRO,
        Some(max_history_bytes),
    )
}

/// The user message for a run that replays a checkpoint covering `messages[..new.start]`: only
/// `messages[new]` is rendered, the same way [`run_input`] renders a whole request (the last
/// user message proper, earlier new messages as a tagged transcript before it, trailing ones
/// after it), so a plain follow-up question is sent verbatim. Tool results are named from tool
/// calls anywhere in `messages`, including the part the checkpoint covers. An out-of-bounds
/// range is clamped.
pub fn continuation_input(messages: &[ChatMessage], new: Range<usize>) -> RunInput {
    let end = new.end.min(messages.len());
    let start = new.start.min(end);
    render_input(
        &messages[start..end],
        &tool_names(messages),
        SINCE_INTRO,
        None,
    )
}

/// The user message for `messages` (see the module docs); `intro` heads the transcript of the
/// messages before the last user message.
fn render_input(
    messages: &[ChatMessage],
    names: &HashMap<&str, &str>,
    intro: &str,
    max_history_bytes: Option<usize>,
) -> RunInput {
    let last_user = messages.iter().rposition(|m| m.role == Role::User);
    let (history, current, trailing) = match last_user {
        Some(i) => (&messages[..i], Some(&messages[i]), &messages[i + 1..]),
        None => (messages, None, &messages[..0]),
    };
    // Sections joined by blank lines; the user's own text is never trimmed.
    let mut sections: Vec<String> = Vec::new();
    if !history.is_empty() {
        let mut h = format!("<conversation_history>\n{intro}\n\n");
        let rendered: Vec<String> = history
            .iter()
            .map(|m| {
                let mut one = String::new();
                render_message(&mut one, m, names);
                one
            })
            .collect();
        let total: usize = rendered.iter().map(String::len).sum();
        let mut skip = 0;
        if let Some(max) = max_history_bytes {
            let mut kept = total;
            while kept > max && skip < rendered.len() {
                kept -= rendered[skip].len();
                skip += 1;
            }
            if skip > 0 {
                let omitted: usize = rendered[..skip].iter().map(String::len).sum();
                let _ = writeln!(
                    h,
                    "[{skip} earlier message(s), {omitted} bytes, omitted: the history exceeds \
                     the proxy's configured limit of {max} bytes]\n"
                );
            }
        }
        for one in &rendered[skip..] {
            h.push_str(one);
        }
        h.push_str("</conversation_history>");
        sections.push(h);
    }
    let mut images = Vec::new();
    if let Some(m) = current {
        for part in &m.content {
            match part {
                Part::Text(t) => sections.push(t.clone()),
                Part::Image { media_type, data } => {
                    images.push(attachment(media_type, data));
                }
                Part::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let mut block = String::new();
                    render_tool_result(&mut block, tool_use_id, content, *is_error, names);
                    for p in content {
                        if let Part::Image { media_type, data } = p {
                            images.push(attachment(media_type, data));
                        }
                    }
                    block.pop();
                    sections.push(block);
                }
                // The client echoing an assistant part inside a user message: keep it visible.
                other => sections.push(part_as_text(other)),
            }
        }
    }
    if !trailing.is_empty() {
        let mut t = String::new();
        for m in trailing {
            render_message(&mut t, m, names);
        }
        t.pop();
        sections.push(t);
    }
    if current.is_none() && !history.is_empty() {
        sections.push("Continue.".to_owned());
    }
    RunInput {
        text: sections.join("\n\n"),
        images,
    }
}

/// Claude Code's attribution block (`x-anthropic-billing-header: cc_version=…;`): billing
/// metadata for Anthropic's API, meaningless to Cursor's model, so never sent upstream.
const BILLING_HEADER: &str = "x-anthropic-billing-header:";

/// The system prompt: the request's system pieces joined by blank lines (`None` when there is
/// none), without Claude Code's billing block. Mid-conversation system notes stay in the
/// transcript instead.
pub fn system_prompt(req: &ChatRequest) -> Option<String> {
    let pieces: Vec<&str> = req
        .system
        .iter()
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty() && !s.trim_start().starts_with(BILLING_HEADER))
        .collect();
    (!pieces.is_empty()).then(|| pieces.join("\n\n"))
}

/// The tool results of the last message, when it is a user message carrying some: what a
/// parked turn needs to resume (`super::Turn::handle_tool_results`).
pub fn last_tool_results(req: &ChatRequest) -> Vec<ToolResultInput> {
    let Some(last) = req.messages.last().filter(|m| m.role == Role::User) else {
        return Vec::new();
    };
    last.content
        .iter()
        .filter_map(|p| match p {
            Part::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Some(ToolResultInput {
                tool_use_id: tool_use_id.clone(),
                content: content.clone(),
                is_error: *is_error,
            }),
            _ => None,
        })
        .collect()
}

/// A rough input-token estimate for `chars` characters of prompt (4 per token, never 0).
pub fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// A part as plain text (images by description; reasoning as-is).
pub(crate) fn part_as_text(part: &Part) -> String {
    let mut s = String::new();
    match part {
        Part::Text(t) => s.push_str(t),
        Part::Image { media_type, data } => {
            let kind = match media_type.as_str() {
                "" => ImageAttachment::sniff_mime_type(data).unwrap_or("unknown type"),
                m => m,
            };
            let _ = write!(s, "[image: {kind}, {} bytes]", data.len());
        }
        Part::ToolUse { id, name, input } => {
            let args = serde_json::Value::Object(input.clone());
            let _ = write!(
                s,
                "<tool_call id=\"{id}\" name=\"{name}\">{args}</tool_call>"
            );
        }
        Part::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => render_tool_result(&mut s, tool_use_id, content, *is_error, &HashMap::new()),
        Part::Thinking { text, .. } => s.push_str(text),
    }
    s
}

fn render_message(out: &mut String, m: &ChatMessage, names: &HashMap<&str, &str>) {
    let tag = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    };
    let _ = writeln!(out, "<{tag}>");
    for part in &m.content {
        match part {
            // Reasoning is the model's scratchpad: not part of the transcript.
            Part::Thinking { .. } => continue,
            Part::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => render_tool_result(out, tool_use_id, content, *is_error, names),
            other => {
                out.push_str(&part_as_text(other));
                out.push('\n');
            }
        }
    }
    let _ = writeln!(out, "</{tag}>");
}

fn render_tool_result(
    out: &mut String,
    id: &str,
    content: &[Part],
    is_error: bool,
    names: &HashMap<&str, &str>,
) {
    let _ = write!(out, "<tool_result id=\"{id}\"");
    if let Some(name) = names.get(id) {
        let _ = write!(out, " name=\"{name}\"");
    }
    if is_error {
        out.push_str(" error=\"true\"");
    }
    out.push_str(">\n");
    for p in content {
        out.push_str(&part_as_text(p));
        out.push('\n');
    }
    out.push_str("</tool_result>\n");
}

/// Tool-use id → tool name, from every assistant tool call in the conversation.
fn tool_names(messages: &[ChatMessage]) -> HashMap<&str, &str> {
    messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolUse { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect()
}

/// An inline image attachment. Its UUID is derived from the image bytes (core has no entropy,
/// and the same image then keeps the same id).
fn attachment(media_type: &str, data: &bytes::Bytes) -> ImageAttachment {
    let digest = Sha256::digest(data);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    let mime_type = if media_type.is_empty() {
        ImageAttachment::sniff_mime_type(data)
            .unwrap_or("application/octet-stream")
            .to_owned()
    } else {
        media_type.to_owned()
    };
    ImageAttachment {
        uuid: format_uuid(b, 4),
        mime_type,
        data: data.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_history_drops_the_oldest_messages_whole_with_a_marker() {
        let text = |role, t: &str| ChatMessage {
            role,
            content: vec![Part::Text(t.to_owned())],
        };
        let req = ChatRequest {
            messages: vec![
                text(Role::User, &"a".repeat(500)),
                text(Role::Assistant, &"b".repeat(500)),
                text(Role::User, "recent question"),
                text(Role::Assistant, "recent answer"),
                text(Role::User, "now"),
            ],
            ..ChatRequest::default()
        };
        let unbounded = run_input(&req).text;
        assert!(unbounded.contains(&"a".repeat(500)));
        let bounded = run_input_bounded(&req, 200).text;
        assert!(
            !bounded.contains("aaaa") && !bounded.contains("bbbb"),
            "{bounded}"
        );
        assert!(bounded.contains("[2 earlier message(s)"), "{bounded}");
        assert!(bounded.contains("recent question") && bounded.contains("recent answer"));
        assert!(bounded.ends_with("now"));
        assert_eq!(run_input_bounded(&req, 1 << 20).text, unbounded);
    }

    #[test]
    fn the_billing_block_never_reaches_the_system_prompt() {
        let req = ChatRequest {
            system: vec![
                "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli;".into(),
                "You are Claude Code.".into(),
            ],
            ..ChatRequest::default()
        };
        assert_eq!(system_prompt(&req).as_deref(), Some("You are Claude Code."));
    }
    use bytes::Bytes;
    use serde_json::json;

    fn msg(role: Role, content: Vec<Part>) -> ChatMessage {
        ChatMessage { role, content }
    }

    fn text(t: &str) -> Part {
        Part::Text(t.into())
    }

    fn req(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            messages,
            ..Default::default()
        }
    }

    #[test]
    fn a_single_user_message_is_sent_verbatim() {
        let r = req(vec![msg(Role::User, vec![text("Hello"), text("there")])]);
        assert_eq!(run_input(&r).text, "Hello\n\nthere");
    }

    #[test]
    fn history_is_a_delimited_transcript_before_the_last_message() {
        let input = json!({"path": "a.txt"});
        let serde_json::Value::Object(input) = input else {
            unreachable!()
        };
        let r = req(vec![
            msg(Role::User, vec![text("read a.txt")]),
            msg(
                Role::Assistant,
                vec![
                    Part::Thinking {
                        text: "secret plan".into(),
                        signature: None,
                    },
                    text("Reading."),
                    Part::ToolUse {
                        id: "toolu_1".into(),
                        name: "Read".into(),
                        input,
                    },
                ],
            ),
            msg(
                Role::User,
                vec![Part::ToolResult {
                    tool_use_id: "toolu_1".into(),
                    content: vec![text("file body")],
                    is_error: false,
                }],
            ),
            msg(Role::System, vec![text("note: be brief")]),
            msg(Role::Assistant, vec![text("It says: file body")]),
            msg(Role::User, vec![text("thanks, now summarise")]),
        ]);
        let t = run_input(&r).text;
        let expected = "<conversation_history>\n".to_owned()
            + HISTORY_INTRO
            + "\n\n<user>\nread a.txt\n</user>\n<assistant>\nReading.\n\
               <tool_call id=\"toolu_1\" name=\"Read\">{\"path\":\"a.txt\"}</tool_call>\n\
               </assistant>\n<user>\n<tool_result id=\"toolu_1\" name=\"Read\">\nfile body\n\
               </tool_result>\n</user>\n<system>\nnote: be brief\n</system>\n<assistant>\n\
               It says: file body\n</assistant>\n</conversation_history>\n\n\
               thanks, now summarise";
        assert_eq!(t, expected);
        assert!(!t.contains("secret plan"));
    }

    #[test]
    fn tool_results_and_images_of_the_last_message_are_kept() {
        let png = Bytes::from_static(b"\x89PNG\r\n\x1a\nrest");
        let r = req(vec![
            msg(
                Role::Assistant,
                vec![Part::ToolUse {
                    id: "t1".into(),
                    name: "Shot".into(),
                    input: Default::default(),
                }],
            ),
            msg(
                Role::User,
                vec![
                    Part::ToolResult {
                        tool_use_id: "t1".into(),
                        content: vec![
                            text("captured"),
                            Part::Image {
                                media_type: String::new(),
                                data: png.clone(),
                            },
                        ],
                        is_error: true,
                    },
                    text("what do you see?"),
                ],
            ),
        ]);
        let input = run_input(&r);
        assert!(input.text.ends_with(
            "<tool_result id=\"t1\" name=\"Shot\" error=\"true\">\ncaptured\n\
             [image: image/png, 12 bytes]\n</tool_result>\n\nwhat do you see?"
        ));
        assert_eq!(input.images.len(), 1);
        assert_eq!(input.images[0].mime_type, "image/png");
        assert_eq!(input.images[0].uuid, attachment("", &png).uuid);
        assert_eq!(&input.images[0].uuid[14..15], "4");
        let results = last_tool_results(&r);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].tool_use_id, "t1");
        assert!(results[0].is_error);
    }

    #[test]
    fn trailing_messages_follow_and_a_missing_user_message_continues() {
        let r = req(vec![
            msg(Role::User, vec![text("hi")]),
            msg(Role::Assistant, vec![text("Sure, ")]),
        ]);
        assert_eq!(
            run_input(&r).text,
            "hi\n\n<assistant>\nSure, \n</assistant>"
        );
        let r = req(vec![msg(Role::System, vec![text("only a note")])]);
        assert!(
            run_input(&r)
                .text
                .ends_with("</conversation_history>\n\nContinue.")
        );
        assert_eq!(run_input(&req(vec![])).text, "");
        assert!(last_tool_results(&req(vec![])).is_empty());
    }

    #[test]
    fn continuation_renders_only_the_new_messages_and_names_earlier_tools() {
        let r = req(vec![
            msg(Role::User, vec![text("old question")]),
            msg(
                Role::Assistant,
                vec![Part::ToolUse {
                    id: "t1".into(),
                    name: "Read".into(),
                    input: Default::default(),
                }],
            ),
            msg(
                Role::User,
                vec![Part::ToolResult {
                    tool_use_id: "t1".into(),
                    content: vec![text("body")],
                    is_error: false,
                }],
            ),
            msg(Role::Assistant, vec![text("old answer")]),
            msg(Role::User, vec![text("new question")]),
        ]);
        assert_eq!(continuation_input(&r.messages, 4..5).text, "new question");
        assert_eq!(
            continuation_input(&r.messages, 2..3).text,
            "<tool_result id=\"t1\" name=\"Read\">\nbody\n</tool_result>"
        );
        let t = continuation_input(&r.messages, 2..9).text;
        let head = format!("<conversation_history>\n{SINCE_INTRO}\n\n<user>");
        assert!(t.starts_with(&head));
        assert!(t.ends_with("</conversation_history>\n\nnew question"));
        assert!(!t.contains("old question"));
        assert_eq!(continuation_input(&r.messages, 7..9).text, "");
    }

    #[test]
    fn system_prompt_joins_non_empty_pieces() {
        let r = ChatRequest {
            system: vec!["a".into(), " ".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(system_prompt(&r).as_deref(), Some("a\n\nb"));
        assert_eq!(system_prompt(&ChatRequest::default()), None);
        assert_eq!(estimate_tokens(0), 1);
        assert_eq!(estimate_tokens(9), 3);
    }
}
