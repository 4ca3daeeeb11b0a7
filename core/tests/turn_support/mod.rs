//! [`Rig`]: a [`Turn`] wired to an in-process [`Sim`] with simulated time, over either framing.
//! It plays the adapter: it writes every transmit upstream (envelopes on the `Run` body, or a
//! `BidiAppend` call each), feeds the sim's output back to the turn, fires both machines'
//! timers, and records every event and every client message sent.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cursorpool_core::bidi::decode_append;
use cursorpool_core::chat::{ApiKind, ChatMessage, ChatRequest, Part, ReplyEvent, Role, ToolSpec};
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::connect::envelope::{EnvelopeDecoder, Frame};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{Framing, ModelMap, ParkId, ParkedTurns, Turn, TurnEvent, TurnParams};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_sim::model::{
    AccountConfig, HttpRequest, Quota, RunId, RunOutput, Sim, SimConfig, Transport,
};
use prost::Message as _;

/// The origin of simulated time. Read once; every later instant is computed from it.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
fn epoch() -> Instant {
    Instant::now()
}

/// Which framing a rig uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `Run` over HTTP/2.
    Run,
    /// `RunSSE` + `BidiAppend`.
    Sse,
}

/// Both framings, for tests that must hold on each.
pub const WIRES: [Wire; 2] = [Wire::Run, Wire::Sse];

/// A sim config with one account `a` and unlimited quota.
pub fn sim_config() -> SimConfig {
    SimConfig {
        seed: 11,
        accounts: vec![AccountConfig {
            label: "a".to_owned(),
            api_key: "key-a".to_owned(),
            quota: Quota::default(),
        }],
        chunk_chars: 8,
        ..SimConfig::default()
    }
}

/// A one-message chat request.
pub fn chat(text: &str) -> ChatRequest {
    ChatRequest {
        model: "claude-test".to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: vec![Part::Text(text.to_owned())],
        }],
        stream: true,
        ..ChatRequest::default()
    }
}

/// A client tool with an object schema.
pub fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        description: format!("the {name} tool"),
        input_schema: cursorpool_core::chat::JsonSchema::from_value(
            &serde_json::json!({"type": "object"}),
        ),
    }
}

/// The turn parameters of `req` on `wire`.
pub fn params(req: &ChatRequest, wire: Wire) -> TurnParams {
    let framing = match wire {
        Wire::Run => Framing::Run,
        Wire::Sse => Framing::BidiAppend {
            request_id: "req-sse-1".to_owned(),
        },
    };
    TurnParams::from_chat(
        req,
        ApiKind::Anthropic,
        &ModelMap::default(),
        "conv-1".to_owned(),
        framing,
        IdSource::new(42),
    )
}

/// A turn wired to an in-process sim.
#[derive(Debug)]
pub struct Rig {
    pub sim: Sim,
    pub now: Instant,
    pub wall: SystemTime,
    pub token: String,
    pub wire: Wire,
    pub request_id: String,
    pub run: Option<RunId>,
    pub turn: Turn,
    /// Every event the turn emitted, in order.
    pub events: Vec<TurnEvent>,
    /// Every client message the turn sent, decoded, in order.
    pub sent: Vec<pb::AgentClientMessage>,
    /// Whether the turn asked for the upstream request to be ended.
    pub upstream_closed: bool,
    /// `BidiAppend` answers that were not 200.
    pub failed_appends: usize,
    /// Where parked turns wait (the adapter's registry); the rig drives a parked turn there.
    pub registry: ParkedTurns,
    /// The rig's turn while it sits in [`Rig::registry`].
    pub parked: Option<ParkId>,
    /// Turns the registry expired.
    pub expired: usize,
    /// Server messages (envelopes, end-stream excluded) the sim sent on the run.
    pub server_messages: usize,
    server_decoder: EnvelopeDecoder,
}

impl Rig {
    /// A rig for `params` against a sim with `config`, the run opened at once.
    pub fn start(config: SimConfig, wire: Wire, params: TurnParams) -> Self {
        let now = epoch();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut sim = Sim::new(config, now, wall);
        let token = sim.issue_token("a", wall).expect("account a");
        let request_id = match &params.framing {
            Framing::BidiAppend { request_id } => request_id.clone(),
            Framing::Run => "req-h2-1".to_owned(),
        };
        let turn = Turn::new(params, now);
        let mut rig = Self {
            sim,
            now,
            wall,
            token,
            wire,
            request_id,
            run: None,
            turn,
            events: Vec::new(),
            sent: Vec::new(),
            upstream_closed: false,
            failed_appends: 0,
            registry: ParkedTurns::default(),
            parked: None,
            expired: 0,
            server_messages: 0,
            server_decoder: EnvelopeDecoder::default(),
        };
        rig.open();
        rig
    }

