//! The conductor: the pool of Cursor accounts, which one serves each request, what failures do
//! to them, and transparent failover — without IO and without a clock.
//!
//! - [`account`]: the credential file ([`AccountRecord`]), its name, JWT `exp`/`sub`, when to
//!   refresh; [`Secret`] keeps tokens out of `Debug`.
//! - [`login`]: PKCE browser login (spec §7.1): verifier, challenge, URLs, poll schedule.
//! - [`refresh`]: token renewal requests and answers (spec §7.3, §7.4).
//! - [`Pool`]: selection (round-robin or fill-first, priority tiers, per account *and* model
//!   availability, sticky conversations), outcomes, management, usage.
//! - [`cooldown`]: how long an account (or one of its models) rests after each kind of failure.
//! - [`attempt`]: the failover state machine of one client request.
//! - [`state`]: what survives a restart, and the status page's view.
//! - [`usage`]: request, token and error counters.
//!
//! Time comes in as `now: Instant` for rests (monotonic) and `now_unix: u64` for token expiry
//! and saved state (wall clock). Changes that must reach disk (a refreshed token, a disabled
//! account) come out of [`Pool::poll_event`].

pub mod account;
pub mod attempt;
pub mod cooldown;
pub mod login;
mod pool;
pub mod refresh;
pub mod state;
mod sticky;
pub mod usage;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use account::{AccountRecord, Secret, TokenGrant};
pub use attempt::{Attempts, Verdict};
pub use cooldown::{CooldownPolicy, FailureEffect};
pub use pool::Pool;
pub use state::{PoolState, PoolStatus};
pub use sticky::DEFAULT_STICKY_CAPACITY;
pub use usage::UsageRecord;

/// An account in a [`Pool`]. Stable while the process runs (never reused after a removal);
/// saved state names accounts by their key instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AccountId(u32);

impl AccountId {
    /// The number behind the id (for management URLs).
    pub fn get(self) -> u32 {
        self.0
    }

    /// The id with this number (from a management URL; the pool says whether it exists).
    pub fn from_raw(n: u32) -> Self {
        AccountId(n)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How an account is chosen within a priority tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Spread requests: the least recently picked usable account.
    #[default]
    RoundRobin,
    /// Use the first usable account (in insertion order) until it rests.
    FillFirst,
}

/// The pool's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Selection within a priority tier.
    pub strategy: Strategy,
    /// Rest periods.
    pub cooldown: CooldownPolicy,
    /// Conversations remembered for stickiness (least recently used forgotten first; 0 turns
    /// stickiness off).
    pub sticky_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            strategy: Strategy::RoundRobin,
            cooldown: CooldownPolicy::default(),
            sticky_capacity: DEFAULT_STICKY_CAPACITY,
        }
    }
}

/// The answer of [`Pool::pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Use this account.
    Account(AccountId),
    /// Every account that could serve is resting; the earliest recovers after `retry_after`.
    AllCooling {
        /// Time until the earliest recovery.
        retry_after: Duration,
    },
    /// No account can serve: none configured, all disabled, or all already tried.
    NoAccounts,
}

/// A change the adapter must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolEvent {
    /// The account's record changed (tokens renewed, disabled or enabled, priority): write
    /// `record.to_json()` to `record.file_name()` (atomically, mode 0600).
    RecordChanged(AccountId),
}
