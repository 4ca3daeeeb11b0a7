//! The client's tools as Cursor sees them, and the way back.
//!
//! Every client tool becomes an MCP tool definition (spec §5.2, §6.2) of the provider
//! [`PROVIDER`], with the wire name `cursorpool-<tool>`: Cursor's own built-in tools are called
//! `Read`, `Write`, `WebFetch`, … (§4.5), and a client tool of the same bare name would collide
//! with them. The bare `tool_name` stays the client's name, and is what comes back in `mcp_args`
//! and maps the call to the client's tool.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

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
#[derive(Debug, Clone, Default, PartialEq)]
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

/// A client's tool list made ready for Cursor once (see [`ToolCache`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct PreparedTools {
    /// The declaration it was made from (what a later request must equal to reuse it).
    specs: Arc<[ToolSpec]>,
    table: Arc<ToolTable>,
}

impl PreparedTools {
    /// Encodes `specs` (duplicates by name keep the first).
    pub fn new(specs: &[ToolSpec]) -> Self {
        Self {
            specs: specs.into(),
            table: Arc::new(ToolTable::new(specs)),
        }
    }

    /// Whether this was made from exactly `specs`.
    pub fn is_for(&self, specs: &[ToolSpec]) -> bool {
        self.specs.len() == specs.len()
            && self.specs.iter().zip(specs).all(|(a, b)| {
                a.name == b.name
                    && a.description == b.description
                    && a.input_schema == b.input_schema
            })
    }

    pub(crate) fn table(&self) -> &Arc<ToolTable> {
        &self.table
    }
}

/// The tool lists of recent runs, made ready for Cursor. Claude Code declares the same two
/// dozen tools (tens of KB of descriptions and schemas) on every request of every session;
/// encoding them once instead of per run takes a third off building a run request. Bounded:
/// the least recently used list is dropped beyond the capacity. No clock, no IO: the adapter
/// keeps one per process and passes what it prepares in [`super::TurnParams::prepared_tools`].
#[derive(Debug)]
pub struct ToolCache {
    entries: VecDeque<PreparedTools>,
    capacity: usize,
}

impl ToolCache {
    /// A cache of at most `capacity` tool lists.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The prepared form of `specs`, from the cache or made now (and kept).
    pub fn prepare(&mut self, specs: &[ToolSpec]) -> PreparedTools {
        if let Some(hit) = self.lookup(specs) {
            return hit;
        }
        let made = PreparedTools::new(specs);
        self.insert(made.clone());
        made
    }

    /// The cached prepared form of `specs`, if any (it becomes the most recently used).
    pub fn lookup(&mut self, specs: &[ToolSpec]) -> Option<PreparedTools> {
        let at = self.entries.iter().position(|e| e.is_for(specs))?;
        let hit = self.entries.remove(at)?;
        self.entries.push_front(hit.clone());
        Some(hit)
    }

    /// Keeps `prepared` as the most recently used list.
    pub fn insert(&mut self, prepared: PreparedTools) {
        self.entries.retain(|e| !e.is_for(&prepared.specs));
        self.entries.push_front(prepared);
        self.entries.truncate(self.capacity);
    }

    /// Tool lists held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    #[test]
    fn an_equal_tool_list_reuses_the_prepared_definitions() {
        let mut cache = ToolCache::new(4);
        let a = cache.prepare(&[spec("Read"), spec("Write")]);
        let b = cache.prepare(&[spec("Read"), spec("Write")]);
        assert!(Arc::ptr_eq(a.table(), b.table()));
        assert_eq!(cache.len(), 1);
        let mut changed = spec("Write");
        changed.description.push('!');
        let c = cache.prepare(&[spec("Read"), changed]);
        assert!(!Arc::ptr_eq(a.table(), c.table()));
        assert_eq!(cache.len(), 2);
        assert!(!a.is_for(&[spec("Read")]));
    }

    #[test]
    fn the_least_recently_used_list_goes_first_beyond_the_capacity() {
        let mut cache = ToolCache::new(2);
        let a = cache.prepare(&[spec("A")]);
        cache.prepare(&[spec("B")]);
        // Touching A makes B the oldest.
        assert!(cache.lookup(&[spec("A")]).is_some());
        cache.prepare(&[spec("C")]);
        assert_eq!(cache.len(), 2);
        assert!(cache.lookup(&[spec("B")]).is_none());
        let again = cache.lookup(&[spec("A")]).expect("A kept");
        assert!(Arc::ptr_eq(a.table(), again.table()));
    }

    #[test]
    fn a_prepared_table_equals_a_fresh_one() {
        let specs = [spec("Read"), spec("Read"), spec("Grep")];
        assert_eq!(**PreparedTools::new(&specs).table(), ToolTable::new(&specs));
    }
}
