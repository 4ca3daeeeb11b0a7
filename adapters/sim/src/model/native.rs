//! Native (built-in) exec kinds: the server asks the client to run a shell command, read a
//! file, … A client that executes nothing must answer on the **same-numbered** result field
//! (spec §6.2 table); an answer on another field is ignored and the run hangs, exactly like the
//! real server.

use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::exec_client_message::Message as Res;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;

/// A native exec kind the brain can ask for: its prompt name and its `ExecServerMessage`
/// field number (the reply must come on the `ExecClientMessage` field with the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NativeKind {
    /// Name used in prompts and counters (`shell_stream`, `read`, …).
    pub(crate) name: &'static str,
    /// Field number of the args (and of the expected result).
    pub(crate) field: u32,
}

/// Every native kind the sim can issue.
pub(crate) const NATIVE_KINDS: &[NativeKind] = &[
    NativeKind {
        name: "shell",
        field: 2,
    },
    NativeKind {
        name: "write",
        field: 3,
    },
    NativeKind {
        name: "delete",
        field: 4,
    },
    NativeKind {
        name: "grep",
        field: 5,
    },
    NativeKind {
        name: "read",
        field: 7,
    },
    NativeKind {
        name: "ls",
        field: 8,
    },
    NativeKind {
        name: "diagnostics",
        field: 9,
    },
    NativeKind {
        name: "shell_stream",
        field: 14,
    },
    NativeKind {
        name: "background_shell_spawn",
        field: 16,
    },
    NativeKind {
        name: "list_mcp_resources",
        field: 17,
    },
    NativeKind {
        name: "read_mcp_resource",
        field: 18,
    },
    NativeKind {
        name: "fetch",
        field: 20,
    },
    NativeKind {
        name: "record_screen",
        field: 21,
    },
    NativeKind {
        name: "computer_use",
        field: 22,
    },
    NativeKind {
        name: "write_shell_stdin",
        field: 23,
    },
    NativeKind {
        name: "execute_hook",
        field: 27,
    },
    NativeKind {
        name: "subagent",
        field: 28,
    },
    NativeKind {
        name: "redacted_read",
        field: 29,
    },
    NativeKind {
        name: "force_background_shell",
        field: 30,
    },
    NativeKind {
        name: "force_background_subagent",
        field: 31,
    },
    NativeKind {
        name: "mcp_state",
        field: 36,
    },
    NativeKind {
        name: "subagent_await",
        field: 37,
    },
    NativeKind {
        name: "smart_mode_classifier",
        field: 38,
    },
    NativeKind {
        name: "canvas_diagnostics",
        field: 40,
    },
    NativeKind {
        name: "shell_allowlist_precheck",
        field: 41,
    },
    NativeKind {
        name: "mcp_allowlist_precheck",
        field: 42,
    },
    NativeKind {
        name: "web_fetch_allowlist_precheck",
        field: 43,
    },
    NativeKind {
        name: "git_diff",
        field: 44,
    },
];

/// The kind called `name` (`background_shell` is accepted for `background_shell_spawn`).
pub(crate) fn kind_by_name(name: &str) -> Option<NativeKind> {
    let name = match name {
        "background_shell" => "background_shell_spawn",
        other => other,
    };
    NATIVE_KINDS.iter().copied().find(|k| k.name == name)
}

