//! End to end over loopback with a plain HTTP/1.1 client (no Python needed): a request shaped
//! like Claude Code's, a 1 MiB body through a 16 KiB HTTP/2 window, 50 concurrent streamed
//! conversations, and bad input. The proxy and the simulated Cursor backend run in-process.

use cursorpool_conformance as support;

use bytes::Bytes;
use serde_json::{Value, json};
use support::{
    CLIENT_KEY, Client, Harness, Options, anthropic_stream, anthropic_text_request, bounded,
    openai_stream, openai_text_request,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../core/tests/fixtures/claude_code_request.json"
);

/// The recorded Claude Code request (interactive mode, 24 tools, ≈84 KB).
fn claude_code_request() -> Value {
    let bytes = std::fs::read(FIXTURE).expect("the Claude Code fixture is readable");
    serde_json::from_slice(&bytes).expect("the fixture is JSON")
}

/// The headers Claude Code sends with every model call (spec §3).
fn claude_code_headers(session: &str) -> Vec<(&'static str, String)> {
    vec![
        ("accept", "application/json".to_owned()),
        ("content-type", "application/json".to_owned()),
        (
            "user-agent",
            "claude-cli/2.1.197 (external, cli)".to_owned(),
        ),
        ("x-claude-code-session-id", session.to_owned()),
        ("x-stainless-lang", "js".to_owned()),
        ("x-stainless-retry-count", "0".to_owned()),
        ("x-stainless-timeout", "600".to_owned()),
        (
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,\
             mid-conversation-system-2026-04-07"
                .to_owned(),
        ),
        (
            "anthropic-dangerous-direct-browser-access",
            "true".to_owned(),
        ),
        ("anthropic-version", "2023-06-01".to_owned()),
        ("x-api-key", CLIENT_KEY.to_owned()),
        ("x-app", "cli".to_owned()),
    ]
}

async fn post_as_claude_code(h: &Harness, body: &Value) -> support::Response {
    let session = body["metadata"]["user_id"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v["session_id"].as_str().map(str::to_owned))
        .expect("metadata.user_id is a JSON string with a session_id");
    let headers = claude_code_headers(&session);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut client = Client::connect(h.addr).await;
    client
        .send(
            "POST",
            "/v1/messages?beta=true",
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
}

async fn claude_code_shaped_request_round_trips() {
    bounded(async {
        let req = claude_code_request();
        // The fixture is what the issue describes: check it before relying on it.
        let size = req.to_string().len();
        assert!((70_000..100_000).contains(&size), "≈80 KB body: {size}");
        assert_eq!(req["tools"].as_array().map(Vec::len), Some(24));
        assert!(
            req["system"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("x-anthropic-billing-header:")),
            "billing block first"
        );
        assert!(
            req["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .any(|m| m["role"] == "system"),
            "role:system entries inside messages"
        );
        assert_eq!(req["stream"], true);

        let h = Harness::start_default().await;
        let resp = post_as_claude_code(&h, &req).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(
            resp.header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            resp.headers
        );
        let s = anthropic_stream(&resp);
        assert!(s.error.is_none(), "{:?}", s.error);
        let start = s.message.as_ref().expect("message_start.message");
        assert_eq!(
            start["model"], "claude-opus-4-8",
            "the client's model is echoed"
        );
        assert_eq!(start["role"], "assistant");
        assert!(
            start["usage"]["input_tokens"].as_u64().unwrap_or(0) > 1_000,
            "input tokens estimated for an 84 KB request, never 0: {start}"
        );
        assert_eq!(s.stop_reason.as_deref(), Some("end_turn"));
        // The model saw the system prompt (billing block and all) and the whole conversation.
        assert!(
            s.text
                .contains("You are Claude Code, Anthropic's official CLI for Claude."),
            "{}",
            s.text
        );
        assert!(s.text.contains("tools available: 24;"), "{}", s.text);
        assert!(
            s.text
                .contains("list the rust files in src and tell me what the list handler does"),
            "the first prompt reached the model: {}",
            s.text
        );
        let c = h.counters().total;
        assert_eq!((c.runs, c.turns_completed), (1, 1), "{c:?}");
        assert!(c.bytes_in > 80_000, "the whole request went up: {c:?}");

        // Claude Code's fallback after a broken stream: the same body without `stream`.
        let mut plain = req.clone();
        plain.as_object_mut().expect("object").remove("stream");
        let resp = post_as_claude_code(&h, &plain).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v = resp.json();
        assert_eq!(v["type"], "message", "{v}");
        assert_eq!(v["stop_reason"], "end_turn", "{v}");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("tools available: 24;")),
            "{v}"
        );
        assert!(
            v["usage"]["input_tokens"].as_u64().unwrap_or(0) > 1_000,
            "{v}"
        );
        h.shutdown().await;
    })
    .await;
}

