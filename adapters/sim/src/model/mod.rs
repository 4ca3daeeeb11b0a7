//! The sans-IO model of the simulated Cursor backend.
//!
//! [`Sim`] holds every account, token, run and fault. It never reads a clock and never touches
//! a socket: an adapter (the `cursor-sim` server, or a test calling it in-process) feeds it
//! requests, request-body bytes and the current time, then drains [`Sim::poll_output`] until
//! `None` and sleeps until [`Sim::poll_timeout`]. The same inputs always produce the same bytes.
//!
//! # What a run does (spec §6, §9)
//!
//! A run waits for its `run_request` (anything else first → `invalid_argument`, §10.8),
//! validates it (`conversation_state` absent → `invalid_argument` "Conversation state is
//! required"), asks for the request context (`exec request_context_args`, paired by `id` only),
//! rebuilds the history from the replayed state (pre-fetched blobs first, `get_blob_args` for
//! the rest, SHA-256 verified; a missing blob → `internal` `"Blob not found: <hex>"`), then plays
//! the turn: thinking and text deltas in `chunk_chars` pieces spaced by `token_interval`,
//! `token_delta`s, tool calls (MCP `mcp_args` or native execs, all of a round back-to-back,
//! then a wait for every result), `set_blob_args` for the system prompt, user message, steps
//! and turn (every one acknowledged before a checkpoint references it), an intermediate
//! checkpoint with `pending_tool_calls` while calls are outstanding, `turn_ended`, the final
//! checkpoint and end-stream `{}`. Heartbeats flow every `heartbeat_interval` the whole time.
//! A client half-close / disconnect / `cancel_action` before the end cancels the turn.
//!
//! # The deterministic model's prompt syntax
//!
//! In the user text: `call <tool>(<json object>)` or `use tool <tool>` calls a declared MCP
//! tool (by wire name or bare tool name; several per message = one round issued together);
//! `native <kind>(<arg>)` asks for a built-in exec (`shell`, `shell_stream`, `read`, `write`,
//! `delete`, `ls`, `grep`, `fetch`, `diagnostics`, `background_shell`, `mcp_state`, …; the
//! reply must come on the same-numbered result field, a wrong field is ignored and the run
//! hangs); `then` starts a new round after the previous results; `think` (or a model id ending
//! in `-thinking`) adds thinking deltas; `lorem <n>` appends `n` filler words. The answer is
//! line-oriented:
//!
//! ```text
//! user turns: <u>; tool results: <r>; last user message: "<text>"
//! previous user messages: ["…", …]        (with history)
//! system prompt: "<text>"                  (cloud_rule, or a seeded root system message)
//! result of <tool>: <text>                 (each result of this turn)
//! unknown tool: <name>                     (a call of an undeclared tool)
//! tools available: <n>; model: <id>
//! <seeded sign-off>.
//! ```
//!
//! # Faults and control
//!
//! [`FaultRule`]s (per account or all, for the next `n` runs or all) come from the config,
//! [`Control`] / `POST /__sim/…`, or a single run's `x-sim-fault: <Fault JSON>` header.
//! Control endpoints (JSON): `GET /__sim/counters`; `POST /__sim/control` with a [`Control`]
//! (`{"op": "reset_quota", "account": "a"}`); shortcuts `POST /__sim/faults`
//! (`{"faults": […]}`), `/__sim/faults/add` (a rule), `/__sim/faults/clear`,
//! `/__sim/quota/reset`, `/__sim/quota/set`, `/__sim/login/complete`
//! (`{"uuid", "account", "challenge"}`), `/__sim/tokens/expire`, `/__sim/tokens/issue`,
//! `/__sim/http2_config` (`{"value": 2}`).

mod accounts;
mod bidi;
mod brain;
mod config;
mod control;
mod counters;
mod faults;
mod history;
mod http_api;
mod native;
mod rng;
mod run;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_proto::aiserver_v1::{CustomErrorDetails, ErrorDetails};

use accounts::{Accounts, AuthError};
use bidi::BidiChannels;
use history::BlobId;
use rng::Rng;
use run::{Env, Run};

pub use config::{AccountConfig, Fault, FaultRule, FaultRuns, Quota, SimConfig};
pub use control::Control;
pub use counters::{AccountCounters, Counters};