    /// A rig for the one-message request `text` with the default sim config.
    pub fn ask(wire: Wire, text: &str) -> Self {
        Self::start(sim_config(), wire, params(&chat(text), wire))
    }

    /// Starts the conversation's next run on the same sim: a new turn, a new request id.
    pub fn next_run(&mut self, params: TurnParams) {
        self.request_id = match &params.framing {
            Framing::BidiAppend { request_id } => request_id.clone(),
            Framing::Run => format!("{}-next", self.request_id),
        };
        self.turn = Turn::new(params, self.now);
        self.events.clear();
        self.sent.clear();
        self.upstream_closed = false;
        self.run = None;
        self.server_messages = 0;
        self.server_decoder = EnvelopeDecoder::default();
        self.open();
    }

    /// The turn being driven: the parked one in the registry, else [`Rig::turn`].
    pub fn active(&mut self) -> &mut Turn {
        if let Some(id) = self.parked
            && self.registry.get_mut(id).is_some()
        {
            return self.registry.get_mut(id).expect("checked");
        }
        &mut self.turn
    }

    /// Moves the (parked) turn into the registry under `client_key`, as an adapter does when
    /// the downstream response ended with tool calls.
    pub fn park(&mut self, client_key: &str) {
        let placeholder = Turn::new(params(&chat(""), self.wire), self.now);
        let turn = std::mem::replace(&mut self.turn, placeholder);
        match self.registry.park(client_key, turn, self.now) {
            Ok(id) => self.parked = Some(id),
            Err(turn) => panic!("turn not parkable: {turn:?}"),
        }
    }

    /// Takes the turn waiting for `ids` out of the registry, as an adapter does when a request
    /// with tool results arrives. `false` (and nothing changes) when the registry has none.
    pub fn unpark(&mut self, client_key: &str, ids: &[String]) -> bool {
        match self.registry.take_for(client_key, ids) {
            Some(turn) => {
                self.turn = turn;
                self.parked = None;
                true
            }
            None => false,
        }
    }

    fn headers(&self, content_type: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", content_type.parse().expect("header"));
        h.insert("connect-protocol-version", "1".parse().expect("header"));
        let auth = format!("Bearer {}", self.token);
        h.insert("authorization", auth.parse().expect("header"));
        h.insert("x-request-id", self.request_id.parse().expect("header"));
        h
    }

    fn open(&mut self) {
        let now = self.now;
        let transport = match self.wire {
            Wire::Run => Transport::Run,
            Wire::Sse => Transport::RunSse {
                request_id: self.request_id.clone(),
            },
        };
        let h = self.headers("application/connect+proto");
        match self.sim.open_run(transport, &h, now, self.wall) {
            Ok(id) => {
                self.run = Some(id);
                if let Some(body) = self.active().run_sse_request_body() {
                    self.sim.handle_run_body(id, &body, now);
                }
                let mut rh = http::HeaderMap::new();
                for (k, v) in Sim::stream_headers() {
                    rh.insert(
                        http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                        v.parse().expect("value"),
                    );
                }
                self.active().handle_upstream_response(200, &rh, now);
            }
            Err(resp) => {
                let mut rh = http::HeaderMap::new();
                for (k, v) in &resp.headers {
                    rh.insert(
                        http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                        v.parse().expect("value"),
                    );
                }
                self.active()
                    .handle_upstream_response(resp.status, &rh, now);
                self.active().handle_upstream_data(&resp.body, now);
                self.active().handle_upstream_end(now);
            }
        }
        self.pump();
    }

    /// Records the client messages in one transmit.
    fn record(&mut self, bytes: &Bytes) {
        match self.wire {
            Wire::Run => {
                let mut d = EnvelopeDecoder::default();
                d.handle_bytes(bytes);
                while let Ok(Some(Frame::Message(p))) = d.poll_frame() {
                    self.sent
                        .push(pb::AgentClientMessage::decode(p).expect("client message"));
                }
            }
            Wire::Sse => {
                let a = decode_append(bytes).expect("append body");
                assert_eq!(a.request_id, self.request_id);
                self.sent
                    .push(pb::AgentClientMessage::decode(a.payload).expect("client message"));
            }
        }
    }