/// The fixture with a command appended to its newest user prompt: the simulated model obeys
/// it only if it read the last user message.
async fn claude_code_shaped_tool_loop_reads_the_last_user_message_and_resumes() {
    bounded(async {
        let mut req = claude_code_request();
        let last = req["messages"]
            .as_array_mut()
            .expect("messages")
            .iter_mut()
            .rev()
            .find(|m| m["role"] == "user")
            .expect("a user message");
        let block = last["content"]
            .as_array_mut()
            .expect("content blocks")
            .iter_mut()
            .find(|b| b["type"] == "text")
            .expect("a text block");
        let prompt = format!(
            "{} call Read({{\"file_path\":\"src/handlers/list.rs\"}})",
            block["text"].as_str().expect("text")
        );
        block["text"] = Value::String(prompt);

        let h = Harness::start_default().await;
        let first = anthropic_stream(&post_as_claude_code(&h, &req).await);
        assert_eq!(first.stop_reason.as_deref(), Some("tool_use"), "{first:?}");
        assert_eq!(first.tool_uses.len(), 1, "{first:?}");
        let (id, name, input) = &first.tool_uses[0];
        assert_eq!(name, "Read");
        assert_eq!(input, &json!({"file_path": "src/handlers/list.rs"}));

        // Claude Code's follow-up: the whole conversation, the assistant message as streamed,
        // then the tool result carrying cache_control.
        let mut assistant = Vec::new();
        if !first.text.is_empty() {
            assistant.push(json!({"type": "text", "text": first.text}));
        }
        assistant.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        let msgs = req["messages"].as_array_mut().expect("messages");
        msgs.push(json!({"role": "assistant", "content": assistant}));
        msgs.push(json!({"role": "user", "content": [{
            "tool_use_id": id,
            "type": "tool_result",
            "content": "1\tpub fn list() -> Vec<Widget> { todo!() }\n2\t",
            "is_error": false,
            "cache_control": {"type": "ephemeral"}
        }]}));
        let second = anthropic_stream(&post_as_claude_code(&h, &req).await);
        assert_eq!(
            second.stop_reason.as_deref(),
            Some("end_turn"),
            "{second:?}"
        );
        assert!(
            second
                .text
                .contains("result of cursorpool-Read: 1\tpub fn list() -> Vec<Widget>"),
            "{}",
            second.text
        );
        let c = h.counters().total;
        assert_eq!(c.runs, 1, "the tool result resumed the parked run: {c:?}");
        assert_eq!((c.tool_calls_issued, c.tool_results_answered), (1, 1));
        h.shutdown().await;
    })
    .await;
}

/// 1 MiB of text, mostly filler, starting with `marker`.
fn mebibyte_prompt(marker: &str) -> String {
    let mut text = format!("{marker} ");
    let line = "0123456789abcdef ABCDEF 0123456789 filler line of the big request\n";
    while text.len() < 1 << 20 {
        text.push_str(line);
    }
    text
}

