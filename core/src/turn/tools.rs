//! The client's tools as Cursor sees them, and the way back.
//!
//! Every client tool becomes an MCP tool definition (spec §5.2, §6.2) of the provider
//! [`PROVIDER`], with the wire name `cursorpool-<tool>`: Cursor's own built-in tools are called
//! `Read`, `Write`, `WebFetch`, … (§4.5), and a client tool of the same bare name would collide
//! with them. The bare `tool_name` stays the client's name, and is what comes back in `mcp_args`
//! and maps the call to the client's tool.

use std::collections::HashSet;

use cursorpool_proto::agent_v1 as pb;

use crate::chat::{Part, ToolSpec};
use crate::client::{encode_json_as_value, mcp_tool_definition_encoded};
use crate::update::{McpCall, McpContent};

/// `provider_identifier` of every client tool.
pub const PROVIDER: &str = "cursorpool";

/// The wire name (`McpToolDefinition.name`) of the client tool `tool`.
pub fn wire_name(tool: &str) -> String {
    format!("{PROVIDER}-{tool}")
}

/// The client's result for one tool call, as it arrives with the next request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResultInput {
    /// The id of the call (Cursor's `tool_call_id`, which the client saw as the tool-use id).
    pub tool_use_id: String,
    /// Result content: text and images (other parts are rendered as text).
    pub content: Vec<Part>,
    /// Whether the tool failed.
    pub is_error: bool,
}

/// The client's tools, by the names Cursor uses for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolTable {
    definitions: Vec<pb::McpToolDefinition>,
    /// The declared (bare) tool names.
    declared: HashSet<String>,
}

impl ToolTable {
    pub(crate) fn new(specs: &[ToolSpec]) -> Self {
        let mut table = Self::default();
        for spec in specs {
            if table.declared.contains(&spec.name) {
                continue;
            }
            let text = spec
                .input_schema
                .as_ref()
                .map_or(DEFAULT_SCHEMA, |s| s.as_str());
            // The parsers only keep JSON objects; a schema that still cannot be encoded is
            // sent as the default rather than failing the run.
            let schema = encode_json_as_value(text)
                .or_else(|_| encode_json_as_value(DEFAULT_SCHEMA))
                .unwrap_or_default();
            table.definitions.push(mcp_tool_definition_encoded(
                PROVIDER,
                &spec.name,
                &spec.description,
                schema,
            ));
            table.declared.insert(spec.name.clone());
        }
        table
    }

    /// The MCP definitions for the run request and the request context.
    pub(crate) fn definitions(&self) -> &[pb::McpToolDefinition] {
        &self.definitions
    }

    /// The client's name of the tool an `mcp_args` calls, `None` when it is not one of ours.
    pub(crate) fn client_name(&self, call: &McpCall) -> Option<&str> {
        let ours = call.provider_identifier.is_empty() || call.provider_identifier == PROVIDER;
        if ours && let Some(name) = self.declared.get(&call.tool_name) {
            return Some(name.as_str());
        }
        let bare = call.name.strip_prefix(PROVIDER)?.strip_prefix('-')?;
        self.declared.get(bare).map(String::as_str)
    }
}

/// The schema the SDK declares for a custom tool without one (§5.2).
const DEFAULT_SCHEMA: &str = r#"{"type":"object","properties":{},"additionalProperties":true}"#;

/// The MCP content of a client's tool result. Text and images map one to one; anything else a
/// client might nest in a result is rendered as text so that nothing is silently lost.
pub(crate) fn result_content(parts: &[Part]) -> Vec<McpContent> {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => McpContent::Text(t.clone()),
            Part::Image { media_type, data } => McpContent::Image {
                data: data.clone(),
                mime_type: media_type.clone(),
            },
            other => McpContent::Text(super::prompt::part_as_text(other)),
        })
        .collect()
}

/// Rough size in characters of a tool result, for input-token estimates.
pub(crate) fn result_chars(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.len(),
            Part::Image { .. } => 4000,
            other => super::prompt::part_as_text(other).len(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: format!("{name} tool"),
            input_schema: None,
        }
    }

    fn call(provider: &str, name: &str, tool_name: &str) -> McpCall {
        McpCall {
            provider_identifier: provider.into(),
            name: name.into(),
            tool_name: tool_name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn client_tools_get_prefixed_wire_names_and_map_back() {
        let t = ToolTable::new(&[spec("Read"), spec("Read"), spec("mcp__gh__issue")]);
        let names: Vec<_> = t.definitions().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["cursorpool-Read", "cursorpool-mcp__gh__issue"]);
        assert_eq!(t.definitions()[0].provider_identifier, PROVIDER);
        assert_eq!(t.definitions()[0].tool_name, "Read");
        assert!(!t.definitions()[0].input_schema.is_empty());
        assert_eq!(
            t.client_name(&call("cursorpool", "cursorpool-Read", "Read")),
            Some("Read")
        );
        assert_eq!(
            t.client_name(&call("", "cursorpool-mcp__gh__issue", "")),
            Some("mcp__gh__issue")
        );
        assert_eq!(t.client_name(&call("other", "other-Read", "Read")), None);
        assert_eq!(
            t.client_name(&call("cursorpool", "cursorpool-Nope", "Nope")),
            None
        );
    }
}
