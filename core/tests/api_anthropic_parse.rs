//! Anthropic Messages request parsing: a Claude-Code-shaped body, every accepted variation, and
//! every rejection with the JSON path of the problem.

use cursorpool_core::api::anthropic::{
    parse_count_tokens_request, parse_messages_request, parse_messages_request_with,
};
use cursorpool_core::api::{ClientError, ParseLimits};
use cursorpool_core::chat::{ChatRequest, Part, Role, Thinking, ToolChoice};
use http::HeaderMap;
use serde_json::{Value, json};

const CLAUDE_CODE: &[u8] = include_bytes!("fixtures/claude_code_request.json");
const SESSION: &str = "6f1c2e7a-4b3d-4e5f-9a8b-0c1d2e3f4a5b";

fn parse(body: &Value) -> Result<ChatRequest, ClientError> {
    parse_messages_request(body.to_string().as_bytes(), &HeaderMap::new())
}

fn ok(body: Value) -> ChatRequest {
    parse(&body).unwrap_or_else(|e| panic!("{body} should parse: {e}"))
}

/// A minimal valid body with `messages` replaced.
fn with_messages(messages: Value) -> Value {
    json!({"model": "claude-opus-4-8", "max_tokens": 1024, "messages": messages})
}

/// A minimal valid body with one field added or replaced.
fn with(key: &str, value: Value) -> Value {
    let mut body = with_messages(json!([{"role": "user", "content": "hi"}]));
    body[key] = value;
    body
}

