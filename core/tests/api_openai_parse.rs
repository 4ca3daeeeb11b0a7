//! OpenAI Chat Completions request parsing: translation of every message kind and option, and
//! every rejection with the JSON path of the problem.

use cursorpool_core::api::ClientError;
use cursorpool_core::api::openai::parse_chat_request;
use cursorpool_core::chat::{ChatRequest, Part, Role, Thinking, ToolChoice};
use http::HeaderMap;
use serde_json::{Value, json};

/// A 1×1 PNG.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

fn parse(body: &Value) -> Result<ChatRequest, ClientError> {
    parse_chat_request(body.to_string().as_bytes(), &HeaderMap::new())
}

fn ok(body: Value) -> ChatRequest {
    parse(&body).unwrap_or_else(|e| panic!("{body} should parse: {e}"))
}

fn with_messages(messages: Value) -> Value {
    json!({"model": "gpt-5", "messages": messages})
}

fn with(key: &str, value: Value) -> Value {
    let mut body = with_messages(json!([{"role": "user", "content": "hi"}]));
    body[key] = value;
    body
}

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
fn a_full_conversation_translates_into_the_internal_request() {
    let r = ok(json!({
        "model": "gpt-5",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": 2048,
        "stop": "END",
        "user": "user-42",
        "reasoning_effort": "medium",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "developer", "content": [{"type": "text", "text": "Prefer tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}"), "detail": "high"}}
            ]},
            {"role": "assistant", "content": null, "reasoning_content": "Two lookups.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "describe", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a cat"}]},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Summarise."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "describe", "strict": true}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    }));
    assert_eq!(r.model, "gpt-5");
    assert!(r.stream && r.include_usage);
    assert_eq!(r.max_tokens, Some(2048));
    assert_eq!(r.stop_sequences, ["END"]);
    assert_eq!(
        r.thinking,
        Thinking::Enabled {
            budget_tokens: Some(8192)
        }
    );
    assert_eq!(r.metadata.user_id.as_deref(), Some("user-42"));
    assert_eq!(r.tool_choice, ToolChoice::Tool("get_weather".into()));
    // Leading system and developer messages form the system prompt.
    assert_eq!(r.system, ["You are helpful.", "Prefer tools."]);

    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::User,
            Role::System,
            Role::User
        ]
    );
    match &r.messages[0].content[..] {
        [Part::Text(_), Part::Image { media_type, data }] => {
            assert_eq!(media_type, "image/png");
            assert!(data.starts_with(b"\x89PNG"));
        }
        other => panic!("unexpected user content {other:?}"),
    }
    match &r.messages[1].content[..] {
        [
            Part::Thinking { text, signature },
            Part::ToolUse {
                id, name, input, ..
            },
            Part::ToolUse { input: empty, .. },
        ] => {
            assert_eq!(text, "Two lookups.");
            assert_eq!(*signature, None);
            assert_eq!((id.as_str(), name.as_str()), ("call_1", "get_weather"));
            assert_eq!(input["city"], "Paris");
            assert!(empty.is_empty());
        }
        other => panic!("unexpected assistant content {other:?}"),
    }
    // Consecutive tool messages merge into one user message of results.
    match &r.messages[2].content[..] {
        [
            Part::ToolResult {
                tool_use_id: a,
                content: ca,
                is_error: false,
            },
            Part::ToolResult {
                tool_use_id: b,
                content: cb,
                ..
            },
        ] => {
            assert_eq!((a.as_str(), b.as_str()), ("call_1", "call_2"));
            assert!(matches!(&ca[..], [Part::Text(t)] if t == "18°C"));
            assert!(matches!(&cb[..], [Part::Text(t)] if t == "a cat"));
        }
        other => panic!("unexpected tool results {other:?}"),
    }
    assert!(matches!(&r.messages[3].content[..], [Part::Text(t)] if t == "Answer in French."));
    assert_eq!(r.tools.len(), 2);
    assert_eq!(
        r.tools[0].input_schema.as_ref().expect("schema").to_value()["type"],
        "object"
    );
    assert_eq!(r.tools[1].input_schema, None);
}

