//! Answers to exec requests (spec §5.6, §6.2).
//!
//! Every exec request is answered with its result on the **same-numbered** field of
//! `ExecClientMessage` followed by `exec_client_control_message.stream_close{id}` (what the SDK
//! does after every result), or with `throw{id, error}` + `stream_close{id}` where no result
//! variant can express a refusal. A reply on the wrong field makes the model hang.

use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Acm;
use cursorpool_proto::agent_v1::exec_client_control_message::Message as Ctl;
use cursorpool_proto::agent_v1::exec_client_message::Message as R;

use super::wrap;
use crate::update::{ExecKind, ExecRequest, McpContent};

/// An exec result: `exec_client_message{id, exec_id, <result>}`. `exec_id` is echoed by
/// convention (Appendix C); the SDK leaves it empty and servers must not require it (§10.1).
pub fn exec_reply(id: u32, exec_id: &str, result: R) -> pb::AgentClientMessage {
    wrap(Acm::ExecClientMessage(pb::ExecClientMessage {
        id,
        exec_id: exec_id.to_owned(),
        local_execution_time_ms: None,
        message: Some(result),
    }))
}

fn control(m: Ctl) -> pb::AgentClientMessage {
    wrap(Acm::ExecClientControlMessage(
        pb::ExecClientControlMessage { message: Some(m) },
    ))
}

/// `exec_client_control_message.stream_close{id}`: sent after the last result of an exec.
pub fn exec_stream_close(id: u32) -> pb::AgentClientMessage {
    control(Ctl::StreamClose(pb::ExecClientStreamClose { id }))
}

/// `exec_client_control_message.heartbeat{id}`: every 3 s while an exec is running.
pub fn exec_heartbeat(id: u32) -> pb::AgentClientMessage {
    control(Ctl::Heartbeat(pb::ExecClientHeartbeat { id }))
}

/// `exec_client_control_message.throw{id, error}`: the exec failed as a whole.
pub fn exec_throw(id: u32, error: &str) -> pb::AgentClientMessage {
    control(Ctl::Throw(pb::ExecClientThrow {
        id,
        error: error.to_owned(),
        stack_trace: None,
        error_code: None,
    }))
}

/// The parts of a `RequestContext` a proxy fills (§6.2): its tools (repeat the run request's
/// `mcp_tools`), the environment, and optionally the caller's system prompt as `cloud_rule`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContextParams {
    /// The client tools; without them here the model does not see them.
    pub tools: Vec<pb::McpToolDefinition>,
    /// OS, workspace paths, shell, time zone, …; `None` leaves `env` unset.
    pub env: Option<pb::RequestContextEnv>,
    /// Free-text rule injected into the prompt.
    pub cloud_rule: Option<String>,
}

impl From<RequestContextParams> for pb::RequestContext {
    fn from(p: RequestContextParams) -> Self {
        Self {
            tools: p.tools,
            env: p.env,
            cloud_rule: p.cloud_rule,
            ..Default::default()
        }
    }
}

/// Answers `request_context_args` with `success{request_context}` (never refuse this one).
/// Send [`exec_stream_close`] after it.
pub fn request_context_success(
    id: u32,
    exec_id: &str,
    ctx: impl Into<pb::RequestContext>,
) -> pb::AgentClientMessage {
    exec_reply(
        id,
        exec_id,
        R::RequestContextResult(pb::RequestContextResult {
            result: Some(pb::request_context_result::Result::Success(
                pb::RequestContextSuccess {
                    request_context: Some(ctx.into()),
                },
            )),
        }),
    )
}

/// Answers `mcp_args` with the tool's output. A tool that failed *as a tool* is a success with
/// `is_error = true`. Send [`exec_stream_close`] after it.
pub fn mcp_success(
    id: u32,
    exec_id: &str,
    content: &[McpContent],
    is_error: bool,
) -> pb::AgentClientMessage {
    mcp_result(
        id,
        exec_id,
        pb::mcp_result::Result::Success(pb::McpSuccess {
            content: content.iter().map(McpContent::to_proto).collect(),
            is_error,
            structured_content: None,
        }),
    )
}

/// Answers `mcp_args` with `error{error}` (the call could not be made at all, e.g. an unknown
/// tool: the SDK sends `"Unknown custom tool: X"`). Send [`exec_stream_close`] after it.
pub fn mcp_error(id: u32, exec_id: &str, error: &str) -> pb::AgentClientMessage {
    mcp_result(
        id,
        exec_id,
        pb::mcp_result::Result::Error(pb::McpError {
            error: error.to_owned(),
        }),
    )
}

fn mcp_result(id: u32, exec_id: &str, r: pb::mcp_result::Result) -> pb::AgentClientMessage {
    exec_reply(id, exec_id, R::McpResult(pb::McpResult { result: Some(r) }))
}

