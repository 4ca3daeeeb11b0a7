//! The API front's hot paths: parsing an 84 KB Claude Code request (24 tools, billing-header
//! system block, a tool round, a thinking block, an image), and rendering a 500-delta text
//! reply as Anthropic SSE and as OpenAI chunks. Parsing the same body into a
//! `serde_json::Value` is reported beside it as a reference point.
//! `cargo bench -p cursorpool-core --bench api`

use bytes::BytesMut;
use cursorpool_core::api::anthropic::{self, parse_messages_request};
use cursorpool_core::api::openai;
use cursorpool_core::chat::{ReplyEvent, StopReason, Usage};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use http::HeaderMap;

const CLAUDE_CODE: &[u8] = include_bytes!("../tests/fixtures/claude_code_request.json");

fn main() {
    divan::main();
}

#[divan::bench]
fn parse_claude_code_request(bencher: Bencher<'_, '_>) {
    let headers = HeaderMap::new();
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench(|| parse_messages_request(black_box(CLAUDE_CODE), &headers).expect("parses"));
}

#[divan::bench]
fn parse_claude_code_request_as_value_reference(bencher: Bencher<'_, '_>) {
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench(|| {
            serde_json::from_slice::<serde_json::Value>(black_box(CLAUDE_CODE)).expect("JSON")
        });
}

/// A 500-delta text reply with a start and a stop.
fn text_reply() -> Vec<ReplyEvent> {
    let words = [
        "The ",
        "answer ",
        "is ",
        "forty-two, ",
        "because ",
        "\"the sim\" ",
        "says so.\n",
    ];
    let mut events = vec![ReplyEvent::Start {
        id: "msg_01bench".into(),
        model: "claude-opus-4-8".into(),
        usage: Usage {
            input_tokens: 21_000,
            ..Usage::default()
        },
    }];
    events
        .extend((0..500).map(|i| ReplyEvent::TextDelta(words[i % words.len()].repeat(1 + i % 3))));
    events.push(ReplyEvent::Stop {
        reason: StopReason::EndTurn,
        stop_sequence: None,
        usage: Usage {
            input_tokens: 21_000,
            output_tokens: 1_500,
            ..Usage::default()
        },
    });
    events
}

#[divan::bench]
fn render_500_text_deltas_anthropic_sse(bencher: Bencher<'_, '_>) {
    let events = text_reply();
    bencher.counter(ItemsCount::new(500usize)).bench(|| {
        let mut renderer = anthropic::StreamRenderer::new();
        let mut out = BytesMut::with_capacity(128 * 1024);
        for e in &events {
            renderer.handle(e, &mut out);
        }
        out
    });
}

#[divan::bench]
fn render_500_text_deltas_openai_chunks(bencher: Bencher<'_, '_>) {
    let events = text_reply();
    bencher.counter(ItemsCount::new(500usize)).bench(|| {
        let mut renderer = openai::StreamRenderer::new(1_700_000_000, false);
        let mut out = BytesMut::with_capacity(128 * 1024);
        for e in &events {
            renderer.handle(e, &mut out);
        }
        out
    });
}

#[divan::bench]
fn accumulate_500_text_deltas_anthropic_message(bencher: Bencher<'_, '_>) {
    let events = text_reply();
    bencher.counter(ItemsCount::new(500usize)).bench(|| {
        let mut acc = anthropic::MessageAccumulator::new();
        for e in &events {
            acc.handle(e);
        }
        acc.finish().expect("body")
    });
}

#[divan::bench]
fn prescan_nesting_depth(bencher: Bencher<'_, '_>) {
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench(|| cursorpool_core::connect::error::nesting_exceeds(black_box(CLAUDE_CODE), 128));
}

#[divan::bench]
fn prescan_utf8(bencher: Bencher<'_, '_>) {
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench(|| std::str::from_utf8(black_box(CLAUDE_CODE)).is_ok());
}

/// The whole request path before the first upstream byte: parse the 84 KB Claude Code body,
/// plan the run (conversation id, model, tools, history) and encode its run request.
#[divan::bench]
#[allow(clippy::disallowed_methods)] // a benchmark's clock, not core's
fn parse_and_build_run_request_claude_code(bencher: Bencher<'_, '_>) {
    use cursorpool_core::chat::ApiKind;
    use cursorpool_core::conversation::ConversationKey;
    use cursorpool_core::ids::IdSource;
    use cursorpool_core::turn::{Framing, ModelMap, Turn, TurnParams};
    let headers = HeaderMap::new();
    let models = ModelMap::default();
    let now = std::time::Instant::now();
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench(|| {
            let req = parse_messages_request(black_box(CLAUDE_CODE), &headers).expect("parses");
            let key = ConversationKey::for_request(&req, "client");
            let params = TurnParams::from_chat(
                &req,
                ApiKind::Anthropic,
                &models,
                key.id(),
                Framing::Run,
                IdSource::new(7),
            );
            let mut turn = Turn::new(params, now);
            let mut bytes = 0;
            while let Some(b) = turn.poll_transmit() {
                bytes += b.len();
            }
            black_box(bytes)
        });
}

