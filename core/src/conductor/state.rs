//! The pool's state outside the credential files: what is saved across a restart
//! ([`PoolState`]) and what the status page and management API show ([`PoolStatus`]).
//!
//! Deadlines run on the monotonic clock inside the pool (`Instant`) and are saved as Unix
//! seconds; both clocks are passed in. Saving rounds a remaining rest *up* to whole seconds, so
//! a restart never shortens a rest, and restoring drops rests that ended while the proxy was
//! down. Accounts are matched by key (label or subject hash); state for an account that is no
//! longer configured is ignored, so restore after loading the credential files.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::AccountId;
use super::cooldown::{CoolCause, Cooling, Health, ModelHealth};
use super::pool::{LastError, Pool};
use super::usage::{AccountUsage, ClientUsage};

/// Version of the [`PoolState`] format.
pub const STATE_VERSION: u32 = 1;

/// Everything the pool must not forget across a restart (serialize it to JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// When it was saved (Unix seconds).
    pub saved_at: u64,
    /// Per account key.
    #[serde(default)]
    pub accounts: BTreeMap<String, SavedAccount>,
    /// Per client.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientUsage>,
    /// Conversation → account key, least recently used first.
    #[serde(default)]
    pub sticky: Vec<(String, String)>,
}

/// One account's saved state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAccount {
    /// An account-wide rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling: Option<SavedCooling>,
    /// Per model: rest and quota backoff level.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, SavedModel>,
    /// The most recent failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SavedError>,
    /// Usage counters.
    #[serde(default)]
    pub usage: AccountUsage,
}

/// A rest, ending at a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCooling {
    /// End, Unix seconds.
    pub until: u64,
    /// Why.
    pub cause: CoolCause,
}

/// One model's saved state on an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedModel {
    /// A rest in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling: Option<SavedCooling>,
    /// Quota backoff steps taken since the last success.
    #[serde(default)]
    pub quota_level: u32,
}

/// A failure as shown and saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedError {
    /// [`crate::classify::FailureKind::as_str`], or `refresh_failed`.
    pub kind: String,
    /// The status the client would have got.
    pub status: u16,
    /// The message (never a credential).
    pub message: String,
    /// When, Unix seconds.
    pub at: u64,
}

/// Converts between the pool's monotonic deadlines and Unix seconds.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    now: Instant,
    now_unix: u64,
}

impl Clocks {
    fn unix_of(self, t: Instant) -> u64 {
        match t.checked_duration_since(self.now) {
            Some(ahead) => self.now_unix.saturating_add(ceil_secs(ahead)),
            None => self
                .now_unix
                .saturating_sub(self.now.duration_since(t).as_secs()),
        }
    }

    fn instant_of(self, unix: u64) -> Instant {
        if unix >= self.now_unix {
            self.now + Duration::from_secs(unix - self.now_unix)
        } else {
            self.now
                .checked_sub(Duration::from_secs(self.now_unix - unix))
                .unwrap_or(self.now)
        }
    }

    fn save_cooling(self, c: Option<Cooling>) -> Option<SavedCooling> {
        c.filter(|c| c.until > self.now).map(|c| SavedCooling {
            until: self.unix_of(c.until),
            cause: c.cause,
        })
    }