/// The exec args for `kind`, with `arg` as the primary parameter (command, path, pattern, url…).
pub(crate) fn build_args(kind: NativeKind, arg: &str, call_id: &str) -> Args {
    let s = arg.to_owned();
    let id = call_id.to_owned();
    let shell = || pb::ShellArgs {
        command: s.clone(),
        working_directory: "/workspace".to_owned(),
        timeout: 30_000,
        tool_call_id: id.clone(),
        ..Default::default()
    };
    let read = || pb::ReadArgs {
        path: s.clone(),
        tool_call_id: id.clone(),
        ..Default::default()
    };
    match kind.field {
        2 => Args::ShellArgs(shell()),
        3 => Args::WriteArgs(pb::WriteArgs {
            path: s.clone(),
            file_text: "written by cursor-sim\n".to_owned(),
            tool_call_id: id,
            ..Default::default()
        }),
        4 => Args::DeleteArgs(pb::DeleteArgs {
            path: s,
            tool_call_id: id,
        }),
        5 => Args::GrepArgs(pb::GrepArgs {
            pattern: s,
            tool_call_id: id,
            ..Default::default()
        }),
        7 => Args::ReadArgs(read()),
        8 => Args::LsArgs(pb::LsArgs {
            path: s,
            tool_call_id: id,
            ..Default::default()
        }),
        9 => Args::DiagnosticsArgs(pb::DiagnosticsArgs {
            path: s,
            tool_call_id: id,
        }),
        14 => Args::ShellStreamArgs(shell()),
        16 => Args::BackgroundShellSpawnArgs(pb::BackgroundShellSpawnArgs {
            command: s,
            working_directory: "/workspace".to_owned(),
            tool_call_id: id,
            ..Default::default()
        }),
        17 => Args::ListMcpResourcesExecArgs(pb::ListMcpResourcesExecArgs {
            server: (!s.is_empty()).then_some(s),
        }),
        18 => Args::ReadMcpResourceExecArgs(pb::ReadMcpResourceExecArgs {
            uri: s,
            tool_call_id: id,
            ..Default::default()
        }),
        20 => Args::FetchArgs(pb::FetchArgs {
            url: s,
            tool_call_id: id,
        }),
        21 => Args::RecordScreenArgs(pb::RecordScreenArgs {
            tool_call_id: id,
            ..Default::default()
        }),
        22 => Args::ComputerUseArgs(pb::ComputerUseArgs { tool_call_id: id }),
        23 => Args::WriteShellStdinArgs(pb::WriteShellStdinArgs {
            shell_id: 1,
            chars: s,
        }),
        27 => Args::ExecuteHookArgs(pb::ExecuteHookArgs {}),
        28 => Args::SubagentArgs(pb::SubagentArgs {
            tool_call_id: id,
            prompt: s,
            ..Default::default()
        }),
        29 => Args::RedactedReadArgs(read()),
        30 => Args::ForceBackgroundShellArgs(pb::ForceBackgroundShellArgs { tool_call_id: id }),
        31 => {
            Args::ForceBackgroundSubagentArgs(pb::ForceBackgroundSubagentArgs { tool_call_id: id })
        }
        36 => Args::McpStateExecArgs(pb::McpStateExecArgs {}),
        37 => Args::SubagentAwaitArgs(pb::SubagentAwaitArgs {
            agent_id: s,
            timeout_ms: 1000,
        }),
        38 => Args::SmartModeClassifierArgs(pb::SmartModeClassifierArgs {
            tool_call_id: id,
            ..Default::default()
        }),
        40 => Args::CanvasDiagnosticsArgs(pb::CanvasDiagnosticsArgs {
            path: s,
            tool_call_id: id,
        }),
        41 => Args::ShellAllowlistPrecheckArgs(pb::ShellAllowlistPrecheckArgs {
            command: s,
            working_directory: "/workspace".to_owned(),
            tool_call_id: Some(id),
        }),
        42 => Args::McpAllowlistPrecheckArgs(pb::McpAllowlistPrecheckArgs {
            tool_name: s,
            tool_call_id: Some(id),
            ..Default::default()
        }),
        43 => Args::WebFetchAllowlistPrecheckArgs(pb::WebFetchAllowlistPrecheckArgs {
            url: s,
            tool_call_id: Some(id),
        }),
        _ => Args::GitDiffRequest(cursorpool_proto::aiserver_v1::GetDiffRequest {
            cwd: s,
            ..Default::default()
        }),
    }
}

/// The field number an exec result arrived on.
pub(crate) fn result_field(m: &Res) -> u32 {
    match m {
        Res::ShellResult(_) => 2,
        Res::WriteResult(_) => 3,
        Res::DeleteResult(_) => 4,
        Res::GrepResult(_) => 5,
        Res::ReadResult(_) => 7,
        Res::LsResult(_) => 8,
        Res::DiagnosticsResult(_) => 9,
        Res::RequestContextResult(_) => 10,
        Res::McpResult(_) => 11,
        Res::ShellStream(_) => 14,
        Res::BackgroundShellSpawnResult(_) => 16,
        Res::ListMcpResourcesExecResult(_) => 17,
        Res::ReadMcpResourceExecResult(_) => 18,
        Res::FetchResult(_) => 20,
        Res::RecordScreenResult(_) => 21,
        Res::ComputerUseResult(_) => 22,
        Res::WriteShellStdinResult(_) => 23,
        Res::ExecuteHookResult(_) => 27,
        Res::SubagentResult(_) => 28,
        Res::RedactedReadResult(_) => 29,
        Res::ForceBackgroundShellResult(_) => 30,
        Res::ForceBackgroundSubagentResult(_) => 31,
        Res::McpStateExecResult(_) => 36,
        Res::SubagentAwaitResult(_) => 37,
        Res::SmartModeClassifierResult(_) => 38,
        Res::CanvasDiagnosticsResult(_) => 40,
        Res::ShellAllowlistPrecheckResult(_) => 41,
        Res::McpAllowlistPrecheckResult(_) => 42,
        Res::WebFetchAllowlistPrecheckResult(_) => 43,
        Res::GitDiffResponse(_) => 44,
    }
}

