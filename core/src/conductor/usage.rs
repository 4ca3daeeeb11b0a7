//! Usage accounting: requests, tokens and errors, per account, per model and per client.
//!
//! Two sources feed it, and they never count the same thing twice:
//!
//! - [`super::Pool::report_failure`] counts an *upstream* failure against the account that
//!   failed (its total and its model), including failures the client never saw because another
//!   account took over;
//! - [`super::Pool::record_usage`] counts one *client request's* outcome: a request and its
//!   tokens against the serving account (total, model, client), and a client-visible error
//!   against the client.
//!
//! Clients are named by a configured name or [`super::account::client_fingerprint`], never by
//! their API key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::classify::FailureKind;

/// Counters of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounters {
    /// Client requests served (or answered with an error, for a client's counters).
    pub requests: u64,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (completion) tokens.
    pub output_tokens: u64,
    /// Errors by [`FailureKind::as_str`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

impl UsageCounters {
    /// Counts one request with its tokens.
    pub fn add_request(&mut self, input_tokens: u64, output_tokens: u64) {
        self.requests = self.requests.saturating_add(1);
        self.input_tokens = self.input_tokens.saturating_add(input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(output_tokens);
    }

    /// Counts one error of `kind`.
    pub fn add_error(&mut self, kind: FailureKind) {
        let n = self.errors.entry(kind.as_str().to_owned()).or_default();
        *n = n.saturating_add(1);
    }

    /// All errors counted.
    pub fn error_count(&self) -> u64 {
        self.errors.values().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// One account's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUsage {
    /// Everything on this account.
    pub total: UsageCounters,
    /// By model.
    #[serde(default)]
    pub by_model: BTreeMap<String, UsageCounters>,
    /// By client (requests and tokens the account served for it).
    #[serde(default)]
    pub by_client: BTreeMap<String, UsageCounters>,
}

/// One client's usage over all accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientUsage {
    /// Everything for this client, client-visible errors included.
    pub total: UsageCounters,
    /// By model.
    #[serde(default)]
    pub by_model: BTreeMap<String, UsageCounters>,
}

/// One finished client request, for [`super::Pool::record_usage`].
#[derive(Debug, Clone, Copy)]
pub struct UsageRecord<'a> {
    /// The model the client asked for.
    pub model: &'a str,
    /// The client's name or fingerprint (`None` when the proxy runs without client keys).
    pub client: Option<&'a str>,
    /// Input tokens billed.
    pub input_tokens: u64,
    /// Output tokens billed.
    pub output_tokens: u64,
    /// The error the client got, if the request failed.
    pub error: Option<FailureKind>,
}

impl AccountUsage {
    pub(crate) fn add_failure(&mut self, model: &str, kind: FailureKind) {
        self.total.add_error(kind);
        self.by_model
            .entry(model.to_owned())
            .or_default()
            .add_error(kind);
    }

    pub(crate) fn add_served(&mut self, r: &UsageRecord<'_>) {
        self.total.add_request(r.input_tokens, r.output_tokens);
        self.by_model
            .entry(r.model.to_owned())
            .or_default()
            .add_request(r.input_tokens, r.output_tokens);
        if let Some(client) = r.client {
            let c = self.by_client.entry(client.to_owned()).or_default();
            c.add_request(r.input_tokens, r.output_tokens);
            if let Some(kind) = r.error {
                c.add_error(kind);
            }
        }
    }
}

impl ClientUsage {
    pub(crate) fn add(&mut self, r: &UsageRecord<'_>) {
        let model = self.by_model.entry(r.model.to_owned()).or_default();
        for c in [&mut self.total, model] {
            c.add_request(r.input_tokens, r.output_tokens);
            if let Some(kind) = r.error {
                c.add_error(kind);
            }
        }
    }
}
