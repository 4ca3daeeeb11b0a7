//! Every byte-level example of the spec's Appendix C (except the ErrorDetails / end-stream JSON
//! pair, covered by the Connect error tests): decoding yields the documented values, and
//! re-encoding — through this crate's builders where one exists, else prost — reproduces the
//! exact bytes.

use bytes::Bytes;
use cursorpool_core::bidi::{self, DataEncoding};
use cursorpool_core::client::{self, RequestContextParams, RunAction, RunRequestParams};
use cursorpool_core::update::{
    BlobKind, ExecKind, McpCall, ServerEvent, TurnTotals, checkpoint_summary, decode_server_message,
};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Acm;
use prost::Message;
use sha2::{Digest, Sha256};

/// Parses the spec's `0a 20 0a 00 …` notation.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("test vector is hex"))
        .collect()
}

/// Splits one whole envelope into (flags, payload), checking the 5-byte header by hand.
fn envelope(bytes: &[u8]) -> (u8, &[u8]) {
    assert!(bytes.len() >= 5, "envelope shorter than its header");
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    assert_eq!(len, bytes.len() - 5, "declared length matches the payload");
    (bytes[0], &bytes[5..])
}

/// Builds an uncompressed message envelope by hand.
fn envelope_of(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const RUN_REQUEST: &str = "0a 20 0a 00 12 0b 0a 09 0a 07 0a 05 48 65 6c 6c 6f 22 00 2a 02 63 31 4a 09 0a 07 64 65 66 61 75 6c 74";
const RUN_REQUEST_ENVELOPE: &str = "00 00 00 00 22 0a 20 0a 00 12 0b 0a 09 0a 07 0a 05 48 65 6c 6c 6f 22 00 2a 02 63 31 4a 09 0a 07 64 65 66 61 75 6c 74";
const RUN_REQUEST_APPEND: &str = "0a 44 30 61 32 30 30 61 30 30 31 32 30 62 30 61 30 39 30 61 30 37 30 61 30 35 34 38 36 35 36 63 36 63 36 66 32 32 30 30 32 61 30 32 36 33 33 31 34 61 30 39 30 61 30 37 36 34 36 35 36 36 36 31 37 35 36 63 37 34 12 04 0a 02 72 31";
const HEARTBEAT_ENVELOPE: &str = "00 00 00 00 02 3a 00";
const HEARTBEAT_APPEND: &str = "0a 04 33 61 30 30 12 04 0a 02 72 31 18 01";
const RUN_SSE_BODY: &str = "00 00 00 00 04 0a 02 72 31";
const SERVER_HEARTBEAT: &str = "00 00 00 00 04 0a 02 6a 00";
const TEXT_DELTA: &str = "00 00 00 00 08 0a 06 0a 04 0a 02 48 69";
const TURN_ENDED: &str = "00 00 00 00 04 0a 02 72 00";
const EXEC_REQUEST_CONTEXT: &str = "12 07 08 01 52 00 7a 01 78";
const REQUEST_CONTEXT_RESULT: &str = "12 3e 08 01 52 37 0a 35 0a 33 3a 31 0a 08 73 72 76 2d 65 63 68 6f 12 04 45 63 68 6f 1a 14 2a 12 0a 10 0a 04 74 79 70 65 12 08 1a 06 6f 62 6a 65 63 74 22 03 73 72 76 2a 04 65 63 68 6f 7a 01 78";
const EXEC_MCP_ARGS: &str = "12 2e 08 02 5a 27 0a 08 73 72 76 2d 65 63 68 6f 12 0c 0a 04 74 65 78 74 12 04 1a 02 6f 6b 1a 02 74 31 22 03 73 72 76 2a 04 65 63 68 6f 7a 01 79";
const MCP_RESULT: &str = "12 11 08 02 5a 0a 0a 08 0a 06 0a 04 0a 02 6f 6b 7a 01 79";
const STREAM_CLOSE: &str = "2a 04 0a 02 08 02";
const SET_BLOB: &str = "22 45 1a 43 0a 20 83 23 7f 3a 3f 22 69 6d e2 3a 89 cb 52 ec fc 7a 20 8c 11 ac f3 d0 7a 7d 03 91 26 03 91 40 d8 c3 12 1f 7b 22 72 6f 6c 65 22 3a 22 73 79 73 74 65 6d 22 2c 22 63 6f 6e 74 65 6e 74 22 3a 22 78 22 7d";
const SET_BLOB_RESULT: &str = "1a 02 1a 00";
const GET_BLOB_NOT_FOUND: &str = "1a 04 08 03 12 00";
const CHECKPOINT: &str = "1a 2b 0a 20 83 23 7f 3a 3f 22 69 6d e2 3a 89 cb 52 ec fc 7a 20 8c 11 ac f3 d0 7a 7d 03 91 26 03 91 40 d8 c3 2a 07 08 b0 09 10 c0 9a 0c";
const END_STREAM_EMPTY: &str = "02 00 00 00 02 7b 7d";

fn hello_run_request() -> pb::AgentClientMessage {
    client::run_request(RunRequestParams {
        action: RunAction::UserMessage {
            text: "Hello".into(),
            images: vec![],
        },
        model_id: Some("default".into()),
        conversation_id: Some("c1".into()),
        ..Default::default()
    })
}

fn decode_event(bytes: &[u8]) -> ServerEvent {
    decode_server_message(Bytes::copy_from_slice(bytes)).expect("appendix example decodes")
}

#[test]
fn run_request_with_empty_state_encodes_to_the_appendix_bytes() {
    let encoded = client::encode_client_message(&hello_run_request());
    assert_eq!(encoded.as_ref(), hex(RUN_REQUEST));

    let decoded = pb::AgentClientMessage::decode(&hex(RUN_REQUEST)[..]).unwrap();
    let Some(Acm::RunRequest(run)) = decoded.message else {
        panic!("not a run request: {decoded:?}");
    };
    assert_eq!(run.conversation_state, Some(Bytes::new()));
    assert_eq!(run.conversation_id.as_deref(), Some("c1"));
    assert_eq!(run.requested_model.unwrap().model_id, "default");
    assert_eq!(run.mcp_tools, Some(pb::McpTools::default()));
    let Some(pb::conversation_action::Action::UserMessageAction(uma)) = run.action.unwrap().action
    else {
        panic!("not a user message action");
    };
    assert_eq!(uma.user_message.unwrap().text, "Hello");
}

#[test]
fn run_request_envelope_has_the_appendix_header() {
    let bytes = hex(RUN_REQUEST_ENVELOPE);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0);
    assert_eq!(payload, hex(RUN_REQUEST));
    let encoded = client::encode_client_message(&hello_run_request());
    assert_eq!(envelope_of(&encoded), bytes);
}

