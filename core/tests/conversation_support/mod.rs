//! A Claude-Code-like [`Client`] (every request resends the whole conversation plus the new
//! message or tool results) and a [`Proxy`] that plays the adapter's conversation wiring over a
//! [`Rig`]: conversation key, parked-turn resume, plan (replay or flatten), reply recording,
//! record after `Finished`. Time is simulated; the sim's counters prove what went upstream.
#![allow(dead_code, unreachable_pub)]

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cursorpool_core::chat::{ApiKind, ChatMessage, ChatRequest, Part, RequestMetadata, Role};
use cursorpool_core::conversation::{
    Completed, ConversationKey, ConversationStore, Entry, FallbackReason, MemoryStorage, Plan,
    Recorded, ReplyRecorder, StoreConfig,
};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{Framing, ModelMap, TurnEvent, TurnParams, prompt};
use cursorpool_proto::agent_v1 as pb;
use cursorpool_proto::agent_v1::agent_client_message::Message as Cm;
use cursorpool_sim::model::{AccountConfig, AccountCounters, Quota, SimConfig};

use crate::turn_support::{Rig, Wire, tool};

/// Long enough for any scripted turn to park or finish.
pub const MINUTE: Duration = Duration::from_secs(60);

/// The origin of simulated time before the first run exists. Read once.
#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
)]
fn epoch() -> Instant {
    Instant::now()
}

/// A sim with two accounts, `a` and `b`, unlimited quota.
pub fn sim_config() -> SimConfig {
    let account = |label: &str| AccountConfig {
        label: label.to_owned(),
        api_key: format!("key-{label}"),
        quota: Quota::default(),
    };
    SimConfig {
        seed: 11,
        accounts: vec![account("a"), account("b")],
        chunk_chars: 64,
        ..SimConfig::default()
    }
}

/// A Claude Code session: one API key, one session id (or none), the transcript so far.
#[derive(Debug, Clone)]
pub struct Client {
    pub api_key: String,
    pub session: Option<String>,
    pub messages: Vec<ChatMessage>,
    requests: u64,
}

pub fn text(t: &str) -> Part {
    Part::Text(t.to_owned())
}

impl Client {
    pub fn new(api_key: &str, session: Option<&str>) -> Self {
        Self {
            api_key: api_key.to_owned(),
            session: session.map(str::to_owned),
            messages: Vec::new(),
            requests: 0,
        }
    }

    /// The next request: the whole transcript, the billing header with a fresh `cch`.
    pub fn request(&mut self) -> ChatRequest {
        self.requests += 1;
        let cch = (self.requests * 0x9e37 + 0x1234) % 0x10_0000;
        let user_id = self.session.as_ref().map(|s| {
            format!(
                r#"{{"device_id":"{}","account_uuid":"","session_id":"{s}"}}"#,
                "a3".repeat(32)
            )
        });
        ChatRequest {
            model: "claude-test".to_owned(),
            system: vec![
                format!(
                    "x-anthropic-billing-header: cc_version=2.1.197.1c0; cc_entrypoint=cli; \
                     cch={cch:05x};"
                ),
                "You are a test agent.".to_owned(),
            ],
            messages: self.messages.clone(),
            tools: vec![tool("Read")],
            stream: true,
            metadata: RequestMetadata {
                user_id,
                session_id: self.session.clone(),
            },
            ..ChatRequest::default()
        }
    }

    /// A new user message; the request that carries it.
    pub fn say(&mut self, t: &str) -> ChatRequest {
        self.messages.push(ChatMessage {
            role: Role::User,
            content: vec![text(t)],
        });
        self.request()
    }

    /// Tool results (id, text) as the next user message; the request that carries them.
    pub fn answer(&mut self, results: &[(String, String)]) -> ChatRequest {
        self.messages.push(ChatMessage {
            role: Role::User,
            content: results
                .iter()
                .map(|(id, t)| Part::ToolResult {
                    tool_use_id: id.clone(),
                    content: vec![text(t)],
                    is_error: false,
                })
                .collect(),
        });
        self.request()
    }

