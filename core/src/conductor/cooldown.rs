//! How long an account rests after a failure, per account and per model.
//!
//! | [`CoolDown`] | scope | rest |
//! |---|---|---|
//! | `Quota` (usage / rate limit) | account + model | exponential: 1 s, 2 s, 4 s, … capped at 30 min; Cursor's retry hint instead when given; the level resets on success |
//! | `Auth` (401) | account | none at first: the caller refreshes the token and retries once ([`FailureEffect::RefreshFirst`]); a 401 with the *renewed* token disables the account with a reason |
//! | `Forbidden` (403) | account | 30 min (a longer retry hint wins) |
//! | `Short` (5xx, broken transport) | account + model | exponential: 1 s, 2 s, 4 s, … capped at 1 min; the retry hint instead when given; the level resets on success |
//! | `None` | — | none |
//!
//! A 5xx is scoped to the model because Cursor's failures are most often one model backend's:
//! the account keeps serving the others. A 403 (a flagged account) is the account's.
//!
//! A 401 counts against the token that got it. Requests running concurrently with the same
//! expired token all fail with 401; only the first asks for a refresh, the others ask again
//! but never disable the account. Only a token issued after the first 401 failing too proves
//! the account is gone (each token change bumps the account's token generation).
//!
//! A transient failure starts small: one reset connection or one 503 must not take the only
//! account of a pool out for a minute (every client would get 429s meanwhile); an account that
//! keeps failing climbs to the full minute within a few rests.
//!
//! The quota backoff only climbs when the account fails again *after* its rest ended. Requests
//! that were already running on the account when it ran dry fail too, and they must not push
//! the rest to minutes: a failure while the pair is already resting only extends it to the
//! current step.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::classify::{Classification, CoolDown, FailureKind};

/// The rest periods. [`Default`] gives the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CooldownPolicy {
    /// First quota backoff step (1 s).
    pub quota_initial: Duration,
    /// Longest quota backoff step (30 min).
    pub quota_max: Duration,
    /// Rest after a 403 (30 min).
    pub forbidden: Duration,
    /// First rest after a 5xx or a broken transport (1 s).
    pub short_initial: Duration,
    /// Longest rest after repeated 5xx or broken transports (1 min).
    pub short: Duration,
    /// Rest after a token refresh failed for a reason that may pass (1 min).
    pub refresh_retry: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            quota_initial: Duration::from_secs(1),
            quota_max: Duration::from_secs(30 * 60),
            forbidden: Duration::from_secs(30 * 60),
            short_initial: Duration::from_secs(1),
            short: Duration::from_secs(60),
            refresh_retry: Duration::from_secs(60),
        }
    }
}

impl CooldownPolicy {
    /// The quota rest at backoff `level` (0 = first failure): `quota_initial · 2^level`, capped
    /// at `quota_max`.
    pub fn quota_step(&self, level: u32) -> Duration {
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        self.quota_initial
            .checked_mul(factor)
            .unwrap_or(self.quota_max)
            .min(self.quota_max)
    }

    /// The transient-failure rest at backoff `level`: `short_initial · 2^level`, capped at
    /// `short`.
    pub fn short_step(&self, level: u32) -> Duration {
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        self.short_initial
            .checked_mul(factor)
            .unwrap_or(self.short)
            .min(self.short)
    }
}

/// Why an account or a model rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoolCause {
    /// Usage or rate limit.
    Quota,
    /// 403.
    Forbidden,
    /// 5xx from Cursor.
    Short,
    /// 5xx with Cursor's own hint how long to wait.
    RetryHint,
    /// A broken transport (reset, GOAWAY, dropped connection): says little about the account.
    Transport,
    /// The token refresh failed for a reason that may pass.
    Refresh,
}

/// A rest in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooling {
    /// When it ends.
    pub until: Instant,
    /// Why.
    pub cause: CoolCause,
}

/// Where a rest applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole account, every model.
    Account,
    /// Only this model on the account.
    Model(String),
}

/// What a reported failure did to the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureEffect {
    /// Nothing: the account stays in rotation.
    Nothing,
    /// The account (or one of its models) rests.
    Cooling {
        /// Account-wide or one model.
        scope: Scope,
        /// How long, from the report.
        rest: Duration,
    },
    /// Credentials rejected for the first time: refresh the token, then retry on this account.
    RefreshFirst,
    /// The account is out of rotation until someone enables it (or logs in again).
    Disabled {
        /// The visible reason.
        reason: String,
    },
}

/// What [`Health::apply`] needs to know about the account's credentials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthContext {
    /// The token generation the failed request used.
    pub(crate) token_gen: u64,
    /// Whether the account can renew its token.
    pub(crate) can_refresh: bool,
}

/// One model's state on one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ModelHealth {
    pub(crate) cooling: Option<Cooling>,
    /// Quota backoff steps taken since the last success.
    pub(crate) quota_level: u32,
    /// Transient-failure backoff steps taken since the last success (not persisted: a
    /// restart forgives them).
    pub(crate) short_level: u32,
}

/// An account's rests and credential strikes (the disabled flag lives in its record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) account_wide: Option<Cooling>,
    pub(crate) models: BTreeMap<String, ModelHealth>,
    /// The token generation that got a 401 since the credentials last worked.
    pub(crate) first_401_gen: Option<u64>,
}

fn active(c: Option<Cooling>, now: Instant) -> Option<Cooling> {
    c.filter(|c| c.until > now)
}

impl Health {
    /// When the account can serve `model` again: `None` when it can now.
    pub(crate) fn recovery(&self, model: &str, now: Instant) -> Option<Instant> {
        let wide = active(self.account_wide, now).map(|c| c.until);
        let per_model = self
            .models
            .get(model)
            .and_then(|m| active(m.cooling, now))
            .map(|c| c.until);
        wide.max(per_model)
    }

