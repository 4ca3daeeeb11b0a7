//! `decode_server_message`: every server message kind, every interaction update and exec kind,
//! unknown members recovered, unknown fields skipped, garbage rejected, checkpoints zero-copy.

use bytes::Bytes;
use cursorpool_core::update::json::{json_object_to_struct, json_to_value};
use cursorpool_core::update::{
    BlobKind, DecodeError, ExecKind, McpCall, McpContent, McpToolOutcome, PartialToolCall,
    QueryKind, ServerEvent, ShellOutputEvent, ToolCallUpdate, ToolDeltaKind, ToolPayload,
    TurnTotals, checkpoint_summary, decode_server_message,
};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Top;
use cursorpool_proto::agent_v1::exec_server_message::Message as Ex;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;
use cursorpool_proto::aiserver_v1::GetDiffRequest;
use prost::Message;
use serde_json::json;

fn encode(m: Top) -> Bytes {
    Bytes::from(pb::AgentServerMessage { message: Some(m) }.encode_to_vec())
}

fn update(m: Iu) -> Bytes {
    encode(Top::InteractionUpdate(pb::InteractionUpdate {
        message: Some(m),
    }))
}

fn decode(b: Bytes) -> ServerEvent {
    decode_server_message(b).expect("decodes")
}

/// A length-delimited field, written by hand (for members our schema does not know).
fn len_field(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn varint_field(field: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(field, prost::encoding::WireType::Varint, &mut out);
    prost::encoding::encode_varint(v, &mut out);
    out
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn mcp_args() -> pb::McpArgs {
    pb::McpArgs {
        name: "srv-echo".into(),
        args: [
            ("text".to_owned(), json_to_value(&json!("ok"))),
            ("n".to_owned(), json_to_value(&json!(3))),
            (
                "nested".to_owned(),
                json_to_value(&json!({"a": [1, true, null]})),
            ),
        ]
        .into_iter()
        .collect(),
        tool_call_id: "t1".into(),
        provider_identifier: "srv".into(),
        tool_name: "echo".into(),
        ..Default::default()
    }
}

fn mcp_call() -> McpCall {
    McpCall {
        tool_call_id: "t1".into(),
        name: "srv-echo".into(),
        tool_name: "echo".into(),
        provider_identifier: "srv".into(),
        args: obj(json!({"text": "ok", "n": 3, "nested": {"a": [1, true, null]}})),
    }
}

fn mcp_tool_call(result: Option<pb::McpToolResult>) -> Option<pb::ToolCall> {
    Some(pb::ToolCall {
        tool: Some(pb::tool_call::Tool::McpToolCall(pb::McpToolCall {
            args: Some(mcp_args()),
            result,
        })),
        tool_call_id: Some("tc".into()),
    })
}

#[test]
fn every_interaction_update_variant_decodes() {
    let success = pb::McpToolResult {
        result: Some(pb::mcp_tool_result::Result::Success(pb::McpSuccess {
            content: vec![
                McpContent::Text("out".into()).to_proto(),
                McpContent::Image {
                    data: Bytes::from_static(b"\x89PNG"),
                    mime_type: "image/png".into(),
                }
                .to_proto(),
            ],
            is_error: true,
            structured_content: Some(json_object_to_struct(&obj(json!({"k": "v"})))),
        })),
    };
    let cases: Vec<(Iu, ServerEvent)> = vec![
        (
            Iu::TextDelta(pb::TextDeltaUpdate { text: "Hi".into() }),
            ServerEvent::TextDelta("Hi".into()),
        ),
        (
            Iu::ThinkingDelta(pb::ThinkingDeltaUpdate {
                text: "hmm".into(),
                thinking_style: Some(2),
            }),
            ServerEvent::ThinkingDelta {
                text: "hmm".into(),
                style: Some(2),
            },
        ),
        (
            Iu::ThinkingCompleted(pb::ThinkingCompletedUpdate {
                thinking_duration_ms: 1500,
            }),
            ServerEvent::ThinkingCompleted { duration_ms: 1500 },
        ),
        (
            Iu::PartialToolCall(Box::new(pb::PartialToolCallUpdate {
                call_id: "c1".into(),
                tool_call: mcp_tool_call(None),
                args_text_delta: "{\"te".into(),
                model_call_id: "m1".into(),
            })),
            ServerEvent::PartialToolCall(PartialToolCall {
                call_id: "c1".into(),
                model_call_id: "m1".into(),
                args_text_delta: "{\"te".into(),
                tool: ToolPayload::Mcp {
                    args: Some(mcp_call()),
                    result: None,
                },
            }),
        ),
        (
            Iu::ToolCallDelta(pb::ToolCallDeltaUpdate {
                call_id: "c1".into(),
                tool_call_delta: Some(pb::ToolCallDelta {
                    delta: Some(pb::tool_call_delta::Delta::ShellToolCallDelta(
                        pb::ShellToolCallDelta {},
                    )),
                }),
                model_call_id: "m1".into(),
            }),
            ServerEvent::ToolCallDelta {
                call_id: "c1".into(),
                model_call_id: "m1".into(),
                kind: ToolDeltaKind::Shell,
            },
        ),
        (
            Iu::ToolCallStarted(Box::new(pb::ToolCallStartedUpdate {
                call_id: "c1".into(),
                tool_call: mcp_tool_call(None),
                model_call_id: "m1".into(),
            })),
            ServerEvent::ToolCallStarted(ToolCallUpdate {
                call_id: "c1".into(),
                model_call_id: "m1".into(),
                tool: ToolPayload::Mcp {
                    args: Some(mcp_call()),
                    result: None,
                },
                tool_call_id: Some("tc".into()),
            }),
        ),
        (
            Iu::ToolCallCompleted(Box::new(pb::ToolCallCompletedUpdate {
                call_id: "c1".into(),
                tool_call: mcp_tool_call(Some(success)),
                model_call_id: "m1".into(),
            })),
            ServerEvent::ToolCallCompleted(ToolCallUpdate {
                call_id: "c1".into(),
                model_call_id: "m1".into(),
                tool: ToolPayload::Mcp {
                    args: Some(mcp_call()),
                    result: Some(McpToolOutcome::Success {
                        content: vec![
                            McpContent::Text("out".into()),
                            McpContent::Image {
                                data: Bytes::from_static(b"\x89PNG"),
                                mime_type: "image/png".into(),
                            },
                        ],
                        is_error: true,
                        structured_content: Some(obj(json!({"k": "v"}))),
                    }),
                },
                tool_call_id: Some("tc".into()),
            }),
        ),
        (
            Iu::UserMessageAppended(Box::new(pb::UserMessageAppendedUpdate {
                user_message: Some(pb::UserMessage {
                    text: "more".into(),
                    message_id: "u1".into(),
                    ..Default::default()
                }),
            })),
            ServerEvent::UserMessageAppended {
                text: "more".into(),
                message_id: "u1".into(),
            },
        ),
        (
            Iu::TokenDelta(pb::TokenDeltaUpdate { tokens: 8 }),
            ServerEvent::TokenDelta { tokens: 8 },
        ),
        (
            Iu::Summary(pb::SummaryUpdate {
                summary: "sum".into(),
            }),
            ServerEvent::Summary("sum".into()),
        ),
        (
            Iu::SummaryStarted(pb::SummaryStartedUpdate {}),
            ServerEvent::SummaryStarted,
        ),
        (
            Iu::SummaryCompleted(pb::SummaryCompletedUpdate {
                hook_message: Some("h".into()),
            }),
            ServerEvent::SummaryCompleted {
                hook_message: Some("h".into()),
            },
        ),
        (
            Iu::ShellOutputDelta(pb::ShellOutputDeltaUpdate {
                event: Some(pb::shell_output_delta_update::Event::Stdout(
                    pb::ShellStreamStdout { data: "ls".into() },
                )),
            }),
            ServerEvent::ShellOutput(ShellOutputEvent::Stdout("ls".into())),
        ),
        (
            Iu::ShellOutputDelta(pb::ShellOutputDeltaUpdate {
                event: Some(pb::shell_output_delta_update::Event::Exit(
                    pb::ShellStreamExit {
                        code: 2,
                        cwd: "/w".into(),
                        aborted: true,
                        local_execution_time_ms: None,
                    },
                )),
            }),
            ServerEvent::ShellOutput(ShellOutputEvent::Exit {
                code: 2,
                cwd: "/w".into(),
                aborted: true,
            }),
        ),
        (
            Iu::Heartbeat(pb::HeartbeatUpdate {}),
            ServerEvent::Heartbeat,
        ),
        (
            Iu::TurnEnded(pb::TurnEndedUpdate {
                input_tokens: Some(100),
                output_tokens: Some(20),
                cache_read_tokens: Some(50),
                cache_write_tokens: None,
            }),
            ServerEvent::TurnEnded(TurnTotals {
                input_tokens: Some(100),
                output_tokens: Some(20),
                cache_read_tokens: Some(50),
                cache_write_tokens: None,
                reasoning_tokens: None,
            }),
        ),
        (
            Iu::StepStarted(pb::StepStartedUpdate { step_id: 4 }),
            ServerEvent::StepStarted { step_id: 4 },
        ),
        (
            Iu::StepCompleted(pb::StepCompletedUpdate {
                step_id: 4,
                step_duration_ms: 99,
            }),
            ServerEvent::StepCompleted {
                step_id: 4,
                duration_ms: 99,
            },
        ),
        (
            Iu::PromptSuggestion(pb::PromptSuggestionUpdate {
                suggestion: "try".into(),
            }),
            ServerEvent::PromptSuggestion("try".into()),
        ),
        (
            Iu::PostRequestPrompt(Box::new(pb::PostRequestPromptUpdate {
                title: "t".into(),
                message: "m".into(),
                button_label: "b".into(),
                button_url: "u".into(),
            })),
            ServerEvent::PostRequestPrompt {
                title: "t".into(),
                message: "m".into(),
                button_label: "b".into(),
                button_url: "u".into(),
            },
        ),
        (
            Iu::ActiveBranchChange(pb::ActiveBranchChange {
                path: "/r".into(),
                branch_name: "main".into(),
            }),
            ServerEvent::ActiveBranchChange {
                path: "/r".into(),
                branch_name: "main".into(),
            },
        ),
        (
            Iu::FeedbackRequest(pb::FeedbackRequestUpdate {
                request_id: "q".into(),
                canonical_model_name: Some("m".into()),
                show_form_immediately: true,
            }),
            ServerEvent::FeedbackRequest {
                request_id: "q".into(),
                canonical_model_name: Some("m".into()),
            },
        ),
    ];
    for (m, expected) in cases {
        assert_eq!(decode(update(m.clone())), expected, "{m:?}");
    }
}

/// `(member, expected kind, field)` from one args value.
macro_rules! kind {
    ($ex:ident => $kind:ident, $args:expr, $field:expr) => {{
        let ex = Ex::$ex($args);
        let Ex::$ex(args) = ex.clone() else {
            unreachable!()
        };
        (ex, ExecKind::$kind(args), $field)
    }};
}

/// One sample of every exec kind, with the field number the spec gives it.
fn all_exec_kinds() -> Vec<(Ex, ExecKind, u32)> {
    let shell = pb::ShellArgs {
        command: "ls".into(),
        working_directory: "/w".into(),
        ..Default::default()
    };
    let read = pb::ReadArgs {
        path: "/f".into(),
        ..Default::default()
    };
    let write = pb::WriteArgs {
        path: "/f".into(),
        file_text: "x".into(),
        ..Default::default()
    };
    let delete = pb::DeleteArgs {
        path: "/f".into(),
        ..Default::default()
    };
    let fetch = pb::FetchArgs {
        url: "https://x".into(),
        ..Default::default()
    };
    let stdin = pb::WriteShellStdinArgs {
        shell_id: 1,
        chars: "y".into(),
    };
    let wait = pb::SubagentAwaitArgs {
        agent_id: "a".into(),
        timeout_ms: 5,
    };
    vec![
        kind!(ShellArgs => Shell, shell.clone(), 2),
        kind!(WriteArgs => Write, write, 3),
        kind!(DeleteArgs => Delete, delete, 4),
        kind!(GrepArgs => Grep, pb::GrepArgs { pattern: "x".into(), ..Default::default() }, 5),
        kind!(ReadArgs => Read, read.clone(), 7),
        kind!(RedactedReadArgs => RedactedRead, read, 29),
        kind!(LsArgs => Ls, pb::LsArgs { path: "/d".into(), ..Default::default() }, 8),
        kind!(DiagnosticsArgs => Diagnostics, pb::DiagnosticsArgs::default(), 9),
        kind!(RequestContextArgs => RequestContext, pb::RequestContextArgs::default(), 10),
        (Ex::McpArgs(mcp_args()), ExecKind::Mcp(mcp_call()), 11),
        kind!(ShellStreamArgs => ShellStream, shell, 14),
        kind!(BackgroundShellSpawnArgs => BackgroundShellSpawn, Default::default(), 16),
        kind!(ListMcpResourcesExecArgs => ListMcpResources, Default::default(), 17),
        kind!(ReadMcpResourceExecArgs => ReadMcpResource, Default::default(), 18),
        kind!(McpStateExecArgs => McpState, Default::default(), 36),
        kind!(FetchArgs => Fetch, fetch, 20),
        kind!(RecordScreenArgs => RecordScreen, Default::default(), 21),
        kind!(ComputerUseArgs => ComputerUse, Default::default(), 22),
        kind!(WriteShellStdinArgs => WriteShellStdin, stdin, 23),
        kind!(ExecuteHookArgs => ExecuteHook, Default::default(), 27),
        kind!(SubagentArgs => Subagent, Default::default(), 28),
        kind!(ForceBackgroundShellArgs => ForceBackgroundShell, Default::default(), 30),
        kind!(ForceBackgroundSubagentArgs => ForceBackgroundSubagent, Default::default(), 31),
        kind!(SubagentAwaitArgs => SubagentAwait, wait, 37),
        kind!(SmartModeClassifierArgs => SmartModeClassifier, Default::default(), 38),
        kind!(CanvasDiagnosticsArgs => CanvasDiagnostics, Default::default(), 40),
        kind!(ShellAllowlistPrecheckArgs => ShellAllowlistPrecheck, Default::default(), 41),
        kind!(McpAllowlistPrecheckArgs => McpAllowlistPrecheck, Default::default(), 42),
        kind!(WebFetchAllowlistPrecheckArgs => WebFetchAllowlistPrecheck, Default::default(), 43),
        kind!(GitDiffRequest => GitDiff, GetDiffRequest { cwd: "/w".into(), ..Default::default() }, 44),
    ]
}

#[test]
fn every_exec_kind_decodes_with_its_field_number() {
    let kinds = all_exec_kinds();
    assert_eq!(kinds.len(), 30, "the spec lists 30 exec kinds");
    for (m, expected, field) in kinds {
        let payload = encode(Top::ExecServerMessage(Box::new(pb::ExecServerMessage {
            id: 7,
            exec_id: "e7".into(),
            span_context: None,
            message: Some(m),
        })));
        let ServerEvent::Exec(req) = decode(payload) else {
            panic!("not an exec");
        };
        assert_eq!((req.id, req.exec_id.as_str()), (7, "e7"));
        assert_eq!(req.kind.field(), field, "{}", req.kind.name());
        assert_eq!(req.kind, expected);
    }
}

#[test]
fn unknown_exec_kind_recovers_its_field_number() {
    // exec_server_message { id: 9, span_context: {}, 99: { 1: "x" }, exec_id: "e" }
    let mut exec = varint_field(1, 9);
    exec.extend(len_field(19, &[]));
    exec.extend(len_field(99, &len_field(1, b"x")));
    exec.extend(len_field(15, b"e"));
    let event = decode(Bytes::from(len_field(2, &exec)));
    assert_eq!(
        event,
        ServerEvent::Exec(cursorpool_core::update::ExecRequest {
            id: 9,
            exec_id: "e".into(),
            kind: ExecKind::Unknown { field: 99 },
        })
    );
}

#[test]
fn exec_without_any_kind_is_unknown_field_zero() {
    let event = decode(Bytes::from(len_field(2, &varint_field(1, 3))));
    let ServerEvent::Exec(req) = event else {
        panic!("not an exec");
    };
    assert_eq!((req.id, req.kind), (3, ExecKind::Unknown { field: 0 }));
}

#[test]
fn exec_abort_decodes() {
    let payload = encode(Top::ExecServerControlMessage(
        pb::ExecServerControlMessage {
            message: Some(pb::exec_server_control_message::Message::Abort(
                pb::ExecServerAbort { id: 3 },
            )),
        },
    ));
    assert_eq!(decode(payload), ServerEvent::ExecAbort { id: 3 });
}

#[test]
fn get_blob_decodes() {
    let payload = encode(Top::KvServerMessage(Box::new(pb::KvServerMessage {
        id: 5,
        span_context: None,
        message: Some(pb::kv_server_message::Message::GetBlobArgs(
            pb::GetBlobArgs {
                blob_id: Bytes::from_static(&[7; 32]),
            },
        )),
    })));
    assert_eq!(
        decode(payload),
        ServerEvent::GetBlob {
            id: 5,
            blob_id: Bytes::from_static(&[7; 32])
        }
    );
}

#[test]
fn every_query_kind_decodes() {
    use pb::interaction_query::Query as Q;
    let cases = [
        (
            Q::WebSearchRequestQuery(Default::default()),
            QueryKind::WebSearch,
            2,
        ),
        (
            Q::AskQuestionInteractionQuery(Default::default()),
            QueryKind::AskQuestion,
            3,
        ),
        (
            Q::SwitchModeRequestQuery(Default::default()),
            QueryKind::SwitchMode,
            4,
        ),
        (
            Q::CreatePlanRequestQuery(Default::default()),
            QueryKind::CreatePlan,
            7,
        ),
        (
            Q::SetupVmEnvironmentArgs(Default::default()),
            QueryKind::SetupVmEnvironment,
            8,
        ),
        (
            Q::WebFetchRequestQuery(Default::default()),
            QueryKind::WebFetch,
            9,
        ),
        (
            Q::PrManagementRequestQuery(Default::default()),
            QueryKind::PrManagement,
            10,
        ),
        (
            Q::McpAuthRequestQuery(Default::default()),
            QueryKind::McpAuth,
            11,
        ),
        (
            Q::GenerateImageRequestQuery(Default::default()),
            QueryKind::GenerateImage,
            12,
        ),
        (
            Q::ReplaceEnvArgs(Default::default()),
            QueryKind::ReplaceEnv,
            13,
        ),
    ];
    for (q, kind, field) in cases {
        let payload = encode(Top::InteractionQuery(pb::InteractionQuery {
            id: 4,
            query: Some(q),
        }));
        assert_eq!(decode(payload), ServerEvent::Query { id: 4, kind });
        assert_eq!(kind.field(), field);
    }
}

#[test]
fn unknown_query_kind_recovers_its_field_number() {
    let mut q = varint_field(1, 4);
    q.extend(len_field(20, &[]));
    assert_eq!(
        decode(Bytes::from(len_field(7, &q))),
        ServerEvent::Query {
            id: 4,
            kind: QueryKind::Unknown { field: 20 }
        }
    );
}

#[test]
fn unknown_interaction_update_recovers_its_field_number() {
    let payload = Bytes::from(len_field(1, &len_field(25, &[])));
    assert_eq!(
        decode(payload),
        ServerEvent::UnknownUpdate { field: Some(25) }
    );
    assert_eq!(
        decode(Bytes::from(len_field(1, &[]))),
        ServerEvent::UnknownUpdate { field: None }
    );
}

#[test]
fn empty_or_unknown_server_message_is_unknown() {
    assert_eq!(decode(Bytes::new()), ServerEvent::Unknown { field: None });
    assert_eq!(
        decode(Bytes::from(len_field(9, b"new"))),
        ServerEvent::Unknown { field: Some(9) }
    );
    // Known containers with an unknown member.
    assert_eq!(
        decode(Bytes::from(len_field(4, &varint_field(1, 2)))),
        ServerEvent::Unknown { field: Some(4) }
    );
    assert_eq!(
        decode(Bytes::from(len_field(5, &len_field(9, &[])))),
        ServerEvent::Unknown { field: Some(5) }
    );
}

#[test]
fn unknown_fields_are_skipped_at_every_level() {
    // text_delta { text: "Hi", 7: "z" } inside interaction_update { …, 111: 1 } inside
    // AgentServerMessage { …, 100: 5 }.
    let mut td = len_field(1, b"Hi");
    td.extend(len_field(7, b"z"));
    let mut iu = len_field(1, &td);
    iu.extend(varint_field(111, 1));
    let mut asm = len_field(1, &iu);
    asm.extend(varint_field(100, 5));
    assert_eq!(
        decode(Bytes::from(asm)),
        ServerEvent::TextDelta("Hi".into())
    );
}

#[test]
fn turn_ended_recovers_newer_reasoning_tokens() {
    let mut te = varint_field(1, 10);
    te.extend(varint_field(5, 7));
    let payload = Bytes::from(len_field(1, &len_field(14, &te)));
    assert_eq!(
        decode(payload),
        ServerEvent::TurnEnded(TurnTotals {
            input_tokens: Some(10),
            reasoning_tokens: Some(7),
            ..Default::default()
        })
    );
}

#[test]
fn built_in_tool_call_reports_its_field_number() {
    // tool_call_started { call_id: "c", tool_call: { shell_tool_call(1): {}, tool_call_id: "t" } }
    let mut tc = len_field(1, &[]);
    tc.extend(len_field(57, b"t"));
    let mut started = len_field(1, b"c");
    started.extend(len_field(2, &tc));
    let payload = Bytes::from(len_field(1, &len_field(2, &started)));
    assert_eq!(
        decode(payload),
        ServerEvent::ToolCallStarted(ToolCallUpdate {
            call_id: "c".into(),
            model_call_id: String::new(),
            tool: ToolPayload::BuiltIn { field: 1 },
            tool_call_id: Some("t".into()),
        })
    );
    // A partial call with an empty ToolCall has no tool yet.
    let mut partial = len_field(1, b"c");
    partial.extend(len_field(2, &[]));
    let ServerEvent::PartialToolCall(p) =
        decode(Bytes::from(len_field(1, &len_field(7, &partial))))
    else {
        panic!("not a partial tool call");
    };
    assert_eq!((&p.tool, p.tool_name()), (&ToolPayload::None, None));
}

#[test]
fn partial_tool_call_names_its_tool() {
    let payload = update(Iu::PartialToolCall(Box::new(pb::PartialToolCallUpdate {
        call_id: "c".into(),
        tool_call: mcp_tool_call(None),
        ..Default::default()
    })));
    let ServerEvent::PartialToolCall(p) = decode(payload) else {
        panic!("not a partial tool call");
    };
    assert_eq!(p.tool_name(), Some("echo"));
}

#[test]
fn garbage_bytes_are_a_typed_error() {
    let garbage: [&[u8]; 6] = [
        &[0xff],
        &[0x0a, 0x05, 0x01],
        &[0x0f, 0x00],
        &[0xff; 12],
        // text_delta with invalid UTF-8
        &[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff],
        // a field number of 0
        &[0x00, 0x01],
    ];
    for g in garbage {
        let err = decode_server_message(Bytes::copy_from_slice(g)).unwrap_err();
        assert!(matches!(err, DecodeError::ServerMessage(_)), "{g:02x?}");
    }
    assert!(matches!(
        checkpoint_summary(&Bytes::from_static(&[0x0a, 0x40])),
        Err(DecodeError::Blob(..))
    ));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Deterministic pseudo-random inputs (xorshift), plus every prefix of a valid message.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 * 8) & 0xff) as u8)
            .collect();
        let _ = decode_server_message(Bytes::from(bytes.clone()));
        let _ = checkpoint_summary(&Bytes::from(bytes));
    }
    let valid = update(Iu::ToolCallCompleted(Box::new(
        pb::ToolCallCompletedUpdate {
            call_id: "c".into(),
            tool_call: mcp_tool_call(None),
            model_call_id: "m".into(),
        },
    )));
    for n in 0..valid.len() {
        let _ = decode_server_message(valid.slice(..n));
    }
}

