//! Client message builders: run requests, KV/exec/query answers, `reject_exec` on the matching
//! result field for every exec kind, and the `BidiAppend` / `RunSSE` body codec.

use bytes::Bytes;
use cursorpool_core::bidi::{self, BidiError, DataEncoding};
use cursorpool_core::client::{
    self, ImageAttachment, McpContent, RequestContextParams, RunAction, RunRequestParams,
};
use cursorpool_core::update::{ExecKind, ExecRequest, McpCall, QueryKind};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Acm;
use cursorpool_proto::aiserver_v1::{BidiAppendRequest, BidiRequestId, GetDiffRequest};
use prost::Message;

/// The field number a oneof member is written under, read back from its own encoding.
fn oneof_field(encode: impl FnOnce(&mut Vec<u8>)) -> u32 {
    let mut buf = Vec::new();
    encode(&mut buf);
    let (field, _) = prost::encoding::decode_key(&mut &buf[..]).expect("a key");
    field
}

fn roundtrip(msg: &pb::AgentClientMessage) -> pb::AgentClientMessage {
    let decoded = pb::AgentClientMessage::decode(client::encode_client_message(msg)).unwrap();
    assert_eq!(&decoded, msg);
    decoded
}

fn all_exec_kinds() -> Vec<ExecKind> {
    let shell = pb::ShellArgs {
        command: "rm -rf /".into(),
        working_directory: "/w".into(),
        ..Default::default()
    };
    let read = pb::ReadArgs {
        path: "/etc/passwd".into(),
        ..Default::default()
    };
    vec![
        ExecKind::RequestContext(Default::default()),
        ExecKind::Mcp(McpCall::default()),
        ExecKind::Shell(shell.clone()),
        ExecKind::ShellStream(shell),
        ExecKind::Write(pb::WriteArgs {
            path: "/f".into(),
            ..Default::default()
        }),
        ExecKind::Delete(pb::DeleteArgs {
            path: "/f".into(),
            ..Default::default()
        }),
        ExecKind::Grep(Default::default()),
        ExecKind::Read(read.clone()),
        ExecKind::RedactedRead(read),
        ExecKind::Ls(pb::LsArgs {
            path: "/d".into(),
            ..Default::default()
        }),
        ExecKind::Diagnostics(Default::default()),
        ExecKind::BackgroundShellSpawn(Default::default()),
        ExecKind::ListMcpResources(Default::default()),
        ExecKind::ReadMcpResource(Default::default()),
        ExecKind::McpState(Default::default()),
        ExecKind::Fetch(pb::FetchArgs {
            url: "https://x".into(),
            ..Default::default()
        }),
        ExecKind::RecordScreen(Default::default()),
        ExecKind::ComputerUse(Default::default()),
        ExecKind::WriteShellStdin(Default::default()),
        ExecKind::ExecuteHook(Default::default()),
        ExecKind::Subagent(Default::default()),
        ExecKind::ForceBackgroundShell(Default::default()),
        ExecKind::ForceBackgroundSubagent(Default::default()),
        ExecKind::SubagentAwait(Default::default()),
        ExecKind::SmartModeClassifier(Default::default()),
        ExecKind::CanvasDiagnostics(Default::default()),
        ExecKind::ShellAllowlistPrecheck(Default::default()),
        ExecKind::McpAllowlistPrecheck(Default::default()),
        ExecKind::WebFetchAllowlistPrecheck(Default::default()),
        ExecKind::GitDiff(GetDiffRequest::default()),
        ExecKind::Unknown { field: 99 },
    ]
}

/// Fails to compile when `ExecKind` gains a variant, so `all_exec_kinds` stays complete.
fn exec_kind_is_listed(kind: &ExecKind) {
    match kind {
        ExecKind::RequestContext(_)
        | ExecKind::Mcp(_)
        | ExecKind::Shell(_)
        | ExecKind::ShellStream(_)
        | ExecKind::Write(_)
        | ExecKind::Delete(_)
        | ExecKind::Grep(_)
        | ExecKind::Read(_)
        | ExecKind::RedactedRead(_)
        | ExecKind::Ls(_)
        | ExecKind::Diagnostics(_)
        | ExecKind::BackgroundShellSpawn(_)
        | ExecKind::ListMcpResources(_)
        | ExecKind::ReadMcpResource(_)
        | ExecKind::McpState(_)
        | ExecKind::Fetch(_)
        | ExecKind::RecordScreen(_)
        | ExecKind::ComputerUse(_)
        | ExecKind::WriteShellStdin(_)
        | ExecKind::ExecuteHook(_)
        | ExecKind::Subagent(_)
        | ExecKind::ForceBackgroundShell(_)
        | ExecKind::ForceBackgroundSubagent(_)
        | ExecKind::SubagentAwait(_)
        | ExecKind::SmartModeClassifier(_)
        | ExecKind::CanvasDiagnostics(_)
        | ExecKind::ShellAllowlistPrecheck(_)
        | ExecKind::McpAllowlistPrecheck(_)
        | ExecKind::WebFetchAllowlistPrecheck(_)
        | ExecKind::GitDiff(_)
        | ExecKind::Unknown { .. } => {}
    }
}

