//! The turn machine inside a small sans-IO model of the proxy's conversation handling, driven
//! by an arbitrary script of upstream messages, client requests (new messages, tool results,
//! right or wrong), disconnects, transport failures and time jumps. The model does what the
//! host does with core's types: a new message abandons the conversation's parked runs, tool
//! results take the parked run out of [`ParkedTurns`] by (client and conversation, tool-use
//! ids) and resume
//! it (a refused resume closes it and starts a new run), a turn that parks is registered, one
//! that ends is forgotten, and expired parks are closed.
//!
//! Invariants checked after every step: no panic; never more than one live run per
//! conversation; every parked entry holds a live turn and every live parked turn is reachable
//! through the registry (no orphan); nothing is emitted after a run's terminal event; a request
//! never resumes another client's or another conversation's run. At the end, time alone closes every run and empties
//! the registry: every parked stream is eventually closed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cursorpool_core::chat::{ApiKind, ChatMessage, ChatRequest, Part, Role, ToolSpec};
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::connect::envelope::{encode_end_stream, encode_proto};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{
    Framing, ModelMap, ParkedTurns, ToolResultInput, Turn, TurnEvent, TurnParams,
};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_server_message::Message as Sm;
use cursorpool_proto::agent_v1::exec_server_message::Message as Args;
use cursorpool_proto::agent_v1::interaction_update::Message as Iu;

use crate::script::Script;

/// How long a parked run waits for its results in the model.
const PARK_TTL: Duration = Duration::from_secs(60);
/// Clients and conversations per client in the model.
const CLIENTS: [&str; 2] = ["client-a", "client-b"];
const CONVERSATIONS: u8 = 3;

/// A conversation: (client index, conversation index).
type Conv = (usize, u8);

/// Whose parks a request of `conv` may resume: its client's, in its conversation (as the
/// host scopes them).
fn scope(conv: Conv) -> String {
    format!("{}/{}", CLIENTS[conv.0], conv.1)
}

/// One upstream run the model drives.
struct Run {
    conv: Conv,
    turn: Turn,
    /// The terminal event was seen.
    ended: bool,
    /// The tool-use ids of its current park.
    parked_ids: Vec<String>,
}

struct Model {
    now: Instant,
    next: u64,
    runs: BTreeMap<u64, Run>,
    parked: ParkedTurns<u64>,
}

fn request(conv: Conv) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![Part::Text(format!("conversation {conv:?}"))],
        }],
        tools: ["Read", "Grep"]
            .iter()
            .map(|n| ToolSpec {
                name: (*n).into(),
                description: String::new(),
                input_schema: None,
            })
            .collect(),
        max_tokens: Some(1000),
        ..ChatRequest::default()
    }
}

