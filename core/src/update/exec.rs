//! Exec requests (`AgentServerMessage.exec_server_message`, spec §5.6): the server asks the
//! client to execute something and waits for the answer on the same-numbered result field.

use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::exec_server_message::Message as M;
use cursorpool_proto::aiserver_v1::GetDiffRequest;
use serde_json::{Map, Value as Json};

use super::json::value_map_to_json_object;
use super::wire;

/// One exec request. Every request must be answered (or it stalls the turn forever, §6.1): with a
/// result on the field matching [`ExecKind::field`], or with a throw; then `stream_close{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// Per-stream exec id; the reply carries it in `ExecClientMessage.id` and control messages.
    pub id: u32,
    /// Opaque server string; echoing it is conventional but not required (§10.1).
    pub exec_id: String,
    /// What the server asks for.
    pub kind: ExecKind,
}

/// A client-tool call (`McpArgs`), the one exec kind a proxy forwards to its caller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct McpCall {
    /// Model tool-call id, exposed to the caller as the tool-use id.
    pub tool_call_id: String,
    /// Wire name of the tool (`McpToolDefinition.name`).
    pub name: String,
    /// Bare tool name (`McpToolDefinition.tool_name`).
    pub tool_name: String,
    /// MCP server name (`McpToolDefinition.provider_identifier`).
    pub provider_identifier: String,
    /// Arguments, converted from `map<string, google.protobuf.Value>` with the standard mapping.
    pub args: Map<String, Json>,
}

impl McpCall {
    /// Converts prost's `McpArgs`.
    pub fn from_proto(args: &pb::McpArgs) -> Self {
        Self {
            tool_call_id: args.tool_call_id.clone(),
            name: args.name.clone(),
            tool_name: args.tool_name.clone(),
            provider_identifier: args.provider_identifier.clone(),
            args: value_map_to_json_object(&args.args),
        }
    }
}

/// Every exec kind of `ExecServerMessage` (§5.6), carrying its arguments. Variants are named
/// after the args field without the `_args` suffix.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecKind {
    /// `request_context_args = 10`: send the request context (tools, env, rules). Always answer.
    RequestContext(pb::RequestContextArgs),
    /// `mcp_args = 11`: a client-tool call.
    Mcp(McpCall),
    /// `shell_args = 2`.
    Shell(pb::ShellArgs),
    /// `shell_stream_args = 14` (answered on `shell_stream`, never `shell_result`).
    ShellStream(pb::ShellArgs),
    /// `write_args = 3`.
    Write(pb::WriteArgs),
    /// `delete_args = 4`.
    Delete(pb::DeleteArgs),
    /// `grep_args = 5`.
    Grep(pb::GrepArgs),
    /// `read_args = 7`.
    Read(pb::ReadArgs),
    /// `redacted_read_args = 29`.
    RedactedRead(pb::ReadArgs),
    /// `ls_args = 8`.
    Ls(pb::LsArgs),
    /// `diagnostics_args = 9`.
    Diagnostics(pb::DiagnosticsArgs),
    /// `background_shell_spawn_args = 16`.
    BackgroundShellSpawn(pb::BackgroundShellSpawnArgs),
    /// `list_mcp_resources_exec_args = 17`.
    ListMcpResources(pb::ListMcpResourcesExecArgs),
    /// `read_mcp_resource_exec_args = 18`.
    ReadMcpResource(pb::ReadMcpResourceExecArgs),
    /// `mcp_state_exec_args = 36`.
    McpState(pb::McpStateExecArgs),
    /// `fetch_args = 20`.
    Fetch(pb::FetchArgs),
    /// `record_screen_args = 21`.
    RecordScreen(pb::RecordScreenArgs),
    /// `computer_use_args = 22`.
    ComputerUse(pb::ComputerUseArgs),
    /// `write_shell_stdin_args = 23`.
    WriteShellStdin(pb::WriteShellStdinArgs),
    /// `execute_hook_args = 27`.
    ExecuteHook(pb::ExecuteHookArgs),
    /// `subagent_args = 28`.
    Subagent(pb::SubagentArgs),
    /// `force_background_shell_args = 30`.
    ForceBackgroundShell(pb::ForceBackgroundShellArgs),
    /// `force_background_subagent_args = 31`.
    ForceBackgroundSubagent(pb::ForceBackgroundSubagentArgs),
    /// `subagent_await_args = 37`.
    SubagentAwait(pb::SubagentAwaitArgs),
    /// `smart_mode_classifier_args = 38`.
    SmartModeClassifier(pb::SmartModeClassifierArgs),
    /// `canvas_diagnostics_args = 40`.
    CanvasDiagnostics(pb::CanvasDiagnosticsArgs),
    /// `shell_allowlist_precheck_args = 41`.
    ShellAllowlistPrecheck(pb::ShellAllowlistPrecheckArgs),
    /// `mcp_allowlist_precheck_args = 42`.
    McpAllowlistPrecheck(pb::McpAllowlistPrecheckArgs),
    /// `web_fetch_allowlist_precheck_args = 43`.
    WebFetchAllowlistPrecheck(pb::WebFetchAllowlistPrecheckArgs),
    /// `git_diff_request = 44`.
    GitDiff(GetDiffRequest),
    /// A member this schema does not know, recovered from the raw bytes: it must still be
    /// answered (throw + stream_close, §6.2). `field` is 0 when the message named no kind at all.
    Unknown {
        /// Field number of the unknown member in `ExecServerMessage`.
        field: u32,
    },
}