/// Kinds whose result message has no way to refuse: answered with throw + stream_close.
fn answered_by_throw(kind: &ExecKind) -> bool {
    matches!(
        kind,
        ExecKind::ExecuteHook(_) | ExecKind::GitDiff(_) | ExecKind::Unknown { .. }
    )
}

#[test]
fn reject_exec_answers_on_the_matching_field_for_every_kind() {
    use pb::exec_client_control_message::Message as Ctl;
    let kinds = all_exec_kinds();
    assert_eq!(kinds.len(), 31, "30 exec kinds of the spec + unknown");
    let fields: std::collections::BTreeSet<u32> = kinds.iter().map(ExecKind::field).collect();
    assert_eq!(fields.len(), 31, "one sample per kind");
    for kind in kinds {
        exec_kind_is_listed(&kind);
        let name = kind.name();
        let req = ExecRequest {
            id: 42,
            exec_id: "ex".into(),
            kind,
        };
        let msgs = client::reject_exec(&req, "not here");
        assert_eq!(msgs.len(), 2, "{name}");
        let msgs: Vec<_> = msgs.iter().map(roundtrip).collect();
        assert_eq!(
            msgs[1],
            client::exec_stream_close(42),
            "{name}: stream_close last"
        );
        match &msgs[0].message {
            Some(Acm::ExecClientMessage(reply)) => {
                assert!(!answered_by_throw(&req.kind), "{name} should throw");
                assert_eq!((reply.id, reply.exec_id.as_str()), (42, "ex"), "{name}");
                let result = reply.message.as_ref().expect("a result member");
                assert_eq!(
                    oneof_field(|b| result.encode(b)),
                    req.kind.field(),
                    "{name} answered on the wrong field"
                );
            }
            Some(Acm::ExecClientControlMessage(pb::ExecClientControlMessage {
                message: Some(Ctl::Throw(t)),
            })) => {
                assert!(answered_by_throw(&req.kind), "{name} should not throw");
                assert_eq!(t.id, 42);
                assert!(t.error.contains("not here"), "{name}: {}", t.error);
            }
            other => panic!("{name}: unexpected reply {other:?}"),
        }
    }
}

fn first_result(kind: ExecKind) -> pb::exec_client_message::Message {
    let req = ExecRequest {
        id: 1,
        exec_id: String::new(),
        kind,
    };
    match client::reject_exec(&req, "no").remove(0).message {
        Some(Acm::ExecClientMessage(m)) => m.message.expect("a result"),
        other => panic!("not an exec result: {other:?}"),
    }
}

#[test]
fn shell_stream_is_refused_on_shell_stream_not_shell_result() {
    use pb::exec_client_message::Message as R;
    let shell = pb::ShellArgs {
        command: "ls".into(),
        working_directory: "/w".into(),
        ..Default::default()
    };
    let rejected = pb::ShellRejected {
        command: "ls".into(),
        working_directory: "/w".into(),
        reason: "no".into(),
        is_readonly: false,
    };
    assert_eq!(
        first_result(ExecKind::ShellStream(shell.clone())),
        R::ShellStream(pb::ShellStream {
            event: Some(pb::shell_stream::Event::Rejected(rejected.clone()))
        })
    );
    assert_eq!(
        first_result(ExecKind::Shell(shell)),
        R::ShellResult(pb::ShellResult {
            result: Some(pb::shell_result::Result::Rejected(rejected))
        })
    );
}

