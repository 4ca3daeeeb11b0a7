//! The HTTP front: routes client requests to core's parsers, runs or resumes turns on an
//! account's pooled upstream connection, and streams core's rendering back. Decisions about
//! bytes (parsing, rendering, errors, what a run carries) are core's; this file moves them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cursorpool_core::api::{self, ApiError, ErrorType, anthropic, openai};
use cursorpool_core::chat::{ApiKind, ChatRequest, ReplyEvent};
use cursorpool_core::classify::Classification;
use cursorpool_core::conductor::account::client_fingerprint;
use cursorpool_core::conductor::refresh::{
    RefreshFailure, TokenRequest, parse_refresh, refresh_request,
};
use cursorpool_core::conductor::{
    AccountId, AccountRecord, Attempts, Pool, PoolConfig, PoolEvent, PoolState, PoolStatus, Secret,
    TokenGrant, UsageRecord, Verdict,
};
use cursorpool_core::conversation::{
    Completed, ConversationKey, ConversationStorage, ConversationStore, Entry, Plan, StoreConfig,
};
use cursorpool_core::headers::{self, CallHeaders, CallKind, ClientIdentity};
use cursorpool_core::ids::IdSource;
use cursorpool_core::turn::{
    Framing, ModelMap, ParkedTurns, PreparedTools, ReplyOptions, ToolCache, Turn, TurnConfig,
    TurnEvent, TurnParams, prompt,
};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::body::{HttpResponse, ResponseBody};
use crate::persist::AuthDir;
use crate::relay::{Control, EventReceiver, Outcome, Relay, RunCall};
use crate::request_log::RequestLog;
use crate::upstream::{Pairing, Platform, Upstream, UpstreamError};

/// Distinct client tool lists kept ready (Claude Code sends one list per version and set of
/// MCP servers; a few lists cover a team).
const TOOL_CACHE_LISTS: usize = 16;

/// Largest answer read from a token refresh call.
const REFRESH_ANSWER_LIMIT: usize = 64 * 1024;

/// What the proxy needs to serve.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Cursor's base URL (or the simulated backend's).
    pub upstream_url: String,
    /// Extra trusted root certificates (PEM) for the upstream, e.g. the sim's self-signed one.
    pub upstream_root_pem: Option<Vec<u8>>,
    /// `(label, access token)` per account.
    pub accounts: Vec<(String, String)>,
    /// Client model → Cursor model.
    pub models: ModelMap,
    /// Model ids listed by `GET /v1/models`.
    pub listed_models: Vec<String>,
    /// Turn timing.
    pub turn: TurnConfig,
    /// How long a parked tool call waits for its results.
    pub park_ttl: Duration,
    /// How cursorpool presents itself upstream.
    pub identity: ClientIdentity,
    /// Largest client body accepted (413 above).
    pub max_body_bytes: usize,
    /// Downstream connection limits: head size (431 above), head and idle timeouts.
    pub conn_limits: crate::conn_watch::ConnLimits,
    /// Seed for ids (request, reply, conversation).
    pub seed: u64,
    /// Stored checkpoints: TTL and memory bound.
    pub conversations: StoreConfig,
    /// Where conversations are kept across restarts (`None`: in memory only).
    pub state_dir: Option<std::path::PathBuf>,
    /// Bound on the history flattened into a run when no checkpoint can be replayed (`None`:
    /// everything is sent; when set, the oldest messages are left out with a marker).
    pub max_history_bytes: Option<usize>,
    /// The conductor's settings: selection strategy, rest periods, sticky conversations.
    pub pool: PoolConfig,
    /// Client API keys; when any is set, every `/v1/*` request must carry one (`x-api-key`
    /// or `Authorization: Bearer`). Empty: any client is served.
    pub api_keys: Vec<String>,
    /// The management API's secret (`None`: `/v0/management` is off, 404).
    pub management_secret: Option<String>,
    /// Accounts tried for one request before the client gets the failure.
    pub request_retry: u32,
    /// The site a management-API login sends the user to.
    pub login_site: String,
    /// Poll delays of a management-API login.
    pub login_schedule: cursorpool_core::conductor::login::PollSchedule,
}

/// A conversation storage the proxy can flush at shutdown.
pub trait Storage: ConversationStorage + Send {
    /// Blocks until every accepted write is durable.
    fn flush(&self) {}
}

impl Storage for cursorpool_core::conversation::MemoryStorage {}

impl Storage for crate::persist::FileStorage {
    fn flush(&self) {
        crate::persist::FileStorage::flush(self);
    }
}

/// Conversation storage chosen at start-up (in memory, or files under the state directory).
pub struct DynStorage(pub Box<dyn Storage>);

impl std::fmt::Debug for DynStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynStorage")
    }
}

impl ConversationStorage for DynStorage {
    fn get(&self, key: &ConversationKey) -> Option<Entry> {
        self.0.get(key)
    }
    fn put(&mut self, entry: Entry) {
        self.0.put(entry);
    }
    fn remove(&mut self, key: &ConversationKey) -> bool {
        self.0.remove(key)
    }
    fn keys(&self) -> Vec<ConversationKey> {
        self.0.keys()
    }
}

/// The handle a parked turn's task listens on.
#[derive(Debug)]
struct ParkHandle {
    control: async_channel::Sender<Control>,
    /// The conversation the parked run belongs to (a new request in it abandons the run).
    conversation: ConversationKey,
    /// The account the run is on (for the request log).
    account: String,
}