/// Asserts an `Invalid` error at `path` whose message contains `needle`.
#[track_caller]
fn invalid_at(body: Value, path: &str, needle: &str) {
    match parse(&body) {
        Err(ClientError::Invalid { path: p, message }) => {
            assert_eq!(p, path, "path for {body}: {message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("{body}: expected Invalid at {path}, got {other:?}"),
    }
}

#[track_caller]
fn unsupported_at(body: Value, path: &str) {
    match parse(&body) {
        Err(ClientError::Unsupported { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{body}: expected Unsupported at {path}, got {other:?}"),
    }
}

#[test]
fn claude_code_request_parses_into_the_expected_chat_request() {
    let r = parse_messages_request(CLAUDE_CODE, &HeaderMap::new()).expect("fixture parses");
    assert!(
        CLAUDE_CODE.len() > 75_000,
        "the fixture is Claude-Code sized"
    );

    assert_eq!(r.model, "claude-opus-4-8");
    assert_eq!(r.max_tokens, Some(64_000));
    assert!(r.stream);
    assert!(!r.include_usage);
    assert_eq!(r.thinking, Thinking::Adaptive);
    assert_eq!(r.tool_choice, ToolChoice::Auto);
    assert!(r.stop_sequences.is_empty());

    // System: billing header first, then the identity line, then the long main prompt.
    assert_eq!(r.system.len(), 3);
    assert_eq!(
        r.system[0],
        "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli;"
    );
    assert_eq!(
        r.system[1],
        "You are Claude Code, Anthropic's official CLI for Claude."
    );
    assert!(r.system[2].len() > 5_000);
    assert!(r.system[2].contains("Working directory: /home/dev/projects/widget-service"));

    // Metadata: the session id inside the JSON-in-a-string user id; the user id kept as sent.
    assert_eq!(r.metadata.session_id.as_deref(), Some(SESSION));
    let user_id: Value =
        serde_json::from_str(r.metadata.user_id.as_deref().expect("user id")).expect("JSON");
    assert_eq!(user_id["session_id"], SESSION);

    // Messages: role:"system" entries stay in place.
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    use Role::{Assistant as A, System as S, User as U};
    assert_eq!(roles, [U, S, A, U, A, S, U]);
    assert_eq!(r.messages[0].content.len(), 2);
    assert!(
        matches!(&r.messages[0].content[0], Part::Text(t) if t.starts_with("<system-reminder>"))
    );
    assert!(
        matches!(&r.messages[1].content[..], [Part::Text(t)] if t.contains("agent types are available"))
    );

    // The assistant turn: thinking (with signature) first, text, then two tool calls.
    let assistant = &r.messages[2].content;
    assert_eq!(assistant.len(), 4);
    match &assistant[0] {
        Part::Thinking { text, signature } => {
            assert!(text.starts_with("The user wants the Rust files"));
            assert_eq!(signature.as_deref().map(str::len), Some(240));
        }
        other => panic!("expected thinking, got {other:?}"),
    }
    assert!(
        matches!(&assistant[1], Part::Text(t) if t == "I'll list the files and read the handler.")
    );
    match &assistant[2] {
        Part::ToolUse { id, name, input } => {
            assert_eq!(id, "toolu_01A09q90qw90lq917835lq9");
            assert_eq!(name, "Bash");
            assert_eq!(input["command"], "rg --files src -g '*.rs'");
        }
        other => panic!("expected tool_use, got {other:?}"),
    }
    assert!(
        matches!(&assistant[3], Part::ToolUse { name, input, .. } if name == "Read" && input["limit"] == 40)
    );

    // The tool results: string content with is_error, block content without.
    match &r.messages[3].content[..] {
        [
            Part::ToolResult {
                tool_use_id: first,
                content: first_content,
                is_error: true,
            },
            Part::ToolResult {
                tool_use_id: second,
                content: second_content,
                is_error: false,
            },
        ] => {
            assert_eq!(first, "toolu_01A09q90qw90lq917835lq9");
            assert!(matches!(&first_content[..], [Part::Text(t)] if t.starts_with("Exit code 2")));
            assert_eq!(second, "toolu_01B7xk2Lm4Np6Qr8St0Uv2Wx");
            assert!(
                matches!(&second_content[..], [Part::Text(t)] if t.starts_with("1\tuse crate"))
            );
        }
        other => panic!("expected two tool results, got {other:?}"),
    }

    // The newest user message: text, a decoded PNG, text.
    match &r.messages[6].content[..] {
        [
            Part::Text(_),
            Part::Image { media_type, data },
            Part::Text(last),
        ] => {
            assert_eq!(media_type, "image/png");
            assert!(data.starts_with(b"\x89PNG\r\n\x1a\n"));
            assert!(data.ends_with(b"IEND\xaeB`\x82"));
            assert_eq!(last, "be brief");
        }
        other => panic!("expected text, image, text; got {other:?}"),
    }

    // Tools: 24, in order, with their schemas.
    let names: Vec<&str> = r.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 24);
    assert_eq!(names[..3], ["Agent", "Bash", "CronCreate"]);
    assert_eq!(names[23], "Write");
    let bash = &r.tools[1];
    assert!(
        bash.description
            .starts_with("Executes a given bash command")
    );
    let schema = bash.input_schema.as_ref().expect("schema").to_value();
    assert_eq!(schema["required"], json!(["command"]));
    assert_eq!(schema["properties"]["timeout"]["type"], "number");
    let workflow = r
        .tools
        .iter()
        .find(|t| t.name == "Workflow")
        .expect("Workflow");
    assert!(workflow.description.len() > 15_000);
}

#[test]
fn session_id_falls_back_to_the_claude_code_header_then_x_session_id() {
    let body = with_messages(json!([{"role": "user", "content": "hi"}])).to_string();
    let mut headers = HeaderMap::new();
    headers.insert("x-session-id", "generic".parse().expect("header"));
    let r = parse_messages_request(body.as_bytes(), &headers).expect("parses");
    assert_eq!(r.metadata.session_id.as_deref(), Some("generic"));

    headers.insert(
        "x-claude-code-session-id",
        "cc-session".parse().expect("header"),
    );
    let r = parse_messages_request(body.as_bytes(), &headers).expect("parses");
    assert_eq!(r.metadata.session_id.as_deref(), Some("cc-session"));
    assert_eq!(r.metadata.user_id, None);

    // The id in the body wins over the headers.
    let mut body = with_messages(json!([{"role": "user", "content": "hi"}]));
    body["metadata"] = json!({"user_id": "{\"session_id\":\"from-body\"}"});
    let r = parse_messages_request(body.to_string().as_bytes(), &headers).expect("parses");
    assert_eq!(r.metadata.session_id.as_deref(), Some("from-body"));
}

#[test]
fn legacy_and_plain_user_ids_are_handled() {
    let legacy = "user_abc123_account_ff00_session_0a1b2c3d-0000-4000-8000-000000000000";
    let r = ok(with("metadata", json!({ "user_id": legacy })));
    assert_eq!(r.metadata.user_id.as_deref(), Some(legacy));
    assert_eq!(
        r.metadata.session_id.as_deref(),
        Some("0a1b2c3d-0000-4000-8000-000000000000")
    );
    let r = ok(with("metadata", json!({"user_id": "alice"})));
    assert_eq!(r.metadata.user_id.as_deref(), Some("alice"));
    assert_eq!(r.metadata.session_id, None);
    // Malformed JSON in the user id is just an opaque id.
    let r = ok(with("metadata", json!({"user_id": "{not json"})));
    assert_eq!(r.metadata.session_id, None);
}

#[test]
fn system_may_be_a_string_or_text_blocks() {
    assert_eq!(ok(with("system", json!("be terse"))).system, ["be terse"]);
    let blocks = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}]);
    assert_eq!(ok(with("system", blocks)).system, ["a", "b"]);
    assert!(
        ok(with_messages(json!([{"role": "user", "content": "x"}])))
            .system
            .is_empty()
    );
    invalid_at(
        with("system", json!([{"type": "image", "source": {}}])),
        "system[0].type",
        "must be \"text\"",
    );
}