impl Model {
    fn start(&mut self, conv: Conv) {
        let params = TurnParams::from_chat(
            &request(conv),
            ApiKind::Anthropic,
            &ModelMap::default(),
            format!("{conv:?}"),
            if self.next.is_multiple_of(2) {
                Framing::Run
            } else {
                Framing::BidiAppend {
                    request_id: "r".into(),
                }
            },
            IdSource::new(self.next),
        );
        let mut turn = Turn::new(params, self.now);
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-type",
            http::HeaderValue::from_static("application/connect+proto"),
        );
        turn.handle_upstream_response(200, &h, self.now);
        self.runs.insert(
            self.next,
            Run {
                conv,
                turn,
                ended: false,
                parked_ids: Vec::new(),
            },
        );
        self.next += 1;
    }

    /// The live run of `conv` a client is reading (not parked), if any.
    fn streaming(&self, conv: Conv) -> Option<u64> {
        self.runs
            .iter()
            .find(|(_, r)| r.conv == conv && !r.ended && !r.turn.is_parked())
            .map(|(id, _)| *id)
    }

    /// Closes the parked runs of `conv` (the host drops their handles: the run cancels).
    fn abandon(&mut self, conv: Conv) {
        let ids: Vec<_> = self
            .parked
            .iter_mut()
            .filter(|(_, run)| self.runs.get(run).is_some_and(|r| r.conv == conv))
            .map(|(p, _)| p)
            .collect();
        for p in ids {
            if let Some(run) = self.parked.remove(p)
                && let Some(r) = self.runs.get_mut(&run)
            {
                r.turn.handle_client_gone(self.now);
            }
        }
    }

    /// A client request in `conv`: tool results for some of its parked calls (`picks`), or a
    /// new message (`picks == None`).
    fn client_request(&mut self, conv: Conv, picks: Option<(u8, bool)>) {
        // A client that sends anew has let go of any reply it was still reading.
        if let Some(id) = self.streaming(conv)
            && let Some(r) = self.runs.get_mut(&id)
        {
            r.turn.handle_client_gone(self.now);
        }
        if let Some((mask, bogus)) = picks {
            // The ids of every parked call (another conversation's or client's count as bogus:
            // the same tool-call id may well come from Cursor in two conversations).
            let known: Vec<String> = self
                .runs
                .values()
                .filter(|r| !r.ended)
                .flat_map(|r| r.parked_ids.clone())
                .collect();
            let mut ids: Vec<String> = known
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                .map(|(_, id)| id.clone())
                .collect();
            if bogus {
                ids.push("toolu_bogus".into());
            }
            if !ids.is_empty()
                && let Some(run) = self.parked.take_for(&scope(conv), &ids)
            {
                let r = self.runs.get_mut(&run).expect("a parked entry names a run");
                assert_eq!(r.conv, conv, "a request resumed another conversation's run");
                let results = ids
                    .iter()
                    .map(|id| ToolResultInput {
                        tool_use_id: id.clone(),
                        content: vec![Part::Text("r".into())],
                        is_error: false,
                    })
                    .collect();
                if r.turn.handle_tool_results(results, self.now).is_ok() {
                    r.parked_ids.clear();
                    return;
                }
                // Refused: the host closes the run and carries the results in a new one.
                r.turn.handle_client_gone(self.now);
            }
        }
        self.abandon(conv);
        self.start(conv);
    }

    /// Drains every run: parks what parks, forgets what ended, checks the event grammar.
    fn drain(&mut self) {
        for (id, r) in &mut self.runs {
            while r.turn.poll_transmit().is_some() {}
            while let Some(ev) = r.turn.poll_event() {
                assert!(!r.ended, "run {id} spoke after its end: {ev:?}");
                match ev {
                    TurnEvent::Parked { tool_use_ids } => {
                        assert!(!tool_use_ids.is_empty());
                        r.parked_ids.clone_from(&tool_use_ids);
                        if !r.turn.is_done() {
                            let parked = self.parked.park_with_ids(
                                &scope(r.conv),
                                tool_use_ids,
                                *id,
                                self.now,
                            );
                            assert!(parked.is_ok(), "one park per conversation at a time");
                        }
                    }
                    TurnEvent::Finished { .. } | TurnEvent::Failed { .. } => r.ended = true,
                    TurnEvent::Reply(_) | TurnEvent::UpstreamClose => {}
                }
            }
        }
        // The host forgets parked entries whose run ended.
        let ended: Vec<_> = self
            .parked
            .iter_mut()
            .filter(|(_, run)| self.runs.get(run).is_none_or(|r| r.ended))
            .map(|(p, _)| p)
            .collect();
        for p in ended {
            self.parked.remove(p);
        }
        self.runs.retain(|_, r| !r.ended);
    }

    fn check(&mut self) {
        let mut live: HashMap<Conv, usize> = HashMap::new();
        for r in self.runs.values() {
            *live.entry(r.conv).or_default() += 1;
        }
        for (conv, n) in &live {
            assert!(*n <= 1, "{n} live runs in conversation {conv:?}");
        }
        let mut reachable = Vec::new();
        for (_, run) in self.parked.iter_mut() {
            let r = self.runs.get(run).expect("a parked entry names a live run");
            assert!(!r.turn.is_done(), "a parked entry holds an ended run");
            reachable.push(*run);
        }
        for (id, r) in &self.runs {
            if r.turn.is_parked() {
                assert!(reachable.contains(id), "run {id} is parked but unreachable");
            }
        }
    }

    /// Picks a live run by `b`.
    fn run(&mut self, b: u8) -> Option<&mut Run> {
        let n = self.runs.len();
        if n == 0 {
            return None;
        }
        self.runs.values_mut().nth(usize::from(b) % n)
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        for r in self.runs.values_mut() {
            r.turn.handle_timeout(self.now);
        }
        for run in self.parked.expire(self.now) {
            if let Some(r) = self.runs.get_mut(&run) {
                r.turn.handle_client_gone(self.now);
            }
        }
    }
}