async fn one_mebibyte_request_passes_a_16k_initial_window() {
    bounded(async {
        let h = Harness::start(Options {
            initial_window: Some(16_384),
            ..Options::default()
        })
        .await;
        let prompt = mebibyte_prompt("big-anthropic-request");
        let body = anthropic_text_request(&prompt, false);
        assert!(body.to_string().len() > 1 << 20);
        let resp = h.anthropic(&body).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let v = resp.json();
        let text = v["content"][0]["text"].as_str().expect("text");
        assert!(
            text.contains("last user message: \"big-anthropic-request 0123456789abcdef"),
            "{text}"
        );
        let after_first = h.counters().total.bytes_in;
        assert!(after_first > 1 << 20, "1 MiB went upstream: {after_first}");

        // The same through the OpenAI API, streamed.
        let prompt = mebibyte_prompt("big-openai-request");
        let resp = h.openai(&openai_text_request(&prompt, true)).await;
        let s = openai_stream(&resp);
        assert!(s.error.is_none(), "{:?}", s.error);
        assert!(
            s.content
                .contains("last user message: \"big-openai-request 0123456789abcdef"),
            "{}",
            s.content
        );
        let c = h.counters().total;
        assert!(c.bytes_in - after_first > 1 << 20, "{c:?}");
        assert_eq!((c.runs, c.turns_completed), (2, 2), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn fifty_concurrent_streaming_conversations_are_byte_exact() {
    bounded(async {
        let h = Harness::start(Options {
            chunk_chars: 3,
            token_interval: std::time::Duration::from_millis(1),
            ..Options::default()
        })
        .await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50usize {
            let addr = h.addr;
            tasks.spawn(async move {
                // Distinct prompts of distinct lengths, so a crossed stream cannot go unseen.
                let prompt = format!(
                    "conversation {i:02}: {} end of {i:02}",
                    "ünïcødé-Ω-≠ ".repeat(i % 7 + 1)
                );
                let mut client = Client::connect(addr).await;
                let openai = i % 2 == 1;
                let (path, body) = if openai {
                    ("/v1/chat/completions", openai_text_request(&prompt, true))
                } else {
                    ("/v1/messages", anthropic_text_request(&prompt, true))
                };
                let resp = client.post(path, Bytes::from(body.to_string())).await;
                let text = if openai {
                    let s = openai_stream(&resp);
                    assert!(s.error.is_none() && s.done, "{i}: {s:?}");
                    assert_eq!(s.finish_reason.as_deref(), Some("stop"), "{i}");
                    s.content
                } else {
                    let s = anthropic_stream(&resp);
                    assert!(s.error.is_none(), "{i}: {s:?}");
                    assert_eq!(s.stop_reason.as_deref(), Some("end_turn"), "{i}");
                    s.text
                };
                (i, prompt, text)
            });
        }
        let mut done = 0;
        while let Some(r) = tasks.join_next().await {
            let (i, prompt, text) = r.expect("conversation task");
            let head = format!(
                "user turns: 1; tool results: 0; last user message: \"{prompt}\"\n\
                 tools available: 0; model: default\n"
            );
            assert!(
                text.starts_with(&head),
                "conversation {i}: answer does not echo its own prompt exactly:\n{text:?}\n\
                 expected it to start with\n{head:?}"
            );
            let tail = &text[head.len()..];
            assert!(
                tail.ends_with('.') && !tail.contains('\n') && tail.len() < 40,
                "conversation {i}: one sign-off line after the echo: {tail:?}"
            );
            done += 1;
        }
        assert_eq!(done, 50);
        let c = h.counters().total;
        assert_eq!((c.runs, c.turns_completed), (50, 50), "{c:?}");
        match support::Target::current() {
            support::Target::Cursorpool => assert_eq!(
                h.app.upstream_connects(),
                1,
                "50 runs share the account's pooled connection"
            ),
            // HTTP/1.1: one connection per concurrent call; kept-alive ones are reused (without
            // the pool each run would open its stream plus a burst of ~6 appends: 350).
            support::Target::Lite => {
                let n = h.app.upstream_connects();
                assert!(n <= 250, "{n} connections for 50 concurrent runs");
            }
        }
        h.shutdown().await;
    })
    .await;
}

async fn malformed_json_is_a_400_in_each_api_shape_and_the_server_keeps_serving() {
    bounded(async {
        let h = Harness::start_default().await;
        // One keep-alive connection: bad requests must not break it.
        let mut client = Client::connect(h.addr).await;

        let r = client
            .post("/v1/messages", Bytes::from_static(b"{\"model\": \"x\", "))
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert_eq!(r.header("x-should-retry"), Some("false"));

        let r = client
            .post(
                "/v1/chat/completions",
                Bytes::from_static(b"{\"model\": \"gpt-5\", \"messages\": [{\"role\": "),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["code"], "invalid_json", "{v}");
        assert!(
            v["error"].get("param").is_some(),
            "OpenAI shape has param: {v}"
        );

        let r = client
            .post(
                "/v1/chat/completions",
                Bytes::from_static(b"not json at all"),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");

        let r = client
            .post("/v1/messages/count_tokens", Bytes::from_static(b"[1,2"))
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");

        // Well-formed JSON that is not a valid request.
        let r = client
            .post(
                "/v1/messages",
                Bytes::from(json!({"model": "claude-sonnet-5", "max_tokens": 10}).to_string()),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        let r = client
            .post(
                "/v1/chat/completions",
                Bytes::from(json!({"model": "gpt-5", "messages": "hi"}).to_string()),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");

        // Not UTF-8.
        let r = client
            .post(
                "/v1/messages",
                Bytes::from_static(b"{\"model\":\"\xff\xfe\"}"),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");

        // An unknown route, in Anthropic's shape.
        let r = client
            .send(
                "GET",
                "/v1/nothing-here",
                &[("x-api-key", CLIENT_KEY)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "not_found_error");

        // Nothing of that went upstream, and the same connection still serves.
        assert_eq!(h.counters().total.runs, 0);
        let r = client
            .post(
                "/v1/messages",
                Bytes::from(anthropic_text_request("still there?", false).to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.json()["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("last user message: \"still there?\"")),
            "{}",
            r.text()
        );
        let r = client
            .post(
                "/v1/chat/completions",
                Bytes::from(openai_text_request("and here?", false).to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        h.shutdown().await;
    })
    .await;
}

async fn oversized_body_is_a_413_in_each_api_shape() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| c.max_body_bytes = 64 * 1024),
            ..Options::default()
        })
        .await;
        let prompt = "x".repeat(100 * 1024);
        let r = h.anthropic(&anthropic_text_request(&prompt, false)).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "request_too_large");
        let r = h.openai(&openai_text_request(&prompt, false)).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        assert_eq!(h.counters().total.runs, 0);
        let r = h.anthropic(&anthropic_text_request("small", false)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        h.shutdown().await;
    })
    .await;
}

async fn models_and_head_answer_without_upstream() {
    bounded(async {
        let h = Harness::start_default().await;
        let r = h
            .get("/v1/models", &[("anthropic-version", "2023-06-01")])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert!(v["data"].as_array().is_some_and(|d| {
            d.iter()
                .any(|m| m["id"] == "claude-sonnet-5" && m["type"] == "model")
        }));
        let r = h.get("/v1/models", &[]).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["object"], "list");
        assert!(v["data"].as_array().is_some_and(|d| {
            d.iter()
                .any(|m| m["id"] == "gpt-5" && m["object"] == "model")
        }));
        // Claude Code's start-up probe: HEAD on the base URL, no auth.
        let mut client = Client::connect(h.addr).await;
        let r = client.send("HEAD", "/", &[], Bytes::new()).await;
        assert_eq!(r.status, 200);
        assert_eq!(h.counters().total.runs, 0);
        h.shutdown().await;
    })
    .await;
}

async fn tool_result_for_an_unknown_id_falls_back_to_a_new_run() {
    bounded(async {
        let h = Harness::start_default().await;
        let tools = json!([{
            "name": "get_weather",
            "description": "Weather.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
        }]);
        let mut body = anthropic_text_request("call get_weather({\"city\":\"Oslo\"})", true);
        body["tools"] = tools;
        let first = anthropic_stream(&h.anthropic(&body).await);
        assert_eq!(first.stop_reason.as_deref(), Some("tool_use"), "{first:?}");
        assert_eq!(h.app.parked_len(), 1);
        let (_, name, input) = first.tool_uses[0].clone();
        let stranger = "toolu_not_from_this_proxy";
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": stranger, "name": name, "input": input}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": stranger, "content": "cold"}
        ]}));
        let second = anthropic_stream(&h.anthropic(&body).await);
        assert!(second.error.is_none(), "{second:?}");
        assert!(second.stop_reason.is_some(), "{second:?}");
        // (The new run sees the flattened history, whose first prompt still says `call …`,
        // so the simulated model may well call the tool again: only the routing is checked.)
        let c = h.counters().total;
        assert_eq!(c.runs, 2, "a new run carried the result: {c:?}");
        assert_eq!(
            c.tool_results_answered, 0,
            "the parked run did not take a result that is not its own: {c:?}"
        );
        h.shutdown().await;
    })
    .await;
}

