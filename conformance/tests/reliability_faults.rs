//! The upstream fault matrix: every fault the sim injects (RST_STREAM, GOAWAY, connection drop,
//! stall, slow trickle, a delayed first byte, flow-control squeeze, an error after N
//! updates), each before the first byte, after it, and while a tool call is parked — against
//! both binaries. Expected: before the first byte the client never sees the fault (another
//! account answers); after it the client gets an error event, never a silent stop; while
//! parked the run is cleaned up and the tool result starts a new run. After every scenario
//! the proxy's live counts (tasks, runs, parked calls, upstream connections) return to their
//! baseline: nothing leaked.
//!
//! Each scenario prints one `fault-matrix:` line (`cargo test -p cursorpool-conformance
//! --test reliability_faults -- --nocapture`), the table in `docs/reliability.md`.

use cursorpool_conformance as support;

use std::time::Duration;

use cursorpool_core::connect::code::Code;
use cursorpool_sim::model::{Fault, FaultRule, FaultRuns};
use cursorpool_tokio::app::AppConfig;
use serde_json::{Value, json};
use support::{Harness, Options, anthropic_stream, anthropic_text_request, bounded};

/// Where in a conversation the fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BeforeFirstByte,
    AfterFirstByte,
    WhileParked,
}

/// What goes wrong, at `after_updates` messages into the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RstStream,
    GoAway,
    DropConnection,
    Stall,
    ErrorAfter,
    /// Every message spaced out (and the first one held back before the first byte).
    Trickle,
    /// A 16 KiB HTTP/2 window against a 256 KiB request (or tool result).
    Squeeze,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::RstStream,
        Kind::GoAway,
        Kind::DropConnection,
        Kind::Stall,
        Kind::ErrorAfter,
        Kind::Trickle,
        Kind::Squeeze,
    ];

    /// The sim's fault striking after `n` messages (`None`: the kind is not a sim fault rule).
    fn fault(self, n: u32, phase: Phase) -> Option<Fault> {
        Some(match self {
            Kind::RstStream => Fault::RstStream {
                after_updates: n,
                code: 2,
            },
            Kind::GoAway => Fault::GoAway {
                after_updates: n,
                code: 2,
            },
            Kind::DropConnection => Fault::DropConnection { after_updates: n },
            Kind::Stall => Fault::Stall { after_updates: n },
            Kind::ErrorAfter => Fault::ErrorAfter {
                after_updates: n,
                code: Code::Internal,
                cursor_error: None,
            },
            Kind::Trickle if phase == Phase::BeforeFirstByte => {
                Fault::DelayFirstByte(Duration::from_millis(300))
            }
            Kind::Trickle => Fault::Trickle {
                interval: Duration::from_millis(10),
            },
            Kind::Squeeze => return None,
        })
    }

    /// Whether the fault ends the run (the rest only slow it down).
    fn is_terminal(self) -> bool {
        !matches!(self, Kind::Trickle | Kind::Squeeze)
    }
}

/// No rests after failures (every scenario meets the fault it injected), and a short stall
/// timeout so a stalled upstream is noticed within the test's bounds.
fn configure(c: &mut AppConfig) {
    support::no_rests(c);
    c.turn.stall_timeout = Duration::from_secs(2);
}

/// A prompt whose answer is far longer than 30 updates.
const LONG: &str = "a long answer please lorem 400";
/// 256 KiB of history: many HTTP/2 windows of 16 KiB.
fn big(marker: &str) -> String {
    format!("{marker} {}", "lorem ipsum ".repeat(256 * 1024 / 12))
}

fn weather_request(city: &str) -> Value {
    let mut body =
        anthropic_text_request(&format!("call get_weather({{\"city\":\"{city}\"}})"), true);
    body["tools"] = json!([{
        "name": "get_weather",
        "description": "Weather.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}
    }]);
    body
}

fn options(kind: Kind, phase: Phase) -> Options {
    let mut opts = match phase {
        Phase::BeforeFirstByte => Options::with_accounts(&["sick", "healthy"]),
        _ => Options::default(),
    };
    opts.configure = Some(configure);
    opts.heartbeat_interval = Some(Duration::from_millis(200));
    if kind == Kind::Squeeze {
        opts.initial_window = Some(16 * 1024);
    }
    let account = (phase == Phase::BeforeFirstByte).then(|| "sick".to_owned());
    match (
        phase,
        kind.fault(
            if phase == Phase::AfterFirstByte {
                30
            } else {
                0
            },
            phase,
        ),
    ) {
        (_, None) => {}
        (Phase::WhileParked, Some(f)) => opts.faults.push(FaultRule {
            account,
            runs: FaultRuns::Next(1),
            fault: Fault::WhileWaiting(Box::new(f)),
        }),
        (_, Some(f)) => opts.faults.push(FaultRule {
            account,
            runs: FaultRuns::All,
            fault: f,
        }),
    }
    opts
}

