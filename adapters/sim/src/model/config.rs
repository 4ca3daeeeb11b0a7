//! Configuration of the simulated backend: accounts, quotas, pacing and fault rules.
//!
//! Everything here is plain data with serde support, so the same values can be given on the
//! `cursor-sim` command line (as JSON), through the `/__sim/…` control endpoints, or built in a
//! test with struct literals.

use std::time::Duration;

use cursorpool_core::connect::code::Code;
use serde::{Deserialize, Serialize};

/// Everything the simulated backend needs to start. [`SimConfig::default`] gives one account
/// (`label "default"`, api key `"sim-key"`) with unlimited quota.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Seed for every random choice (token signing key, ids, the brain's word choices).
    pub seed: u64,
    /// The accounts the backend knows.
    pub accounts: Vec<AccountConfig>,
    /// Characters of answer text per `text_delta` update (at least 1).
    pub chunk_chars: usize,
    /// Delay between two streamed deltas (0 = all at once).
    #[serde(with = "duration_ms")]
    pub token_interval: Duration,
    /// Interval of server heartbeats while a run lives (Cursor: 5 s).
    #[serde(with = "duration_ms")]
    pub heartbeat_interval: Duration,
    /// `GetServerConfigResponse.http2_config` (0 unspecified, 1/3 force SSE, 2/4 force h2).
    pub http2_config: i32,
    /// Lifetime of issued access tokens (`exp - iat`).
    #[serde(with = "duration_ms")]
    pub token_ttl: Duration,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            accounts: vec![AccountConfig {
                label: "default".to_owned(),
                api_key: "sim-key".to_owned(),
                quota: Quota::default(),
            }],
            chunk_chars: 8,
            token_interval: Duration::ZERO,
            heartbeat_interval: Duration::from_secs(5),
            http2_config: 0,
            token_ttl: Duration::from_secs(3600),
            faults: Vec::new(),
        }
    }
}

/// One simulated Cursor account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountConfig {
    /// Name used by tests, counters, fault rules and the control endpoints.
    pub label: String,
    /// The user API key exchanged at `/auth/exchange_user_api_key`.
    pub api_key: String,
    /// Usage allowance; `None` parts are unlimited.
    #[serde(default)]
    pub quota: Quota,
}

/// Usage allowance of an account. A run that starts when either limit is already reached ends
/// with `resource_exhausted` and the usage-limit details (spec §9.17, §10.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Maximum number of runs.
    pub requests: Option<u64>,
    /// Maximum number of tokens (input + output as reported in `turn_ended`).
    pub tokens: Option<u64>,
}

/// A fault to inject into runs of one account (or all accounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Account label the rule applies to; `None` = every account.
    #[serde(default)]
    pub account: Option<String>,
    /// How many runs the rule affects.
    #[serde(default)]
    pub runs: FaultRuns,
    /// What goes wrong.
    pub fault: Fault,
}

/// How many (future) runs a [`FaultRule`] applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRuns {
    /// The next `n` matching runs, then the rule is spent.
    Next(u32),
    /// Every matching run until the rule is cleared.
    #[default]
    All,
}

/// What goes wrong in a faulty run. "Updates" counts every `AgentServerMessage` the run sent
/// (request-context exec, heartbeats and KV requests included), so `after_updates: 0` strikes
/// before the first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP/2 `RST_STREAM` with `code` (on HTTP/1.1 the adapter aborts the connection).
    RstStream {
        /// Messages sent before the reset.
        after_updates: u32,
        /// HTTP/2 error code (2 INTERNAL_ERROR, 7 REFUSED_STREAM, 8 CANCEL, 11 ENHANCE_YOUR_CALM…).
        code: u32,
    },
    /// HTTP/2 `GOAWAY` with `code` on the run's connection.
    GoAway {
        /// Messages sent before the GOAWAY.
        after_updates: u32,
        /// HTTP/2 error code (0 NO_ERROR lets the stream finish in a real server; the sim stops).
        code: u32,
    },
    /// Close the TCP connection without any HTTP/2 or HTTP/1.1 goodbye.
    DropConnection {
        /// Messages sent before the drop.
        after_updates: u32,
    },
    /// Stop sending anything at all (no heartbeats either), forever.
    Stall {
        /// Messages sent before the stall.
        after_updates: u32,
    },
    /// Send every message separately, spaced by `interval` (a slow trickle).
    Trickle {
        /// Delay before each message.
        #[serde(with = "duration_ms")]
        interval: Duration,
    },
    /// Hold back the first byte of the response for this long.
    DelayFirstByte(#[serde(with = "duration_ms")] Duration),
    /// `fault` once the run waits for the client's tool results, its `after_updates` counted
    /// from that moment (0: the first message sent while the tool call is parked, usually a
    /// heartbeat).
    WhileWaiting(Box<Fault>),
    /// End the stream with a Connect error after `after_updates` messages.
    ErrorAfter {
        /// Messages sent before the error.
        after_updates: u32,
        /// Connect code of the end-stream error.
        #[serde(with = "code_str")]
        code: Code,
        /// `aiserver.v1.ErrorDetails.Error` to attach as a detail, if any.
        #[serde(default)]
        cursor_error: Option<i32>,
    },
}

/// serde for [`Duration`] as integer milliseconds (what a human types in a JSON control call).
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// serde for [`Code`] as its wire spelling (`"unavailable"`).
pub(crate) mod code_str {
    use cursorpool_core::connect::code::Code;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(c: &Code, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        let s = String::deserialize(d)?;
        Code::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown Connect code {s:?}")))
    }
}