#[test]
fn tool_choice_modes_and_reasoning_efforts_translate() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let mut body = with("tools", tools);
    for (choice, expected) in [
        ("auto", ToolChoice::Auto),
        ("none", ToolChoice::None),
        ("required", ToolChoice::Any),
    ] {
        body["tool_choice"] = json!(choice);
        assert_eq!(ok(body.clone()).tool_choice, expected);
    }
    for (effort, expected) in [
        ("none", Thinking::Disabled),
        (
            "minimal",
            Thinking::Enabled {
                budget_tokens: Some(1024),
            },
        ),
        (
            "high",
            Thinking::Enabled {
                budget_tokens: Some(16_384),
            },
        ),
    ] {
        assert_eq!(
            ok(with("reasoning_effort", json!(effort))).thinking,
            expected
        );
    }
    assert_eq!(
        ok(with_messages(json!([{"role": "user", "content": "x"}]))).thinking,
        Thinking::Disabled
    );
}

#[test]
fn max_tokens_stop_and_session_headers_are_read() {
    assert_eq!(ok(with("max_tokens", json!(100))).max_tokens, Some(100));
    let mut both = with("max_tokens", json!(100));
    both["max_completion_tokens"] = json!(200);
    assert_eq!(ok(both).max_tokens, Some(200));
    assert_eq!(
        ok(with("stop", json!(["a", "b"]))).stop_sequences,
        ["a", "b"]
    );
    assert!(ok(with("stop", Value::Null)).stop_sequences.is_empty());

    let mut headers = HeaderMap::new();
    headers.insert("x-session-id", "s-1".parse().expect("header"));
    let body = with_messages(json!([{"role": "user", "content": "x"}])).to_string();
    let r = parse_chat_request(body.as_bytes(), &headers).expect("parses");
    assert_eq!(r.metadata.session_id.as_deref(), Some("s-1"));
}

#[test]
fn unknown_fields_and_empty_assistant_text_are_accepted() {
    let r = ok(json!({
        "model": "m", "temperature": 1.0, "logprobs": false, "seed": 7, "n": 1,
        "response_format": {"type": "text"}, "parallel_tool_calls": true,
        "messages": [
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "assistant", "content": "", "refusal": null},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
        ]
    }));
    assert!(r.messages[1].content.is_empty());
    assert!(matches!(&r.messages[2].content[..], [Part::Text(t)] if t == "no"));
}

#[test]
fn bad_tool_call_arguments_are_refused_with_their_path() {
    let call = |arguments: &str| {
        with_messages(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]}
        ]))
    };
    invalid_at(
        call("{\"a\":"),
        "messages[1].tool_calls[0].function.arguments",
        "not valid JSON",
    );
    invalid_at(
        call("[1,2]"),
        "messages[1].tool_calls[0].function.arguments",
        "must be a JSON object, got an array",
    );
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    invalid_at(
        call(&deep),
        "messages[1].tool_calls[0].function.arguments",
        "deeper than 128",
    );
    invalid_at(
        with_messages(
            json!([{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]),
        ),
        "messages[0].tool_calls[0].id",
        "required",
    );
}

#[test]
fn remote_and_malformed_image_urls_are_refused() {
    let image = |url: &str| {
        with_messages(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]),
        )
    };
    unsupported_at(
        image("https://example.com/cat.png"),
        "messages[0].content[0].image_url.url",
    );
    unsupported_at(
        image("data:image/png,rawbytes"),
        "messages[0].content[0].image_url.url",
    );
    invalid_at(
        image("data:image/png;base64,@@@"),
        "messages[0].content[0].image_url.url",
        "not valid base64",
    );
    invalid_at(
        image("data:text/plain;base64,AAAA"),
        "messages[0].content[0].image_url.url",
        "image MIME type",
    );
    invalid_at(
        image("ftp://x"),
        "messages[0].content[0].image_url.url",
        "expected a data:",
    );
    invalid_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        ),
        "messages[0].content[0].image_url.url",
        "required",
    );
    unsupported_at(
        with_messages(
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
        ),
        "messages[0].content[0].type",
    );
}