#[test]
fn allowlist_prechecks_answer_not_allowlisted() {
    use pb::exec_client_message::Message as R;
    assert_eq!(
        first_result(ExecKind::ShellAllowlistPrecheck(Default::default())),
        R::ShellAllowlistPrecheckResult(pb::ShellAllowlistPrecheckResult { allowlisted: false })
    );
    assert_eq!(
        first_result(ExecKind::McpAllowlistPrecheck(Default::default())),
        R::McpAllowlistPrecheckResult(pb::McpAllowlistPrecheckResult { allowlisted: false })
    );
    assert_eq!(
        first_result(ExecKind::WebFetchAllowlistPrecheck(Default::default())),
        R::WebFetchAllowlistPrecheckResult(pb::WebFetchAllowlistPrecheckResult {
            allowlisted: false
        })
    );
}

#[test]
fn file_refusals_echo_the_path() {
    use pb::exec_client_message::Message as R;
    let read = pb::ReadArgs {
        path: "/p".into(),
        ..Default::default()
    };
    let expected = pb::ReadResult {
        result: Some(pb::read_result::Result::Rejected(pb::ReadRejected {
            path: "/p".into(),
            reason: "no".into(),
        })),
    };
    assert_eq!(
        first_result(ExecKind::RedactedRead(read.clone())),
        R::RedactedReadResult(expected.clone())
    );
    assert_eq!(first_result(ExecKind::Read(read)), R::ReadResult(expected));
}

#[test]
fn unknown_exec_kind_is_thrown_then_closed() {
    let req = ExecRequest {
        id: 5,
        exec_id: "e".into(),
        kind: ExecKind::Unknown { field: 77 },
    };
    let msgs = client::reject_exec(&req, "unsupported");
    let Some(Acm::ExecClientControlMessage(pb::ExecClientControlMessage {
        message: Some(pb::exec_client_control_message::Message::Throw(t)),
    })) = &msgs[0].message
    else {
        panic!("not a throw: {:?}", msgs[0]);
    };
    assert_eq!(t.id, 5);
    assert!(t.error.contains("77"), "{}", t.error);
    assert_eq!(msgs[1], client::exec_stream_close(5));
}

fn run(params: RunRequestParams) -> pb::AgentRunRequest {
    match roundtrip(&client::run_request(params)).message {
        Some(Acm::RunRequest(r)) => r,
        other => panic!("not a run request: {other:?}"),
    }
}

#[test]
fn run_request_always_carries_a_conversation_state() {
    let bytes = client::encode_client_message(&client::run_request(Default::default()));
    // run_request(1) { conversation_state(1): empty } comes first.
    assert_eq!(&bytes[2..4], &[0x0a, 0x00]);
    assert_eq!(
        run(Default::default()).conversation_state,
        Some(Bytes::new())
    );

    let checkpoint = Bytes::from_static(b"\x2a\x07\x08\xb0\x09\x10\xc0\x9a\x0c");
    let r = run(RunRequestParams {
        conversation_state: Some(checkpoint.clone()),
        ..Default::default()
    });
    assert_eq!(r.conversation_state, Some(checkpoint));
    assert_eq!(
        r.mcp_tools,
        Some(pb::McpTools::default()),
        "mcp_tools always present"
    );
    assert_eq!(r.requested_model, None);
}

#[test]
fn run_request_carries_images_tools_blobs_and_prompt() {
    let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n....");
    assert_eq!(ImageAttachment::sniff_mime_type(&png), Some("image/png"));
    assert_eq!(
        ImageAttachment::sniff_mime_type(b"\xff\xd8\xff\xe0"),
        Some("image/jpeg")
    );
    assert_eq!(ImageAttachment::sniff_mime_type(b"text"), None);
    let tool = client::mcp_tool_definition("custom-user-tools", "Read", "Reads", None);
    let r = run(RunRequestParams {
        action: RunAction::UserMessage {
            text: "look".into(),
            images: vec![ImageAttachment {
                uuid: "u-1".into(),
                mime_type: "image/png".into(),
                data: png.clone(),
            }],
        },
        mode: Some(pb::AgentMode::Agent),
        model_id: Some("claude".into()),
        model_parameters: vec![("effort".into(), "high".into())],
        mcp_tools: vec![tool.clone()],
        conversation_id: Some("conv".into()),
        pre_fetched_blobs: vec![pb::PreFetchedBlob {
            id: Bytes::from_static(&[1; 32]),
            value: Bytes::from_static(b"v"),
        }],
        custom_system_prompt: Some("be brief".into()),
        ..Default::default()
    });
    assert_eq!(tool.name, "custom-user-tools-Read");
    assert_eq!(r.mcp_tools.unwrap().mcp_tools, vec![tool]);
    assert_eq!(r.pre_fetched_blobs.len(), 1);
    assert_eq!(r.custom_system_prompt.as_deref(), Some("be brief"));
    let model = r.requested_model.unwrap();
    assert_eq!(model.model_id, "claude");
    assert_eq!(
        (
            model.parameters[0].id.as_str(),
            model.parameters[0].value.as_str()
        ),
        ("effort", "high")
    );
    let Some(pb::conversation_action::Action::UserMessageAction(uma)) = r.action.unwrap().action
    else {
        panic!("not a user message");
    };
    let um = uma.user_message.unwrap();
    assert_eq!(
        (um.text.as_str(), um.mode),
        ("look", pb::AgentMode::Agent as i32)
    );
    let img = &um.selected_context.unwrap().selected_images[0];
    assert_eq!(
        (img.uuid.as_str(), img.mime_type.as_str()),
        ("u-1", "image/png")
    );
    assert_eq!(
        img.data_or_blob_id,
        Some(pb::selected_image::DataOrBlobId::Data(png))
    );
}