async fn client_disconnect_mid_stream_cancels_the_upstream_run() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    bounded(async {
        let h = Harness::start(Options {
            chunk_chars: 1,
            token_interval: std::time::Duration::from_millis(5),
            ..Options::default()
        })
        .await;
        let baseline = h.baseline().await;
        let body = anthropic_text_request("a very long answer please lorem 5000", true).to_string();
        let mut sock = tokio::net::TcpStream::connect(h.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             x-api-key: {CLIENT_KEY}\r\ncontent-length: {}\r\n\r\n",
            h.addr,
            body.len()
        );
        sock.write_all(head.as_bytes()).await.expect("write head");
        sock.write_all(body.as_bytes()).await.expect("write body");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("text_delta") {
            let n = sock.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "stream ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        drop(sock);
        // The run is cancelled upstream (bounded wait, no timing asserted).
        let mut cancelled = false;
        for _ in 0..200 {
            let c = h.counters().total;
            if c.cancels >= 1 {
                cancelled = true;
                assert_eq!(c.turns_completed, 0, "{c:?}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            cancelled,
            "the upstream run was not cancelled: {:?}",
            h.counters().total
        );
        // Nothing of the run is left: no task, no run, no busy upstream connection.
        h.assert_settled(&baseline, "client disconnect").await;
        h.shutdown().await;
    })
    .await;
}

/// `cursorpool` only: `cursorpool-lite` serves HTTP/1.1 downstream (async-h1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_multiplexes_streamed_conversations() {
    bounded(async {
        let h = Harness::start_default().await;
        let stream = tokio::net::TcpStream::connect(h.addr)
            .await
            .expect("connect");
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2c prior-knowledge handshake");
        tokio::spawn(conn);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..10 {
            let mut sender = sender.clone();
            let addr = h.addr;
            tasks.spawn(async move {
                use http_body_util::BodyExt as _;
                let prompt = format!("h2 stream {i}");
                let req = hyper::Request::post(format!("http://{addr}/v1/messages"))
                    .header("content-type", "application/json")
                    .header("x-api-key", CLIENT_KEY)
                    .body(http_body_util::Full::new(Bytes::from(
                        anthropic_text_request(&prompt, true).to_string(),
                    )))
                    .expect("request");
                sender.ready().await.expect("ready");
                let resp = sender.send_request(req).await.expect("response");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                let s = anthropic_stream(&support::Response {
                    status,
                    headers,
                    body,
                });
                assert!(
                    s.text.contains(&format!("last user message: \"{prompt}\"")),
                    "{}",
                    s.text
                );
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("stream task");
        }
        assert_eq!(h.counters().total.turns_completed, 10);
        h.shutdown().await;
    })
    .await;
}

async fn stop_sequences_and_max_tokens_end_the_answer_early() {
    bounded(async {
        let h = Harness::start_default().await;
        let head = "user turns: 1; tool results: 0; last user message: \"stop me lorem 50\"\n";

        let mut b = anthropic_text_request("stop me lorem 50", false);
        b["stop_sequences"] = json!(["tools available"]);
        let v = h.anthropic(&b).await.json();
        assert_eq!(v["content"][0]["text"], head, "{v}");
        assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
        assert_eq!(v["stop_sequence"], "tools available", "{v}");

        b["stream"] = json!(true);
        let s = anthropic_stream(&h.anthropic(&b).await);
        assert_eq!(s.text, head);
        assert_eq!(s.stop_reason.as_deref(), Some("stop_sequence"));

        let mut b = openai_text_request("stop me lorem 50", true);
        b["stop"] = json!(["tools available"]);
        let s = openai_stream(&h.openai(&b).await);
        assert_eq!(s.content, head);
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));

        let mut b = anthropic_text_request("limit me lorem 500", false);
        b["max_tokens"] = json!(10);
        let v = h.anthropic(&b).await.json();
        assert_eq!(v["stop_reason"], "max_tokens", "{v}");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.len() < 100),
            "{v}"
        );
        let mut b = openai_text_request("limit me lorem 500", false);
        b["max_tokens"] = json!(10);
        let v = h.openai(&b).await.json();
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");

        // Every one of those runs was ended by the proxy, none ran to its end.
        let mut c = h.counters().total;
        for _ in 0..100 {
            if c.cancels == 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            c = h.counters().total;
        }
        assert_eq!((c.runs, c.cancels, c.turns_completed), (5, 5, 0), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn no_configured_account_is_overloaded() {
    bounded(async {
        let h = Harness::start(Options {
            proxy_accounts: Some(Vec::new()),
            ..Options::default()
        })
        .await;
        let r = h.anthropic(&anthropic_text_request("anyone?", true)).await;
        assert_eq!(r.status, support::overloaded_status(), "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "overloaded_error");
        let r = h.openai(&openai_text_request("anyone?", false)).await;
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "server_error");
        h.shutdown().await;
    })
    .await;
}

fn weather_tool() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Weather.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
    }])
}