    fn load_cooling(self, c: Option<SavedCooling>) -> Option<Cooling> {
        c.filter(|c| c.until > self.now_unix).map(|c| Cooling {
            until: self.instant_of(c.until),
            cause: c.cause,
        })
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Pool {
    /// The state to save, at `now` (monotonic) = `now_unix` (wall clock).
    pub fn state(&self, now: Instant, now_unix: u64) -> PoolState {
        let clocks = Clocks { now, now_unix };
        let accounts = self
            .slots
            .iter()
            .map(|s| {
                let models = s
                    .health
                    .models
                    .iter()
                    .map(|(m, h)| {
                        let saved = SavedModel {
                            cooling: clocks.save_cooling(h.cooling),
                            quota_level: h.quota_level,
                        };
                        (m.clone(), saved)
                    })
                    .filter(|(_, m)| m.cooling.is_some() || m.quota_level > 0)
                    .collect();
                let saved = SavedAccount {
                    cooling: clocks.save_cooling(s.health.account_wide),
                    models,
                    last_error: s.last_error.as_ref().map(|e| SavedError {
                        kind: e.kind.clone(),
                        status: e.status,
                        message: e.message.clone(),
                        at: clocks.unix_of(e.at),
                    }),
                    usage: s.usage.clone(),
                };
                (s.record.key(), saved)
            })
            .collect();
        let keys: BTreeMap<AccountId, String> =
            self.slots.iter().map(|s| (s.id, s.record.key())).collect();
        let sticky = self
            .sticky
            .entries()
            .filter_map(|(conv, id)| keys.get(&id).map(|k| (conv.to_owned(), k.clone())))
            .collect();
        PoolState {
            version: STATE_VERSION,
            saved_at: now_unix,
            accounts,
            clients: self.clients.clone(),
            sticky,
        }
    }

    /// Takes saved state back at `now` = `now_unix`: rests that have not ended, backoff levels,
    /// last errors, usage and conversation bindings, for the accounts the pool has.
    pub fn restore(&mut self, state: &PoolState, now: Instant, now_unix: u64) {
        let clocks = Clocks { now, now_unix };
        for slot in &mut self.slots {
            let Some(saved) = state.accounts.get(&slot.record.key()) else {
                continue;
            };
            let models = saved
                .models
                .iter()
                .map(|(m, h)| {
                    let health = ModelHealth {
                        cooling: clocks.load_cooling(h.cooling),
                        quota_level: h.quota_level,
                        short_level: 0,
                    };
                    (m.clone(), health)
                })
                .filter(|(_, h)| h.cooling.is_some() || h.quota_level > 0)
                .collect();
            slot.health = Health {
                account_wide: clocks.load_cooling(saved.cooling),
                models,
                first_401_gen: None,
            };
            slot.last_error = saved.last_error.as_ref().map(|e| LastError {
                kind: e.kind.clone(),
                status: e.status,
                message: e.message.clone(),
                at: clocks.instant_of(e.at),
            });
            slot.usage = saved.usage.clone();
        }
        self.clients = state.clients.clone();
        for (conv, key) in &state.sticky {
            if let Some(id) = self.find(key) {
                self.sticky.set(conv, id);
            }
        }
    }

    /// What the status page and the management API show, at `now` = `now_unix`.
    pub fn status(&self, now: Instant, now_unix: u64) -> PoolStatus {
        let clocks = Clocks { now, now_unix };
        let cooldown = |model: Option<&str>, c: Cooling| CooldownStatus {
            model: model.map(str::to_owned),
            cause: c.cause,
            remaining_secs: ceil_secs(c.until.saturating_duration_since(now)),
            until: clocks.unix_of(c.until),
        };
        let accounts = self
            .slots
            .iter()
            .map(|s| {
                let r = &s.record;
                let mut cooldowns: Vec<CooldownStatus> = Vec::new();
                if let Some(c) = s.health.account_wide.filter(|c| c.until > now) {
                    cooldowns.push(cooldown(None, c));
                }
                for (m, h) in &s.health.models {
                    if let Some(c) = h.cooling.filter(|c| c.until > now) {
                        cooldowns.push(cooldown(Some(m), c));
                    }
                }
                let needs_refresh = r.needs_refresh(now_unix);
                let state = if r.disabled.is_some() {
                    AccountState::Disabled
                } else if !cooldowns.is_empty() {
                    AccountState::Cooling
                } else if needs_refresh {
                    AccountState::NeedsRefresh
                } else {
                    AccountState::Ready
                };
                AccountStatus {
                    id: s.id,
                    key: r.key(),
                    file_name: r.file_name(),
                    label: r.label.clone(),
                    subject: r.subject.clone(),
                    email: r.email.clone(),
                    priority: r.priority,
                    state,
                    disabled_reason: r.disabled.clone(),
                    cooldowns,
                    expires_at: r.expires_at,
                    needs_refresh,
                    last_error: s.last_error.as_ref().map(|e| SavedError {
                        kind: e.kind.clone(),
                        status: e.status,
                        message: e.message.clone(),
                        at: clocks.unix_of(e.at),
                    }),
                    usage: s.usage.clone(),
                }
            })
            .collect();
        PoolStatus {
            strategy: self.config.strategy,
            accounts,
            clients: self.clients.clone(),
            sticky_conversations: self.sticky.len(),
        }
    }
}

/// The pool as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The selection strategy.
    pub strategy: super::Strategy,
    /// Every account, in insertion order.
    pub accounts: Vec<AccountStatus>,
    /// Usage per client.
    pub clients: BTreeMap<String, ClientUsage>,
    /// Conversations bound to an account.
    pub sticky_conversations: usize,
}

/// An account's summary state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// In rotation for every model.
    Ready,
    /// Resting, for every model or some (see `cooldowns`).
    Cooling,
    /// Out of rotation (see `disabled_reason`).
    Disabled,
    /// Usable, but its token is due for renewal.
    NeedsRefresh,
}

/// One rest in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CooldownStatus {
    /// The model, or `None` for the whole account.
    pub model: Option<String>,
    /// Why.
    pub cause: CoolCause,
    /// Seconds left, rounded up.
    pub remaining_secs: u64,
    /// End, Unix seconds.
    pub until: u64,
}

/// One account on the status page. Carries no credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountStatus {
    /// The pool's id (valid until the proxy restarts).
    pub id: AccountId,
    /// Label or subject hash.
    pub key: String,
    /// The credential file's name.
    pub file_name: String,
    /// Label.
    pub label: Option<String>,
    /// Account subject.
    pub subject: String,
    /// Email, when known.
    pub email: Option<String>,
    /// Priority tier.
    pub priority: i32,
    /// Summary.
    pub state: AccountState,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// Rests in progress.
    pub cooldowns: Vec<CooldownStatus>,
    /// Access-token expiry, Unix seconds.
    pub expires_at: u64,
    /// Whether the token is due for renewal.
    pub needs_refresh: bool,
    /// The most recent failure.
    pub last_error: Option<SavedError>,
    /// Usage.
    pub usage: AccountUsage,
}