#[test]
fn tool_choice_thinking_stop_sequences_and_stream_translate() {
    let tools = json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]);
    let mut body = with("tools", tools);
    for (choice, expected) in [
        (json!({"type": "auto"}), ToolChoice::Auto),
        (
            json!({"type": "any", "disable_parallel_tool_use": true}),
            ToolChoice::Any,
        ),
        (json!({"type": "none"}), ToolChoice::None),
        (
            json!({"type": "tool", "name": "get_weather"}),
            ToolChoice::Tool("get_weather".into()),
        ),
    ] {
        body["tool_choice"] = choice;
        assert_eq!(ok(body.clone()).tool_choice, expected);
    }
    for (thinking, expected) in [
        (
            json!({"type": "enabled", "budget_tokens": 31999}),
            Thinking::Enabled {
                budget_tokens: Some(31_999),
            },
        ),
        (json!({"type": "adaptive"}), Thinking::Adaptive),
        (json!({"type": "disabled"}), Thinking::Disabled),
    ] {
        assert_eq!(ok(with("thinking", thinking)).thinking, expected);
    }
    assert_eq!(
        ok(with("stop_sequences", json!(["\n\nHuman:", "END"]))).stop_sequences,
        ["\n\nHuman:", "END"]
    );
    assert!(ok(with("stream", json!(true))).stream);
    assert!(!ok(with("stream", json!(false))).stream);
    assert!(!ok(with("stream", Value::Null)).stream);
}

#[test]
fn unknown_fields_are_accepted_and_ignored_everywhere() {
    let body = json!({
        "model": "m", "max_tokens": 10, "temperature": 0.2, "top_k": 5, "future_field": {"x": [1]},
        "context_management": {"edits": []}, "output_config": {"effort": "high"},
        "messages": [{"role": "user", "extra": 1, "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}, "citations": null}
        ]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": {}, "strict": true}],
        "metadata": {"user_id": "u", "other": 2}
    });
    let r = ok(body);
    assert!(matches!(&r.messages[0].content[..], [Part::Text(t)] if t == "hi"));
    assert_eq!(r.tools[0].description, "");
}

#[test]
fn count_tokens_needs_no_max_tokens_and_never_streams() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "foo"}],
                      "tools": [{"name": "Bash", "input_schema": {"type": "object"}}], "stream": true});
    let r =
        parse_count_tokens_request(body.to_string().as_bytes(), &HeaderMap::new()).expect("parses");
    assert_eq!(r.max_tokens, None);
    assert!(!r.stream);
    assert_eq!(r.tools.len(), 1);
    // The same body is refused by /v1/messages: max_tokens is required there.
    invalid_at(body, "max_tokens", "required");
}