/// Shared state of the running proxy.
#[derive(Debug)]
pub struct App {
    /// The configuration the proxy started with (what a reload cannot change).
    config: AppConfig,
    /// The configuration in force for what a reload changes (see [`App::reconfigure`]).
    live: RwLock<Arc<AppConfig>>,
    /// Counters for `/metrics` and the status page.
    metrics: Arc<crate::metrics::Metrics>,
    /// The runtime adapter: spawning, timers, upstream connections.
    platform: Arc<dyn Platform>,
    /// The conductor's account pool (locked only between awaits).
    pool: Mutex<Pool>,
    /// Each account's pooled upstream connection (accounts come and go with the auth
    /// directory; locked only briefly, never across an await).
    upstreams: Mutex<HashMap<AccountId, Arc<dyn Upstream>>>,
    /// Each account's configured label (names it in the conversation store and in logs).
    labels: Mutex<HashMap<AccountId, String>>,
    /// Where credential files live (set once by the serve wiring); changed records of the
    /// accounts loaded from it are written back.
    auth_dir: OnceLock<AuthDir>,
    /// Accounts that came from a credential file (only those are written back).
    file_accounts: Mutex<HashSet<AccountId>>,
    /// Serializes write-backs of credential files.
    auth_writes: Mutex<()>,
    parked: Mutex<ParkedTurns<ParkHandle>>,
    conversations: Mutex<ConversationStore<DynStorage>>,
    ids: Mutex<IdSource>,
    /// Client tool lists made ready for Cursor, reused by every run that declares the same
    /// tools (locked only to look up or insert, never while encoding).
    tools: Mutex<ToolCache>,
    runs_started: AtomicUsize,
    /// Tasks alive that were spawned through the platform.
    tasks: Arc<crate::live::Gauge>,
    /// Upstream runs whose task is alive.
    live_runs: Arc<crate::live::Gauge>,
    /// The management API's throttle and logins in progress.
    management: crate::management::Management,
}

/// Why a request body could not be read (the adapter reads it, bounded by
/// [`App::body_limit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed while the body was read.
    Unreadable(String),
}

impl App {
    /// Builds the proxy state; conversations are kept under `config.state_dir` when set
    /// (continuing those stored there), else in memory.
    pub fn new(config: AppConfig, platform: Arc<dyn Platform>) -> Result<Arc<Self>, UpstreamError> {
        let storage = match &config.state_dir {
            Some(dir) => {
                let dir = crate::persist::conversations_dir(dir);
                match crate::persist::FileStorage::load(
                    &dir,
                    config.conversations.ttl,
                    std::time::SystemTime::now(),
                ) {
                    Ok((files, entries)) => {
                        tracing::info!(
                            conversations = entries.len(),
                            dir = %dir.display(),
                            "conversation store loaded"
                        );
                        DynStorage(Box::new(files))
                    }
                    Err(e) => {
                        tracing::warn!(
                            dir = %dir.display(),
                            "cannot use the conversation store ({e}); keeping conversations in memory"
                        );
                        DynStorage(Box::new(cursorpool_core::conversation::MemoryStorage::new()))
                    }
                }
            }
            None => DynStorage(Box::new(cursorpool_core::conversation::MemoryStorage::new())),
        };
        Self::with_storage(config, platform, storage)
    }

    /// Makes every stored conversation durable (graceful shutdown).
    pub fn flush(&self) {
        if let Ok(c) = self.conversations.lock() {
            c.storage().0.flush();
        }
    }