/// Which streaming RPC a run was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `/agent.v1.AgentService/Run`: a full-duplex HTTP/2 stream; the request body carries
    /// every `AgentClientMessage` envelope.
    Run,
    /// `/agent.v1.AgentService/RunSSE`: the request body is one `BidiRequestId` envelope (or
    /// empty on a retry, §10.8) and client messages arrive through `BidiAppend`.
    RunSse {
        /// The request id from `x-request-id` (used when the body is empty).
        request_id: String,
    },
}

/// A one-request/one-response HTTP call as the adapter received it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string without `?` (may be empty).
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The whole request body.
    pub body: &'a [u8],
}

/// The answer to an [`HttpRequest`] (or a refused stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, `content-type` included.
    pub headers: Vec<(String, String)>,
    /// The whole response body.
    pub body: Bytes,
}

/// Identifies one streaming run inside a [`Sim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// Something an adapter must do on a run's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutput {
    /// Framed envelopes: write them to the response body and flush.
    Data(Bytes),
    /// The end-stream envelope has been written: end the response (h2 END_STREAM / last chunk).
    Finished,
    /// Reset the stream with this HTTP/2 error code; on HTTP/1.1 abort the connection.
    Reset {
        /// HTTP/2 error code.
        code: u32,
    },
    /// Send GOAWAY with this code on the run's connection, then close it.
    GoAway {
        /// HTTP/2 error code.
        code: u32,
    },
    /// Close the run's TCP connection abruptly.
    DropConnection,
}

/// The simulated Cursor backend (see the module docs).
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    accounts: Accounts,
    faults: Vec<FaultRule>,
    rng: Rng,
    runs: BTreeMap<RunId, Run>,
    next_run: u64,
    bidi: BidiChannels,
    outputs: VecDeque<(RunId, RunOutput)>,
    global: Counters,
    /// A B-tree: it grows with every run, and a hash set would stall the whole sim while it
    /// rehashes (the benchmark's baseline and proxies alike).
    produced: BTreeSet<BlobId>,
}

impl Sim {
    /// A backend with `config`'s accounts and faults. `now`/`wall` are the start time (the
    /// model keeps no clock; every later input brings its own time).
    pub fn new(config: SimConfig, now: Instant, wall: SystemTime) -> Self {
        let _ = (now, wall);
        Self {
            accounts: Accounts::new(&config.accounts, config.seed, config.token_ttl),
            faults: config.faults.clone(),
            rng: Rng::new(config.seed ^ 0x005E_ED0F_C0A1),
            runs: BTreeMap::new(),
            next_run: 1,
            bidi: BidiChannels::default(),
            outputs: VecDeque::new(),
            global: Counters::default(),
            produced: BTreeSet::new(),
            config,
        }
    }

    /// The configuration (with the changes control operations made).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Every one-request/one-response endpoint: auth (`/auth/exchange_user_api_key`,
    /// `/auth/poll`, `/oauth/token`), `GET /v1/models`, the unary Connect calls
    /// (`GetServerConfig`, `GetUserPrivacyMode`, `GetUsableModels`, `GetDefaultModelForCli`,
    /// `GetTeamAdminSettingsOrEmptyIfNotInTeam`, `AnalyticsService/*` incl. the JSON
    /// `BootstrapStatsig`), `BidiAppend` (delivered to the run of its request id, buffered when
    /// early or out of order, duplicates ignored) and the `/__sim/…` control endpoints.
    /// Unknown paths → Connect `unimplemented` (501 JSON). Drain [`Sim::poll_output`] afterwards:
    /// a `BidiAppend` usually makes its run produce output.
    pub fn handle_request(
        &mut self,
        req: HttpRequest<'_>,
        now: Instant,
        wall: SystemTime,
    ) -> HttpResponse {
        self.route(req, now, wall)
    }

