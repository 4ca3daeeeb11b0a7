//! Failover for one client request: which account to try next and when to stop.
//!
//! Rules (issue 6, spec §6.6):
//!
//! - A failure **before the first byte reached the client** is retried on another account,
//!   invisibly, within `max_attempts` runs in all.
//! - A 401 first refreshes the account's token and retries the same account once
//!   ([`Verdict::Refresh`]); a 401 with the renewed token disables it and the request moves
//!   on. A 401 is counted against the token the run used, so concurrent requests that all
//!   hit the same expired token ask for a refresh but never disable the account.
//! - A failure the client caused (400-class) or one every account would repeat
//!   (`try_another_account == false`) is returned at once, never replayed.
//! - **After the first byte** nothing is retried: the account is marked (its cooldown
//!   applies) and the client gets an error event ([`Verdict::GiveUp`]).
//! - When every remaining account is resting the client gets 429 with `retry-after` = the
//!   earliest recovery; with no usable account at all, the last failure (or 503).
//!
//! Every outcome is reported to the [`Pool`] here, so the adapter cannot forget to.

use std::time::{Duration, Instant};

use super::cooldown::FailureEffect;
use super::{AccountId, Pick, Pool};
use crate::classify::{Classification, CoolDown, FailureKind};

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the request again on this account (already counted as an attempt).
    RetryOn(AccountId),
    /// Renew this account's token, report the outcome to the pool
    /// ([`Pool::update_tokens`] / [`Pool::report_refresh_failed`]), then call
    /// [`Attempts::next`]: it gives the same account again when the refresh worked.
    Refresh(AccountId),
    /// Answer the client with this failure (`ApiError::from(&classification)`, or an error
    /// event when the response has started).
    GiveUp(Classification),
}

/// The failover state of one client request.
#[derive(Debug, Clone)]
pub struct Attempts {
    max: u32,
    made: u32,
    model: String,
    conversation: Option<String>,
    tried: Vec<AccountId>,
    current: Option<AccountId>,
    /// The token generation of the current account when its run started.
    current_gen: u64,
    refreshed: Vec<AccountId>,
    retry_same: Option<AccountId>,
    last: Option<Classification>,
    /// The one retry on the same account after a broken connection was used.
    reconnected: bool,
}

impl Attempts {
    /// A sensible bound: three accounts plus one retry after a token refresh.
    pub const DEFAULT_MAX: u32 = 4;

    /// A request for `model` (the key cooldowns are kept under), in `conversation` when the
    /// client has one, run at most `max_attempts` times (at least once).
    pub fn new(max_attempts: u32, model: impl Into<String>, conversation: Option<&str>) -> Self {
        Attempts {
            max: max_attempts.max(1),
            made: 0,
            model: model.into(),
            conversation: conversation.map(str::to_owned),
            tried: Vec::new(),
            current: None,
            current_gen: 0,
            refreshed: Vec::new(),
            retry_same: None,
            last: None,
            reconnected: false,
        }
    }

    /// The account for the next run, or the failure to answer the client with.
    pub fn next(&mut self, pool: &mut Pool, now: Instant) -> Result<AccountId, Classification> {
        if self.made >= self.max {
            return Err(self.exhausted());
        }
        if let Some(id) = self.retry_same.take()
            && pool.is_usable(id, &self.model, now)
        {
            return Ok(self.begin(pool, id));
        }
        match pool.pick(&self.model, self.conversation.as_deref(), &self.tried, now) {
            Pick::Account(id) => {
                self.tried.push(id);
                Ok(self.begin(pool, id))
            }
            Pick::AllCooling { retry_after } => Err(match &self.last {
                // The last account failed without resting (e.g. a provider hiccup): its own
                // error says more than "everything is cooling".
                Some(last) if last.cool_down == CoolDown::None => last.clone(),
                _ => all_cooling(retry_after),
            }),
            Pick::NoAccounts => Err(self.last.clone().unwrap_or_else(no_accounts)),
        }
    }

    fn begin(&mut self, pool: &Pool, id: AccountId) -> AccountId {
        self.made += 1;
        self.current = Some(id);
        self.current_gen = pool.token_generation(id).unwrap_or(0);
        id
    }

    /// The run on the current account failed with `c`; `downstream_started`: whether any
    /// byte of the answer reached the client. Reports the failure to the pool and decides.
    pub fn on_failure(
        &mut self,
        pool: &mut Pool,
        c: &Classification,
        downstream_started: bool,
        now: Instant,
    ) -> Verdict {
        self.last = Some(c.clone());
        let Some(id) = self.current.take() else {
            return Verdict::GiveUp(c.clone());
        };
        let effect = pool.report_failure_with(id, &self.model, c, self.current_gen, now);
        if downstream_started || c.is_client_fault() {
            return Verdict::GiveUp(c.clone());
        }
        if effect == FailureEffect::RefreshFirst && !self.refreshed.contains(&id) {
            if self.made >= self.max {
                return Verdict::GiveUp(c.clone());
            }
            self.refreshed.push(id);
            self.retry_same = Some(id);
            return Verdict::Refresh(id);
        }
        if !c.try_another_account {
            return Verdict::GiveUp(c.clone());
        }
        match self.next(pool, now) {
            Ok(next) => Verdict::RetryOn(next),
            // No other account: a broken connection says nothing about this one (the next
            // call gets a fresh connection), so it is tried once more before the client hears.
            Err(_)
                if c.kind == FailureKind::Transport
                    && !self.reconnected
                    && self.made < self.max
                    && pool.record(id).is_some_and(|r| r.disabled.is_none()) =>
            {
                self.reconnected = true;
                Verdict::RetryOn(self.begin(pool, id))
            }
            Err(give_up) => Verdict::GiveUp(give_up),
        }
    }

    /// The run on the current account succeeded (its first byte arrived).
    pub fn on_success(&mut self, pool: &mut Pool, now: Instant) {
        if let Some(id) = self.current {
            pool.report_success(id, &self.model, now);
        }
    }

    /// The account of the run in progress.
    pub fn current(&self) -> Option<AccountId> {
        self.current
    }

    /// Runs started so far.
    pub fn attempts_made(&self) -> u32 {
        self.made
    }

    /// Accounts tried so far, in order.
    pub fn tried(&self) -> &[AccountId] {
        &self.tried
    }

    /// The most recent failure.
    pub fn last_failure(&self) -> Option<&Classification> {
        self.last.as_ref()
    }

    fn exhausted(&self) -> Classification {
        self.last.clone().unwrap_or_else(no_accounts)
    }
}

/// 429 "every account is resting", with the time until the earliest recovers.
pub fn all_cooling(retry_after: Duration) -> Classification {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    Classification {
        kind: FailureKind::RateLimited,
        client_status: 429,
        cool_down: CoolDown::None,
        try_another_account: false,
        refresh_token_first: false,
        retry_after: Some(retry_after),
        message: format!(
            "every Cursor account is cooling down for this model; retry in {}s",
            secs.max(1)
        ),
    }
}

/// 503 "no account can take the request" (none configured, or all disabled).
pub fn no_accounts() -> Classification {
    Classification {
        kind: FailureKind::Other,
        client_status: 503,
        cool_down: CoolDown::None,
        try_another_account: false,
        refresh_token_first: false,
        retry_after: None,
        message: "no Cursor account is available (none configured, or all disabled)".to_owned(),
    }
}