    /// Builds the proxy state: one pooled upstream per account, conversations in `storage`
    /// (entries it already holds are continued).
    pub fn with_storage(
        config: AppConfig,
        platform: Arc<dyn Platform>,
        storage: DynStorage,
    ) -> Result<Arc<Self>, UpstreamError> {
        let tasks = Arc::new(crate::live::Gauge::default());
        let platform: Arc<dyn Platform> =
            Arc::new(crate::live::CountedPlatform::new(platform, tasks.clone()));
        let mut pool = Pool::new(config.pool.clone());
        let mut upstreams = HashMap::new();
        let mut labels = HashMap::new();
        let now_unix = unix_now();
        for (label, token) in &config.accounts {
            let grant = TokenGrant {
                access_token: Secret::new(token.clone()),
                refresh_token: None,
                auth_id: Some(label.clone()),
            };
            let record = match AccountRecord::from_grant(grant, Some(label.clone()), now_unix) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(account = %label, "account left out: {e}");
                    continue;
                }
            };
            let id = pool.upsert(record);
            upstreams.insert(
                id,
                platform.upstream(&config.upstream_url, config.upstream_root_pem.as_deref())?,
            );
            labels.insert(id, label.clone());
        }
        Ok(Arc::new(Self {
            parked: Mutex::new(ParkedTurns::new(config.park_ttl)),
            conversations: Mutex::new(ConversationStore::with_storage(
                storage,
                config.conversations,
                std::time::Instant::now(),
            )),
            ids: Mutex::new(IdSource::new(config.seed)),
            tools: Mutex::new(ToolCache::new(TOOL_CACHE_LISTS)),
            runs_started: AtomicUsize::new(0),
            tasks,
            live_runs: Arc::new(crate::live::Gauge::default()),
            pool: Mutex::new(pool),
            upstreams: Mutex::new(upstreams),
            labels: Mutex::new(labels),
            auth_dir: OnceLock::new(),
            file_accounts: Mutex::new(HashSet::new()),
            auth_writes: Mutex::new(()),
            management: crate::management::Management::default(),
            platform,
            live: RwLock::new(Arc::new(config.clone())),
            metrics: Arc::default(),
            config,
        }))
    }

    /// Upstream runs started so far (for tests and the demo).
    pub fn runs_started(&self) -> usize {
        self.runs_started.load(Ordering::Relaxed)
    }

    /// What the proxy holds alive now: tasks, runs, parked tool calls, upstream connections
    /// (tests check each returns to its baseline after a scenario).
    pub fn live_counts(&self) -> crate::live::LiveCounts {
        let upstream =
            lock(&self.upstreams)
                .values()
                .fold(crate::live::Connections::default(), |acc, u| {
                    let c = u.connections();
                    crate::live::Connections {
                        open: acc.open + c.open,
                        pooled: acc.pooled + c.pooled,
                    }
                });
        crate::live::LiveCounts {
            tasks: self.tasks.get(),
            runs: self.live_runs.get(),
            parked: self.parked_len(),
            upstream,
        }
    }

    /// The conductor's view of the accounts: state, rests, last error, usage (no credential).
    pub fn pool_status(&self) -> PoolStatus {
        self.with_pool(|p| p.status(Instant::now(), unix_now()))
    }

    /// The pool's state to save (rests, backoff, usage, sticky bindings; no credential).
    pub fn pool_state(&self) -> PoolState {
        self.with_pool(|p| p.state(Instant::now(), unix_now()))
    }

    /// Continues a saved pool state (accounts matched by key; unknown ones are ignored).
    pub fn restore_pool_state(&self, state: &PoolState) {
        self.with_pool(|p| p.restore(state, Instant::now(), unix_now()));
    }

    /// The configuration served.
    pub(crate) fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The configuration in force for what a reload can change (client keys, management
    /// secret, models, routing, limits, turn timing).
    pub fn live(&self) -> Arc<AppConfig> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The process's counters.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Puts `new` in force for every request that starts from now on (runs and streams in
    /// flight keep what they started with). Returns the keys that differ but only take effect
    /// after a restart.
    pub fn reconfigure(&self, new: AppConfig) -> Vec<&'static str> {
        let old = &self.config;
        let restart = [
            ("upstream", old.upstream_url != new.upstream_url),
            (
                "upstream-ca",
                old.upstream_root_pem != new.upstream_root_pem,
            ),
            ("token-file/tokens", old.accounts != new.accounts),
            ("state-dir/memory-only", old.state_dir != new.state_dir),
            ("park-ttl-secs", old.park_ttl != new.park_ttl),
            (
                "max-header-bytes/header-timeout-secs/idle-timeout-secs",
                old.conn_limits != new.conn_limits,
            ),
            (
                "conversation-ttl-mins",
                old.conversations != new.conversations,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        self.with_pool(|p| p.set_strategy(new.pool.strategy));
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        restart
    }

    /// The limits the adapter's server applies to each client connection.
    pub fn conn_limits(&self) -> crate::conn_watch::ConnLimits {
        self.config.conn_limits
    }

    /// The runtime adapter.
    pub fn platform(&self) -> &Arc<dyn Platform> {
        &self.platform
    }

    /// The largest body [`App::handle`] takes for this request (the adapter reads at most
    /// this much and reports [`BodyError::TooLarge`] beyond it).
    pub fn body_limit(&self, parts: &Parts) -> usize {
        if crate::management::is_management(parts.uri.path()) {
            crate::management::BODY_LIMIT
        } else {
            self.live().max_body_bytes
        }
    }

    /// The client's error for a body that could not be read.
    pub(crate) fn body_error(&self, e: &BodyError) -> ApiError {
        match e {
            BodyError::TooLarge => ApiError::new(
                ErrorType::RequestTooLarge,
                format!("request body exceeds {} bytes", self.live().max_body_bytes),
            ),
            BodyError::Unreadable(why) => ApiError::new(
                ErrorType::InvalidRequest,
                format!("could not read the request body: {why}"),
            ),
        }
    }

    /// The management API's state.
    pub(crate) fn management(&self) -> &crate::management::Management {
        &self.management
    }

    /// The auth directory, once set.
    pub(crate) fn auth_dir(&self) -> Option<&AuthDir> {
        self.auth_dir.get()
    }

    /// Whether the account came from a credential file.
    pub(crate) fn is_file_account(&self, id: AccountId) -> bool {
        lock(&self.file_accounts).contains(&id)
    }

    /// Tool calls waiting for their results.
    pub fn parked_len(&self) -> usize {
        self.parked.lock().map_or(0, |p| p.len())
    }

    /// Upstream connections made so far over all accounts.
    pub fn upstream_connects(&self) -> u64 {
        lock(&self.upstreams).values().map(|u| u.connects()).sum()
    }

    fn next_id(&self, f: impl FnOnce(&mut IdSource) -> String) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut ids)
    }

    /// `tools` made ready for Cursor: from the cache, or encoded now (outside the lock) and
    /// kept for the next run that declares them.
    fn prepared_tools(&self, tools: &[cursorpool_core::chat::ToolSpec]) -> Option<PreparedTools> {
        if tools.is_empty() {
            return None;
        }
        if let Some(hit) = lock(&self.tools).lookup(tools) {
            return Some(hit);
        }
        let made = PreparedTools::new(tools);
        lock(&self.tools).insert(made.clone());
        Some(made)
    }

    fn child_ids(&self) -> IdSource {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        IdSource::new(ids.next_u64())
    }

    /// Closes parked turns whose clients never came back.
    pub fn expire_parked(&self) {
        let now = std::time::Instant::now();
        let expired = self
            .parked
            .lock()
            .map(|mut p| p.expire(now))
            .unwrap_or_default();
        // Dropping the handles closes the control channels: each task cancels its run.
        drop(expired);
        if let Ok(mut c) = self.conversations.lock() {
            c.expire(now);
        }
    }

    /// Conversations with a stored checkpoint.
    pub fn conversations_len(&self) -> usize {
        self.conversations.lock().map_or(0, |c| c.len())
    }

    /// Serves one HTTP request.
    pub async fn handle(
        self: Arc<Self>,
        parts: Parts,
        body: Result<Bytes, BodyError>,
    ) -> HttpResponse {
        let path = parts.uri.path().to_owned();
        let api = if path.starts_with("/v1/chat/") {
            ApiKind::OpenAi
        } else {
            ApiKind::Anthropic
        };
        if crate::management::is_management(&path) {
            return crate::management::handle(self, parts, body).await;
        }
        if let Some(resp) = crate::status_page::handle(&self, &parts) {
            return resp;
        }
        let live = self.live();
        let log_api = match path.as_str() {
            "/v1/models" => models_api(&parts.headers),
            _ => api,
        };
        let log = RequestLog::new(
            self.metrics.clone(),
            log_api,
            &path,
            client_fingerprint(&client_key(&parts.headers)),
        );
        let resp = self.route(api, &path, &live, parts, body, &log).await;
        if let ResponseBody::Full(_) = resp.body() {
            log.finish(resp.status().as_u16());
        }
        resp
    }

    async fn route(
        self: Arc<Self>,
        api: ApiKind,
        path: &str,
        live: &AppConfig,
        parts: Parts,
        body: Result<Bytes, BodyError>,
        log: &RequestLog,
    ) -> HttpResponse {
        if path.starts_with("/v1/")
            && !crate::client_auth::authorized(&live.api_keys, &parts.headers)
        {
            let api = match path {
                "/v1/models" => models_api(&parts.headers),
                _ => api,
            };
            return error_response(api, &crate::client_auth::rejection());
        }
        match (&parts.method, path) {
            (&Method::HEAD | &Method::GET, "/") => plain(StatusCode::OK, "cursorpool\n"),
            (&Method::GET, "/v1/models") => {
                let api = models_api(&parts.headers);
                json(
                    StatusCode::OK,
                    api::models::models_body(api, &live.listed_models, unix_now()),
                )
            }
            (
                &Method::POST,
                "/v1/messages" | "/v1/chat/completions" | "/v1/messages/count_tokens",
            ) => {
                let bytes = match body {
                    Ok(b) => b,
                    Err(e) => return error_response(api, &self.body_error(&e)),
                };
                if path == "/v1/messages/count_tokens" {
                    return match anthropic::parse_count_tokens_request(&bytes, &parts.headers) {
                        Ok(req) => json(
                            StatusCode::OK,
                            anthropic::count_tokens_body(api::tokens::estimate_input_tokens(&req)),
                        ),
                        Err(e) => error_response(api, &ApiError::from(&e)),
                    };
                }
                let parsed = match api {
                    ApiKind::Anthropic => anthropic::parse_messages_request(&bytes, &parts.headers),
                    ApiKind::OpenAi => openai::parse_chat_request(&bytes, &parts.headers),
                };
                match parsed {
                    Ok(chat) => {
                        log.set_request(&chat.model, chat.stream);
                        self.chat(api, chat, &parts.headers, log).await
                    }
                    Err(e) => error_response(api, &ApiError::from(&e)),
                }
            }
            _ => error_response(
                api,
                &ApiError::not_found(format!("no route for {} {}", parts.method, path)),
            ),
        }
    }

    /// A chat request: resume the parked turn its tool results answer, or start a run.
    async fn chat(
        self: Arc<Self>,
        api: ApiKind,
        req: ChatRequest,
        headers: &HeaderMap,
        log: &RequestLog,
    ) -> HttpResponse {
        let client_key = client_key(headers);
        let req = Arc::new(req);
        let results = prompt::last_tool_results(&req);
        if !results.is_empty() {
            let ids: Vec<&str> = results.iter().map(|r| r.tool_use_id.as_str()).collect();
            let handle = self
                .parked
                .lock()
                .ok()
                .and_then(|mut p| p.take_for(&park_scope(&client_key, &req), &ids));
            if let Some(handle) = handle {
                let (events_tx, events_rx) = crate::relay::event_channel();
                let (done_tx, done_rx) = async_channel::bounded(1);
                let sent = handle
                    .control
                    .send(Control::Resume {
                        request: req.clone(),
                        results,
                        reply: ReplyOptions::from_chat(&req, api),
                        events: events_tx,
                        done: done_tx,
                    })
                    .await;
                if sent.is_ok() && matches!(done_rx.recv().await, Ok(Ok(()))) {
                    log.set_account(&handle.account);
                    return self
                        .reply(api, req, client_key, handle.control, events_rx, log)
                        .await;
                }
                // The parked run is gone or refused the results: a new run carries them.
                tracing::debug!("parked turn could not resume; falling back to a new run");
            }
        }
        self.abandon_parked(&ConversationKey::for_request(&req, &client_key));
        self.start(api, req, client_key, log).await
    }

    /// Starts a run on the account the conductor picks, moving on to another (or refreshing
    /// the token) before the first byte as its verdict says.
    async fn start(
        self: Arc<Self>,
        api: ApiKind,
        req: Arc<ChatRequest>,
        client_key: String,
        log: &RequestLog,
    ) -> HttpResponse {
        let live = self.live();
        let key = ConversationKey::for_request(&req, &client_key);
        let conversation = key.id();
        let model = live.models.resolve(&req.model).to_owned();
        let client = client_fingerprint(&client_key);
        self.seed_sticky(&key, &conversation, &model);
        // A bound above the account count of small pools, so that when every account failed
        // and rests the client hears "all cooling, retry in …" rather than the last failure.
        let mut attempts = Attempts::new(
            live.request_retry,
            model.as_str(),
            Some(conversation.as_str()),
        );
        let mut next = self.with_pool(|p| attempts.next(p, Instant::now()));
        loop {
            let id = match next {
                Ok(id) => id,
                Err(c) => {
                    log.set_error(c.kind);
                    return self.give_up(api, &model, &client, &c);
                }
            };
            let Some(parts) = self.attempt_parts(id) else {
                // A credential that cannot go into a header never will: out of rotation.
                self.with_pool(|p| p.disable(id, "the access token is not a valid header value"));
                next = self.with_pool(|p| attempts.next(p, Instant::now()));
                continue;
            };
            let AttemptParts {
                label,
                upstream,
                headers,
                append_headers,
                framing,
            } = parts;
            let (control_tx, control_rx) = async_channel::bounded(4);
            let (events_tx, mut events_rx) = crate::relay::event_channel();
            let mut params = TurnParams::from_chat(
                &req,
                api,
                &live.models,
                conversation.clone(),
                framing,
                self.child_ids(),
            );
            params.config = live.turn.clone();
            params.prepared_tools = self.prepared_tools(&req.tools);
            let plan = self
                .conversations
                .lock()
                .ok()
                .map(|mut c| c.plan(&key, &req, &label, std::time::Instant::now()));
            match plan {
                Some(Plan::Replay(replay)) => {
                    tracing::debug!(account = %label, "continuing the stored checkpoint");
                    replay.apply(&mut params);
                }
                Some(Plan::Fallback(reason)) => {
                    if let Some(max) = live.max_history_bytes {
                        params.input = prompt::run_input_bounded(&req, max);
                    }
                    tracing::debug!(account = %label, ?reason, "new Cursor conversation state (history flattened)");
                }
                None => {}
            }
            let turn = Turn::new(params, std::time::Instant::now());
            self.runs_started.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(account = %label, "starting upstream run");
            let run = upstream.drive(RunCall {
                turn,
                headers,
                append_headers,
                relay: Relay::new(events_tx, req.clone()).on_finished({
                    let (app, key, label) = (self.clone(), key, label.clone());
                    Box::new(move |turn, request, reply, checkpoint| {
                        app.record_parts(&key, &label, turn, request, reply, checkpoint);
                    })
                }),
                control: control_rx,
            });
            let app = self.clone();
            log.set_account(&label);
            let run_label = label.clone();
            let (run_key, run_model, run_client) = (key, model.clone(), client.clone());
            let alive = self.live_runs.enter();
            self.platform.spawn(Box::pin(async move {
                let _alive = alive;
                let outcome = run.await;
                app.finish_run(id, &run_label, &run_key, &run_model, &run_client, &outcome);
                // A run that ended while parked (upstream failure, stall) leaves nothing for a
                // client to resume: its parked entry goes now, not at its TTL.
                app.forget_ended_parks();
            }));
            // Look at the first event: a failure before anything reached the client goes to
            // the conductor, which decides whether and where to try again.
            let classification = match events_rx.recv().await.ok() {
                Some(TurnEvent::Failed {
                    classification,
                    downstream_started: false,
                }) => classification,
                Some(first) => {
                    self.with_pool(|p| attempts.on_success(p, Instant::now()));
                    return self
                        .reply_with_first(
                            api,
                            req,
                            (client_key, label),
                            control_tx,
                            first,
                            events_rx,
                            log,
                        )
                        .await;
                }
                None => {
                    return error_response(
                        api,
                        &ApiError::new(ErrorType::Api, "the upstream run ended without an answer"),
                    );
                }
            };
            tracing::info!(
                account = %label,
                kind = classification.kind.as_str(),
                error = %classification.message,
                "run failed before the first byte"
            );
            self.metrics
                .upstream_failure(&label, &classification, unix_now());
            let verdict =
                self.with_pool(|p| attempts.on_failure(p, &classification, false, Instant::now()));
            next = match verdict {
                Verdict::RetryOn(id) => Ok(id),
                Verdict::Refresh(id) => {
                    self.refresh(id).await;
                    self.with_pool(|p| attempts.next(p, Instant::now()))
                }
                Verdict::GiveUp(c) => Err(c),
            };
        }
    }

    /// Binds a conversation the pool does not know (after a restart) to the account holding
    /// its stored checkpoint, when that account can serve the model now.
    fn seed_sticky(&self, key: &ConversationKey, conversation: &str, model: &str) {
        let stored = self
            .conversations
            .lock()
            .ok()
            .and_then(|c| c.account(key, Instant::now()).map(str::to_owned));
        let Some(label) = stored else {
            return;
        };
        let Some(id) = lock(&self.labels)
            .iter()
            .find(|(_, l)| **l == label)
            .map(|(id, _)| *id)
        else {
            return;
        };
        self.with_pool(|p| {
            if p.sticky_account(conversation).is_some() || !p.is_usable(id, model, Instant::now()) {
                return;
            }
            // Picking with every other account excluded binds the conversation to `id`.
            let others: Vec<AccountId> =
                p.accounts().map(|(a, _)| a).filter(|a| *a != id).collect();
            let _ = p.pick(model, Some(conversation), &others, Instant::now());
        });
    }

    /// What a run on `id` needs: the account's label, its upstream, the calls' headers (built
    /// from the pool's current token) and the turn's framing for the upstream's pairing. `None`
    /// when the token makes no valid header.
    fn attempt_parts(&self, id: AccountId) -> Option<AttemptParts> {
        let label = lock(&self.labels).get(&id)?.clone();
        let upstream = lock(&self.upstreams).get(&id)?.clone();
        let request_id = self.next_id(IdSource::uuid_v4);
        let pairing = self.platform.pairing();
        let build = |kind| {
            self.with_pool(|p| {
                let record = p.record(id)?;
                Some(headers::build(
                    &self.config.identity,
                    CallHeaders {
                        access_token: record.access_token.expose(),
                        request_id: &request_id,
                        original_request_id: None,
                        kind,
                    },
                ))
            })
        };
        let stream = build(pairing.stream_kind())?;
        let append = match pairing {
            Pairing::Run => None,
            Pairing::RunSse => Some(build(CallKind::BidiAppend)?),
        };
        let (headers, append_headers) = match (stream, append.transpose()) {
            (Ok(h), Ok(a)) => (h, a),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(account = %label, "unusable credential: {e}");
                return None;
            }
        };
        let framing = match pairing {
            Pairing::Run => Framing::Run,
            Pairing::RunSse => Framing::BidiAppend { request_id },
        };
        Some(AttemptParts {
            label,
            upstream,
            headers,
            append_headers,
            framing,
        })
    }

    /// Renews `id`'s access token over its upstream and tells the pool how it went.
    async fn refresh(&self, id: AccountId) {
        let Some(request) = self.with_pool(|p| p.record(id).and_then(refresh_request)) else {
            return;
        };
        let Some(upstream) = lock(&self.upstreams).get(&id).cloned() else {
            return;
        };
        let result = token_call(upstream.as_ref(), request).await;
        match result {
            Ok(grant) => {
                let ok = self.with_pool(|p| p.update_tokens(id, &grant, unix_now()));
                tracing::info!(account = %id, renewed = ok, "access token refreshed");
            }
            Err(failure) => {
                tracing::warn!(account = %id, "token refresh failed: {failure}");
                self.with_pool(|p| p.report_refresh_failed(id, &failure, Instant::now()));
            }
        }
    }

    /// Answers the client with the conductor's final failure (and counts it).
    fn give_up(&self, api: ApiKind, model: &str, client: &str, c: &Classification) -> HttpResponse {
        self.with_pool(|p| {
            p.record_usage(
                None,
                &UsageRecord {
                    model,
                    client: Some(client),
                    input_tokens: 0,
                    output_tokens: 0,
                    error: Some(c.kind),
                },
            );
        });
        error_response(api, &ApiError::from(c))
    }

    /// A run on `id` is over: keep its checkpoint, mark the account for a failure after the
    /// first byte, count its usage.
    fn finish_run(
        &self,
        id: AccountId,
        label: &str,
        key: &ConversationKey,
        model: &str,
        client: &str,
        outcome: &Outcome,
    ) {
        self.record(key, label, outcome);
        if let Some(c) = &outcome.late_failure {
            tracing::info!(account = %label, kind = c.kind.as_str(), error = %c.message, "run failed after the first byte");
            self.metrics.upstream_failure(label, c, unix_now());
            self.with_pool(|p| p.report_failure(id, model, c, Instant::now()));
        }
        if let Some(usage) = &outcome.usage {
            self.with_pool(|p| {
                p.record_usage(
                    Some(id),
                    &UsageRecord {
                        model,
                        client: Some(client),
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                        error: None,
                    },
                );
            });
        }
    }

    /// Runs `f` on the pool (never across an await) and handles the changes it queued: the
    /// changed records of accounts loaded from the auth directory are written back (after the
    /// pool's lock is released).
    pub(crate) fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        let mut changed = Vec::new();
        let out = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut pool);
            while let Some(PoolEvent::RecordChanged(id)) = pool.poll_event() {
                if let Some(r) = pool.record(id) {
                    tracing::info!(account = %id, disabled = ?r.disabled, "account changed");
                    changed.push(id);
                }
            }
            out
        };
        if let Some(dir) = self.auth_dir.get() {
            // One writer at a time, each writing the record as it is now: the last write
            // always holds the pool's latest record.
            let _writing = lock(&self.auth_writes);
            for id in changed {
                if !lock(&self.file_accounts).contains(&id) {
                    // Accounts from `--token` have no file: nothing to write.
                    continue;
                }
                let current = {
                    let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    pool.record(id).cloned()
                };
                let Some(record) = current else {
                    continue;
                };
                if let Err(e) = dir.write(&record) {
                    tracing::warn!(account = %id, file = record.file_name(), error = %e, "cannot write the credential file");
                }
            }
        }
        out
    }

    // ----- accounts from the auth directory ------------------------------------------------

    /// Uses `dir` for the accounts loaded from it: their changed records (renewed tokens,
    /// disabled) are written back there. Set once; later calls are ignored (`false`).
    pub fn set_auth_dir(&self, dir: AuthDir) -> bool {
        self.auth_dir.set(dir).is_ok()
    }

    /// Adds an account from a credential file, or replaces the record of the account with the
    /// same key (its rests and usage are kept).
    pub fn upsert_account(&self, record: AccountRecord) -> Result<AccountId, UpstreamError> {
        let upstream = self.platform.upstream(
            &self.config.upstream_url,
            self.config.upstream_root_pem.as_deref(),
        )?;
        let label = record.label.clone().unwrap_or_else(|| record.key());
        let id = self.with_pool(|p| p.upsert(record));
        lock(&self.upstreams).entry(id).or_insert(upstream);
        lock(&self.labels).insert(id, label);
        lock(&self.file_accounts).insert(id);
        Ok(id)
    }

    /// Removes the account whose key is `key` (its credential file went away). Runs already
    /// on it finish; no new one starts. Whether there was such an account.
    pub fn remove_account(&self, key: &str) -> bool {
        let Some(id) = self.with_pool(|p| {
            let id = p.find(key)?;
            p.remove(id).map(|_| id)
        }) else {
            return false;
        };
        lock(&self.upstreams).remove(&id);
        lock(&self.labels).remove(&id);
        lock(&self.file_accounts).remove(&id);
        true
    }

    /// Renews the access token of every account that is due (close to expiry, or rejected
    /// since its last renewal). Returns how many were attempted.
    pub async fn refresh_due(&self) -> usize {
        let due = self.with_pool(|p| p.refresh_due(unix_now()));
        for id in &due {
            self.refresh(*id).await;
        }
        due.len()
    }

    /// The current record of the account whose key is `key` (tests, status).
    pub fn account_record(&self, key: &str) -> Option<AccountRecord> {
        self.with_pool(|p| p.find(key).and_then(|id| p.record(id).cloned()))
    }

    async fn reply(
        self: Arc<Self>,
        api: ApiKind,
        req: Arc<ChatRequest>,
        client_key: String,
        control: async_channel::Sender<Control>,
        mut events: EventReceiver,
        log: &RequestLog,
    ) -> HttpResponse {
        let account = log.account().unwrap_or_default();
        match events.recv().await {
            Ok(first) => {
                self.reply_with_first(api, req, (client_key, account), control, first, events, log)
                    .await
            }
            Err(_) => error_response(
                api,
                &ApiError::new(ErrorType::Api, "the upstream run ended without an answer"),
            ),
        }
    }

    /// Renders a reply whose first event is known: streamed as SSE or collected into one JSON
    /// body. A parked turn's control handle is registered for the next request.
    #[allow(clippy::too_many_arguments)]
    async fn reply_with_first(
        self: Arc<Self>,
        api: ApiKind,
        req: Arc<ChatRequest>,
        (client_key, account): (String, String),
        control: async_channel::Sender<Control>,
        first: TurnEvent,
        mut events: EventReceiver,
        log: &RequestLog,
    ) -> HttpResponse {
        if let TurnEvent::Failed { classification, .. } = &first {
            log.set_error(classification.kind);
            return error_response(api, &ApiError::from(classification));
        }
        let created = unix_now();
        if !req.stream {
            let mut anthropic_acc = anthropic::MessageAccumulator::new();
            let mut openai_acc = openai::CompletionAccumulator::new(created);
            let mut next = Some(first);
            while let Some(ev) = match next.take() {
                Some(ev) => Some(ev),
                None => events.recv().await.ok(),
            } {
                match ev {
                    TurnEvent::Reply(r) => {
                        note_reply(log, &r);
                        match api {
                            ApiKind::Anthropic => anthropic_acc.handle(&r),
                            ApiKind::OpenAi => openai_acc.handle(&r),
                        }
                    }
                    TurnEvent::Parked { tool_use_ids } => {
                        self.park(&client_key, &account, &req, &tool_use_ids, control.clone());
                        break;
                    }
                    TurnEvent::Failed { classification, .. } => {
                        log.set_error(classification.kind);
                        return error_response(api, &ApiError::from(&classification));
                    }
                    TurnEvent::Finished { .. } => break,
                    TurnEvent::UpstreamClose => {}
                }
            }
            let body = match api {
                ApiKind::Anthropic => anthropic_acc.finish(),
                ApiKind::OpenAi => openai_acc.finish(),
            };
            return match body {
                Ok(b) => json(StatusCode::OK, b),
                Err(c) => error_response(api, &ApiError::from(&c)),
            };
        }
        let body = crate::sse_reply::SseReply::new(
            api,
            created,
            crate::sse_reply::Owner {
                app: self.clone(),
                client_key,
                account,
                request: req,
                control,
            },
            first,
            events,
            log.clone(),
        );
        let mut resp = Response::new(ResponseBody::Stream(Box::pin(body)));
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        resp
    }

    /// Keeps a finished run's checkpoint and blobs so the conversation's next request replays
    /// it (unless the relay already did, before the reply ended).
    fn record(&self, key: &ConversationKey, account: &str, outcome: &Outcome) {
        let Some(checkpoint) = &outcome.checkpoint else {
            return;
        };
        if outcome.recorded {
            return;
        }
        self.record_parts(
            key,
            account,
            &outcome.turn,
            &outcome.request,
            &outcome.reply,
            checkpoint,
        );
    }

    fn record_parts(
        &self,
        key: &ConversationKey,
        account: &str,
        turn: &Turn,
        request: &ChatRequest,
        reply: &cursorpool_core::conversation::ReplyRecorder,
        checkpoint: &Bytes,
    ) {
        let reply = reply.messages();
        if let Ok(mut c) = self.conversations.lock() {
            c.record(
                key,
                Completed {
                    account,
                    request,
                    reply: &reply,
                    checkpoint,
                    blobs: turn.blobs(),
                },
                std::time::Instant::now(),
            );
        }
    }

    pub(crate) fn park(
        &self,
        client_key: &str,
        account: &str,
        req: &ChatRequest,
        tool_use_ids: &[String],
        control: async_channel::Sender<Control>,
    ) {
        let conversation = ConversationKey::for_request(req, client_key);
        if let Ok(mut p) = self.parked.lock() {
            // Checked under the lock that [`App::forget_ended_parks`] takes after the run's
            // end: a run that already ended is never parked.
            if control.is_closed() {
                return;
            }
            let _ = p.park_with_ids(
                &park_scope(client_key, req),
                tool_use_ids.to_vec(),
                ParkHandle {
                    control,
                    conversation,
                    account: account.to_owned(),
                },
                std::time::Instant::now(),
            );
        }
    }

    /// Removes and returns the parked entries `which` selects.
    fn take_parked(&self, which: impl Fn(&ParkHandle) -> bool) -> Vec<ParkHandle> {
        let Ok(mut p) = self.parked.lock() else {
            return Vec::new();
        };
        let ids: Vec<_> = p
            .iter_mut()
            .filter(|(_, h)| which(h))
            .map(|(id, _)| id)
            .collect();
        ids.into_iter().filter_map(|id| p.remove(id)).collect()
    }

    /// Removes the parked entries whose run has ended (nobody listens on their control).
    fn forget_ended_parks(&self) {
        let ended = self.take_parked(|h| h.control.is_closed());
        if !ended.is_empty() {
            tracing::debug!(runs = ended.len(), "parked runs ended upstream");
        }
    }

    /// The client moved on in `conversation` without answering its parked tool calls (or
    /// they can no longer be resumed): close those runs now instead of at their TTL.
    fn abandon_parked(&self, conversation: &ConversationKey) {
        let abandoned = self.take_parked(|h| h.conversation == *conversation);
        if !abandoned.is_empty() {
            tracing::debug!(
                runs = abandoned.len(),
                "closing parked runs the client abandoned"
            );
        }
        // Dropping the handles closes their control channels: each run is cancelled upstream.
        drop(abandoned);
    }
}