    /// Appends the reply of `ex` to the transcript, as Claude Code echoes it.
    pub fn hear(&mut self, ex: &Exchange) {
        self.messages.extend(ex.reply.iter().cloned());
    }
}

/// How the proxy served a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A new run continuing the stored checkpoint with these messages.
    Replayed(Range<usize>),
    /// A new run with the whole request flattened.
    Fallback(FallbackReason),
    /// The tool results resumed the parked run (no new run).
    Resumed,
}

/// What one client request produced.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub route: Route,
    /// The user text of the new run's request (`None` when a parked run resumed).
    pub run_text: Option<String>,
    /// The new run's `conversation_state` (empty for a fallback).
    pub run_state: Option<Bytes>,
    /// The `conversation_id` of the new run.
    pub run_conversation_id: Option<String>,
    /// The reply as the client echoes it.
    pub reply: Vec<ChatMessage>,
    /// The reply's text.
    pub text: String,
    /// The reply's tool calls: (id, name).
    pub tool_calls: Vec<(String, String)>,
    /// What the store did after the run finished (`None` while parked).
    pub recorded: Option<Recorded>,
}

/// The adapter's conversation wiring over an in-process sim.
#[derive(Debug)]
pub struct Proxy {
    pub store: ConversationStore,
    pub rig: Option<Rig>,
    pub account: String,
    config: SimConfig,
    origin: Instant,
    seed: u64,
}

impl Proxy {
    pub fn new(store: StoreConfig) -> Self {
        Self {
            store: ConversationStore::new(store),
            rig: None,
            account: "a".to_owned(),
            config: sim_config(),
            origin: epoch(),
            seed: 0,
        }
    }

    pub fn now(&self) -> Instant {
        self.rig.as_ref().map_or(self.origin, |r| r.now)
    }

    /// Later runs go to account `label`.
    pub fn use_account(&mut self, label: &str) {
        self.account = label.to_owned();
        if let Some(rig) = self.rig.as_mut() {
            rig.token = rig.sim.issue_token(label, rig.wall).expect("account");
        }
    }

    /// The sim's counters of account `label`.
    pub fn counters(&self, label: &str) -> AccountCounters {
        self.rig
            .as_ref()
            .and_then(|r| r.sim.account_counters(label))
            .unwrap_or_default()
    }

    /// Moves simulated time forward (the sim's and the turns' timers fire on the way).
    /// The account's access token is renewed afterwards, as the adapter's auth does.
    pub fn advance(&mut self, d: Duration) {
        match self.rig.as_mut() {
            Some(rig) => {
                rig.advance(d);
                rig.token = rig
                    .sim
                    .issue_token(&self.account, rig.wall)
                    .expect("account");
            }
            None => self.origin += d,
        }
    }

    /// A proxy restart: every entry is encoded, the process "dies" (store and parked turns
    /// gone), and a new store is loaded from the encoded entries. Cursor (the sim) lives on.
    pub fn restart(&mut self) -> usize {
        let encoded: Vec<Vec<u8>> = self.store.storage().iter().map(Entry::encode).collect();
        let config = *self.store.config();
        self.store = ConversationStore::new(config);
        if let Some(rig) = self.rig.as_mut() {
            rig.registry = Default::default();
            rig.parked = None;
        }
        let storage: MemoryStorage = encoded
            .iter()
            .map(|b| Entry::decode(&Bytes::copy_from_slice(b)).expect("decodes"))
            .collect();
        self.store = ConversationStore::with_storage(storage, config, self.now());
        encoded.len()
    }

