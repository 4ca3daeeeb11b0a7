//! The smol adapter's HTTP/1.1 upstream against the simulated backend (hosted on its own tokio
//! runtime thread): runs over `RunSSE` + `BidiAppend`, parking and resuming, unary calls on a
//! kept-alive connection, TLS, append failures and cancels.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::chat::{
    ApiKind, ChatMessage, ChatRequest, Part, ReplyEvent, Role, StopReason, ToolSpec,
};
use cursorpool_core::classify::FailureKind;
use cursorpool_core::headers::{self, CallHeaders, CallKind, ClientIdentity};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{
    Framing, ModelMap, ReplyOptions, ToolResultInput, Turn, TurnEvent, TurnParams,
};
use cursorpool_host::relay::{Control, EventReceiver, Outcome, Relay, RunCall, event_channel};
use cursorpool_host::upstream::Upstream;
use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{self, ServerConfig, SimHandle};
use cursorpool_smol::H1Upstream;

/// Upper bound for one test; only a hang ever reaches it.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The sim on its own tokio runtime (dropped after the handle).
struct Sim {
    handle: Option<SimHandle>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Sim {
    fn start(config: ServerConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let handle = rt.block_on(server::spawn(config)).expect("sim starts");
        Self {
            handle: Some(handle),
            rt: Some(rt),
        }
    }

    fn h(&self) -> &SimHandle {
        self.handle.as_ref().expect("running")
    }

    fn token(&self) -> String {
        self.h().access_token("default").expect("default account")
    }

    fn upstream(&self) -> Arc<H1Upstream> {
        let pem = self.h().cert_pem().map(|p| p.as_bytes().to_vec());
        Arc::new(H1Upstream::new(&self.h().base_url(), pem.as_deref()).expect("upstream"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let (Some(h), Some(rt)) = (self.handle.take(), self.rt.as_ref()) {
            rt.block_on(h.shutdown());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on smol under [`TIMEOUT`].
fn bounded<T>(f: impl Future<Output = T>) -> T {
    smol::block_on(futures_lite::future::or(f, async {
        smol::Timer::after(TIMEOUT).await;
        panic!("test exceeded its time bound")
    }))
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn request_id() -> String {
    let n = IDS.fetch_add(1, Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn chat(text: &str, tools: &[&str]) -> ChatRequest {
    ChatRequest {
        model: "claude-test".to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![Part::Text(text.to_owned())],
        }],
        tools: tools
            .iter()
            .map(|n| ToolSpec {
                name: (*n).to_owned(),
                description: format!("the {n} tool"),
                input_schema: cursorpool_core::chat::JsonSchema::from_value(
                    &serde_json::json!({"type": "object"}),
                ),
            })
            .collect(),
        stream: true,
        ..ChatRequest::default()
    }
}

fn call_headers(token: &str, rid: &str, kind: CallKind) -> http::HeaderMap {
    headers::build(
        &ClientIdentity::default(),
        CallHeaders {
            access_token: token,
            request_id: rid,
            original_request_id: None,
            kind,
        },
    )
    .expect("headers")
}

/// A run of `req` with `token` on RunSSE and `append_token` on its appends.
struct Prepared {
    call: RunCall,
    events: EventReceiver,
    control: async_channel::Sender<Control>,
}

fn prepare(req: &ChatRequest, token: &str, append_token: &str) -> Prepared {
    let rid = request_id();
    let params = TurnParams::from_chat(
        req,
        ApiKind::Anthropic,
        &ModelMap::default(),
        format!("conv-{rid}"),
        Framing::BidiAppend {
            request_id: rid.clone(),
        },
        IdSource::new(7),
    );
    let turn = Turn::new(params, Instant::now());
    let (tx, events) = event_channel();
    let (control, control_rx) = async_channel::bounded(1);
    let call = RunCall {
        turn,
        headers: call_headers(token, &rid, CallKind::RunSse),
        append_headers: Some(call_headers(append_token, &rid, CallKind::BidiAppend)),
        relay: Relay::new(tx, Arc::new(req.clone())),
        control: control_rx,
    };
    Prepared {
        call,
        events,
        control,
    }
}

/// Every event of one reply, up to (and including) its last: `Parked`, `Finished` or `Failed`.
async fn reply(events: &mut EventReceiver) -> Vec<TurnEvent> {
    let mut out = Vec::new();
    while let Ok(ev) = events.recv().await {
        let last = matches!(
            ev,
            TurnEvent::Parked { .. } | TurnEvent::Finished { .. } | TurnEvent::Failed { .. }
        );
        out.push(ev);
        if last {
            break;
        }
    }
    out
}

fn text(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Reply(ReplyEvent::TextDelta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// Runs the driver on smol's executor; the test reads events meanwhile.
fn spawn_drive(up: &Arc<H1Upstream>, call: RunCall) -> smol::Task<Outcome> {
    smol::spawn(Arc::clone(up).drive(call))
}

/// Waits (bounded by the test's timeout) until `cond` holds on the sim.
async fn until(sim: &Sim, cond: impl Fn(&SimHandle) -> bool) {
    while !cond(sim.h()) {
        smol::Timer::after(Duration::from_millis(10)).await;
    }
}

fn text_turn(sim: &Sim) {
    let token = sim.token();
    let up = sim.upstream();
    let mut p = prepare(&chat("hello over HTTP/1.1", &[]), &token, &token);
    let events = bounded(async {
        let task = spawn_drive(&up, p.call);
        let events = reply(&mut p.events).await;
        let outcome = task.await;
        assert!(
            outcome.checkpoint.is_some(),
            "the outcome keeps the checkpoint"
        );
        events
    });
    assert!(!text(&events).is_empty(), "text streamed: {events:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            TurnEvent::Reply(ReplyEvent::Stop {
                reason: StopReason::EndTurn,
                ..
            })
        )),
        "{events:?}"
    );
    match events.last() {
        Some(TurnEvent::Finished { checkpoint, .. }) => {
            assert!(checkpoint.is_some(), "finished with a checkpoint");
        }
        other => panic!("expected Finished, got {other:?}"),
    }
    let c = sim.h().counters();
    assert_eq!(c.total.runs_by_rpc.get("RunSSE"), Some(&1));
    assert_eq!(c.streams.get("/agent.v1.AgentService/Run"), None);
    assert_eq!(c.total.turns_completed, 1);
    assert_eq!(c.total.cancels, 0);
    assert!(c.bidi_appends >= 2, "run request and answers were appended");
}

#[test]
fn text_turn_over_run_sse_and_bidi_append_finishes_with_a_checkpoint() {
    let sim = Sim::start(ServerConfig::default());
    text_turn(&sim);
}

#[test]
fn text_turn_over_tls() {
    let sim = Sim::start(ServerConfig {
        tls: true,
        ..ServerConfig::default()
    });
    assert!(sim.h().base_url().starts_with("https://"));
    text_turn(&sim);
}

#[test]
fn a_tool_call_parks_and_resumes_the_same_run() {
    let sim = Sim::start(ServerConfig::default());
    let token = sim.token();
    let up = sim.upstream();
    let req = chat(r#"please call lookup({"q":"x"})"#, &["lookup"]);
    let mut p = prepare(&req, &token, &token);
    let (first, second) = bounded(async {
        let task = spawn_drive(&up, p.call);
        let first = reply(&mut p.events).await;
        let Some(TurnEvent::Parked { tool_use_ids }) = first.last() else {
            panic!("expected Parked: {first:?}");
        };
        let (tx, mut events) = event_channel();
        let (done, done_rx) = async_channel::bounded(1);
        p.control
            .send(Control::Resume {
                request: Arc::new(req.clone()),
                results: vec![ToolResultInput {
                    tool_use_id: tool_use_ids[0].clone(),
                    content: vec![Part::Text("found it".to_owned())],
                    is_error: false,
                }],
                reply: ReplyOptions::from_chat(&req, ApiKind::Anthropic),
                events: tx,
                done,
            })
            .await
            .expect("driver listens");
        done_rx.recv().await.expect("answer").expect("resumed");
        let second = reply(&mut events).await;
        let outcome = task.await;
        assert!(outcome.checkpoint.is_some());
        (first, second)
    });
    assert!(
        first.iter().any(|e| matches!(
            e,
            TurnEvent::Reply(ReplyEvent::ToolCall { name, .. }) if name == "lookup"
        )),
        "{first:?}"
    );
    assert!(text(&second).contains("lookup: found it"), "{second:?}");
    assert!(matches!(
        second.last(),
        Some(TurnEvent::Finished {
            checkpoint: Some(_),
            ..
        })
    ));
    let c = sim.h().counters();
    assert_eq!(c.total.runs, 1, "one run for both replies");
    assert_eq!(c.total.runs_by_rpc.get("RunSSE"), Some(&1));
    assert_eq!(
        (c.total.tool_calls_issued, c.total.tool_results_answered),
        (1, 1)
    );
    assert_eq!(c.total.turns_completed, 1);
}

fn unary_reuse(sim: &Sim) {
    let token = sim.token();
    let up = sim.upstream();
    bounded(async {
        for path in [
            "/aiserver.v1.ServerConfigService/GetServerConfig",
            "/aiserver.v1.DashboardService/GetUserPrivacyMode",
            "/aiserver.v1.NoSuchService/Nothing",
            "/aiserver.v1.ServerConfigService/GetServerConfig",
        ] {
            let h = call_headers(&token, &request_id(), CallKind::Unary);
            let (status, headers, body) = up
                .unary(http::Method::POST, path, &h, Bytes::new(), 1 << 20)
                .await
                .expect("answer");
            if path.contains("NoSuch") {
                assert_eq!(status, 501);
                assert_eq!(headers["content-type"], "application/json");
                assert!(!body.is_empty());
            } else {
                assert_eq!(status, 200, "{path}");
            }
        }
    });
    assert_eq!(
        up.connects(),
        1,
        "every call reused one kept-alive connection"
    );
    assert_eq!(up.idle(), 1);
}

#[test]
fn unary_calls_reuse_one_kept_alive_connection() {
    let sim = Sim::start(ServerConfig::default());
    unary_reuse(&sim);
}

#[test]
fn unary_calls_over_tls_reuse_one_connection() {
    let sim = Sim::start(ServerConfig {
        tls: true,
        ..ServerConfig::default()
    });
    unary_reuse(&sim);
}

#[test]
fn a_dead_pooled_connection_is_replaced_once() {
    let sim = Sim::start(ServerConfig::default());
    let token = sim.token();
    let up = sim.upstream();
    bounded(async {
        let h = call_headers(&token, &request_id(), CallKind::Unary);
        let path = "/aiserver.v1.ServerConfigService/GetServerConfig";
        let (status, _, _) = up
            .unary(http::Method::POST, path, &h, Bytes::new(), 1024)
            .await
            .expect("answer");
        assert_eq!(status, 200);
    });
    // The server goes away with the idle connection; a new one listens on another port.
    drop(sim);
    assert_eq!(up.idle(), 1);
    bounded(async {
        let h = call_headers("t", &request_id(), CallKind::Unary);
        let err = up
            .unary(
                http::Method::POST,
                "/aiserver.v1.ServerConfigService/GetServerConfig",
                &h,
                Bytes::new(),
                1024,
            )
            .await
            .expect_err("nobody listens any more");
        // The dead pooled connection was retried on a fresh connect, which failed.
        assert_eq!(
            err.failure(),
            cursorpool_core::classify::TransportFailure::ConnectFailed,
            "{err}"
        );
    });
    assert_eq!(up.connects(), 1);
    assert_eq!(up.idle(), 0);
}

#[test]
fn a_refused_bidi_append_fails_the_run_classified() {
    let sim = Sim::start(ServerConfig::default());
    let token = sim.token();
    let up = sim.upstream();
    let mut p = prepare(&chat("hello", &[]), &token, "not-a-valid-token");
    let events = bounded(async {
        let task = spawn_drive(&up, p.call);
        let events = reply(&mut p.events).await;
        let outcome = task.await;
        assert!(outcome.checkpoint.is_none());
        events
    });
    match events.last() {
        Some(TurnEvent::Failed {
            classification,
            downstream_started,
        }) => {
            assert_eq!(
                classification.kind,
                FailureKind::Unauthenticated,
                "{classification:?}"
            );
            assert!(!downstream_started);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The RunSSE call may or may not have reached the sim before the run failed: only the
    // refusal is certain.
    let c = sim.h().counters();
    assert_eq!(c.total.turns_completed, 0);
    assert_eq!(c.bidi_appends, 0, "no append was accepted");
    assert!(
        c.requests
            .get(headers::path::BIDI_APPEND)
            .is_some_and(|n| *n >= 1),
        "the append reached the sim: {:?}",
        c.requests
    );
}

#[test]
fn dropping_the_reader_mid_answer_closes_the_run_sse_connection() {
    let sim = Sim::start(ServerConfig::new(SimConfig {
        token_interval: Duration::from_millis(20),
        ..SimConfig::default()
    }));
    let token = sim.token();
    let up = sim.upstream();
    let mut p = prepare(&chat("lorem 400", &[]), &token, &token);
    bounded(async {
        let task = spawn_drive(&up, p.call);
        loop {
            let ev = p.events.recv().await.expect("the run streams");
            if matches!(ev, TurnEvent::Reply(ReplyEvent::TextDelta(_))) {
                break;
            }
        }
        drop(p.events);
        let outcome = task.await;
        assert!(
            outcome.checkpoint.is_none(),
            "a canceled run keeps no checkpoint"
        );
        until(&sim, |h| h.counters().total.cancels >= 1).await;
    });
    let c = sim.h().counters();
    assert_eq!(c.total.cancels, 1);
    assert_eq!(c.total.turns_completed, 0);
}

#[test]
fn closing_control_while_parked_cancels_the_run() {
    let sim = Sim::start(ServerConfig::default());
    let token = sim.token();
    let up = sim.upstream();
    let req = chat(r#"call lookup({})"#, &["lookup"]);
    let mut p = prepare(&req, &token, &token);
    bounded(async {
        let task = spawn_drive(&up, p.call);
        let first = reply(&mut p.events).await;
        assert!(
            matches!(first.last(), Some(TurnEvent::Parked { .. })),
            "{first:?}"
        );
        drop(p.control);
        let outcome = task.await;
        assert!(outcome.checkpoint.is_none());
        until(&sim, |h| h.counters().total.cancels >= 1).await;
    });
    let c = sim.h().counters();
    assert_eq!(c.total.cancels, 1);
    assert_eq!(c.total.runs, 1);
    assert_eq!(c.total.turns_completed, 0);
}