#[test]
fn redacted_thinking_is_dropped_and_tool_input_may_be_omitted() {
    let r = ok(with_messages(json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "tool_use", "id": "toolu_1", "name": "List"}
        ]}
    ])));
    assert!(
        matches!(&r.messages[1].content[..], [Part::ToolUse { input, .. }] if input.is_empty())
    );
}

#[test]
fn tool_result_content_may_hold_text_and_images() {
    let r = ok(with_messages(json!([{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "screenshot:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lGODlhAQABAAAAACw="}}
        ]},
        {"type": "tool_result", "tool_use_id": "toolu_2"}
    ]}])));
    match &r.messages[0].content[..] {
        [
            Part::ToolResult { content, .. },
            Part::ToolResult {
                content: empty,
                is_error: false,
                ..
            },
        ] => {
            assert!(
                matches!(&content[..], [Part::Text(_), Part::Image { media_type, data }]
                if media_type == "image/gif" && data.starts_with(b"GIF89a"))
            );
            assert!(empty.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn malformed_json_is_a_syntax_error_with_location() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi",}],"max_tokens":1}"#;
    match parse_messages_request(body, &HeaderMap::new()) {
        Err(ClientError::Syntax {
            path, line, column, ..
        }) => {
            assert_eq!(path, "messages[0]");
            // Column 56 is the `}` after the trailing comma (1-based).
            assert_eq!((line, column), (1, 56));
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    for truncated in [&b"{\"model\":\"m\",\"messages\":[{"[..], b"{"] {
        assert!(matches!(
            parse_messages_request(truncated, &HeaderMap::new()),
            Err(ClientError::Syntax { .. })
        ));
    }
}

#[test]
fn bodies_that_are_not_objects_are_refused() {
    for body in [&b""[..], b"   ", b"[]", b"42", b"\"text\"", b"null"] {
        assert!(
            matches!(
                parse_messages_request(body, &HeaderMap::new()),
                Err(ClientError::Invalid { ref path, .. }) if path.is_empty()
            ),
            "{body:?}"
        );
    }
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let mut body = br#"{"model":"m","messages":[{"role":"user","content":"h"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}],"max_tokens":1}"#);
    let err = parse_messages_request(&body, &HeaderMap::new()).expect_err("refused");
    assert_eq!(err, ClientError::InvalidUtf8 { offset: 52 });
    assert_eq!(err.status(), 400);
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_before_deserializing() {
    let deep = format!(
        "{{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(
        parse_messages_request(deep.as_bytes(), &HeaderMap::new()),
        Err(ClientError::TooDeep { limit: 128 })
    );
    // A configured limit applies; nesting within it parses.
    let nested = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                        "tools": [{"name": "t", "input_schema": {"a": {"b": {"c": {}}}}}]});
    let limits = ParseLimits {
        max_depth: 5,
        ..ParseLimits::default()
    };
    let body = nested.to_string();
    assert_eq!(
        parse_messages_request_with(body.as_bytes(), &HeaderMap::new(), &limits),
        Err(ClientError::TooDeep { limit: 5 })
    );
    assert!(parse_messages_request(body.as_bytes(), &HeaderMap::new()).is_ok());
}

#[test]
fn missing_required_fields_are_named() {
    invalid_at(
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}),
        "model",
        "required",
    );
    invalid_at(
        json!({"model": "m", "max_tokens": 1}),
        "messages",
        "required",
    );
    invalid_at(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        "max_tokens",
        "required",
    );
    invalid_at(with_messages(json!([])), "messages", "at least one");
    invalid_at(
        with_messages(json!([{"content": "x"}])),
        "messages[0].role",
        "required",
    );
    invalid_at(
        with_messages(json!([{"role": "user"}])),
        "messages[0].content",
        "required",
    );
    invalid_at(
        with_messages(json!([{"role": "user", "content": [{"text": "no type"}]}])),
        "messages[0].content[0].type",
        "required",
    );
    invalid_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
        ),
        "messages[0].content[0].tool_use_id",
        "required",
    );
}