#[test]
fn bidi_append_of_the_run_request_matches_the_appendix() {
    let body = bidi::encode_append("r1", 0, &hello_run_request(), DataEncoding::Hex);
    assert_eq!(body.as_ref(), hex(RUN_REQUEST_APPEND));
    let append = bidi::decode_append(&hex(RUN_REQUEST_APPEND)).unwrap();
    assert_eq!(append.request_id, "r1");
    assert_eq!(append.seqno, 0);
    assert_eq!(append.payload.as_ref(), hex(RUN_REQUEST));
}

#[test]
fn client_heartbeat_envelope_matches_the_appendix() {
    let bytes = hex(HEARTBEAT_ENVELOPE);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0);
    let encoded = client::encode_client_message(&client::client_heartbeat());
    assert_eq!(encoded.as_ref(), payload);
    assert_eq!(envelope_of(&encoded), bytes);
}

#[test]
fn bidi_append_of_a_heartbeat_matches_the_appendix() {
    let body = bidi::encode_append("r1", 1, &client::client_heartbeat(), DataEncoding::Hex);
    assert_eq!(body.as_ref(), hex(HEARTBEAT_APPEND));
    let append = bidi::decode_append(&body).unwrap();
    assert_eq!((append.request_id.as_str(), append.seqno), ("r1", 1));
    assert_eq!(append.payload.as_ref(), [0x3a, 0x00]);
}

#[test]
fn run_sse_request_body_matches_the_appendix() {
    let bytes = hex(RUN_SSE_BODY);
    let (flags, _) = envelope(&bytes);
    assert_eq!(flags, 0);
    assert_eq!(bidi::run_sse_request_body("r1").as_ref(), bytes);
    assert_eq!(
        bidi::decode_run_sse_request_body(&bytes)
            .unwrap()
            .as_deref(),
        Some("r1")
    );
}