/// One Anthropic tool loop: the call, then its result; returns the final text.
async fn tool_loop(addr: std::net::SocketAddr, city: &str, result: &str) -> String {
    let mut body =
        anthropic_text_request(&format!("call get_weather({{\"city\":\"{city}\"}})"), true);
    body["tools"] = weather_tool();
    let mut client = Client::connect(addr).await;
    let first = anthropic_stream(&client.post("/v1/messages", body.to_string().into()).await);
    assert_eq!(
        first.stop_reason.as_deref(),
        Some("tool_use"),
        "{city}: {first:?}"
    );
    let (id, name, input) = first.tool_uses[0].clone();
    assert_eq!(input, json!({"city": city}));
    let messages = body["messages"].as_array_mut().expect("messages");
    messages.push(json!({"role": "assistant", "content": [
        {"type": "text", "text": first.text},
        {"type": "tool_use", "id": id, "name": name, "input": input}
    ]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": id, "content": result}
    ]}));
    let second = anthropic_stream(&client.post("/v1/messages", body.to_string().into()).await);
    assert_eq!(
        second.stop_reason.as_deref(),
        Some("end_turn"),
        "{city}: {second:?}"
    );
    second.text
}

async fn concurrent_tool_loops_resume_their_own_parked_runs() {
    bounded(async {
        let h = Harness::start_default().await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let addr = h.addr;
            tasks.spawn(async move {
                let city = format!("City{i:02}");
                let result = format!("weather of {city}: {} degrees", i + 3);
                let text = tool_loop(addr, &city, &result).await;
                assert!(
                    text.contains(&format!("result of cursorpool-get_weather: {result}\n")),
                    "{city} got someone else's result: {text}"
                );
                let echo =
                    format!("last user message: \"call get_weather({{\"city\":\"{city}\"}})\"");
                assert!(text.contains(&echo), "{city}: {text}");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("tool loop task");
        }
        let c = h.counters().total;
        assert_eq!(c.runs, 20, "every result resumed its parked run: {c:?}");
        assert_eq!(
            (c.tool_calls_issued, c.tool_results_answered),
            (20, 20),
            "{c:?}"
        );
        assert_eq!(c.turns_completed, 20, "{c:?}");
        assert_eq!(h.app.parked_len(), 0);
        h.shutdown().await;
    })
    .await;
}

async fn an_expired_parked_turn_is_closed_and_its_result_starts_a_new_run() {
    bounded(async {
        let h = Harness::start(Options {
            configure: Some(|c| c.park_ttl = std::time::Duration::from_millis(500)),
            ..Options::default()
        })
        .await;
        let mut body = anthropic_text_request("call get_weather({\"city\":\"Rome\"})", false);
        body["tools"] = weather_tool();
        let first = h.anthropic(&body).await.json();
        assert_eq!(first["stop_reason"], "tool_use", "{first}");
        assert_eq!(h.app.parked_len(), 1);
        // The sweeper closes it (bounded wait) and the upstream run is cancelled.
        let mut closed = false;
        for _ in 0..300 {
            if h.app.parked_len() == 0 && h.counters().total.cancels == 1 {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            closed,
            "parked: {}, counters: {:?}",
            h.app.parked_len(),
            h.counters().total
        );
        let tool_use = first["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .cloned()
            .expect("a tool_use block");
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(json!({"role": "assistant", "content": first["content"].clone()}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "warm"}
        ]}));
        let r = h.anthropic(&body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            h.counters().total.runs,
            2,
            "a new run carried the late result"
        );
        h.shutdown().await;
    })
    .await;
}