#[test]
fn wrong_types_are_reported_at_their_path() {
    invalid_at(with("model", json!(5)), "model", "expected a string");
    invalid_at(
        with("max_tokens", json!("many")),
        "max_tokens",
        "invalid type",
    );
    invalid_at(with("max_tokens", json!(1.5)), "max_tokens", "invalid type");
    invalid_at(with("stream", json!("yes")), "stream", "expected a boolean");
    invalid_at(
        with("messages", json!({"role": "user"})),
        "messages",
        "invalid type: map",
    );
    invalid_at(with("system", json!(7)), "system", "a string or an array");
    invalid_at(
        with_messages(json!([{"role": "user", "content": 5}])),
        "messages[0].content",
        "a string or an array",
    );
    invalid_at(
        with_messages(json!([{"role": "user", "content": [{"type": "text", "text": ["x"]}]}])),
        "messages[0].content[0].text",
        "invalid type: sequence",
    );
    invalid_at(
        with(
            "tools",
            json!([{"name": "a"}, {"name": "b", "input_schema": "object"}]),
        ),
        "tools[1].input_schema",
        "must be an object",
    );
    invalid_at(
        with_messages(
            json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": [1]}]}]),
        ),
        "messages[0].content[0].input",
        "must be an object, got an array",
    );
    invalid_at(
        with("metadata", json!({"user_id": 12})),
        "metadata.user_id",
        "expected a string",
    );
    invalid_at(
        with("stop_sequences", json!(["ok", 3])),
        "stop_sequences[1]",
        "expected a string",
    );
}

#[test]
fn a_content_block_that_is_not_an_object_is_refused_at_its_index() {
    invalid_at(
        with_messages(json!([{"role": "user", "content": [{"type": "text", "text": "a"}, 5]}])),
        "messages[0].content[1]",
        "expected a content block object",
    );
    invalid_at(
        with_messages(json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": ["not a block"]}
        ]}])),
        "messages[0].content[0].content[0]",
        "expected a content block object",
    );
}

#[test]
fn non_base64_image_data_is_refused_with_its_path() {
    let body = with_messages(json!([
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}}]}
    ]));
    let err = parse(&body).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "messages[3].content[0].source.data: not valid base64"
    );
    assert_eq!(err.path(), Some("messages[3].content[0].source.data"));
    invalid_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "text/plain", "data": "AAAA"}}]}]),
        ),
        "messages[0].content[0].source.media_type",
        "image MIME type",
    );
}

#[test]
fn absurd_max_tokens_are_refused() {
    invalid_at(
        with("max_tokens", json!(0)),
        "max_tokens",
        "between 1 and 1000000",
    );
    invalid_at(
        with("max_tokens", json!(1_000_001)),
        "max_tokens",
        "got 1000001",
    );
    invalid_at(with("max_tokens", json!(u64::MAX)), "max_tokens", "between");
    invalid_at(with("max_tokens", json!(-1)), "max_tokens", "invalid value");
    assert_eq!(
        ok(with("max_tokens", json!(1_000_000))).max_tokens,
        Some(1_000_000)
    );
}

#[test]
fn blocks_in_the_wrong_role_or_of_unknown_kind_are_refused() {
    invalid_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]),
        ),
        "messages[0].content[0].type",
        "not allowed in user messages",
    );
    invalid_at(
        with_messages(
            json!([{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]),
        ),
        "messages[0].content[0].type",
        "not allowed in assistant messages",
    );
    invalid_at(
        with_messages(
            json!([{"role": "system", "content": [{"type": "thinking", "thinking": "x"}]}]),
        ),
        "messages[0].content[0].type",
        "not allowed in system messages",
    );
    invalid_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "tool_result", "tool_use_id": "u"}]}]}]),
        ),
        "messages[0].content[0].content[0].type",
        "not allowed in tool_result content",
    );
    invalid_at(
        with_messages(json!([{"role": "tool", "content": "x"}])),
        "messages[0].role",
        "unknown role",
    );
    unsupported_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}]),
        ),
        "messages[0].content[0].type",
    );
    unsupported_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]),
        ),
        "messages[0].content[0].source",
    );
    unsupported_at(
        with(
            "tools",
            json!([{"type": "web_search_20250305", "name": "web_search"}]),
        ),
        "tools[0].type",
    );
}

