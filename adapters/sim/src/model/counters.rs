//! Counters a test reads to prove what happened upstream, not only what a client saw.

use std::collections::BTreeMap;

use serde::Serialize;

/// What happened on one account (or, in [`Counters::total`], on all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountCounters {
    /// Runs opened with a valid token of this account (including ones that then failed).
    pub runs: u64,
    /// Those runs by the RPC that carried them: `"Run"` (the HTTP/2 bidi stream) or
    /// `"RunSSE"` (HTTP/1.1 `RunSSE` + `BidiAppend`).
    pub runs_by_rpc: BTreeMap<String, u64>,
    /// Runs whose `run_request` carried a non-empty `conversation_state`.
    pub resumed_runs: u64,
    /// Replayed checkpoints the sim recognised as one it produced itself (byte-for-byte).
    pub replayed_checkpoints: u64,
    /// Earlier turns rebuilt from replayed conversation states.
    pub history_turns_seen: u64,
    /// Turns that ended with `turn_ended` and a final checkpoint.
    pub turns_completed: u64,
    /// Runs the client cancelled (half-close, disconnect or `cancel_action`).
    pub cancels: u64,
    /// Request bytes received on runs (envelopes, appends' payloads).
    pub bytes_in: u64,
    /// Response bytes produced on runs (envelopes, end-stream included).
    pub bytes_out: u64,
    /// Server messages (`AgentServerMessage` envelopes) sent on runs.
    pub messages_out: u64,
    /// MCP tool calls the model made (`exec_server_message.mcp_args`).
    pub tool_calls_issued: u64,
    /// `mcp_result`s received for those calls.
    pub tool_results_answered: u64,
    /// Native execs sent, by kind (`shell`, `shell_stream`, `read`, …).
    pub native_execs_issued: BTreeMap<String, u64>,
    /// Native execs the client rejected or answered on the right result field, by kind.
    pub native_execs_rejected: BTreeMap<String, u64>,
    /// Exec results that arrived on the wrong result field and were ignored (the run hangs).
    pub exec_results_wrong_field: u64,
    /// `set_blob_args` sent to the client.
    pub blobs_set: u64,
    /// Blobs obtained from the client (`get_blob_result` or `pre_fetched_blobs`).
    pub blobs_got: u64,
    /// Blobs a conversation state referenced that the client did not have.
    pub blobs_missing: u64,
    /// Runs ended with an error, by Connect code.
    pub errors: BTreeMap<String, u64>,
    /// Faults injected into runs.
    pub faults_injected: u64,
    /// Runs counted against the request quota since the last reset.
    pub quota_requests_used: u64,
    /// Tokens counted against the token quota since the last reset.
    pub quota_tokens_used: u64,
}

impl AccountCounters {
    /// Adds `other` into `self` (for the totals).
    pub(crate) fn add(&mut self, other: &AccountCounters) {
        self.runs += other.runs;
        merge(&mut self.runs_by_rpc, &other.runs_by_rpc);
        self.resumed_runs += other.resumed_runs;
        self.replayed_checkpoints += other.replayed_checkpoints;
        self.history_turns_seen += other.history_turns_seen;
        self.turns_completed += other.turns_completed;
        self.cancels += other.cancels;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.messages_out += other.messages_out;
        self.tool_calls_issued += other.tool_calls_issued;
        self.tool_results_answered += other.tool_results_answered;
        merge(&mut self.native_execs_issued, &other.native_execs_issued);
        merge(
            &mut self.native_execs_rejected,
            &other.native_execs_rejected,
        );
        self.exec_results_wrong_field += other.exec_results_wrong_field;
        self.blobs_set += other.blobs_set;
        self.blobs_got += other.blobs_got;
        self.blobs_missing += other.blobs_missing;
        merge(&mut self.errors, &other.errors);
        self.faults_injected += other.faults_injected;
        self.quota_requests_used += other.quota_requests_used;
        self.quota_tokens_used += other.quota_tokens_used;
    }
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Every counter of the simulated backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Per account label.
    pub accounts: BTreeMap<String, AccountCounters>,
    /// Sum over all accounts.
    pub total: AccountCounters,
    /// Runs opened with an unknown or expired token (ended `unauthenticated`).
    pub unauthenticated_runs: u64,
    /// Runs rejected before `run_request` processing (bad first message, missing state, …).
    pub invalid_runs: u64,
    /// `BidiAppend` calls received.
    pub bidi_appends: u64,
    /// `BidiAppend` calls ignored as duplicates.
    pub bidi_duplicates: u64,
    /// `BidiAppend` calls that arrived before their `RunSSE` was opened.
    pub bidi_early: u64,
    /// `BidiAppend` calls that arrived out of order (buffered until the gap filled).
    pub bidi_out_of_order: u64,
    /// One-request/one-response calls by path (unary RPCs, auth, models, control).
    pub requests: BTreeMap<String, u64>,
    /// Streaming runs opened, by path (`/agent.v1.AgentService/Run` or `…/RunSSE`), whatever
    /// their token (unauthenticated ones included).
    pub streams: BTreeMap<String, u64>,
    /// Access tokens issued (exchange, poll, refresh, control).
    pub tokens_issued: u64,
    /// Browser logins completed and collected.
    pub logins_completed: u64,
}
