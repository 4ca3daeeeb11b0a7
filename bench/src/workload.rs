//! The workloads: Anthropic Messages request bodies, identical for every target (the baseline
//! parses the same bytes with cursorpool-core before driving its own run).

use bytes::Bytes;
use serde_json::{Value, json};

/// Claude Code's request as captured (≈ 80 KB: system prompt, 24 tools, history, an image).
const CLAUDE_CODE_REQUEST: &str =
    include_str!("../../core/tests/fixtures/claude_code_request.json");

/// What one request (or round trip) of a cell asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// A one-line question, non-streaming, short answer.
    Short,
    /// `lorem 500`: a streamed answer of ≈ 500 words.
    Stream500,
    /// The ≈ 80 KB Claude Code request (streaming).
    ClaudeCode,
    /// `call get_weather(…)` → `tool_use`, then the `tool_result` → the final answer
    /// (non-streaming; both requests are counted).
    ToolRoundTrip,
}

impl Workload {
    /// Every workload, in report order.
    pub(crate) const ALL: [Workload; 4] = [
        Workload::Short,
        Workload::Stream500,
        Workload::ClaudeCode,
        Workload::ToolRoundTrip,
    ];

    /// The name used in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Short => "short (non-streaming)",
            Workload::Stream500 => "stream ~500 tokens",
            Workload::ClaudeCode => "Claude Code 80 KB (streaming)",
            Workload::ToolRoundTrip => "tool round trip (2 requests)",
        }
    }

    /// A short name for file names (`--workloads` spelling).
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Workload::Short => "short",
            Workload::Stream500 => "stream",
            Workload::ClaudeCode => "claude-code",
            Workload::ToolRoundTrip => "tool",
        }
    }

    /// Whether its responses stream (SSE).
    /// Requests in one unit of the workload (a tool round trip is two).
    pub(crate) fn requests_per_unit(self) -> u32 {
        match self {
            Workload::ToolRoundTrip => 2,
            _ => 1,
        }
    }

    pub(crate) fn streams(self) -> bool {
        matches!(self, Workload::Stream500 | Workload::ClaudeCode)
    }

    /// The first request body of one conversation `session`.
    pub(crate) fn request(self, session: &str) -> Bytes {
        let v = match self {
            Workload::Short => {
                text_request("What is the capital of France? One line.", false, session)
            }
            Workload::Stream500 => text_request("Write a long story: lorem 500", true, session),
            Workload::ClaudeCode => claude_code_request(session),
            Workload::ToolRoundTrip => tool_request(session),
        };
        Bytes::from(v.to_string())
    }
}

/// A Claude Code `metadata.user_id` carrying `session` as its session id.
fn user_id(session: &str) -> String {
    json!({"device_id": "cursorpool-bench", "account_uuid": "", "session_id": session}).to_string()
}

fn text_request(text: &str, stream: bool, session: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 8192,
        "stream": stream,
        "metadata": {"user_id": user_id(session)},
        "messages": [{"role": "user", "content": text}],
    })
}

fn claude_code_request(session: &str) -> Value {
    let mut v: Value = serde_json::from_str(CLAUDE_CODE_REQUEST).unwrap_or(Value::Null);
    v["metadata"] = json!({"user_id": user_id(session)});
    v["stream"] = json!(true);
    v
}

/// The user message of the tool workload (and of parked conversations).
pub(crate) const TOOL_PROMPT: &str = r#"call get_weather({"city":"Paris"})"#;

/// The result the client "computes" for every weather call.
pub(crate) const TOOL_RESULT: &str = "Sunny, 21 °C, light wind from the west.";

fn tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }])
}

fn tool_request(session: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": false,
        "metadata": {"user_id": user_id(session)},
        "tools": tools(),
        "messages": [{"role": "user", "content": TOOL_PROMPT}],
    })
}

/// The second request of a tool round trip: the history plus the result of every `tool_use`
/// block of `assistant_content` (the first response's `content`).
pub(crate) fn tool_followup(session: &str, assistant_content: &Value) -> Bytes {
    let results: Vec<Value> = assistant_content
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": TOOL_RESULT}))
        .collect();
    let v = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": false,
        "metadata": {"user_id": user_id(session)},
        "tools": tools(),
        "messages": [
            {"role": "user", "content": TOOL_PROMPT},
            {"role": "assistant", "content": assistant_content},
            {"role": "user", "content": results},
        ],
    });
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_parses_and_gets_the_session() {
        let b = Workload::ClaudeCode.request("s-1");
        assert!(b.len() > 60_000);
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        assert!(
            v["metadata"]["user_id"]
                .as_str()
                .unwrap_or("")
                .contains("s-1")
        );
    }
}