    /// When the account's only rest for `model` follows a broken transport (a reset or dropped
    /// connection; not a 5xx, which is Cursor saying it is unwell): its end. `None` when it
    /// rests for another reason too, or not at all.
    pub(crate) fn transient_rest(&self, model: &str, now: Instant) -> Option<Instant> {
        if active(self.account_wide, now).is_some() {
            return None;
        }
        self.models
            .get(model)
            .and_then(|m| active(m.cooling, now))
            .filter(|c| c.cause == CoolCause::Transport)
            .map(|c| c.until)
    }

    /// Applies one classified failure of a request for `model`; `auth` says which token the
    /// request used and whether the account can renew it. The `Disabled` effect's reason must
    /// be stored by the caller (in the record).
    pub(crate) fn apply(
        &mut self,
        model: &str,
        c: &Classification,
        policy: &CooldownPolicy,
        auth: AuthContext,
        now: Instant,
    ) -> FailureEffect {
        // Any answer other than 401 from Cursor itself means the credentials were accepted.
        if c.cool_down != CoolDown::Auth && c.kind != FailureKind::Transport {
            self.first_401_gen = None;
        }
        match c.cool_down {
            CoolDown::None => FailureEffect::Nothing,
            CoolDown::Quota => {
                let m = self.models.entry(model.to_owned()).or_default();
                let resting = active(m.cooling, now).is_some();
                let step = policy.quota_step(m.quota_level.saturating_sub(u32::from(resting)));
                if !resting {
                    m.quota_level = m.quota_level.saturating_add(1);
                }
                let rest = c.retry_after.unwrap_or(step);
                extend(&mut m.cooling, now + rest, CoolCause::Quota);
                FailureEffect::Cooling {
                    scope: Scope::Model(model.to_owned()),
                    rest,
                }
            }
            CoolDown::Short => {
                let m = self.models.entry(model.to_owned()).or_default();
                let resting = active(m.cooling, now).is_some();
                let step = policy.short_step(m.short_level.saturating_sub(u32::from(resting)));
                if !resting {
                    m.short_level = m.short_level.saturating_add(1);
                }
                let (rest, cause) = match c.retry_after {
                    Some(hint) => (hint, CoolCause::RetryHint),
                    None if c.kind == FailureKind::Transport => (step, CoolCause::Transport),
                    None => (step, CoolCause::Short),
                };
                extend(&mut m.cooling, now + rest, cause);
                FailureEffect::Cooling {
                    scope: Scope::Model(model.to_owned()),
                    rest,
                }
            }
            CoolDown::Forbidden => {
                let rest = c
                    .retry_after
                    .map_or(policy.forbidden, |h| h.max(policy.forbidden));
                extend(&mut self.account_wide, now + rest, CoolCause::Forbidden);
                FailureEffect::Cooling {
                    scope: Scope::Account,
                    rest,
                }
            }
            CoolDown::Auth => {
                let first = *self.first_401_gen.get_or_insert(auth.token_gen);
                let renewed_token_failed = auth.token_gen > first;
                let can_refresh = auth.can_refresh;
                if c.refresh_token_first && can_refresh && !renewed_token_failed {
                    FailureEffect::RefreshFirst
                } else {
                    let why = if c.message.is_empty() {
                        "credentials rejected".to_owned()
                    } else {
                        c.message.clone()
                    };
                    let reason = if renewed_token_failed {
                        format!("unauthenticated after a token refresh: {why}")
                    } else if !can_refresh {
                        format!("unauthenticated and the account cannot refresh its token: {why}")
                    } else {
                        format!("unauthenticated: {why}")
                    };
                    FailureEffect::Disabled { reason }
                }
            }
        }
    }

    /// A request for `model` succeeded: the quota backoff starts over and the credentials are
    /// known good. A rest in progress is kept: a request that started before it says nothing
    /// about the quota now.
    pub(crate) fn success(&mut self, model: &str) {
        self.first_401_gen = None;
        if let Some(m) = self.models.get_mut(model) {
            m.quota_level = 0;
            m.short_level = 0;
        }
    }

    /// The token refresh failed for a reason that may pass: the account rests briefly.
    pub(crate) fn refresh_failed(&mut self, policy: &CooldownPolicy, now: Instant) -> Duration {
        extend(
            &mut self.account_wide,
            now + policy.refresh_retry,
            CoolCause::Refresh,
        );
        policy.refresh_retry
    }

    /// New tokens arrived: a rest caused by a failed refresh ends.
    pub(crate) fn refreshed(&mut self) {
        if self
            .account_wide
            .is_some_and(|c| c.cause == CoolCause::Refresh)
        {
            self.account_wide = None;
        }
    }

    /// Whether token generation `current` got a 401 and has not been renewed since.
    pub(crate) fn refresh_requested(&self, current: u64) -> bool {
        self.first_401_gen.is_some_and(|g| g >= current)
    }

    /// Forgets every rest, backoff level and 401.
    pub(crate) fn reset(&mut self) {
        *self = Health::default();
    }

    /// Drops rests that have ended and models with nothing to remember.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.account_wide = active(self.account_wide, now);
        for m in self.models.values_mut() {
            m.cooling = active(m.cooling, now);
        }
        self.models
            .retain(|_, m| m.cooling.is_some() || m.quota_level > 0 || m.short_level > 0);
    }
}

/// Sets `slot` to end at `until` unless it already ends later.
fn extend(slot: &mut Option<Cooling>, until: Instant, cause: CoolCause) {
    match slot {
        Some(c) if c.until >= until => {}
        _ => *slot = Some(Cooling { until, cause }),
    }
}