#[test]
fn resume_run_request_sends_resume_action() {
    let r = run(RunRequestParams {
        conversation_state: Some(Bytes::from_static(b"\x0a\x00")),
        action: RunAction::Resume,
        ..Default::default()
    });
    assert!(matches!(
        r.action.unwrap().action,
        Some(pb::conversation_action::Action::ResumeAction(_))
    ));
}

#[test]
fn kv_answers_encode_found_missing_ok_and_error() {
    use pb::kv_client_message::Message as Kv;
    let kv = |m: pb::AgentClientMessage| match roundtrip(&m).message {
        Some(Acm::KvClientMessage(k)) => (k.id, k.message.unwrap()),
        other => panic!("not kv: {other:?}"),
    };
    assert_eq!(
        kv(client::get_blob_found(1, Bytes::from_static(b"d"))),
        (
            1,
            Kv::GetBlobResult(pb::GetBlobResult {
                blob_data: Some(Bytes::from_static(b"d"))
            })
        )
    );
    assert_eq!(
        kv(client::get_blob_not_found(2)),
        (2, Kv::GetBlobResult(pb::GetBlobResult { blob_data: None }))
    );
    assert_eq!(
        kv(client::set_blob_ok(3)),
        (3, Kv::SetBlobResult(pb::SetBlobResult { error: None }))
    );
    assert_eq!(
        kv(client::set_blob_error(4, "disk full")),
        (
            4,
            Kv::SetBlobResult(pb::SetBlobResult {
                error: Some(pb::Error {
                    message: "disk full".into()
                })
            })
        )
    );
    // An empty blob that was found is still distinguishable from "not found".
    let found_empty = client::encode_client_message(&client::get_blob_found(0, Bytes::new()));
    let missing = client::encode_client_message(&client::get_blob_not_found(0));
    assert_ne!(found_empty, missing);
}

#[test]
fn exec_control_messages_and_actions_encode() {
    use pb::exec_client_control_message::Message as Ctl;
    let ctl = |m: pb::AgentClientMessage| match roundtrip(&m).message {
        Some(Acm::ExecClientControlMessage(c)) => c.message.unwrap(),
        other => panic!("not exec control: {other:?}"),
    };
    assert_eq!(
        ctl(client::exec_heartbeat(3)),
        Ctl::Heartbeat(pb::ExecClientHeartbeat { id: 3 })
    );
    assert_eq!(
        ctl(client::exec_throw(3, "boom")),
        Ctl::Throw(pb::ExecClientThrow {
            id: 3,
            error: "boom".into(),
            ..Default::default()
        })
    );
    let action = |m: pb::AgentClientMessage| match roundtrip(&m).message {
        Some(Acm::ConversationAction(a)) => a.action.unwrap(),
        other => panic!("not an action: {other:?}"),
    };
    assert_eq!(
        action(client::cancel("client went away")),
        pb::conversation_action::Action::CancelAction(pb::CancelAction {
            reason: "client went away".into()
        })
    );
    let pb::conversation_action::Action::UserMessageAction(u) =
        action(client::queued_user_message("also this"))
    else {
        panic!("not a user message");
    };
    assert_eq!(u.user_message.unwrap().text, "also this");
}

