//! `ops`: runs one of core's hot paths a given number of times and nothing else, so that an
//! instruction counter (`valgrind --tool=callgrind`, see `bench/instructions`) can report its
//! cost per operation. Instruction counts do not depend on what else the machine is doing,
//! which wall-clock benchmarks on a shared 2-core box do.
//!
//! `ops <OP> <ITERATIONS>`; `ops --list` names the operations.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cursorpool_core::api::anthropic::{self, parse_messages_request};
use cursorpool_core::api::openai;
use cursorpool_core::chat::{ApiKind, ChatRequest, ReplyEvent};
use cursorpool_core::connect::envelope;
use cursorpool_core::conversation::ConversationKey;
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{Framing, ModelMap, Turn, TurnEvent, TurnParams};
use cursorpool_proto::agent_v1::{
    AgentServerMessage, InteractionUpdate, TextDeltaUpdate, TokenDeltaUpdate, TurnEndedUpdate,
    agent_server_message, interaction_update,
};
use http::HeaderMap;

const CLAUDE_CODE: &[u8] = include_bytes!("../../../core/tests/fixtures/claude_code_request.json");

/// Text deltas in the relayed stream of [`relay`].
const DELTAS: usize = 500;

/// Runs the operation `n` times; returns the size of what the last one produced (bytes).
type Op = fn(u64) -> usize;

const OPS: &[(&str, &str, Op)] = &[
    (
        "parse-claude-code",
        "parse the 84 KB Claude Code request (Anthropic)",
        parse_claude_code,
    ),
    (
        "encode-tool-schemas",
        "encode its 24 tool schemas (11.6 KB of JSON) as protobuf Values",
        encode_tool_schemas,
    ),
    (
        "build-run-request",
        "conversation key + turn params + run request of the parsed request",
        build_run_request,
    ),
    (
        "build-run-request-cached",
        "the same with its tools prepared by an earlier run (the proxy's tool cache: Claude Code declares the same tools on every request)",
        build_run_request_cached,
    ),
    (
        "relay-500-deltas-anthropic",
        "a run's 500 text deltas (+ token deltas, turn end) decoded and rendered as Anthropic SSE",
        relay_anthropic,
    ),
    (
        "relay-500-deltas-openai",
        "the same stream rendered as OpenAI chunks",
        relay_openai,
    ),
    (
        "short-request",
        "parse a one-line request, build its run request, relay a 12-delta answer (Anthropic SSE)",
        short_request,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for (name, what, _) in OPS {
            println!("{name}\t{what}");
        }
        return ExitCode::SUCCESS;
    }
    // `cargo bench` runs every bench binary with `--bench`: run each op once as a smoke test.
    if args.is_empty() || args.iter().any(|a| a == "--bench") {
        for (name, _, op) in OPS {
            println!("{name}: ok, {} bytes", op(1));
        }
        return ExitCode::SUCCESS;
    }
    let (Some(name), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: ops <OP> <ITERATIONS> | ops --list");
        return ExitCode::from(2);
    };
    match OPS.iter().find(|(n, _, _)| n == name) {
        Some((_, _, op)) => {
            black_box(op(n));
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("ops: unknown op {name:?} (see --list)");
            ExitCode::from(2)
        }
    }
}

fn claude_code() -> ChatRequest {
    parse_messages_request(CLAUDE_CODE, &HeaderMap::new()).expect("the fixture parses")
}

fn parse_claude_code(n: u64) -> usize {
    let headers = HeaderMap::new();
    let mut last = 0;
    for _ in 0..n {
        let req = parse_messages_request(black_box(CLAUDE_CODE), &headers).expect("parses");
        last = req.messages.len();
        black_box(req);
    }
    last
}

fn encode_tool_schemas(n: u64) -> usize {
    let req = claude_code();
    let mut last = 0;
    for _ in 0..n {
        last = 0;
        for t in &req.tools {
            if let Some(s) = &t.input_schema {
                let b = cursorpool_core::client::encode_json_as_value(black_box(s.as_str()));
                last += b.map_or(0, |b| b.len());
            }
        }
    }
    last
}

fn turn_for(req: &ChatRequest, now: Instant) -> Turn {
    turn_with(req, now, None)
}

fn turn_with(
    req: &ChatRequest,
    now: Instant,
    cache: Option<&mut cursorpool_core::turn::ToolCache>,
) -> Turn {
    let key = ConversationKey::for_request(req, "client");
    let mut params = TurnParams::from_chat(
        req,
        ApiKind::Anthropic,
        &ModelMap::default(),
        key.id(),
        Framing::Run,
        IdSource::new(7),
    );
    params.prepared_tools = cache.map(|c| c.prepare(&req.tools));
    Turn::new(params, now)
}

