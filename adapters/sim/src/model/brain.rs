//! The deterministic "model": reads the user's text, decides on tool calls, and writes an
//! answer that proves what it was given (history, tools, tool results).
//!
//! # Prompt syntax
//!
//! Commands may appear anywhere in the user text, several per message:
//!
//! - `call <tool>(<json object>)` — call a declared MCP tool (matched by wire `name` or bare
//!   `tool_name`) with those arguments; `call <tool>()` passes `{}`.
//! - `use tool <tool>` — the same with `{}` arguments.
//! - `native <kind>(<text>)` — ask the client to run a built-in tool (`shell`, `shell_stream`,
//!   `read`, `write`, `delete`, `ls`, `grep`, `fetch`, `diagnostics`, `background_shell`, …;
//!   see [`super::native::NATIVE_KINDS`]); `<text>` is the command, path, pattern or url.
//! - `then` — starts a new round: the calls after it are made only once every result of the
//!   previous round has arrived (`call a({}) then call b({})`).
//! - `think` (anywhere) — emit thinking deltas first (also when the model id ends in
//!   `-thinking`).
//! - `lorem <n>` — append `n` seeded filler words to the answer (for long outputs).
//!
//! Calls in one round are issued back-to-back before the model blocks. A call of an undeclared
//! tool is not made; the answer says `unknown tool: <name>`.
//!
//! # Answer
//!
//! The final answer is line-oriented, so tests can assert with `contains`:
//!
//! ```text
//! user turns: <u>; tool results: <r>; last user message: "<text>"
//! previous user messages: ["<first>", "<second>"]      (only when there is history)
//! system prompt: "<text>"                              (if the client gave one)
//! result of <tool>: <text>                              (each result of this turn, in order)
//! tools available: <n>; model: <model id>
//! <lorem words>                                         (if asked)
//! <seeded sign-off>.
//! ```
//!
//! `<u>` counts user turns in the whole conversation (rebuilt history + this one), `<r>` every
//! tool result (history + this turn).

use serde_json::{Map, Value as Json};

use super::native::{NativeKind, kind_by_name};
use super::rng::Rng;
use cursorpool_proto::agent_v1::McpToolDefinition;

/// Everything the model remembers of earlier turns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// System prompts from the root prompt messages.
    pub(crate) system: Vec<String>,
    /// Earlier user messages, oldest first.
    pub(crate) user_messages: Vec<String>,
    /// Earlier assistant texts.
    pub(crate) assistant_messages: Vec<String>,
    /// Earlier tool results (as text).
    pub(crate) tool_results: Vec<String>,
}

/// One call the model decided to make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PlannedCall {
    /// A client-provided tool (exec `mcp_args`).
    Mcp {
        /// The declaration it matched.
        def: McpToolDefinition,
        /// Arguments (a JSON object).
        args: Map<String, Json>,
    },
    /// A built-in tool (a native exec).
    Native {
        /// Which exec kind.
        kind: NativeKind,
        /// Its primary argument.
        arg: String,
    },
}

impl PlannedCall {
    /// The name the answer uses for this call.
    pub(crate) fn display_name(&self) -> String {
        match self {
            PlannedCall::Mcp { def, .. } => def.name.clone(),
            PlannedCall::Native { kind, .. } => kind.name.to_owned(),
        }
    }
}

/// What the model will do this turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Plan {
    /// Emit thinking first.
    pub(crate) think: bool,
    /// Rounds of calls; each round is issued at once and awaited as a whole.
    pub(crate) rounds: Vec<Vec<PlannedCall>>,
    /// Tools asked for but not declared.
    pub(crate) unknown_tools: Vec<String>,
    /// Filler words to append.
    pub(crate) lorem: usize,
}