    /// Opens a streaming run (`/agent.v1.AgentService/Run` or `/RunSSE`). Auth is checked
    /// here: an unknown or expired token still opens the run, which ends at once with
    /// end-stream `unauthenticated` (HTTP 200), as Cursor does; an exhausted quota ends it with
    /// `resource_exhausted` and the usage-limit details. `Err` only for requests that are not
    /// Connect streams (wrong `content-type` → 415). The response status is 200 with
    /// `content-type: application/connect+proto` ([`Sim::stream_headers`]).
    ///
    /// For `RunSSE`, call [`Sim::handle_run_closed`] only when the client disconnects — the
    /// end of its (one-envelope) request body is not a cancel.
    pub fn open_run(
        &mut self,
        transport: Transport,
        headers: &http::HeaderMap,
        now: Instant,
        wall: SystemTime,
    ) -> Result<RunId, HttpResponse> {
        let ct = header_str(headers, "content-type");
        if !ct.starts_with("application/connect+proto") {
            return Err(text_response(
                415,
                &format!("unsupported content type {ct:?}: streams need application/connect+proto"),
            ));
        }
        let id = RunId(self.next_run);
        self.next_run += 1;
        let seed = self.rng.next_u64();
        let (sse, request_id) = match transport {
            Transport::Run => (false, None),
            Transport::RunSse { request_id } => (true, Some(request_id)),
        };
        let rpc = transport_rpc(sse);
        *self
            .global
            .streams
            .entry(format!("/agent.v1.AgentService/{rpc}"))
            .or_default() += 1;
        let auth = self.accounts.check_bearer(headers, wall);
        let account = auth.ok();
        let mut faults = Vec::new();
        if let Some(a) = account {
            let label = self.accounts.list[a].config.label.clone();
            faults = faults::take_faults(&mut self.faults, &label);
            if let Some(f) = header_fault(headers) {
                faults.push(f);
            }
        }
        let n_faults = faults.len() as u64;
        let shaper = faults::Shaper::new(faults, now);
        let mut run = Run::new(sse, None, account, shaper, seed, &self.config, now);
        let mut ready = Vec::new();
        let mut conflict = false;
        if let Some(rid) = request_id.as_deref().filter(|r| !r.is_empty()) {
            match self.bidi.attach(rid, id) {
                Some(r) => {
                    run.request_id = Some(rid.to_owned());
                    ready = r;
                }
                None => conflict = true,
            }
        }
        self.runs.insert(id, run);
        self.drive(id, now, |run, env| {
            if let Some(a) = env.counters.as_deref_mut() {
                a.runs += 1;
                *a.runs_by_rpc.entry(rpc.to_owned()).or_default() += 1;
                a.faults_injected += n_faults;
            }
            match auth {
                Err(e) => {
                    env.global.unauthenticated_runs += 1;
                    let msg = match e {
                        AuthError::Missing => "Missing bearer token",
                        AuthError::Unknown => "Invalid access token",
                        AuthError::Expired => "Access token expired",
                    };
                    run.fail(&ConnectError::new(Code::Unauthenticated, msg), env);
                }
                Ok(_) if sse && request_id.as_deref().is_none_or(str::is_empty) => {
                    env.global.invalid_runs += 1;
                    let e = ConnectError::new(Code::InvalidArgument, "missing x-request-id");
                    run.fail(&e, env);
                }
                Ok(_) if conflict => {
                    let e = ConnectError::new(Code::AlreadyExists, "request id already in use");
                    run.fail(&e, env);
                }
                Ok(_) => {}
            }
        });
        if let Some(a) = account
            && self.runs.get(&id).is_some_and(|r| !r.is_ended())
        {
            if self.accounts.quota_exhausted(a) {
                self.drive(id, now, |run, env| run.fail(&usage_limit_error(), env));
            } else {
                self.accounts.list[a].counters.quota_requests_used += 1;
            }
        }
        for payload in ready {
            self.drive(id, now, |run, env| {
                run.handle_client_bytes(payload, now, env)
            });
        }
        Ok(id)
    }

    /// The response headers of a stream (status 200).
    pub fn stream_headers() -> Vec<(String, String)> {
        vec![(
            "content-type".to_owned(),
            "application/connect+proto".to_owned(),
        )]
    }

    /// Request-body bytes of a run: envelopes of `AgentClientMessage` (`Run`) or the single
    /// `BidiRequestId` envelope (`RunSSE`; may be empty on a retry, §10.8). Chunks may split or
    /// merge envelopes arbitrarily.
    pub fn handle_run_body(&mut self, run: RunId, data: &[u8], now: Instant) {
        self.drive(run, now, |r, env| {
            // The request id of a RunSSE comes from `x-request-id`; the body's copy is only
            // informative (they are the same for the SDK).
            let _ = r.handle_body(data, now, env);
        });
    }