/// [`parse_and_build_run_request_claude_code`] as the proxy runs it from the second request of
/// a session on: the tool list was prepared by an earlier run (its `ToolCache`).
#[divan::bench]
#[allow(clippy::disallowed_methods)] // a benchmark's clock, not core's
fn parse_and_build_run_request_claude_code_tools_cached(bencher: Bencher<'_, '_>) {
    use cursorpool_core::chat::ApiKind;
    use cursorpool_core::conversation::ConversationKey;
    use cursorpool_core::ids::IdSource;
    use cursorpool_core::turn::{Framing, ModelMap, ToolCache, Turn, TurnParams};
    let headers = HeaderMap::new();
    let models = ModelMap::default();
    let now = std::time::Instant::now();
    let mut cache = ToolCache::new(4);
    bencher
        .counter(BytesCount::of_slice(CLAUDE_CODE))
        .bench_local(|| {
            let req = parse_messages_request(black_box(CLAUDE_CODE), &headers).expect("parses");
            let key = ConversationKey::for_request(&req, "client");
            let mut params = TurnParams::from_chat(
                &req,
                ApiKind::Anthropic,
                &models,
                key.id(),
                Framing::Run,
                IdSource::new(7),
            );
            params.prepared_tools = Some(cache.prepare(&req.tools));
            let mut turn = Turn::new(params, now);
            let mut bytes = 0;
            while let Some(b) = turn.poll_transmit() {
                bytes += b.len();
            }
            black_box(bytes)
        });
}

/// The parts of [`parse_and_build_run_request_claude_code`] after parsing, one by one.
#[divan::bench_group]
mod build_parts {
    use super::*;
    use cursorpool_core::chat::ApiKind;
    use cursorpool_core::conversation::ConversationKey;
    use cursorpool_core::ids::IdSource;
    use cursorpool_core::turn::{Framing, ModelMap, Turn, TurnParams};

    fn req() -> cursorpool_core::chat::ChatRequest {
        parse_messages_request(CLAUDE_CODE, &HeaderMap::new()).expect("parses")
    }

    #[divan::bench]
    fn conversation_key(bencher: Bencher<'_, '_>) {
        let req = req();
        bencher.bench(|| ConversationKey::for_request(black_box(&req), "client").id());
    }

    #[divan::bench]
    fn turn_params(bencher: Bencher<'_, '_>) {
        let req = req();
        let models = ModelMap::default();
        bencher.bench(|| {
            TurnParams::from_chat(
                black_box(&req),
                ApiKind::Anthropic,
                &models,
                "c".to_owned(),
                Framing::Run,
                IdSource::new(7),
            )
        });
    }

    #[divan::bench]
    #[allow(clippy::disallowed_methods)] // a benchmark's clock, not core's
    fn turn_new_and_run_request(bencher: Bencher<'_, '_>) {
        let req = req();
        let models = ModelMap::default();
        let now = std::time::Instant::now();
        bencher
            .with_inputs(|| {
                TurnParams::from_chat(
                    &req,
                    ApiKind::Anthropic,
                    &models,
                    "c".to_owned(),
                    Framing::Run,
                    IdSource::new(7),
                )
            })
            .bench_values(|params| {
                let mut turn = Turn::new(params, now);
                let mut bytes = 0;
                while let Some(b) = turn.poll_transmit() {
                    bytes += b.len();
                }
                bytes
            });
    }
}

/// The 24 tool schemas of the Claude Code request (≈ 11.6 KB of JSON) encoded as
/// `google.protobuf.Value`s, straight from their text.
#[divan::bench]
fn encode_claude_code_tool_schemas(bencher: Bencher<'_, '_>) {
    let req = parse_messages_request(CLAUDE_CODE, &HeaderMap::new()).expect("parses");
    let schemas: Vec<&str> = req
        .tools
        .iter()
        .filter_map(|t| t.input_schema.as_ref().map(|s| s.as_str()))
        .collect();
    let bytes: usize = schemas.iter().map(|s| s.len()).sum();
    bencher.counter(BytesCount::new(bytes)).bench(|| {
        schemas
            .iter()
            .map(|s| {
                cursorpool_core::client::encode_json_as_value(black_box(s)).map_or(0, |b| b.len())
            })
            .sum::<usize>()
    });
}