/// What one attempt of a run needs (see [`App::attempt_parts`]).
struct AttemptParts {
    label: String,
    upstream: Arc<dyn Upstream>,
    headers: HeaderMap,
    append_headers: Option<HeaderMap>,
    framing: Framing,
}

/// Which API's shape `GET /v1/models` answers in: Anthropic's when the client sends
/// `anthropic-version`, else OpenAI's.
fn models_api(headers: &HeaderMap) -> ApiKind {
    if headers.contains_key("anthropic-version") {
        ApiKind::Anthropic
    } else {
        ApiKind::OpenAi
    }
}

/// Notes what the request log needs of a reply event: its usage, or its failure.
pub(crate) fn note_reply(log: &RequestLog, r: &ReplyEvent) {
    match r {
        ReplyEvent::Stop { usage, .. } => log.set_usage(*usage),
        ReplyEvent::Error(c) => log.set_error(c.kind),
        _ => {}
    }
}

/// Whose parked tool calls a request may resume: its client's and its conversation's (two
/// conversations of one client may well see the same tool-call id from Cursor; neither may
/// take the other's results).
fn park_scope(client_key: &str, req: &ChatRequest) -> String {
    format!(
        "{client_key}/{}",
        ConversationKey::for_request(req, client_key).id()
    )
}