/// Refuses an exec request, for a client that executes nothing locally (§6.2's table). Returns
/// the messages to send, in order:
///
/// - a refusal on the kind's own result field (`rejected{…}`, else `error{…}`/`failure{…}`; the
///   allowlist prechecks answer `allowlisted: false`; the force-background kinds answer status
///   `NOT_FOUND`), then `stream_close{id}`;
/// - for kinds whose result has no way to say no (`execute_hook`, `git_diff`) and for
///   [`ExecKind::Unknown`]: `throw{id, error}` then `stream_close{id}`, as the SDK does for kinds
///   it has no handler for.
///
/// `request_context_args` gets `rejected{reason}` on `request_context_result`, but a proxy should
/// answer it with [`request_context_success`] instead; `mcp_args` gets `error{reason}`.
pub fn reject_exec(req: &ExecRequest, reason: &str) -> Vec<pb::AgentClientMessage> {
    let id = req.id;
    let result = match rejection(&req.kind, reason) {
        Some(result) => exec_reply(id, &req.exec_id, result),
        None => {
            let error = match req.kind {
                ExecKind::Unknown { field } => {
                    format!("{reason} (unsupported exec kind: field {field})")
                }
                ref kind => format!("{reason} ({} is not supported)", kind.name()),
            };
            exec_throw(id, &error)
        }
    };
    vec![result, exec_stream_close(id)]
}

fn shell_rejected(args: &pb::ShellArgs, reason: &str) -> pb::ShellRejected {
    pb::ShellRejected {
        command: args.command.clone(),
        working_directory: args.working_directory.clone(),
        reason: reason.to_owned(),
        is_readonly: false,
    }
}