#[test]
fn more_than_one_choice_is_refused() {
    unsupported_at(with("n", json!(2)), "n");
    invalid_at(with("n", json!(0)), "n", "at least 1");
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    invalid_at(
        json!({"messages": [{"role": "user", "content": "x"}]}),
        "model",
        "required",
    );
    invalid_at(json!({"model": "m"}), "messages", "required");
    invalid_at(with_messages(json!([])), "messages", "at least one");
    invalid_at(with("model", json!(["m"])), "model", "expected a string");
    invalid_at(with("stream", json!(1)), "stream", "expected a boolean");
    invalid_at(with("max_tokens", json!(0)), "max_tokens", "between 1");
    invalid_at(
        with("max_completion_tokens", json!(2_000_000)),
        "max_completion_tokens",
        "between 1",
    );
    invalid_at(with("stop", json!(5)), "stop", "a string or an array");
    invalid_at(
        with("tool_choice", json!(5)),
        "tool_choice",
        "\"auto\", \"none\", \"required\"",
    );
    invalid_at(
        with("tool_choice", json!("sometimes")),
        "tool_choice",
        "unknown tool_choice",
    );
    invalid_at(
        with("tool_choice", json!("required")),
        "tool_choice",
        "at least one tool",
    );
    invalid_at(
        with(
            "tool_choice",
            json!({"type": "function", "function": {"name": "nope"}}),
        ),
        "tool_choice.function.name",
        "no tool named",
    );
    invalid_at(
        with("reasoning_effort", json!("extreme")),
        "reasoning_effort",
        "unknown",
    );
    invalid_at(
        with_messages(json!([{"role": "user"}])),
        "messages[0].content",
        "required",
    );
    invalid_at(
        with_messages(json!([{"role": "critic", "content": "x"}])),
        "messages[0].role",
        "unknown role",
    );
    unsupported_at(
        with_messages(json!([{"role": "function", "name": "f", "content": "x"}])),
        "messages[0].role",
    );
    invalid_at(
        with_messages(json!([{"role": "tool", "content": "x"}])),
        "messages[0].tool_call_id",
        "required",
    );
    invalid_at(
        with_messages(
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        ),
        "messages[0].content[0].type",
        "only contain text",
    );
    invalid_at(
        with_messages(json!([{"role": "user", "content": [7]}])),
        "messages[0].content[0]",
        "expected a content part object",
    );
    invalid_at(
        with(
            "tools",
            json!([{"type": "function", "function": {"name": "f", "parameters": [1]}}]),
        ),
        "tools[0].function.parameters",
        "must be an object",
    );
    invalid_at(
        with(
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]),
        ),
        "tools[1].function.name",
        "duplicate",
    );
    unsupported_at(
        with(
            "tools",
            json!([{"type": "custom", "custom": {"name": "x"}}]),
        ),
        "tools[0].type",
    );
}

#[test]
fn byte_level_problems_are_refused() {
    assert!(matches!(
        parse_chat_request(b"{\"model\":\"\xc3\x28\"}", &HeaderMap::new()),
        Err(ClientError::InvalidUtf8 { offset: 10 })
    ));
    let deep = format!(
        "{{\"model\":{}{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(matches!(
        parse_chat_request(deep.as_bytes(), &HeaderMap::new()),
        Err(ClientError::TooDeep { .. })
    ));
    assert!(matches!(
        parse_chat_request(b"{\"model\": \"m\", \"messages\": [", &HeaderMap::new()),
        Err(ClientError::Syntax { .. })
    ));
}
