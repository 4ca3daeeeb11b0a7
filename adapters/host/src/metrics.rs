//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4, written by hand).
//!
//! Counting stays cheap on the request path: atomics, or a short-held mutex over a small map at
//! the end of a request — never a lock across an await. The pool's gauges (account state,
//! cooldowns, parked tool calls, connections) are read from the app when scraped.
//!
//! Access: when a management secret is configured, `/metrics` requires it (`Authorization:
//! Bearer` or `x-management-key`, like the management API; Prometheus' `authorization`
//! setting sends it); without one it is open, like the rest of a proxy without secrets.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cursorpool_core::classify::Classification;
use cursorpool_core::conductor::state::AccountState;
use serde::Serialize;

use crate::app::App;

/// Upper bounds (seconds) of the request-duration histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Failures kept for the status page.
const RECENT_ERRORS: usize = 32;

/// One upstream failure, for the status page (no credential; Cursor's message).
#[derive(Debug, Clone, Serialize)]
pub struct RecentError {
    /// When, Unix seconds.
    pub at: u64,
    /// The account's label.
    pub account: String,
    /// The failure's kind (`quota_exhausted`, …).
    pub kind: &'static str,
    /// The status a client would get.
    pub status: u16,
    /// What happened.
    pub message: String,
}

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    request_errors: Mutex<BTreeMap<&'static str, u64>>,
    upstream_failures: Mutex<BTreeMap<&'static str, u64>>,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    recent: Mutex<VecDeque<RecentError>>,
}

impl Metrics {
    /// Counts one finished client request.
    pub fn request(
        &self,
        api: &'static str,
        status: u16,
        elapsed: Duration,
        tokens: Option<(u64, u64)>,
        error: Option<&'static str>,
    ) {
        *lock(&self.requests).entry((api, status)).or_default() += 1;
        if let Some(kind) = error {
            *lock(&self.request_errors).entry(kind).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some((input, output)) = tokens {
            self.input_tokens.fetch_add(input, Ordering::Relaxed);
            self.output_tokens.fetch_add(output, Ordering::Relaxed);
        }
    }

    /// Counts one failed upstream attempt (retried elsewhere or not) and keeps it for the
    /// status page.
    pub fn upstream_failure(&self, account: &str, c: &Classification, now_unix: u64) {
        *lock(&self.upstream_failures)
            .entry(c.kind.as_str())
            .or_default() += 1;
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(RecentError {
            at: now_unix,
            account: account.to_owned(),
            kind: c.kind.as_str(),
            status: c.client_status,
            message: c.message.clone(),
        });
    }

    /// Counts a configuration reload.
    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads
        } else {
            &self.reload_failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The most recent upstream failures, newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        lock(&self.recent).iter().rev().cloned().collect()
    }