#[test]
fn mcp_results_encode_text_image_error() {
    use pb::mcp_result::Result as M;
    let mcp = |m: pb::AgentClientMessage| match roundtrip(&m).message {
        Some(Acm::ExecClientMessage(pb::ExecClientMessage {
            message: Some(pb::exec_client_message::Message::McpResult(r)),
            ..
        })) => r.result.unwrap(),
        other => panic!("not an mcp result: {other:?}"),
    };
    let content = [
        McpContent::Text("t".into()),
        McpContent::Image {
            data: Bytes::from_static(b"img"),
            mime_type: "image/png".into(),
        },
    ];
    let M::Success(s) = mcp(client::mcp_success(1, "", &content, true)) else {
        panic!("not a success");
    };
    assert!(s.is_error);
    let back: Vec<_> = s
        .content
        .into_iter()
        .filter_map(McpContent::from_proto)
        .collect();
    assert_eq!(back, content);
    assert_eq!(
        mcp(client::mcp_error(1, "", "Unknown custom tool: X")),
        M::Error(pb::McpError {
            error: "Unknown custom tool: X".into()
        })
    );
}

#[test]
fn request_context_success_carries_env_and_cloud_rule() {
    let msg = client::request_context_success(
        1,
        "",
        RequestContextParams {
            tools: vec![],
            env: Some(pb::RequestContextEnv {
                os_version: "linux".into(),
                time_zone: "UTC".into(),
                ..Default::default()
            }),
            cloud_rule: Some("system prompt".into()),
        },
    );
    let Some(Acm::ExecClientMessage(pb::ExecClientMessage {
        message: Some(pb::exec_client_message::Message::RequestContextResult(r)),
        ..
    })) = roundtrip(&msg).message
    else {
        panic!("not a request context result");
    };
    let Some(pb::request_context_result::Result::Success(s)) = r.result else {
        panic!("not a success");
    };
    let ctx = s.request_context.unwrap();
    assert_eq!(ctx.cloud_rule.as_deref(), Some("system prompt"));
    assert_eq!(ctx.env.unwrap().os_version, "linux");
}

const ALL_QUERIES: [QueryKind; 10] = [
    QueryKind::WebSearch,
    QueryKind::AskQuestion,
    QueryKind::SwitchMode,
    QueryKind::CreatePlan,
    QueryKind::SetupVmEnvironment,
    QueryKind::WebFetch,
    QueryKind::PrManagement,
    QueryKind::McpAuth,
    QueryKind::GenerateImage,
    QueryKind::ReplaceEnv,
];

fn response(m: Option<pb::AgentClientMessage>) -> pb::InteractionResponse {
    match roundtrip(&m.expect("an answer")).message {
        Some(Acm::InteractionResponse(r)) => r,
        other => panic!("not an interaction response: {other:?}"),
    }
}

#[test]
fn every_query_is_answered_on_its_own_field() {
    for kind in ALL_QUERIES {
        for r in [
            response(client::answer_query(8, kind, "no UI")),
            response(client::reject_query(8, kind, "no UI")),
        ] {
            assert_eq!(r.id, 8);
            let result = r.result.expect("a result member");
            assert_eq!(oneof_field(|b| result.encode(b)), kind.field(), "{kind:?}");
        }
    }
    let unknown = QueryKind::Unknown { field: 30 };
    assert_eq!(client::answer_query(8, unknown, "x"), None);
    assert_eq!(client::reject_query(8, unknown, "x"), None);
}

#[test]
fn query_answers_follow_the_sdk() {
    use pb::interaction_response::Result as R;
    let answer = |k| response(client::answer_query(1, k, "why")).result.unwrap();
    assert_eq!(
        answer(QueryKind::WebSearch),
        R::WebSearchRequestResponse(pb::WebSearchRequestResponse {
            result: Some(pb::web_search_request_response::Result::Approved(
                Default::default()
            ))
        })
    );
    assert_eq!(
        answer(QueryKind::AskQuestion),
        R::AskQuestionInteractionResponse(pb::AskQuestionInteractionResponse {
            result: Some(pb::AskQuestionResult {
                result: Some(pb::ask_question_result::Result::Rejected(
                    pb::AskQuestionRejected {
                        reason: "why".into()
                    }
                ))
            })
        })
    );
    assert_eq!(
        answer(QueryKind::PrManagement),
        R::PrManagementResult(pb::PrManagementResult {
            result: Some(pb::pr_management_result::Result::Error(
                pb::PrManagementError {
                    error: "why".into()
                }
            ))
        })
    );
    assert_eq!(
        answer(QueryKind::ReplaceEnv),
        R::ReplaceEnvResult(pb::ReplaceEnvResult {
            result: Some(pb::replace_env_result::Result::Failure(
                pb::ReplaceEnvFailure {
                    error_message: "why".into(),
                    setup_logs: String::new()
                }
            ))
        })
    );
}