/// Decides the plan for `text` given the declared `tools` and the model id.
pub(crate) fn plan(text: &str, tools: &[McpToolDefinition], model: &str) -> Plan {
    let mut p = Plan {
        think: text.to_ascii_lowercase().contains("think") || model.ends_with("-thinking"),
        ..Plan::default()
    };
    let mut round: Vec<PlannedCall> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text.is_char_boundary(i) || (i != 0 && is_word(text[..i].chars().last())) {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        if let Some((cmd, used)) = parse_command(rest) {
            match cmd {
                Command::Call { name, args } => match find_tool(tools, &name) {
                    Some(def) => round.push(PlannedCall::Mcp {
                        def: def.clone(),
                        args,
                    }),
                    None => p.unknown_tools.push(name),
                },
                Command::Native { kind, arg } => match kind_by_name(&kind) {
                    Some(kind) => round.push(PlannedCall::Native { kind, arg }),
                    None => p.unknown_tools.push(kind),
                },
                Command::Then => {
                    if !round.is_empty() {
                        p.rounds.push(std::mem::take(&mut round));
                    }
                }
                Command::Lorem(n) => p.lorem = p.lorem.saturating_add(n).min(100_000),
            }
            i += used.max(1);
        } else {
            i += 1;
        }
    }
    if !round.is_empty() {
        p.rounds.push(round);
    }
    p
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

enum Command {
    Call {
        name: String,
        args: Map<String, Json>,
    },
    Native {
        kind: String,
        arg: String,
    },
    Then,
    Lorem(usize),
}

/// Parses one command at the start of `s`; returns it and the bytes consumed.
fn parse_command(s: &str) -> Option<(Command, usize)> {
    if let Some(r) = s.strip_prefix("then") {
        return (!is_word(r.chars().next())).then_some((Command::Then, 4));
    }
    if let Some(r) = s.strip_prefix("lorem ") {
        let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
        let n = digits.parse().ok()?;
        return Some((Command::Lorem(n), 6 + digits.len()));
    }
    if let Some(r) = s.strip_prefix("use tool ") {
        let name = tool_name(r);
        if name.is_empty() {
            return None;
        }
        let used = 9 + name.len();
        return Some((
            Command::Call {
                name,
                args: Map::new(),
            },
            used,
        ));
    }
    if let Some(r) = s.strip_prefix("call ") {
        let name = tool_name(r);
        let after = r[name.len()..].trim_start();
        let ws = r.len() - name.len() - after.len();
        let inner = after.strip_prefix('(')?;
        let (args, used_inner) = parse_args(inner)?;
        let used = 5 + name.len() + ws + 1 + used_inner;
        return Some((Command::Call { name, args }, used));
    }
    if let Some(r) = s.strip_prefix("native ") {
        let kind = tool_name(r);
        let inner = r[kind.len()..].strip_prefix('(')?;
        let end = inner.find(')')?;
        let arg = inner[..end].trim().to_owned();
        let used = 7 + kind.len() + 1 + end + 1;
        return Some((Command::Native { kind, arg }, used));
    }
    None
}

fn tool_name(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
        .collect()
}

/// Parses `<json object>)` or `)`; returns the arguments and the bytes consumed (`)` included).
fn parse_args(s: &str) -> Option<(Map<String, Json>, usize)> {
    let trimmed = s.trim_start();
    let lead = s.len() - trimmed.len();
    if trimmed.starts_with(')') {
        return Some((Map::new(), lead + 1));
    }
    let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Json>();
    let value = stream.next()?.ok()?;
    let consumed = stream.byte_offset();
    let tail = &trimmed[consumed..];
    let tail_trimmed = tail.trim_start();
    if !tail_trimmed.starts_with(')') {
        return None;
    }
    let args = match value {
        Json::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("input".to_owned(), other);
            m
        }
    };
    Some((
        args,
        lead + consumed + (tail.len() - tail_trimmed.len()) + 1,
    ))
}

fn find_tool<'a>(tools: &'a [McpToolDefinition], name: &str) -> Option<&'a McpToolDefinition> {
    tools
        .iter()
        .find(|t| t.name == name)
        .or_else(|| tools.iter().find(|t| t.tool_name == name))
}

/// The thinking text of a turn.
pub(crate) fn thinking_text(history: &History, user_text: &str) -> String {
    format!(
        "The user said \"{}\". I have seen {} earlier user turn(s); let me answer carefully.",
        clip(user_text, 200),
        history.user_messages.len()
    )
}

/// The short text the model writes before a round of calls.
pub(crate) fn round_intro(calls: &[PlannedCall]) -> String {
    let names: Vec<String> = calls.iter().map(PlannedCall::display_name).collect();
    format!("Calling {} tool(s): {}.\n", calls.len(), names.join(", "))
}