/// Fields of `ExecServerMessage` outside the `message` oneof.
const EXEC_NON_ONEOF_FIELDS: &[u32] = &[1, 15, 19];

impl ExecKind {
    /// The field number of this kind's args in `ExecServerMessage`, which is also the field of
    /// its result in `ExecClientMessage`.
    pub fn field(&self) -> u32 {
        match self {
            Self::Shell(_) => 2,
            Self::Write(_) => 3,
            Self::Delete(_) => 4,
            Self::Grep(_) => 5,
            Self::Read(_) => 7,
            Self::Ls(_) => 8,
            Self::Diagnostics(_) => 9,
            Self::RequestContext(_) => 10,
            Self::Mcp(_) => 11,
            Self::ShellStream(_) => 14,
            Self::BackgroundShellSpawn(_) => 16,
            Self::ListMcpResources(_) => 17,
            Self::ReadMcpResource(_) => 18,
            Self::Fetch(_) => 20,
            Self::RecordScreen(_) => 21,
            Self::ComputerUse(_) => 22,
            Self::WriteShellStdin(_) => 23,
            Self::ExecuteHook(_) => 27,
            Self::Subagent(_) => 28,
            Self::RedactedRead(_) => 29,
            Self::ForceBackgroundShell(_) => 30,
            Self::ForceBackgroundSubagent(_) => 31,
            Self::McpState(_) => 36,
            Self::SubagentAwait(_) => 37,
            Self::SmartModeClassifier(_) => 38,
            Self::CanvasDiagnostics(_) => 40,
            Self::ShellAllowlistPrecheck(_) => 41,
            Self::McpAllowlistPrecheck(_) => 42,
            Self::WebFetchAllowlistPrecheck(_) => 43,
            Self::GitDiff(_) => 44,
            Self::Unknown { field } => *field,
        }
    }

