//! The side pieces of the API front: the input-token estimate, `/v1/models` bodies, and ids.

use bytes::Bytes;
use cursorpool_core::api::anthropic::parse_messages_request;
use cursorpool_core::api::ids;
use cursorpool_core::api::models::{model_body, models_body, rfc3339};
use cursorpool_core::api::tokens::{
    IMAGE_TOKENS, MESSAGE_TOKENS, TOOL_TOKENS, estimate_input_tokens, estimate_text_tokens,
};
use cursorpool_core::chat::{ApiKind, ChatMessage, ChatRequest, Part, Role, ToolSpec};
use cursorpool_core::ids::IdSource;
use http::HeaderMap;
use serde_json::{Map, Value, json};

const CLAUDE_CODE: &[u8] = include_bytes!("fixtures/claude_code_request.json");

fn user(parts: Vec<Part>) -> ChatMessage {
    ChatMessage {
        role: Role::User,
        content: parts,
    }
}

#[test]
fn the_estimate_counts_text_bytes_images_and_framing() {
    // 10 bytes of system + 7 of text = 17 bytes → 5 tokens, + 1 message.
    let r = ChatRequest {
        system: vec!["0123456789".into()],
        messages: vec![user(vec![Part::Text("abcdefg".into())])],
        ..ChatRequest::default()
    };
    assert_eq!(estimate_input_tokens(&r), 5 + MESSAGE_TOKENS);

    let with_image = ChatRequest {
        messages: vec![user(vec![Part::Image {
            media_type: "image/png".into(),
            data: Bytes::from_static(b"\x89PNG"),
        }])],
        ..ChatRequest::default()
    };
    assert_eq!(
        estimate_input_tokens(&with_image),
        IMAGE_TOKENS + MESSAGE_TOKENS
    );

    // A tool: name + description + compact schema JSON.
    let schema = json!({"type": "object"});
    let tool = ChatRequest {
        tools: vec![ToolSpec {
            name: "ab".into(),
            description: "cd".into(),
            input_schema: cursorpool_core::chat::JsonSchema::from_value(&schema),
        }],
        ..ChatRequest::default()
    };
    let bytes = 4 + schema.to_string().len() as u64;
    assert_eq!(
        estimate_input_tokens(&tool),
        bytes.div_ceil(4) + TOOL_TOKENS
    );

    // Tool calls and results count their text and input JSON.
    let mut input = Map::new();
    input.insert("command".into(), Value::from("ls"));
    let calls = ChatRequest {
        messages: vec![
            ChatMessage {
                role: Role::Assistant,
                content: vec![Part::ToolUse {
                    id: "t".into(),
                    name: "Bash".into(),
                    input,
                }],
            },
            user(vec![Part::ToolResult {
                tool_use_id: "t".into(),
                content: vec![Part::Text("file.txt".into())],
                is_error: false,
            }]),
        ],
        ..ChatRequest::default()
    };
    let bytes = 4 + r#"{"command":"ls"}"#.len() as u64 + 8;
    assert_eq!(
        estimate_input_tokens(&calls),
        bytes.div_ceil(4) + 2 * MESSAGE_TOKENS
    );
}

#[test]
fn the_estimate_is_never_zero_and_is_deterministic() {
    assert_eq!(estimate_input_tokens(&ChatRequest::default()), 1);
    assert_eq!(estimate_text_tokens(""), 0);
    assert_eq!(estimate_text_tokens("abcde"), 2);
    let r = parse_messages_request(CLAUDE_CODE, &HeaderMap::new()).expect("fixture");
    let n = estimate_input_tokens(&r);
    assert_eq!(n, estimate_input_tokens(&r.clone()));
    // About a quarter of the body's bytes, plus the image and framing.
    let quarter = CLAUDE_CODE.len() as u64 / 4;
    assert!(
        n > quarter * 8 / 10 && n < quarter + IMAGE_TOKENS + 500,
        "{n} vs {quarter}"
    );
}

#[test]
fn models_render_in_the_anthropic_shape() {
    let body: Value = serde_json::from_slice(&models_body(
        ApiKind::Anthropic,
        &["claude-opus-4-8", "gpt-5"],
        1_740_000_000,
    ))
    .expect("JSON");
    assert_eq!(
        body,
        json!({
            "data": [
                {"type": "model", "id": "claude-opus-4-8", "display_name": "claude-opus-4-8", "created_at": "2025-02-19T21:20:00Z"},
                {"type": "model", "id": "gpt-5", "display_name": "gpt-5", "created_at": "2025-02-19T21:20:00Z"}
            ],
            "has_more": false, "first_id": "claude-opus-4-8", "last_id": "gpt-5"
        })
    );
    let empty: Value =
        serde_json::from_slice(&models_body::<&str>(ApiKind::Anthropic, &[], 0)).expect("JSON");
    assert_eq!(
        empty,
        json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
    );
    let one: Value = serde_json::from_slice(&model_body(ApiKind::Anthropic, "m", 0)).expect("JSON");
    assert_eq!(
        one,
        json!({"type": "model", "id": "m", "display_name": "m", "created_at": "1970-01-01T00:00:00Z"})
    );
}

#[test]
fn models_render_in_the_openai_shape() {
    let ids = vec!["gpt-5".to_owned(), "claude-sonnet-5".to_owned()];
    let body: Value =
        serde_json::from_slice(&models_body(ApiKind::OpenAi, &ids, 1_700_000_000)).expect("JSON");
    assert_eq!(
        body,
        json!({"object": "list", "data": [
            {"id": "gpt-5", "object": "model", "created": 1_700_000_000u64, "owned_by": "cursor"},
            {"id": "claude-sonnet-5", "object": "model", "created": 1_700_000_000u64, "owned_by": "cursor"}
        ]})
    );
    let one: Value = serde_json::from_slice(&model_body(ApiKind::OpenAi, "m", 5)).expect("JSON");
    assert_eq!(
        one,
        json!({"id": "m", "object": "model", "created": 5, "owned_by": "cursor"})
    );
}

#[test]
fn rfc3339_handles_leap_years_and_century_rules() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
}

#[test]
fn ids_look_like_each_apis_ids_and_depend_only_on_the_seed() {
    let mut a = IdSource::new(42);
    let mut b = IdSource::new(42);
    let msg = ids::message_id(&mut a);
    assert_eq!(msg, ids::message_id(&mut b));
    assert!(msg.starts_with("msg_01") && msg.len() == 28, "{msg}");
    let tool = ids::tool_use_id(&mut a);
    assert!(tool.starts_with("toolu_01") && tool.len() == 30, "{tool}");
    let cmpl = ids::completion_id(&mut a);
    assert!(cmpl.starts_with("chatcmpl-") && cmpl.len() == 38, "{cmpl}");
    let call = ids::call_id(&mut a, ApiKind::OpenAi);
    assert!(call.starts_with("call_") && call.len() == 29, "{call}");
    assert!(ids::reply_id(&mut a, ApiKind::Anthropic).starts_with("msg_01"));
    for id in [&msg, &tool, &cmpl, &call] {
        let body = id.rsplit(['_', '-']).next().expect("body");
        assert!(body.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }
    // Many ids, no repeats.
    let mut seen = std::collections::HashSet::new();
    let mut s = IdSource::new(7);
    for _ in 0..10_000 {
        assert!(seen.insert(ids::tool_use_id(&mut s)));
    }
}