/// The refusal result for `kind`, or `None` where only a throw can refuse.
fn rejection(kind: &ExecKind, reason: &str) -> Option<R> {
    let reason_s = reason.to_owned();
    let path_rejected = |path: &str| (path.to_owned(), reason_s.clone());
    Some(match kind {
        ExecKind::RequestContext(_) => R::RequestContextResult(pb::RequestContextResult {
            result: Some(pb::request_context_result::Result::Rejected(
                pb::RequestContextRejected { reason: reason_s },
            )),
        }),
        ExecKind::Mcp(_) => R::McpResult(pb::McpResult {
            result: Some(pb::mcp_result::Result::Error(pb::McpError {
                error: reason_s,
            })),
        }),
        ExecKind::Shell(a) => R::ShellResult(pb::ShellResult {
            result: Some(pb::shell_result::Result::Rejected(shell_rejected(
                a, reason,
            ))),
        }),
        ExecKind::ShellStream(a) => R::ShellStream(pb::ShellStream {
            event: Some(pb::shell_stream::Event::Rejected(shell_rejected(a, reason))),
        }),
        ExecKind::BackgroundShellSpawn(a) => {
            R::BackgroundShellSpawnResult(pb::BackgroundShellSpawnResult {
                result: Some(pb::background_shell_spawn_result::Result::Rejected(
                    pb::ShellRejected {
                        command: a.command.clone(),
                        working_directory: a.working_directory.clone(),
                        reason: reason_s,
                        is_readonly: false,
                    },
                )),
            })
        }
        ExecKind::WriteShellStdin(_) => R::WriteShellStdinResult(pb::WriteShellStdinResult {
            result: Some(pb::write_shell_stdin_result::Result::Error(
                pb::WriteShellStdinError { error: reason_s },
            )),
        }),
        ExecKind::Read(a) | ExecKind::RedactedRead(a) => {
            let (path, reason) = path_rejected(&a.path);
            let r = pb::ReadResult {
                result: Some(pb::read_result::Result::Rejected(pb::ReadRejected {
                    path,
                    reason,
                })),
            };
            if matches!(kind, ExecKind::Read(_)) {
                R::ReadResult(r)
            } else {
                R::RedactedReadResult(r)
            }
        }
        ExecKind::Write(a) => {
            let (path, reason) = path_rejected(&a.path);
            R::WriteResult(pb::WriteResult {
                result: Some(pb::write_result::Result::Rejected(pb::WriteRejected {
                    path,
                    reason,
                })),
            })
        }
        ExecKind::Delete(a) => {
            let (path, reason) = path_rejected(&a.path);
            R::DeleteResult(pb::DeleteResult {
                result: Some(pb::delete_result::Result::Rejected(pb::DeleteRejected {
                    path,
                    reason,
                })),
            })
        }
        ExecKind::Ls(a) => {
            let (path, reason) = path_rejected(&a.path);
            R::LsResult(pb::LsResult {
                result: Some(pb::ls_result::Result::Rejected(pb::LsRejected {
                    path,
                    reason,
                })),
            })
        }
        ExecKind::Grep(_) => R::GrepResult(pb::GrepResult {
            result: Some(pb::grep_result::Result::Error(pb::GrepError {
                error: reason_s,
            })),
        }),
        ExecKind::Diagnostics(a) => {
            let (path, reason) = path_rejected(&a.path);
            R::DiagnosticsResult(pb::DiagnosticsResult {
                result: Some(pb::diagnostics_result::Result::Rejected(
                    pb::DiagnosticsRejected { path, reason },
                )),
            })
        }
        ExecKind::Fetch(a) => R::FetchResult(pb::FetchResult {
            result: Some(pb::fetch_result::Result::Error(pb::FetchError {
                url: a.url.clone(),
                error: reason_s,
            })),
        }),
        ExecKind::ListMcpResources(_) => {
            R::ListMcpResourcesExecResult(pb::ListMcpResourcesExecResult {
                result: Some(pb::list_mcp_resources_exec_result::Result::Rejected(
                    pb::ListMcpResourcesRejected { reason: reason_s },
                )),
            })
        }
        ExecKind::ReadMcpResource(a) => {
            R::ReadMcpResourceExecResult(pb::ReadMcpResourceExecResult {
                result: Some(pb::read_mcp_resource_exec_result::Result::Rejected(
                    pb::ReadMcpResourceRejected {
                        uri: a.uri.clone(),
                        reason: reason_s,
                    },
                )),
            })
        }
        // Spec §6.2: answer the MCP-state probe with an empty server list (our tools reach the
        // model through the request context, not through an MCP server it could query).
        ExecKind::McpState(_) => R::McpStateExecResult(pb::McpStateExecResult {
            result: Some(pb::mcp_state_exec_result::Result::Success(
                pb::McpStateSuccess::default(),
            )),
        }),
        ExecKind::RecordScreen(_) => R::RecordScreenResult(pb::RecordScreenResult {
            result: Some(pb::record_screen_result::Result::Failure(
                pb::RecordScreenFailure { error: reason_s },
            )),
        }),
        ExecKind::ComputerUse(_) => R::ComputerUseResult(pb::ComputerUseResult {
            result: Some(pb::computer_use_result::Result::Error(
                pb::ComputerUseError {
                    error: reason_s,
                    ..Default::default()
                },
            )),
        }),
        ExecKind::CanvasDiagnostics(a) => R::CanvasDiagnosticsResult(pb::CanvasDiagnosticsResult {
            result: Some(pb::canvas_diagnostics_result::Result::Error(
                pb::CanvasDiagnosticsError {
                    path: a.path.clone(),
                    error: reason_s,
                },
            )),
        }),
        ExecKind::SmartModeClassifier(_) => {
            R::SmartModeClassifierResult(pb::SmartModeClassifierResult {
                result: Some(pb::smart_mode_classifier_result::Result::Error(
                    pb::SmartModeClassifierError { error: reason_s },
                )),
            })
        }
        ExecKind::Subagent(_) => R::SubagentResult(pb::SubagentResult {
            result: Some(pb::subagent_result::Result::Error(pb::SubagentError {
                agent_id: None,
                error: reason_s,
            })),
        }),
        ExecKind::SubagentAwait(a) => R::SubagentAwaitResult(pb::SubagentAwaitResult {
            result: Some(pb::subagent_await_result::Result::Error(
                pb::SubagentAwaitError {
                    agent_id: Some(a.agent_id.clone()),
                    error: reason_s,
                },
            )),
        }),
        ExecKind::ForceBackgroundShell(_) => {
            R::ForceBackgroundShellResult(pb::ForceBackgroundShellResult {
                status: pb::ForceBackgroundShellStatus::NotFound as i32,
            })
        }
        ExecKind::ForceBackgroundSubagent(_) => {
            R::ForceBackgroundSubagentResult(pb::ForceBackgroundSubagentResult {
                status: pb::ForceBackgroundSubagentStatus::NotFound as i32,
            })
        }
        ExecKind::ShellAllowlistPrecheck(_) => {
            R::ShellAllowlistPrecheckResult(pb::ShellAllowlistPrecheckResult { allowlisted: false })
        }
        ExecKind::McpAllowlistPrecheck(_) => {
            R::McpAllowlistPrecheckResult(pb::McpAllowlistPrecheckResult { allowlisted: false })
        }
        ExecKind::WebFetchAllowlistPrecheck(_) => {
            R::WebFetchAllowlistPrecheckResult(pb::WebFetchAllowlistPrecheckResult {
                allowlisted: false,
            })
        }
        ExecKind::ExecuteHook(_) | ExecKind::GitDiff(_) | ExecKind::Unknown { .. } => {
            return None;
        }
    })
}