#[test]
fn bidi_append_round_trips_in_hex_and_binary() {
    let msg = client::mcp_success(9, "x", &[McpContent::Text("ok".into())], false);
    let payload = client::encode_client_message(&msg);
    for encoding in [DataEncoding::Hex, DataEncoding::Binary] {
        let body = bidi::encode_append("req-1", 17, &msg, encoding);
        let append = bidi::decode_append(&body).unwrap();
        assert_eq!(append.request_id, "req-1");
        assert_eq!(append.seqno, 17);
        assert_eq!(append.payload, payload);
        let raw = BidiAppendRequest::decode(body).unwrap();
        match encoding {
            DataEncoding::Hex => {
                assert_eq!(raw.data, hex::encode(&payload));
                assert!(
                    raw.data.chars().all(|c| !c.is_ascii_uppercase()),
                    "lowercase hex"
                );
                assert!(raw.data_binary.is_empty());
            }
            DataEncoding::Binary => {
                assert!(raw.data.is_empty());
                assert_eq!(raw.data_binary, payload);
            }
        }
    }
}

fn append_body(data: &str, binary: &[u8], request_id: Option<&str>, seqno: i64) -> Vec<u8> {
    BidiAppendRequest {
        data: data.into(),
        request_id: request_id.map(|r| BidiRequestId {
            request_id: r.into(),
        }),
        append_seqno: seqno,
        data_binary: Bytes::copy_from_slice(binary),
    }
    .encode_to_vec()
}

#[test]
fn bidi_append_accepts_uppercase_hex_and_empty_messages() {
    let a = bidi::decode_append(&append_body("3A00", &[], Some("r"), 1)).unwrap();
    assert_eq!(a.payload.as_ref(), [0x3a, 0x00]);
    // An empty AgentClientMessage serializes to nothing: neither field is on the wire.
    let a = bidi::decode_append(&append_body("", &[], Some("r"), 2)).unwrap();
    assert!(a.payload.is_empty());
}

#[test]
fn malformed_bidi_append_bodies_are_typed_errors() {
    let cases: Vec<(Vec<u8>, BidiError)> = vec![
        (
            append_body("3a0", &[], Some("r"), 0),
            BidiError::OddHexLength(3),
        ),
        (
            append_body("3g00", &[], Some("r"), 0),
            BidiError::InvalidHex {
                character: 'g',
                offset: 1,
            },
        ),
        (
            append_body("3a00", &[0x3a, 0], Some("r"), 0),
            BidiError::BothData,
        ),
        (
            append_body("3a00", &[], None, 0),
            BidiError::MissingRequestId,
        ),
        (
            append_body("3a00", &[], Some(""), 0),
            BidiError::MissingRequestId,
        ),
        (
            append_body("3a00", &[], Some("r"), -1),
            BidiError::NegativeSeqno(-1),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(bidi::decode_append(&body), Err(expected));
    }
    assert!(matches!(
        bidi::decode_append(&[0x0a, 0x09, 0x01]),
        Err(BidiError::Protobuf(_))
    ));
}

#[test]
fn run_sse_request_body_round_trips_and_rejects_malformed_bodies() {
    let body = bidi::run_sse_request_body("0b7e3f2a-uuid");
    assert_eq!(
        bidi::decode_run_sse_request_body(&body).unwrap().as_deref(),
        Some("0b7e3f2a-uuid")
    );
    // A retried RunSSE arrives with an empty body (§10.8).
    assert_eq!(bidi::decode_run_sse_request_body(&[]), Ok(None));
    for bad in [
        &[0x00, 0x00, 0x00][..],
        &[0x01, 0x00, 0x00, 0x00, 0x04, 0x0a, 0x02, 0x72, 0x31][..],
        &[0x00, 0x00, 0x00, 0x00, 0x05, 0x0a, 0x02, 0x72, 0x31][..],
        &[0x00, 0x00, 0x00, 0x00, 0x00][..],
        &[0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x05][..],
    ] {
        assert!(
            bidi::decode_run_sse_request_body(bad).is_err(),
            "{bad:02x?}"
        );
    }
}