async fn another_client_cannot_resume_a_parked_run() {
    bounded(async {
        let h = Harness::start_default().await;
        let mut body = anthropic_text_request("call get_weather({\"city\":\"Lima\"})", false);
        body["tools"] = weather_tool();
        let first = h.anthropic(&body).await.json();
        assert_eq!(first["stop_reason"], "tool_use", "{first}");
        let id = first["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .map(|b| b["id"].clone())
            .expect("a tool_use block");
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(json!({"role": "assistant", "content": first["content"].clone()}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "stolen"}
        ]}));
        // The same tool_use id from a client with another API key.
        let mut client = Client::connect(h.addr).await;
        let r = client
            .send(
                "POST",
                "/v1/messages",
                &[
                    ("content-type", "application/json"),
                    ("anthropic-version", "2023-06-01"),
                    ("x-api-key", "sk-someone-else"),
                ],
                Bytes::from(body.to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let c = h.counters().total;
        assert_eq!(c.runs, 2, "the other client got a run of its own: {c:?}");
        assert_eq!(c.tool_results_answered, 0, "{c:?}");
        // The owner still resumes its own run (the other client's run, replaying the same
        // history, may have parked a tool call of its own).
        let r = h.anthropic(&body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let c = h.counters().total;
        assert_eq!((c.runs, c.tool_results_answered), (2, 1), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn thinking_then_tool_call_resumes_with_the_signed_thinking_block_echoed() {
    bounded(async {
        let h = Harness::start(Options {
            // Client heartbeats keep flowing while the run is parked.
            configure: Some(|c| c.turn.heartbeat_interval = std::time::Duration::from_millis(50)),
            ..Options::default()
        })
        .await;
        let mut body = anthropic_text_request(
            "think first, then call get_weather({\"city\":\"Kyiv\"})",
            true,
        );
        body["tools"] = weather_tool();
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
        let resp = h.anthropic(&body).await;
        let first = anthropic_stream(&resp);
        assert!(!first.thinking.is_empty(), "{first:?}");
        assert_eq!(first.stop_reason.as_deref(), Some("tool_use"), "{first:?}");
        // Rebuild the assistant message as Claude Code does: thinking (with its signature)
        // first, then text and tool_use.
        let mut signature = String::new();
        for ev in resp.sse() {
            if let Some(v) = ev.json()
                && v["delta"]["type"] == "signature_delta"
            {
                signature.push_str(v["delta"]["signature"].as_str().unwrap_or(""));
            }
        }
        assert!(
            !signature.is_empty(),
            "a signature_delta closes the thinking block"
        );
        let (id, name, input) = first.tool_uses[0].clone();
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": first.thinking, "signature": signature},
            {"type": "text", "text": first.text},
            {"type": "tool_use", "id": id, "name": name, "input": input}
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "snow", "is_error": false}
        ]}));
        // Parked for a while: heartbeats go up meanwhile (no timing is asserted).
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let second = anthropic_stream(&h.anthropic(&body).await);
        assert_eq!(
            second.stop_reason.as_deref(),
            Some("end_turn"),
            "{second:?}"
        );
        assert!(
            second
                .text
                .contains("result of cursorpool-get_weather: snow"),
            "{}",
            second.text
        );
        let c = h.counters().total;
        assert_eq!((c.runs, c.tool_results_answered), (1, 1), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn a_failing_tool_result_reaches_the_model() {
    bounded(async {
        let h = Harness::start_default().await;
        let mut body = anthropic_text_request("call get_weather({\"city\":\"Nowhere\"})", false);
        body["tools"] = weather_tool();
        let first = h.anthropic(&body).await.json();
        let id = first["content"]
            .as_array()
            .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
            .map(|b| b["id"].clone())
            .expect("a tool_use block");
        let messages = body["messages"].as_array_mut().expect("messages");
        messages.push(json!({"role": "assistant", "content": first["content"].clone()}));
        messages.push(json!({"role": "user", "content": [{
            "type": "tool_result",
            "tool_use_id": id,
            "content": [{"type": "text", "text": "Exit code 2\nno such city"}],
            "is_error": true
        }]}));
        let v = h.anthropic(&body).await.json();
        assert_eq!(v["stop_reason"], "end_turn", "{v}");
        let text = v["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains("no such city"), "{text}");
        let c = h.counters().total;
        assert_eq!((c.runs, c.tool_results_answered), (1, 1), "{c:?}");
        h.shutdown().await;
    })
    .await;
}

async fn conversations_run_over_a_tls_upstream() {
    bounded(async {
        let h = Harness::start(Options {
            tls: true,
            ..Options::default()
        })
        .await;
        assert!(h.sim.base_url().starts_with("https://"));
        let s = anthropic_stream(&h.anthropic(&anthropic_text_request("over tls", true)).await);
        assert!(
            s.text.contains("last user message: \"over tls\""),
            "{}",
            s.text
        );
        let first = h.app.upstream_connects();
        if support::Target::current() == support::Target::Lite {
            // HTTP/1.1: the first run's connections return to the pool once their response
            // bodies are read to the end, which may be just after the client had its answer.
            let all_back = || {
                let c = h.app.live_counts().upstream;
                c.open == c.pooled
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !all_back() && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(all_back(), "{:?}", h.app.live_counts());
        }
        let s = openai_stream(&h.openai(&openai_text_request("over tls too", true)).await);
        assert!(
            s.content.contains("last user message: \"over tls too\""),
            "{}",
            s.content
        );
        match support::Target::current() {
            support::Target::Cursorpool => {
                assert_eq!(h.app.upstream_connects(), 1, "one TLS connection for both");
            }
            // HTTP/1.1: the second conversation starts on the first one's kept-alive TLS
            // connections; a handshake more only when its appends overlap more than the
            // first one's did (each call in flight holds a connection of its own).
            support::Target::Lite => {
                let more = h.app.upstream_connects() - first;
                assert!(
                    more < first,
                    "{more} new TLS handshakes for the second conversation, {first} for the first"
                );
            }
        }
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(
    claude_code_shaped_request_round_trips,
    claude_code_shaped_tool_loop_reads_the_last_user_message_and_resumes,
    one_mebibyte_request_passes_a_16k_initial_window,
    fifty_concurrent_streaming_conversations_are_byte_exact,
    malformed_json_is_a_400_in_each_api_shape_and_the_server_keeps_serving,
    oversized_body_is_a_413_in_each_api_shape,
    models_and_head_answer_without_upstream,
    tool_result_for_an_unknown_id_falls_back_to_a_new_run,
    client_disconnect_mid_stream_cancels_the_upstream_run,
    stop_sequences_and_max_tokens_end_the_answer_early,
    no_configured_account_is_overloaded,
    concurrent_tool_loops_resume_their_own_parked_runs,
    an_expired_parked_turn_is_closed_and_its_result_starts_a_new_run,
    another_client_cannot_resume_a_parked_run,
    thinking_then_tool_call_resumes_with_the_signed_thinking_block_echoed,
    a_failing_tool_result_reaches_the_model,
    conversations_run_over_a_tls_upstream,
);