/// Inputs to the final answer.
#[derive(Debug)]
pub(crate) struct AnswerInput<'a> {
    /// Rebuilt history.
    pub(crate) history: &'a History,
    /// This turn's user text.
    pub(crate) user_text: &'a str,
    /// Results of this turn's calls: (name, text).
    pub(crate) results: &'a [(String, String)],
    /// Tools declared (run request ∪ request context).
    pub(crate) tools: usize,
    /// Model id.
    pub(crate) model: &'a str,
    /// The plan (for unknown tools and lorem).
    pub(crate) plan: &'a Plan,
    /// The caller's system prompt (`RequestContext.cloud_rule` or a seeded root message).
    pub(crate) system: Option<&'a str>,
}

const SIGN_OFFS: &[&str] = &[
    "Done",
    "That is all",
    "Hope this helps",
    "Over to you",
    "Happy to help",
];

const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

/// The final answer of a turn (see the module docs for the shape).
pub(crate) fn answer(input: &AnswerInput<'_>, rng: &mut Rng) -> String {
    let h = input.history;
    let mut s = format!(
        "user turns: {}; tool results: {}; last user message: \"{}\"\n",
        h.user_messages.len() + 1,
        h.tool_results.len() + input.results.len(),
        clip(input.user_text, 500)
    );
    if !h.user_messages.is_empty() {
        let prev: Vec<String> = h
            .user_messages
            .iter()
            .map(|m| format!("\"{}\"", clip(m, 100)))
            .collect();
        s.push_str(&format!("previous user messages: [{}]\n", prev.join(", ")));
    }
    if let Some(sys) = input.system {
        s.push_str(&format!("system prompt: \"{}\"\n", clip(sys, 200)));
    }
    for (name, text) in input.results {
        s.push_str(&format!("result of {name}: {}\n", clip(text, 500)));
    }
    for name in &input.plan.unknown_tools {
        s.push_str(&format!("unknown tool: {name}\n"));
    }
    s.push_str(&format!(
        "tools available: {}; model: {}\n",
        input.tools, input.model
    ));
    if input.plan.lorem > 0 {
        let words: Vec<&str> = (0..input.plan.lorem)
            .map(|_| LOREM[rng.below(LOREM.len())])
            .collect();
        s.push_str(&words.join(" "));
        s.push('\n');
    }
    s.push_str(SIGN_OFFS[rng.below(SIGN_OFFS.len())]);
    s.push('.');
    s
}

/// Token estimate of a text (≈ 4 characters per token, at least 1 for non-empty text).
pub(crate) fn tokens(s: &str) -> u64 {
    let n = s.chars().count() as u64;
    n.div_ceil(4)
}

/// `s` cut to at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(max).collect();
        c.push('…');
        c
    }
}

/// Splits `s` into chunks of at most `n` characters (on char boundaries).
pub(crate) fn chunks(s: &str, n: usize) -> Vec<String> {
    let n = n.max(1);
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> McpToolDefinition {
        McpToolDefinition {
            name: format!("srv-{name}"),
            provider_identifier: "srv".to_owned(),
            tool_name: name.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_calls_rounds_and_native() {
        let tools = [tool("echo"), tool("add")];
        let p = plan(
            r#"please call echo({"text": "a)b"}) and call srv-add({"a":1}) then native shell_stream(ls -la) use tool nope"#,
            &tools,
            "default",
        );
        assert_eq!(p.rounds.len(), 2);
        assert_eq!(p.rounds[0].len(), 2);
        assert!(matches!(&p.rounds[0][0], PlannedCall::Mcp { def, args }
            if def.tool_name == "echo" && args["text"] == "a)b"));
        assert!(matches!(&p.rounds[1][0], PlannedCall::Native { kind, arg }
            if kind.name == "shell_stream" && arg == "ls -la"));
        assert_eq!(p.unknown_tools, vec!["nope".to_owned()]);
        assert!(!p.think);
    }

    #[test]
    fn thinking_from_prompt_or_model() {
        assert!(plan("think hard", &[], "default").think);
        assert!(plan("hi", &[], "claude-4.5-sonnet-thinking").think);
        assert!(!plan("hi", &[], "default").think);
    }

    #[test]
    fn chunks_respect_chars() {
        assert_eq!(chunks("héllo", 2), vec!["hé", "ll", "o"]);
    }
}