/// One upstream message chosen by the script.
fn upstream_message(s: &mut Script<'_>, out: &mut BytesMut) {
    let u = |x| Sm::InteractionUpdate(pb::InteractionUpdate { message: Some(x) });
    let exec = |id: u32, a| {
        Sm::ExecServerMessage(Box::new(pb::ExecServerMessage {
            id,
            exec_id: format!("x{id}"),
            message: Some(a),
            span_context: None,
        }))
    };
    let sm = match s.byte() % 10 {
        0 | 1 => u(Iu::TextDelta(pb::TextDeltaUpdate { text: s.text() })),
        2 => u(Iu::Heartbeat(pb::HeartbeatUpdate {})),
        3 | 4 => {
            let id = u32::from(s.byte() % 6);
            let name = ["Read", "Grep"][usize::from(s.byte() % 2)];
            exec(
                id,
                Args::McpArgs(pb::McpArgs {
                    name: format!("cursorpool-{name}"),
                    tool_call_id: format!("call_{}", s.byte()),
                    provider_identifier: "cursorpool".into(),
                    tool_name: name.into(),
                    ..Default::default()
                }),
            )
        }
        5 => u(Iu::TurnEnded(pb::TurnEndedUpdate::default())),
        6 => Sm::ConversationCheckpointUpdate(Bytes::from(s.text().into_bytes())),
        7 => exec(
            u32::from(s.byte()),
            Args::RequestContextArgs(pb::RequestContextArgs::default()),
        ),
        8 => {
            let _ = encode_end_stream(b"{}", out);
            return;
        }
        _ => {
            let _ = encode_end_stream(br#"{"error":{"code":"unavailable","message":"x"}}"#, out);
            return;
        }
    };
    let _ = encode_proto(&pb::AgentServerMessage { message: Some(sm) }, out);
}

/// The target: see the module documentation.
pub fn conversations(data: &[u8]) {
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let mut m = Model {
        now: origin,
        next: 0,
        runs: BTreeMap::new(),
        parked: ParkedTurns::new(PARK_TTL),
    };
    let mut s = Script::new(data);
    let mut steps = 0;
    while !s.is_empty() && steps < 400 {
        steps += 1;
        let op = s.byte() % 10;
        let b = s.byte();
        let conv = (usize::from(b & 1), (b >> 1) % CONVERSATIONS);
        match op {
            0..=3 => {
                let mut frames = BytesMut::new();
                for _ in 0..=s.byte() % 4 {
                    upstream_message(&mut s, &mut frames);
                }
                let cut = usize::from(s.byte()).min(frames.len());
                let now = m.now;
                if let Some(r) = m.run(b) {
                    r.turn.handle_upstream_data(&frames[..cut], now);
                    r.turn.handle_upstream_data(&frames[cut..], now);
                }
            }
            4 => m.client_request(conv, None),
            5 | 6 => {
                let mask = s.byte();
                m.client_request(conv, Some((mask, mask & 0x80 != 0 && op == 6)));
            }
            7 => {
                let ms = u64::from(s.byte()) * u64::from(s.byte()) * 4;
                m.tick(Duration::from_millis(ms));
            }
            8 => {
                let now = m.now;
                let kind = s.byte();
                if let Some(r) = m.run(b) {
                    let f = [
                        TransportFailure::ConnectionReset,
                        TransportFailure::RstStream { code: 2 },
                        TransportFailure::GoAway { code: 0 },
                        TransportFailure::Stalled,
                    ][usize::from(kind % 4)];
                    r.turn.handle_transport_failure(f, now);
                }
            }
            _ => {
                let now = m.now;
                if let Some(r) = m.run(b) {
                    r.turn.handle_upstream_end(now);
                }
            }
        }
        m.drain();
        m.check();
    }
    // Time alone closes everything: stalls end streaming runs, expiry closes parked ones.
    for _ in 0..3 {
        m.tick(Duration::from_secs(3600));
        m.drain();
        m.check();
    }
    assert!(m.runs.is_empty(), "{} runs never closed", m.runs.len());
    assert!(
        m.parked.is_empty(),
        "{} parked entries left",
        m.parked.len()
    );
}