    /// The proto name of the args field (`"shell_stream_args"`), for logs and throw messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Shell(_) => "shell_args",
            Self::Write(_) => "write_args",
            Self::Delete(_) => "delete_args",
            Self::Grep(_) => "grep_args",
            Self::Read(_) => "read_args",
            Self::Ls(_) => "ls_args",
            Self::Diagnostics(_) => "diagnostics_args",
            Self::RequestContext(_) => "request_context_args",
            Self::Mcp(_) => "mcp_args",
            Self::ShellStream(_) => "shell_stream_args",
            Self::BackgroundShellSpawn(_) => "background_shell_spawn_args",
            Self::ListMcpResources(_) => "list_mcp_resources_exec_args",
            Self::ReadMcpResource(_) => "read_mcp_resource_exec_args",
            Self::Fetch(_) => "fetch_args",
            Self::RecordScreen(_) => "record_screen_args",
            Self::ComputerUse(_) => "computer_use_args",
            Self::WriteShellStdin(_) => "write_shell_stdin_args",
            Self::ExecuteHook(_) => "execute_hook_args",
            Self::Subagent(_) => "subagent_args",
            Self::RedactedRead(_) => "redacted_read_args",
            Self::ForceBackgroundShell(_) => "force_background_shell_args",
            Self::ForceBackgroundSubagent(_) => "force_background_subagent_args",
            Self::McpState(_) => "mcp_state_exec_args",
            Self::SubagentAwait(_) => "subagent_await_args",
            Self::SmartModeClassifier(_) => "smart_mode_classifier_args",
            Self::CanvasDiagnostics(_) => "canvas_diagnostics_args",
            Self::ShellAllowlistPrecheck(_) => "shell_allowlist_precheck_args",
            Self::McpAllowlistPrecheck(_) => "mcp_allowlist_precheck_args",
            Self::WebFetchAllowlistPrecheck(_) => "web_fetch_allowlist_precheck_args",
            Self::GitDiff(_) => "git_diff_request",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// Converts prost's oneof member.
    fn from_proto(m: M) -> Self {
        match m {
            M::ShellArgs(a) => Self::Shell(a),
            M::WriteArgs(a) => Self::Write(a),
            M::DeleteArgs(a) => Self::Delete(a),
            M::GrepArgs(a) => Self::Grep(a),
            M::ReadArgs(a) => Self::Read(a),
            M::RedactedReadArgs(a) => Self::RedactedRead(a),
            M::LsArgs(a) => Self::Ls(a),
            M::DiagnosticsArgs(a) => Self::Diagnostics(a),
            M::RequestContextArgs(a) => Self::RequestContext(a),
            M::McpArgs(a) => Self::Mcp(McpCall::from_proto(&a)),
            M::ShellStreamArgs(a) => Self::ShellStream(a),
            M::BackgroundShellSpawnArgs(a) => Self::BackgroundShellSpawn(a),
            M::ListMcpResourcesExecArgs(a) => Self::ListMcpResources(a),
            M::ReadMcpResourceExecArgs(a) => Self::ReadMcpResource(a),
            M::McpStateExecArgs(a) => Self::McpState(a),
            M::FetchArgs(a) => Self::Fetch(a),
            M::RecordScreenArgs(a) => Self::RecordScreen(a),
            M::ComputerUseArgs(a) => Self::ComputerUse(a),
            M::WriteShellStdinArgs(a) => Self::WriteShellStdin(a),
            M::ExecuteHookArgs(a) => Self::ExecuteHook(a),
            M::SubagentArgs(a) => Self::Subagent(a),
            M::ForceBackgroundShellArgs(a) => Self::ForceBackgroundShell(a),
            M::ForceBackgroundSubagentArgs(a) => Self::ForceBackgroundSubagent(a),
            M::SubagentAwaitArgs(a) => Self::SubagentAwait(a),
            M::SmartModeClassifierArgs(a) => Self::SmartModeClassifier(a),
            M::CanvasDiagnosticsArgs(a) => Self::CanvasDiagnostics(a),
            M::ShellAllowlistPrecheckArgs(a) => Self::ShellAllowlistPrecheck(a),
            M::McpAllowlistPrecheckArgs(a) => Self::McpAllowlistPrecheck(a),
            M::WebFetchAllowlistPrecheckArgs(a) => Self::WebFetchAllowlistPrecheck(a),
            M::GitDiffRequest(a) => Self::GitDiff(a),
        }
    }
}

/// Builds the [`ExecRequest`] of a decoded `exec_server_message`. `raw` is the whole
/// `AgentServerMessage` payload, scanned for the member's field number when prost dropped it.
pub(super) fn exec_request(msg: pb::ExecServerMessage, raw: &[u8]) -> ExecRequest {
    let kind = match msg.message {
        Some(m) => ExecKind::from_proto(m),
        None => ExecKind::Unknown {
            field: wire::submessages(raw, 2)
                .filter_map(|exec| wire::last_unknown_field(exec, EXEC_NON_ONEOF_FIELDS, true))
                .last()
                .unwrap_or(0),
        },
    };
    ExecRequest {
        id: msg.id,
        exec_id: msg.exec_id,
        kind,
    }
}