fn within(inner: &Bytes, outer: &Bytes) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

#[test]
fn checkpoint_and_blobs_are_zero_copy_slices_of_the_payload() {
    let state = pb::ConversationStateStructure {
        pending_tool_calls: vec!["t1".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let payload = encode(Top::ConversationCheckpointUpdate(Bytes::from(
        state.clone(),
    )));
    let ServerEvent::Checkpoint(cp) = decode(payload.clone()) else {
        panic!("not a checkpoint");
    };
    assert_eq!(cp.as_ref(), state);
    assert!(within(&cp, &payload), "checkpoint was copied");

    let payload = encode(Top::KvServerMessage(Box::new(pb::KvServerMessage {
        id: 1,
        span_context: None,
        message: Some(pb::kv_server_message::Message::SetBlobArgs(
            pb::SetBlobArgs {
                blob_id: Bytes::from_static(&[1; 32]),
                blob_data: Bytes::from_static(b"blob data"),
            },
        )),
    })));
    let ServerEvent::SetBlob { blob_id, data, .. } = decode(payload.clone()) else {
        panic!("not a set_blob");
    };
    assert!(within(&blob_id, &payload) && within(&data, &payload));
}

fn id(n: u8) -> Bytes {
    Bytes::from(vec![n; 32])
}

#[test]
fn checkpoint_summary_lists_every_top_level_blob_reference() {
    let state = pb::ConversationStateStructure {
        root_prompt_messages_json: vec![id(1)],
        turns: vec![id(2), id(3)],
        todos: vec![id(4)],
        pending_tool_calls: vec!["call".into()],
        token_details: Some(pb::ConversationTokenDetails {
            used_tokens: 10,
            max_tokens: 100,
        }),
        summary: Some(id(5)),
        plan: Some(id(6)),
        summary_archive: Some(id(7)),
        file_states: [("b".to_owned(), id(9)), ("a".to_owned(), id(8))]
            .into_iter()
            .collect(),
        file_states_v2: [(
            "f".to_owned(),
            pb::FileStateStructure {
                content: Some(id(10)),
                initial_content: Some(id(11)),
            },
        )]
        .into_iter()
        .collect(),
        summary_archives: vec![id(12)],
        ..Default::default()
    };
    let summary = checkpoint_summary(&Bytes::from(state.encode_to_vec())).unwrap();
    assert_eq!(
        (summary.used_tokens, summary.max_tokens),
        (Some(10), Some(100))
    );
    assert_eq!(summary.pending_tool_calls, vec!["call".to_owned()]);
    let kinds: Vec<(u8, BlobKind)> = summary.blobs.iter().map(|b| (b.id[0], b.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, BlobKind::JsonMessage),
            (2, BlobKind::Turn),
            (3, BlobKind::Turn),
            (4, BlobKind::Todo),
            (5, BlobKind::Summary),
            (6, BlobKind::Plan),
            (7, BlobKind::SummaryArchive),
            (8, BlobKind::FileState),
            (9, BlobKind::FileState),
            (10, BlobKind::Text),
            (11, BlobKind::Text),
            (12, BlobKind::SummaryArchive),
        ]
    );
    assert_eq!(summary.blob_ids().count(), 12);

    // Without token_details the usage is unknown, not zero.
    let empty = checkpoint_summary(&Bytes::new()).unwrap();
    assert_eq!((empty.used_tokens, empty.blobs.len()), (None, 0));
}