/// Who the client is, for isolation: its API key (hashed, never kept in clear).
/// The same key is the same client whether it comes in `x-api-key` (Anthropic clients) or
/// `Authorization: Bearer` (OpenAI clients).
fn client_key(headers: &HeaderMap) -> String {
    let raw = headers
        .get("x-api-key")
        .map(|v| v.as_bytes())
        .or_else(|| crate::client_auth::bearer(headers))
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
        })
        .unwrap_or_default();
    cursorpool_core::ids::hex_lower(&Sha256::digest(raw)[..16])
}

/// Sends one token call (refresh or API-key exchange, spec §7.3/§7.4) over `upstream` and
/// reads its answer. Neither the bearer nor the answer is logged.
pub(crate) async fn token_call(
    upstream: &dyn Upstream,
    request: TokenRequest,
) -> Result<TokenGrant, RefreshFailure> {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(bearer) = &request.bearer {
        let mut v =
            http::HeaderValue::from_str(&format!("Bearer {}", bearer.expose())).map_err(|_| {
                RefreshFailure::Rejected("the credential is not a valid header value".to_owned())
            })?;
        v.set_sensitive(true);
        h.insert(http::header::AUTHORIZATION, v);
    }
    match upstream
        .unary(
            Method::POST,
            request.path,
            &h,
            Bytes::from(request.body),
            REFRESH_ANSWER_LIMIT,
        )
        .await
    {
        Ok((status, _, body)) => parse_refresh(request.method, status, &body),
        Err(e) => Err(RefreshFailure::Transient(e.to_string())),
    }
}

fn error_response(api: ApiKind, err: &ApiError) -> HttpResponse {
    let (status, headers, body) = api::render_error(api, err).into_parts();
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn json(status: StatusCode, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    let mut resp = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