    /// Serves one client request the way an adapter does.
    pub fn handle(&mut self, client: &Client, req: &ChatRequest) -> Exchange {
        let key = ConversationKey::for_request(req, &client.api_key);
        let results = prompt::last_tool_results(req);
        let ids: Vec<String> = results.iter().map(|r| r.tool_use_id.clone()).collect();
        let resumed = !ids.is_empty()
            && self
                .rig
                .as_mut()
                .is_some_and(|rig| rig.unpark(&client.api_key, &ids));
        let (route, first_event) = if resumed {
            let rig = self.rig.as_mut().expect("resumed");
            let start = rig.events.len();
            let now = rig.now;
            rig.turn.handle_tool_results(results, now).expect("resume");
            (Route::Resumed, start)
        } else {
            let now = self.now();
            let plan = self.store.plan(&key, req, &self.account, now);
            self.seed += 1;
            let mut params = TurnParams::from_chat(
                req,
                ApiKind::Anthropic,
                &ModelMap::default(),
                key.id(),
                Framing::Run,
                IdSource::new(self.seed),
            );
            let route = match plan {
                Plan::Replay(r) => {
                    let range = r.new_messages.clone();
                    r.apply(&mut params);
                    Route::Replayed(range)
                }
                Plan::Fallback(reason) => Route::Fallback(reason),
            };
            match self.rig.as_mut() {
                Some(rig) => rig.next_run(params),
                None => {
                    assert_eq!(self.account, "a", "the first run uses account a");
                    self.rig = Some(Rig::start(self.config.clone(), Wire::Run, params));
                }
            }
            (route, 0)
        };
        let rig = self.rig.as_mut().expect("rig");
        rig.run_until_quiet(MINUTE);
        let mut recorder = ReplyRecorder::new();
        for e in &rig.events[first_event..] {
            if let TurnEvent::Reply(r) = e {
                recorder.handle(r);
            }
        }
        let reply = recorder.messages();
        let (run_text, run_state, run_conversation_id) = match (&route, run_request(rig)) {
            (Route::Resumed, _) | (_, None) => (None, None, None),
            (_, Some(r)) => (
                Some(user_text(r)),
                r.conversation_state.clone(),
                r.conversation_id.clone(),
            ),
        };
        let mut recorded = None;
        if rig.turn.is_parked() {
            rig.park(&client.api_key);
        } else {
            let Some(TurnEvent::Finished {
                checkpoint: Some(checkpoint),
                ..
            }) = rig.last_event().cloned()
            else {
                panic!("the run must finish with a checkpoint: {:?}", rig.events);
            };
            let now = rig.now;
            recorded = Some(self.store.record(
                &key,
                Completed {
                    account: &self.account,
                    request: req,
                    reply: &reply,
                    checkpoint: &checkpoint,
                    blobs: rig.turn.blobs(),
                },
                now,
            ));
        }
        let text = reply_text(&reply);
        let tool_calls = reply
            .iter()
            .flat_map(|m| &m.content)
            .filter_map(|p| match p {
                Part::ToolUse { id, name, .. } => Some((id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        Exchange {
            route,
            run_text,
            run_state,
            run_conversation_id,
            reply,
            text,
            tool_calls,
            recorded,
        }
    }
}

/// The run request the rig's current run sent.
pub fn run_request(rig: &Rig) -> Option<&pb::AgentRunRequest> {
    rig.sent.iter().find_map(|m| match &m.message {
        Some(Cm::RunRequest(r)) => Some(r),
        _ => None,
    })
}

/// The user message text of a run request.
pub fn user_text(r: &pb::AgentRunRequest) -> String {
    match r.action.as_ref().and_then(|a| a.action.as_ref()) {
        Some(pb::conversation_action::Action::UserMessageAction(u)) => u
            .user_message
            .as_ref()
            .map(|m| m.text.clone())
            .unwrap_or_default(),
        other => panic!("not a user message action: {other:?}"),
    }
}

/// The text of assistant messages.
pub fn reply_text(reply: &[ChatMessage]) -> String {
    reply
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}