fn server_update(m: pb::interaction_update::Message) -> Vec<u8> {
    pb::AgentServerMessage {
        message: Some(pb::agent_server_message::Message::InteractionUpdate(
            pb::InteractionUpdate { message: Some(m) },
        )),
    }
    .encode_to_vec()
}

#[test]
fn server_heartbeat_envelope_decodes_to_heartbeat() {
    let bytes = hex(SERVER_HEARTBEAT);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0);
    assert_eq!(decode_event(payload), ServerEvent::Heartbeat);
    let again = server_update(pb::interaction_update::Message::Heartbeat(
        pb::HeartbeatUpdate {},
    ));
    assert_eq!(envelope_of(&again), bytes);
}

#[test]
fn text_delta_envelope_decodes_to_hi() {
    let bytes = hex(TEXT_DELTA);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0);
    assert_eq!(decode_event(payload), ServerEvent::TextDelta("Hi".into()));
    let again = server_update(pb::interaction_update::Message::TextDelta(
        pb::TextDeltaUpdate { text: "Hi".into() },
    ));
    assert_eq!(envelope_of(&again), bytes);
}

#[test]
fn turn_ended_envelope_decodes_without_totals() {
    let bytes = hex(TURN_ENDED);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0);
    assert_eq!(
        decode_event(payload),
        ServerEvent::TurnEnded(TurnTotals::default())
    );
    let again = server_update(pb::interaction_update::Message::TurnEnded(
        pb::TurnEndedUpdate::default(),
    ));
    assert_eq!(envelope_of(&again), bytes);
}

fn server_exec(id: u32, exec_id: &str, m: pb::exec_server_message::Message) -> Vec<u8> {
    pb::AgentServerMessage {
        message: Some(pb::agent_server_message::Message::ExecServerMessage(
            Box::new(pb::ExecServerMessage {
                id,
                exec_id: exec_id.into(),
                span_context: None,
                message: Some(m),
            }),
        )),
    }
    .encode_to_vec()
}

#[test]
fn request_context_exec_request_decodes() {
    let bytes = hex(EXEC_REQUEST_CONTEXT);
    let ServerEvent::Exec(req) = decode_event(&bytes) else {
        panic!("not an exec request");
    };
    assert_eq!((req.id, req.exec_id.as_str()), (1, "x"));
    assert_eq!(
        req.kind,
        ExecKind::RequestContext(pb::RequestContextArgs::default())
    );
    let again = server_exec(
        1,
        "x",
        pb::exec_server_message::Message::RequestContextArgs(Default::default()),
    );
    assert_eq!(again, bytes);
}

#[test]
fn request_context_result_with_one_tool_matches_the_appendix() {
    let schema = serde_json::json!({"type": "object"});
    let tool = client::mcp_tool_definition("srv", "echo", "Echo", Some(&schema));
    assert_eq!(tool.name, "srv-echo");
    let msg = client::request_context_success(
        1,
        "x",
        RequestContextParams {
            tools: vec![tool],
            ..Default::default()
        },
    );
    assert_eq!(
        client::encode_client_message(&msg).as_ref(),
        hex(REQUEST_CONTEXT_RESULT)
    );
    let decoded = pb::AgentClientMessage::decode(&hex(REQUEST_CONTEXT_RESULT)[..]).unwrap();
    assert_eq!(decoded, msg);
}

#[test]
fn mcp_exec_request_decodes_with_json_args() {
    let bytes = hex(EXEC_MCP_ARGS);
    let ServerEvent::Exec(req) = decode_event(&bytes) else {
        panic!("not an exec request");
    };
    assert_eq!((req.id, req.exec_id.as_str()), (2, "y"));
    let serde_json::Value::Object(args) = serde_json::json!({"text": "ok"}) else {
        unreachable!()
    };
    assert_eq!(
        req.kind,
        ExecKind::Mcp(McpCall {
            tool_call_id: "t1".into(),
            name: "srv-echo".into(),
            tool_name: "echo".into(),
            provider_identifier: "srv".into(),
            args,
        })
    );
    let again = server_exec(
        2,
        "y",
        pb::exec_server_message::Message::McpArgs(pb::McpArgs {
            name: "srv-echo".into(),
            args: [(
                "text".to_owned(),
                client::json_to_value(&serde_json::json!("ok")),
            )]
            .into_iter()
            .collect(),
            tool_call_id: "t1".into(),
            provider_identifier: "srv".into(),
            tool_name: "echo".into(),
            ..Default::default()
        }),
    );
    assert_eq!(again, bytes);
}

