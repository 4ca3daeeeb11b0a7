//! One INFO line per client request, when its answer is complete: the client (a fingerprint of
//! its key, never the key), the model it asked for, the account that served it, the status, the
//! duration and the tokens. The same numbers feed the metrics. No prompt text, no token.
//!
//! The line is written once: by whoever finishes the request first (the JSON answer, or the end
//! of a streamed one); a request whose client went away before that is logged with status 499
//! when the last handle is dropped.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cursorpool_core::chat::{ApiKind, Usage};
use cursorpool_core::classify::FailureKind;

use crate::metrics::Metrics;

/// Status logged for a request whose client went away before its answer was complete (nginx's
/// convention).
pub const CLIENT_GONE: u16 = 499;

/// A request being served; clones share it.
#[derive(Debug, Clone)]
pub struct RequestLog(Arc<Mutex<Entry>>);

#[derive(Debug)]
struct Entry {
    metrics: Arc<Metrics>,
    api: &'static str,
    path: String,
    client: String,
    model: Option<String>,
    account: Option<String>,
    stream: bool,
    usage: Option<Usage>,
    error: Option<FailureKind>,
    started: Instant,
    done: bool,
}

impl RequestLog {
    /// Starts timing a request of `client` (a fingerprint) to `path`.
    pub fn new(metrics: Arc<Metrics>, api: ApiKind, path: &str, client: String) -> Self {
        Self(Arc::new(Mutex::new(Entry {
            metrics,
            api: match api {
                ApiKind::Anthropic => "anthropic",
                ApiKind::OpenAi => "openai",
            },
            path: path.to_owned(),
            client,
            model: None,
            account: None,
            stream: false,
            usage: None,
            error: None,
            started: Instant::now(),
            done: false,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The model the client asked for, and whether it streams.
    pub fn set_request(&self, model: &str, stream: bool) {
        self.with(|e| {
            e.model = Some(model.to_owned());
            e.stream = stream;
        });
    }

    /// The account serving the request (the last one tried).
    pub fn set_account(&self, label: &str) {
        self.with(|e| e.account = Some(label.to_owned()));
    }

    /// The account set by [`RequestLog::set_account`].
    pub fn account(&self) -> Option<String> {
        self.with(|e| e.account.clone())
    }

    /// The answer's usage.
    pub fn set_usage(&self, usage: Usage) {
        self.with(|e| e.usage = Some(usage));
    }

    /// The failure the client was told about.
    pub fn set_error(&self, kind: FailureKind) {
        self.with(|e| e.error = Some(kind));
    }

    /// The answer is complete with `status`: writes the line and counts it (once; later calls
    /// do nothing).
    pub fn finish(&self, status: u16) {
        self.with(|e| e.finish(status));
    }
}

impl Entry {
    fn finish(&mut self, status: u16) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let tokens = self.usage.map(|u| (u.input_tokens, u.output_tokens));
        let error = self.error.map(FailureKind::as_str);
        tracing::info!(
            target: "cursorpool::request",
            api = self.api,
            path = %self.path,
            client = %self.client,
            model = self.model.as_deref().unwrap_or("-"),
            account = self.account.as_deref().unwrap_or("-"),
            stream = self.stream,
            status,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            input_tokens = tokens.map(|t| t.0),
            output_tokens = tokens.map(|t| t.1),
            error,
            "request"
        );
        self.metrics
            .request(self.api, status, elapsed, tokens, error);
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.finish(CLIENT_GONE);
    }
}