    /// The exposition text of these counters and `app`'s gauges.
    pub fn render(&self, app: &App) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        family(
            o,
            "cursorpool_requests_total",
            "counter",
            "Client requests by API and status.",
        );
        for ((api, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                o,
                "cursorpool_requests_total{{api=\"{api}\",status=\"{status}\"}} {n}"
            );
        }
        family(
            o,
            "cursorpool_request_errors_total",
            "counter",
            "Client requests that ended in an error, by kind.",
        );
        for (kind, n) in lock(&self.request_errors).iter() {
            let _ = writeln!(o, "cursorpool_request_errors_total{{kind=\"{kind}\"}} {n}");
        }
        family(
            o,
            "cursorpool_upstream_failures_total",
            "counter",
            "Failed upstream attempts (including those retried on another account), by kind.",
        );
        for (kind, n) in lock(&self.upstream_failures).iter() {
            let _ = writeln!(
                o,
                "cursorpool_upstream_failures_total{{kind=\"{kind}\"}} {n}"
            );
        }
        family(
            o,
            "cursorpool_request_duration_seconds",
            "histogram",
            "Time from a request to the end of its answer.",
        );
        for (bound, n) in BUCKETS.iter().zip(&self.duration_buckets) {
            let _ = writeln!(
                o,
                "cursorpool_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            o,
            "cursorpool_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(o, "cursorpool_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "cursorpool_request_duration_seconds_count {count}");
        family(
            o,
            "cursorpool_tokens_total",
            "counter",
            "Tokens billed, by direction.",
        );
        let _ = writeln!(
            o,
            "cursorpool_tokens_total{{direction=\"input\"}} {}",
            self.input_tokens.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "cursorpool_tokens_total{{direction=\"output\"}} {}",
            self.output_tokens.load(Ordering::Relaxed)
        );

        let status = app.pool_status();
        family(
            o,
            "cursorpool_account_state",
            "gauge",
            "1 for each account's current state.",
        );
        for a in &status.accounts {
            let label = escape(a.label.as_deref().unwrap_or(&a.key));
            for state in [
                AccountState::Ready,
                AccountState::Cooling,
                AccountState::Disabled,
                AccountState::NeedsRefresh,
            ] {
                let v = u8::from(a.state == state);
                let _ = writeln!(
                    o,
                    "cursorpool_account_state{{account=\"{label}\",state=\"{}\"}} {v}",
                    state_name(state)
                );
            }
        }
        family(
            o,
            "cursorpool_account_cooldown_seconds",
            "gauge",
            "Seconds left of each rest in progress (model \"\": the whole account).",
        );
        for a in &status.accounts {
            let label = escape(a.label.as_deref().unwrap_or(&a.key));
            for c in &a.cooldowns {
                let model = escape(c.model.as_deref().unwrap_or(""));
                let _ = writeln!(
                    o,
                    "cursorpool_account_cooldown_seconds{{account=\"{label}\",model=\"{model}\"}} {}",
                    c.remaining_secs
                );
            }
        }
        family(
            o,
            "cursorpool_account_requests_total",
            "counter",
            "Requests served by each account.",
        );
        for a in &status.accounts {
            let label = escape(a.label.as_deref().unwrap_or(&a.key));
            let _ = writeln!(
                o,
                "cursorpool_account_requests_total{{account=\"{label}\"}} {}",
                a.usage.total.requests
            );
        }
        family(
            o,
            "cursorpool_account_errors_total",
            "counter",
            "Upstream failures of each account.",
        );
        for a in &status.accounts {
            let label = escape(a.label.as_deref().unwrap_or(&a.key));
            let _ = writeln!(
                o,
                "cursorpool_account_errors_total{{account=\"{label}\"}} {}",
                a.usage.total.error_count()
            );
        }
        family(
            o,
            "cursorpool_parked_conversations",
            "gauge",
            "Tool calls waiting for their results (upstream runs held open).",
        );
        let _ = writeln!(o, "cursorpool_parked_conversations {}", app.parked_len());
        family(
            o,
            "cursorpool_stored_conversations",
            "gauge",
            "Conversations with a stored checkpoint.",
        );
        let _ = writeln!(
            o,
            "cursorpool_stored_conversations {}",
            app.conversations_len()
        );
        family(
            o,
            "cursorpool_upstream_connections_total",
            "counter",
            "Upstream connections made (TCP + TLS + protocol handshake).",
        );
        let _ = writeln!(
            o,
            "cursorpool_upstream_connections_total {}",
            app.upstream_connects()
        );
        family(
            o,
            "cursorpool_upstream_runs_total",
            "counter",
            "Upstream runs started.",
        );
        let _ = writeln!(o, "cursorpool_upstream_runs_total {}", app.runs_started());
        family(
            o,
            "cursorpool_config_reloads_total",
            "counter",
            "Configuration reloads, by result.",
        );
        let _ = writeln!(
            o,
            "cursorpool_config_reloads_total{{result=\"ok\"}} {}",
            self.reloads.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "cursorpool_config_reloads_total{{result=\"error\"}} {}",
            self.reload_failures.load(Ordering::Relaxed)
        );
        out
    }
}

/// The snake_case name of a state (as the management API writes it).
pub fn state_name(s: AccountState) -> &'static str {
    match s {
        AccountState::Ready => "ready",
        AccountState::Cooling => "cooling",
        AccountState::Disabled => "disabled",
        AccountState::NeedsRefresh => "needs_refresh",
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.request(
            "anthropic",
            200,
            Duration::from_millis(70),
            Some((10, 5)),
            None,
        );
        m.request(
            "openai",
            429,
            Duration::from_secs(3),
            None,
            Some("quota_exhausted"),
        );
        let counts: Vec<u64> = m
            .duration_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
        assert_eq!(m.input_tokens.load(Ordering::Relaxed), 10);
        assert_eq!(lock(&m.request_errors).get("quota_exhausted"), Some(&1));
    }
}