    /// The client half-closed its request (h2 `END_STREAM` on `Run`) or went away (HTTP/1.1
    /// disconnect): a cancel before the end of the turn (§10.7); nothing after it.
    pub fn handle_run_closed(&mut self, run: RunId, now: Instant) {
        self.drive(run, now, |r, env| r.handle_closed(env));
    }

    /// The next output of any run; call after every `handle_*` until `None`.
    pub fn poll_output(&mut self) -> Option<(RunId, RunOutput)> {
        self.outputs.pop_front()
    }

    /// When [`Sim::handle_timeout`] must next be called (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.runs.values().filter_map(Run::timeout).min()
    }

    /// Time passed: heartbeats, paced deltas, delayed and trickled frames.
    pub fn handle_timeout(&mut self, now: Instant, wall: SystemTime) {
        let _ = wall;
        let ids: Vec<RunId> = self.runs.keys().copied().collect();
        for id in ids {
            self.drive(id, now, |r, env| r.handle_timeout(now, env));
        }
    }

    /// Every counter: per account, the total, and the global ones.
    pub fn counters(&self) -> Counters {
        let mut c = self.global.clone();
        for a in &self.accounts.list {
            c.total.add(&a.counters);
            c.accounts
                .insert(a.config.label.clone(), a.counters.clone());
        }
        c
    }

    /// The counters of the account labelled `label`.
    pub fn account_counters(&self, label: &str) -> Option<AccountCounters> {
        let i = self.accounts.by_label(label)?;
        Some(self.accounts.list[i].counters.clone())
    }

    /// Issues an access token for the account `label` (what `cursor-sim` prints at start).
    pub fn issue_token(&mut self, label: &str, wall: SystemTime) -> Option<String> {
        let a = self.accounts.by_label(label)?;
        self.global.tokens_issued += 1;
        Some(self.accounts.issue(a, accounts::TokenKind::Access, wall))
    }

    /// Number of runs still open (for adapters' bookkeeping and tests).
    pub fn open_runs(&self) -> usize {
        self.runs.len()
    }

    /// Applies `f` to run `id` with its environment, then lets its due frames out and forgets
    /// it once its response is over.
    fn drive(&mut self, id: RunId, now: Instant, f: impl FnOnce(&mut Run, &mut Env<'_>)) {
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        let mut env = Env {
            counters: run.account.map(|a| &mut self.accounts.list[a].counters),
            global: &mut self.global,
            produced: &mut self.produced,
        };
        f(run, &mut env);
        let rel = run.shaper.release(id, now, &mut self.outputs);
        env.count(|c| {
            c.bytes_out += rel.bytes;
            c.messages_out += rel.messages;
            if let Some(code) = rel.error {
                *c.errors.entry(code.as_str().to_owned()).or_default() += 1;
            }
        });
        if run.shaper.is_closed() {
            if let Some(rid) = run.request_id.clone() {
                self.bidi.end(&rid);
            }
            self.runs.remove(&id);
        }
    }
}

/// The RPC name a run came in on (the key of [`AccountCounters::runs_by_rpc`]).
fn transport_rpc(sse: bool) -> &'static str {
    if sse { "RunSSE" } else { "Run" }
}

/// The usage-limit error of an exhausted quota (spec §9.17, §10.5).
fn usage_limit_error() -> ConnectError {
    ConnectError::new(Code::ResourceExhausted, "Error").with_cursor_details(&ErrorDetails {
        error: CursorError::ProUserUsageLimit as i32,
        details: Some(CustomErrorDetails {
            title: "Usage limit".to_owned(),
            detail: "You've hit your usage limit for this billing period (cursor-sim quota)."
                .to_owned(),
            is_retryable: Some(false),
            ..Default::default()
        }),
        is_expected: Some(true),
    })
}

/// A per-run fault from the `x-sim-fault` request header (JSON of a [`Fault`]).
fn header_fault(headers: &http::HeaderMap) -> Option<Fault> {
    let v = headers.get("x-sim-fault")?.to_str().ok()?;
    serde_json::from_str(v).ok()
}

/// A header's value as text (empty when absent or not ASCII).
fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A `text/plain` response.
fn text_response(status: u16, text: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![(
            "content-type".to_owned(),
            "text/plain; charset=utf-8".to_owned(),
        )],
        body: Bytes::from(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    /// Adapters share a `Sim` between tasks (behind a lock): it must be `Send`.
    #[test]
    fn sim_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<super::Sim>();
    }
}