    /// Moves bytes between the turn and the sim until neither has anything to say.
    pub fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some(b) = self.active().poll_transmit() {
                progress = true;
                self.record(&b);
                let Some(run) = self.run else { continue };
                match self.wire {
                    Wire::Run => self.sim.handle_run_body(run, &b, now),
                    Wire::Sse => {
                        let h = self.headers("application/proto");
                        let req = HttpRequest {
                            method: "POST",
                            path: "/aiserver.v1.BidiService/BidiAppend",
                            query: "",
                            headers: &h,
                            body: &b,
                        };
                        let resp = self.sim.handle_request(req, now, self.wall);
                        if resp.status != 200 {
                            self.failed_appends += 1;
                            self.active().handle_append_failed(
                                resp.status,
                                &http::HeaderMap::new(),
                                &resp.body,
                                now,
                            );
                        }
                    }
                }
            }
            while let Some(ev) = self.active().poll_event() {
                progress = true;
                if ev == TurnEvent::UpstreamClose && !self.upstream_closed {
                    self.upstream_closed = true;
                    if let Some(run) = self.run {
                        self.sim.handle_run_closed(run, now);
                    }
                }
                self.events.push(ev);
            }
            while let Some((id, out)) = self.sim.poll_output() {
                if Some(id) != self.run {
                    continue;
                }
                progress = true;
                match out {
                    RunOutput::Data(b) => {
                        self.server_decoder.handle_bytes(&b);
                        while let Ok(Some(Frame::Message(_))) = self.server_decoder.poll_frame() {
                            self.server_messages += 1;
                        }
                        self.active().handle_upstream_data(&b, now);
                    }
                    RunOutput::Finished => self.active().handle_upstream_end(now),
                    RunOutput::Reset { code } => self
                        .turn
                        .handle_transport_failure(TransportFailure::RstStream { code }, now),
                    RunOutput::GoAway { code } => self
                        .turn
                        .handle_transport_failure(TransportFailure::GoAway { code }, now),
                    RunOutput::DropConnection => self
                        .turn
                        .handle_transport_failure(TransportFailure::ConnectionReset, now),
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn set_time(&mut self, t: Instant) {
        if t > self.now {
            self.wall += t - self.now;
            self.now = t;
        }
    }

    /// Moves time forward by `d`, firing every timer of the turn and the sim on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        for _ in 0..1_000_000 {
            let next = [
                self.active().poll_timeout(),
                self.sim.poll_timeout(),
                self.registry.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.set_time(t);
                    self.tick();
                }
                _ => break,
            }
        }
        self.set_time(end);
        self.tick();
    }

    /// Fires every timer due at `now`: the sim's, the turn's, the registry's expiry (an
    /// expired turn is cancelled upstream and becomes the rig's turn again).
    fn tick(&mut self) {
        self.sim.handle_timeout(self.now, self.wall);
        for mut turn in self.registry.expire(self.now) {
            self.expired += 1;
            turn.handle_client_gone(self.now);
            self.turn = turn;
            self.parked = None;
        }
        let now = self.now;
        self.active().handle_timeout(now);
        self.pump();
    }

    /// Advances in one-second steps until the turn parks or ends (at most `limit`).
    pub fn run_until_quiet(&mut self, limit: Duration) {
        let end = self.now + limit;
        self.pump();
        while !self.active().is_parked() && !self.active().is_done() && self.now < end {
            self.advance(Duration::from_secs(1));
        }
    }

    /// The reply events, in order.
    pub fn replies(&self) -> Vec<&ReplyEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Reply(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The reply events after the `n`-th `Start` (0-based), up to the next `Start`.
    pub fn reply(&self, n: usize) -> Vec<&ReplyEvent> {
        let mut starts = 0;
        let mut out = Vec::new();
        for r in self.replies() {
            if matches!(r, ReplyEvent::Start { .. }) {
                starts += 1;
            }
            if starts == n + 1 {
                out.push(r);
            }
        }
        out
    }

    /// The concatenated text deltas of all replies.
    pub fn text(&self) -> String {
        text_of(&self.replies())
    }

    /// The last event, if any.
    pub fn last_event(&self) -> Option<&TurnEvent> {
        self.events.last()
    }

    /// Client messages of the given kind that the turn sent.
    pub fn sent_matching(
        &self,
        f: impl Fn(&pb::agent_client_message::Message) -> bool,
    ) -> Vec<&pb::AgentClientMessage> {
        self.sent
            .iter()
            .filter(|m| m.message.as_ref().is_some_and(&f))
            .collect()
    }

    /// Number of `client_heartbeat`s the turn sent.
    pub fn client_heartbeats(&self) -> usize {
        self.sent_matching(|m| matches!(m, pb::agent_client_message::Message::ClientHeartbeat(_)))
            .len()
    }
}

/// The concatenated text deltas of `events`.
pub fn text_of(events: &[&ReplyEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ReplyEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}