/// What a `shell_stream` event means for its exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    /// Output so far; more follows.
    Partial(String),
    /// The exec is over, with this description.
    Done(String),
}

/// Interprets one `shell_stream` event.
pub(crate) fn shell_stream_event(s: &pb::ShellStream) -> StreamEvent {
    use pb::shell_stream::Event;
    match &s.event {
        Some(Event::Stdout(o)) => StreamEvent::Partial(o.data.clone()),
        Some(Event::Stderr(e)) => StreamEvent::Partial(e.data.clone()),
        Some(Event::Start(_)) | None => StreamEvent::Partial(String::new()),
        Some(Event::Exit(x)) => StreamEvent::Done(format!("exit {}", x.code)),
        Some(Event::Rejected(r)) => StreamEvent::Done(format!("rejected: {}", r.reason)),
        Some(Event::PermissionDenied(p)) => {
            StreamEvent::Done(format!("permission denied: {}", p.error))
        }
    }
}

/// A short human description of a (right-field) native result, which the brain echoes.
pub(crate) fn describe(m: &Res) -> String {
    fn rejected(reason: &str) -> String {
        format!("rejected: {reason}")
    }
    match m {
        Res::ShellResult(r) => match &r.result {
            Some(pb::shell_result::Result::Rejected(x)) => rejected(&x.reason),
            Some(pb::shell_result::Result::SpawnError(x)) => format!("spawn error: {}", x.error),
            Some(pb::shell_result::Result::PermissionDenied(x)) => {
                format!("permission denied: {}", x.error)
            }
            None => "empty".to_owned(),
        },
        Res::ReadResult(r) | Res::RedactedReadResult(r) => match &r.result {
            Some(pb::read_result::Result::Rejected(x)) => rejected(&x.reason),
            Some(pb::read_result::Result::Error(x)) => format!("error: {}", x.error),
            Some(pb::read_result::Result::FileNotFound(_)) => "file not found".to_owned(),
            Some(pb::read_result::Result::PermissionDenied(_)) => "permission denied".to_owned(),
            None => "empty".to_owned(),
        },
        Res::WriteResult(r) => match &r.result {
            Some(pb::write_result::Result::Rejected(x)) => rejected(&x.reason),
            Some(pb::write_result::Result::Error(x)) => format!("error: {}", x.error),
            Some(pb::write_result::Result::PermissionDenied(x)) => {
                format!("permission denied: {}", x.error)
            }
            None => "empty".to_owned(),
        },
        Res::DeleteResult(r) => match &r.result {
            Some(pb::delete_result::Result::Rejected(x)) => rejected(&x.reason),
            Some(pb::delete_result::Result::Error(x)) => format!("error: {}", x.error),
            Some(other) => format!("{other:?}"),
            None => "empty".to_owned(),
        },
        Res::LsResult(r) => match &r.result {
            Some(pb::ls_result::Result::Rejected(x)) => rejected(&x.reason),
            Some(pb::ls_result::Result::Error(x)) => format!("error: {}", x.error),
            None => "empty".to_owned(),
        },
        Res::GrepResult(r) => match &r.result {
            Some(pb::grep_result::Result::Error(x)) => format!("error: {}", x.error),
            None => "empty".to_owned(),
        },
        Res::FetchResult(r) => match &r.result {
            Some(pb::fetch_result::Result::Error(x)) => format!("error: {}", x.error),
            None => "empty".to_owned(),
        },
        Res::ShellStream(s) => match shell_stream_event(s) {
            StreamEvent::Partial(t) | StreamEvent::Done(t) => t,
        },
        other => {
            let mut s = format!("{other:?}");
            s.truncate(200);
            s
        }
    }
}