/// Runs one scenario and returns what the client saw, in a word.
async fn scenario(kind: Kind, phase: Phase) -> &'static str {
    let h = Harness::start(options(kind, phase)).await;
    let baseline = h.baseline().await;
    let what = format!("{kind:?} {phase:?}");
    let outcome = match phase {
        Phase::BeforeFirstByte => {
            let prompt = match kind {
                Kind::Squeeze => big("squeezed"),
                _ => "before the first byte".to_owned(),
            };
            let s = anthropic_stream(&h.anthropic(&anthropic_text_request(&prompt, true)).await);
            assert!(s.error.is_none(), "{what}: the client saw the fault: {s:?}");
            let head: String = prompt.chars().take(20).collect();
            assert!(s.text.contains(&head), "{what}: wrong answer: {}", s.text);
            assert_eq!(s.stop_reason.as_deref(), Some("end_turn"), "{what}");
            if kind.is_terminal() {
                assert!(
                    h.account("sick").faults_injected >= 1,
                    "{what}: the fault was met"
                );
                assert_eq!(h.account("healthy").turns_completed, 1, "{what}");
                "answered by another account"
            } else {
                "answered in full"
            }
        }
        Phase::AfterFirstByte => {
            let prompt = match kind {
                Kind::Squeeze => big(LONG),
                _ => LONG.to_owned(),
            };
            let s = anthropic_stream(&h.anthropic(&anthropic_text_request(&prompt, true)).await);
            assert!(!s.text.is_empty(), "{what}: text before the fault: {s:?}");
            if kind.is_terminal() {
                assert!(s.error.is_some(), "{what}: no error event: {:?}", s.events);
                assert!(
                    !s.events.iter().any(|e| e == "message_stop"),
                    "{what}: never a normal stop"
                );
                "error event after the text"
            } else {
                assert!(s.error.is_none(), "{what}: {s:?}");
                assert_eq!(s.stop_reason.as_deref(), Some("end_turn"), "{what}");
                "answered in full"
            }
        }
        Phase::WhileParked => parked(&h, kind, &what).await,
    };
    h.assert_settled(&baseline, &what).await;
    h.shutdown().await;
    outcome
}

/// A tool call parks; the fault strikes on the parked stream (terminal kinds) or slows it;
/// the tool result then gets a complete answer.
async fn parked(h: &Harness, kind: Kind, what: &str) -> &'static str {
    let mut body = weather_request("Paris");
    let first = anthropic_stream(&h.anthropic(&body).await);
    assert!(first.error.is_none(), "{what}: {first:?}");
    assert_eq!(first.stop_reason.as_deref(), Some("tool_use"), "{what}");
    let (id, name, input) = first.tool_uses[0].clone();
    if kind.is_terminal() {
        // The fault strikes while parked; the proxy closes the run and forgets the park.
        let deadline = std::time::Instant::now() + support::SETTLE_LIMIT;
        while h.counters().total.faults_injected == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the fault never struck"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut left = h.live();
        let deadline = std::time::Instant::now() + support::SETTLE_LIMIT;
        while left.parked != 0 || left.runs != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the parked run was not cleaned up: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = h.live();
        }
    }
    let result = match kind {
        Kind::Squeeze => big("sunny"),
        _ => "sunny".to_owned(),
    };
    let messages = body["messages"].as_array_mut().expect("messages");
    messages.push(json!({"role": "assistant", "content": [
        {"type": "text", "text": first.text},
        {"type": "tool_use", "id": id, "name": name, "input": input}
    ]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": id, "content": result}
    ]}));
    if kind.is_terminal() {
        // The new run sees the flattened history, whose first message still says `call …`:
        // without the tool declared the simulated model answers instead of calling again.
        body.as_object_mut().map(|o| o.remove("tools"));
    }
    let second = anthropic_stream(&h.anthropic(&body).await);
    assert!(second.error.is_none(), "{what}: {second:?}");
    assert_eq!(second.stop_reason.as_deref(), Some("end_turn"), "{what}");
    let c = h.counters().total;
    if kind.is_terminal() {
        assert_eq!(c.runs, 2, "{what}: a new run carried the result: {c:?}");
        "parked run closed; the result got a new run"
    } else {
        assert_eq!(
            (c.runs, c.tool_results_answered),
            (1, 1),
            "{what}: the parked run resumed: {c:?}"
        );
        "parked run resumed"
    }
}

async fn every_upstream_fault_in_every_phase_is_handled_without_leaks() {
    for phase in [
        Phase::BeforeFirstByte,
        Phase::AfterFirstByte,
        Phase::WhileParked,
    ] {
        for kind in Kind::ALL {
            // Each scenario under the test bound (a hung proxy fails it, never CI).
            let outcome = bounded(scenario(kind, phase)).await;
            eprintln!(
                "fault-matrix: {} | {kind:?} | {phase:?} | {outcome} | leaks 0",
                support::Target::current().binary()
            );
        }
    }
}

support::both_binaries!(every_upstream_fault_in_every_phase_is_handled_without_leaks);