fn build_run_request(n: u64) -> usize {
    let req = claude_code();
    let now = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let mut turn = turn_for(black_box(&req), now);
        bytes = 0;
        while let Some(b) = turn.poll_transmit() {
            bytes += b.len();
        }
    }
    bytes
}

fn build_run_request_cached(n: u64) -> usize {
    let req = claude_code();
    let now = Instant::now();
    let mut cache = cursorpool_core::turn::ToolCache::new(4);
    cache.prepare(&req.tools);
    let mut bytes = 0;
    for _ in 0..n {
        let mut turn = turn_with(black_box(&req), now, Some(&mut cache));
        bytes = 0;
        while let Some(b) = turn.poll_transmit() {
            bytes += b.len();
        }
    }
    bytes
}

fn update(m: interaction_update::Message) -> AgentServerMessage {
    AgentServerMessage {
        message: Some(agent_server_message::Message::InteractionUpdate(
            InteractionUpdate { message: Some(m) },
        )),
    }
}

/// A run's response body: `deltas` text deltas of 8 characters, a token delta every 10, and
/// the turn end; then the end-stream envelope.
fn answer_stream(deltas: usize) -> Bytes {
    let mut buf = BytesMut::new();
    for i in 0..deltas {
        let m = update(interaction_update::Message::TextDelta(TextDeltaUpdate {
            text: format!("word{:03} ", i % 1000),
        }));
        envelope::encode_proto(&m, &mut buf).expect("fits");
        if i % 10 == 9 {
            let m = update(interaction_update::Message::TokenDelta(TokenDeltaUpdate {
                tokens: 10,
            }));
            envelope::encode_proto(&m, &mut buf).expect("fits");
        }
    }
    let end = update(interaction_update::Message::TurnEnded(
        TurnEndedUpdate::default(),
    ));
    envelope::encode_proto(&end, &mut buf).expect("fits");
    envelope::encode_end_stream(b"{}", &mut buf).expect("fits");
    buf.freeze()
}

fn ok_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/connect+proto"),
    );
    h
}

/// Feeds `body` to a fresh turn for `req` in 16 KiB chunks (as a transport delivers it) and
/// renders every reply event with `render`; returns the rendered bytes.
fn relay_once(
    req: &ChatRequest,
    body: &Bytes,
    now: Instant,
    render: &mut dyn FnMut(&ReplyEvent, &mut BytesMut),
) -> usize {
    let mut turn = turn_for(req, now);
    while turn.poll_transmit().is_some() {}
    turn.handle_upstream_response(200, &ok_headers(), now);
    let mut out = BytesMut::new();
    let mut rendered = 0;
    for chunk in body.chunks(16 * 1024) {
        turn.handle_upstream_data(chunk, now);
        while turn.poll_transmit().is_some() {}
        while let Some(ev) = turn.poll_event() {
            if let TurnEvent::Reply(r) = ev {
                render(&r, &mut out);
                rendered += out.len();
                black_box(out.split());
            }
        }
    }
    turn.handle_upstream_end(now);
    while let Some(ev) = turn.poll_event() {
        if let TurnEvent::Reply(r) = ev {
            render(&r, &mut out);
            rendered += out.len();
            black_box(out.split());
        }
    }
    rendered
}

fn text_request(text: &str) -> ChatRequest {
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": true,
        "messages": [{"role": "user", "content": text}],
    })
    .to_string();
    parse_messages_request(body.as_bytes(), &HeaderMap::new()).expect("parses")
}

fn relay_anthropic(n: u64) -> usize {
    let req = text_request("Write a long story");
    let body = answer_stream(DELTAS);
    let now = Instant::now();
    let mut last = 0;
    for _ in 0..n {
        let mut r = anthropic::StreamRenderer::new();
        last = relay_once(&req, &body, now, &mut |e, out| r.handle(e, out));
    }
    last
}

fn relay_openai(n: u64) -> usize {
    let req = text_request("Write a long story");
    let body = answer_stream(DELTAS);
    let now = Instant::now();
    let mut last = 0;
    for _ in 0..n {
        let mut r = openai::StreamRenderer::for_request(&req, 1_700_000_000);
        last = relay_once(&req, &body, now, &mut |e, out| r.handle(e, out));
    }
    last
}

fn short_request(n: u64) -> usize {
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": true,
        "metadata": {"user_id": "{\"session_id\":\"s-1\"}"},
        "messages": [{"role": "user", "content": "What is the capital of France? One line."}],
    })
    .to_string();
    let answer = answer_stream(12);
    let headers = HeaderMap::new();
    let now = Instant::now();
    let mut last = 0;
    for _ in 0..n {
        let req = parse_messages_request(black_box(body.as_bytes()), &headers).expect("parses");
        let mut r = anthropic::StreamRenderer::new();
        last = relay_once(&req, &answer, now, &mut |e, out| r.handle(e, out));
    }
    last
}