#[test]
fn mcp_text_result_matches_the_appendix() {
    let msg = client::mcp_success(2, "y", &[client::McpContent::Text("ok".into())], false);
    assert_eq!(
        client::encode_client_message(&msg).as_ref(),
        hex(MCP_RESULT)
    );
    assert_eq!(
        pb::AgentClientMessage::decode(&hex(MCP_RESULT)[..]).unwrap(),
        msg
    );
}

#[test]
fn exec_stream_close_matches_the_appendix() {
    let msg = client::exec_stream_close(2);
    assert_eq!(
        client::encode_client_message(&msg).as_ref(),
        hex(STREAM_CLOSE)
    );
}

#[test]
fn set_blob_request_decodes_and_its_id_is_the_sha256_of_the_data() {
    let bytes = hex(SET_BLOB);
    let ServerEvent::SetBlob { id, blob_id, data } = decode_event(&bytes) else {
        panic!("not a set_blob");
    };
    assert_eq!(id, 0);
    assert_eq!(data.as_ref(), br#"{"role":"system","content":"x"}"#);
    assert_eq!(blob_id.as_ref(), Sha256::digest(&data).as_slice());
    let again = pb::AgentServerMessage {
        message: Some(pb::agent_server_message::Message::KvServerMessage(
            Box::new(pb::KvServerMessage {
                id: 0,
                span_context: None,
                message: Some(pb::kv_server_message::Message::SetBlobArgs(
                    pb::SetBlobArgs {
                        blob_id,
                        blob_data: data,
                    },
                )),
            }),
        )),
    }
    .encode_to_vec();
    assert_eq!(again, bytes);
}

#[test]
fn set_blob_ack_matches_the_appendix() {
    assert_eq!(
        client::encode_client_message(&client::set_blob_ok(0)).as_ref(),
        hex(SET_BLOB_RESULT)
    );
}

#[test]
fn get_blob_not_found_matches_the_appendix() {
    assert_eq!(
        client::encode_client_message(&client::get_blob_not_found(3)).as_ref(),
        hex(GET_BLOB_NOT_FOUND)
    );
}

#[test]
fn checkpoint_decodes_with_token_usage_and_blob_reference() {
    let bytes = hex(CHECKPOINT);
    let ServerEvent::Checkpoint(state) = decode_event(&bytes) else {
        panic!("not a checkpoint");
    };
    assert_eq!(state.as_ref(), &bytes[2..]);
    let summary = checkpoint_summary(&state).unwrap();
    assert_eq!(summary.used_tokens, Some(1200));
    assert_eq!(summary.max_tokens, Some(200_000));
    assert!(summary.pending_tool_calls.is_empty());
    assert_eq!(summary.blobs.len(), 1);
    assert_eq!(summary.blobs[0].kind, BlobKind::JsonMessage);
    assert_eq!(
        summary.blobs[0].id.as_ref(),
        Sha256::digest(br#"{"role":"system","content":"x"}"#).as_slice()
    );

    // The state re-encodes identically through prost's ConversationStateStructure …
    let parsed = pb::ConversationStateStructure::decode(state.clone()).unwrap();
    assert_eq!(parsed.encode_to_vec(), state.as_ref());
    // … and the server message through the opaque `bytes` field.
    let again = pb::AgentServerMessage {
        message: Some(pb::agent_server_message::Message::ConversationCheckpointUpdate(state)),
    }
    .encode_to_vec();
    assert_eq!(again, bytes);
}

#[test]
fn empty_end_stream_envelope_has_the_appendix_header() {
    let bytes = hex(END_STREAM_EMPTY);
    let (flags, payload) = envelope(&bytes);
    assert_eq!(flags, 0x02);
    assert_eq!(payload, b"{}");
}