#[test]
fn inconsistent_tools_and_tool_choice_are_refused() {
    let tool = json!({"name": "a", "input_schema": {"type": "object"}});
    invalid_at(
        with("tools", json!([tool, tool])),
        "tools[1].name",
        "duplicate tool name",
    );
    let mut body = with("tools", json!([tool]));
    body["tool_choice"] = json!({"type": "tool", "name": "b"});
    invalid_at(body.clone(), "tool_choice.name", "no tool named \"b\"");
    body["tool_choice"] = json!({"type": "sometimes"});
    invalid_at(body, "tool_choice.type", "unknown tool_choice");
    invalid_at(
        with("tool_choice", json!({"type": "any"})),
        "tool_choice",
        "at least one tool",
    );
    invalid_at(
        with("thinking", json!({"type": "maybe"})),
        "thinking.type",
        "unknown thinking",
    );
    invalid_at(
        with("thinking", json!({"type": "enabled", "budget_tokens": 0})),
        "thinking.budget_tokens",
        "between 1",
    );
    invalid_at(
        with("stop_sequences", json!([""])),
        "stop_sequences[0]",
        "must not be empty",
    );
}

#[test]
fn duplicate_fields_are_refused_at_the_key() {
    let body =
        br#"{"model":"a","model":"b","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#;
    match parse_messages_request(body, &HeaderMap::new()) {
        Err(ClientError::Invalid { path, message }) => {
            assert_eq!(path, "model");
            assert!(message.contains("duplicate field"));
        }
        other => panic!("expected a duplicate-field error, got {other:?}"),
    }
}

#[test]
fn errors_echo_client_input_only_up_to_a_bound() {
    let huge = "x".repeat(100_000);
    // A client value quoted in our message, in serde's message, and a client key in the path.
    let role = parse(&with_messages(json!([{"role": huge, "content": "x"}])));
    let max_tokens = parse(&with("max_tokens", json!(huge)));
    let key = format!("{{\"{huge}\":{{\"model\":[1,}}}}");
    let syntax = parse_messages_request(key.as_bytes(), &HeaderMap::new());
    for result in [role, max_tokens, syntax] {
        let shown = result.expect_err("refused").to_string();
        assert!(shown.chars().count() < 700, "{} chars", shown.len());
        assert!(shown.contains('…'), "{shown}");
    }
}

#[test]
fn schemas_nested_up_to_the_depth_limit_are_kept_and_deeper_refused() {
    // Top-level object, tools array, tool object: 3 levels; the schema adds the rest.
    let schema = |levels: usize| {
        format!(
            "{}{{}}{}",
            "{\"a\":".repeat(levels - 1),
            "}".repeat(levels - 1)
        )
    };
    let body = |levels: usize| {
        format!(
            "{{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{{\"role\":\"user\",\"content\":\"x\"}}],\
             \"tools\":[{{\"name\":\"t\",\"input_schema\":{}}}]}}",
            schema(levels)
        )
    };
    // Schemas are kept as text (never deserialized into a tree), so the pre-scan's limit
    // (128 levels in all) is the only bound.
    let kept = parse_messages_request(body(125).as_bytes(), &HeaderMap::new()).expect("128 levels");
    assert_eq!(
        kept.tools[0]
            .input_schema
            .as_ref()
            .map(|s| s.as_str().len()),
        Some(schema(125).len())
    );
    assert_eq!(
        parse_messages_request(body(126).as_bytes(), &HeaderMap::new()),
        Err(ClientError::TooDeep { limit: 128 })
    );
}
