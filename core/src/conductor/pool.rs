//! The account pool: which account serves a request, and what each outcome does to it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::account::{AccountRecord, TokenGrant};
use super::cooldown::{AuthContext, FailureEffect, Health, Scope};
use super::refresh::RefreshFailure;
use super::sticky::Sticky;
use super::usage::{AccountUsage, ClientUsage, UsageRecord};
use super::{AccountId, Pick, PoolConfig, PoolEvent, Strategy};
use crate::classify::Classification;

/// The most recent failure of an account, for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastError {
    pub(crate) kind: String,
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) at: Instant,
}

/// One account in the pool.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) id: AccountId,
    pub(crate) record: AccountRecord,
    pub(crate) health: Health,
    pub(crate) usage: AccountUsage,
    pub(crate) last_error: Option<LastError>,
    /// The pick sequence number when this account was last handed out (0 = never).
    pub(crate) last_picked: u64,
    /// Bumped whenever the access token changes (a 401 counts against one generation).
    pub(crate) token_gen: u64,
}

impl Slot {
    fn usable(&self, model: &str, now: Instant) -> bool {
        self.record.disabled.is_none() && self.health.recovery(model, now).is_none()
    }
}

/// The account pool (see the module docs of [`super`]). Sans-IO: time is a parameter, changes
/// that must reach disk come out of [`Pool::poll_event`].
#[derive(Debug, Clone)]
pub struct Pool {
    pub(crate) config: PoolConfig,
    pub(crate) slots: Vec<Slot>,
    next_id: u32,
    pick_seq: u64,
    pub(crate) sticky: Sticky,
    pub(crate) clients: BTreeMap<String, ClientUsage>,
    events: VecDeque<PoolEvent>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new(PoolConfig::default())
    }
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Pool {
            sticky: Sticky::new(config.sticky_capacity),
            config,
            slots: Vec::new(),
            next_id: 0,
            pick_seq: 0,
            clients: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Switches between round-robin and fill-first.
    pub fn set_strategy(&mut self, strategy: Strategy) {
        self.config.strategy = strategy;
    }

    // ----- accounts -------------------------------------------------------------------------

    /// Adds an account, or replaces the record of the account with the same key (a second
    /// login, a file changed on disk) keeping its cooldowns and usage. New credentials start
    /// with a clean slate for 401s and end a rest caused by a failed refresh.
    pub fn upsert(&mut self, record: AccountRecord) -> AccountId {
        let key = record.key();
        if let Some(slot) = self.slots.iter_mut().find(|s| s.record.key() == key) {
            if slot.record.access_token != record.access_token {
                slot.token_gen += 1;
                slot.health.first_401_gen = None;
                slot.health.refreshed();
            }
            slot.record = record;
            return slot.id;
        }
        let id = AccountId(self.next_id);
        self.next_id += 1;
        self.slots.push(Slot {
            id,
            record,
            health: Health::default(),
            usage: AccountUsage::default(),
            last_error: None,
            last_picked: 0,
            token_gen: 0,
        });
        id
    }

    /// Removes an account (its conversations move elsewhere). Returns its record so the
    /// adapter can delete `record.file_name()`.
    pub fn remove(&mut self, id: AccountId) -> Option<AccountRecord> {
        let at = self.slots.iter().position(|s| s.id == id)?;
        self.sticky.remove_account(id);
        Some(self.slots.remove(at).record)
    }

    /// The account whose key (label or subject hash) is `key`.
    pub fn find(&self, key: &str) -> Option<AccountId> {
        self.slots
            .iter()
            .find(|s| s.record.key() == key)
            .map(|s| s.id)
    }

    /// An account's record (its tokens for the `authorization` header).
    pub fn record(&self, id: AccountId) -> Option<&AccountRecord> {
        self.slot(id).map(|s| &s.record)
    }

    /// Every account, in insertion order.
    pub fn accounts(&self) -> impl Iterator<Item = (AccountId, &AccountRecord)> {
        self.slots.iter().map(|s| (s.id, &s.record))
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no account.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn slot(&self, id: AccountId) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    fn slot_mut(&mut self, id: AccountId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    // ----- selection ------------------------------------------------------------------------

    /// The account that should serve a request for `model`.
    ///
    /// 1. A conversation stays on the account it last used while that account can serve the
    ///    model (and is not in `exclude`).
    /// 2. Otherwise the highest priority tier with a usable account is chosen, and within it
    ///    the least recently picked account (round-robin) or the first one (fill-first).
    /// 3. When no account outside `exclude` can serve but some enabled account is resting
    ///    (tried in this request or not), the answer is [`Pick::AllCooling`] with the time
    ///    until the earliest one recovers; when none is even resting (no accounts, all
    ///    disabled, or the rest already tried and not resting), [`Pick::NoAccounts`].
    pub fn pick(
        &mut self,
        model: &str,
        conversation: Option<&str>,
        exclude: &[AccountId],
        now: Instant,
    ) -> Pick {
        let sticky = conversation
            .and_then(|c| self.sticky.get(c))
            .filter(|id| !exclude.contains(id))
            .filter(|id| self.slot(*id).is_some_and(|s| s.usable(model, now)));
        let chosen = sticky
            .or_else(|| self.choose(model, exclude, now))
            .or_else(|| self.transient_fallback(model, exclude, now));
        let Some(id) = chosen else {
            return self.nothing_usable(model, now);
        };
        self.pick_seq += 1;
        let seq = self.pick_seq;
        if let Some(slot) = self.slot_mut(id) {
            slot.last_picked = seq;
        }
        if let Some(c) = conversation {
            self.sticky.set(c, id);
        }
        Pick::Account(id)
    }

    fn choose(&self, model: &str, exclude: &[AccountId], now: Instant) -> Option<AccountId> {
        let usable = || {
            self.slots
                .iter()
                .filter(|s| !exclude.contains(&s.id) && s.usable(model, now))
        };
        let tier = usable().map(|s| s.record.priority).max()?;
        let mut in_tier = usable().filter(|s| s.record.priority == tier);
        let chosen = match self.config.strategy {
            // Ties (never picked) go to the earliest inserted: `min_by_key` keeps the first.
            Strategy::RoundRobin => in_tier.min_by_key(|s| s.last_picked),
            Strategy::FillFirst => in_tier.next(),
        };
        chosen.map(|s| s.id)
    }

    /// When no account is usable but some rest only after a broken transport (a reset or
    /// dropped connection): the one that recovers first. Such a rest steers traffic to healthy
    /// accounts; it must not turn every client away (a one-account pool whose connection
    /// dropped once would answer 429 to everyone until the rest ends). A quota, a 5xx, a 403 or
    /// a disabled account is never tried this way.
    fn transient_fallback(
        &self,
        model: &str,
        exclude: &[AccountId],
        now: Instant,
    ) -> Option<AccountId> {
        self.slots
            .iter()
            .filter(|s| s.record.disabled.is_none() && !exclude.contains(&s.id))
            .filter_map(|s| s.health.transient_rest(model, now).map(|t| (t, s.id)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, id)| id)
    }

    fn nothing_usable(&self, model: &str, now: Instant) -> Pick {
        // The earliest recovery of any enabled account, tried in this request or not: an
        // account that just failed and rests briefly may well be the first one back.
        let earliest = self
            .slots
            .iter()
            .filter(|s| s.record.disabled.is_none())
            .filter_map(|s| s.health.recovery(model, now))
            .min();
        match earliest {
            Some(t) => Pick::AllCooling {
                retry_after: t.saturating_duration_since(now),
            },
            None => Pick::NoAccounts,
        }
    }

    /// Whether `id` can serve `model` now (enabled and not resting).
    pub fn is_usable(&self, id: AccountId, model: &str, now: Instant) -> bool {
        self.slot(id).is_some_and(|s| s.usable(model, now))
    }

    /// When `id` can serve `model` again (`None` when it can now or is unknown; a disabled
    /// account has no recovery time — see [`Pool::is_usable`]).
    pub fn recovery(&self, id: AccountId, model: &str, now: Instant) -> Option<Instant> {
        self.slot(id)?.health.recovery(model, now)
    }

    /// The account a conversation is bound to, if any.
    pub fn sticky_account(&self, conversation: &str) -> Option<AccountId> {
        self.sticky.get(conversation)
    }

    /// The earliest moment a resting account recovers (a timer for the status page or for
    /// saving state); `None` when nothing rests.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.slots
            .iter()
            .flat_map(|s| {
                let wide = s.health.account_wide.map(|c| c.until);
                let models = s
                    .health
                    .models
                    .values()
                    .filter_map(|m| m.cooling.map(|c| c.until));
                wide.into_iter().chain(models)
            })
            .filter(|t| *t > now)
            .min()
    }

    // ----- outcomes -------------------------------------------------------------------------

    /// A request for `model` on `id` succeeded (the first byte arrived): its quota backoff
    /// starts over and its credentials are known good.
    pub fn report_success(&mut self, id: AccountId, model: &str, _now: Instant) {
        if let Some(slot) = self.slot_mut(id) {
            slot.health.success(model);
        }
    }

    /// A request for `model` on `id`, made with the account's current token, failed with `c`:
    /// rests the account per [`super::cooldown`], disables it when a renewed token gets a 401
    /// too, remembers the error and counts it. ([`super::Attempts`] reports with the token
    /// generation the request actually used, which keeps concurrent 401s apart.)
    pub fn report_failure(
        &mut self,
        id: AccountId,
        model: &str,
        c: &Classification,
        now: Instant,
    ) -> FailureEffect {
        let token_gen = self.token_generation(id).unwrap_or(0);
        self.report_failure_with(id, model, c, token_gen, now)
    }

    /// The generation of `id`'s access token (bumped on every change).
    pub(crate) fn token_generation(&self, id: AccountId) -> Option<u64> {
        self.slot(id).map(|s| s.token_gen)
    }

    pub(crate) fn report_failure_with(
        &mut self,
        id: AccountId,
        model: &str,
        c: &Classification,
        token_gen: u64,
        now: Instant,
    ) -> FailureEffect {
        let policy = self.config.cooldown.clone();
        let Some(slot) = self.slot_mut(id) else {
            return FailureEffect::Nothing;
        };
        slot.usage.add_failure(model, c.kind);
        if !c.is_client_fault() {
            let message = if c.message.is_empty() {
                c.kind.as_str().to_owned()
            } else {
                c.message.clone()
            };
            slot.last_error = Some(LastError {
                kind: c.kind.as_str().to_owned(),
                status: c.client_status,
                message,
                at: now,
            });
        }
        let auth = AuthContext {
            token_gen,
            can_refresh: slot.record.refresh_method().is_some(),
        };
        slot.health.prune(now);
        let effect = slot.health.apply(model, c, &policy, auth, now);
        if let FailureEffect::Disabled { reason } = &effect {
            self.set_disabled(id, Some(reason.clone()));
        }
        effect
    }

    /// Renewing `id`'s token failed. A rejected credential disables the account with the
    /// reason (instead of failing its requests one by one); a failure that may pass rests it
    /// for [`super::cooldown::CooldownPolicy::refresh_retry`].
    pub fn report_refresh_failed(
        &mut self,
        id: AccountId,
        failure: &RefreshFailure,
        now: Instant,
    ) -> FailureEffect {
        let policy = self.config.cooldown.clone();
        let Some(slot) = self.slot_mut(id) else {
            return FailureEffect::Nothing;
        };
        slot.last_error = Some(LastError {
            kind: "refresh_failed".to_owned(),
            status: 401,
            message: failure.to_string(),
            at: now,
        });
        match failure {
            RefreshFailure::Rejected(_) => {
                let reason = failure.to_string();
                self.set_disabled(id, Some(reason.clone()));
                FailureEffect::Disabled { reason }
            }
            RefreshFailure::Transient(_) => FailureEffect::Cooling {
                scope: Scope::Account,
                rest: slot.health.refresh_failed(&policy, now),
            },
        }
    }

    /// Stores renewed tokens for `id` (the adapter then writes the file: a
    /// [`PoolEvent::RecordChanged`] is queued). Returns `false` for an unknown account or an
    /// empty token.
    pub fn update_tokens(&mut self, id: AccountId, grant: &TokenGrant, now_unix: u64) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        if !slot.record.apply_grant(grant, now_unix) {
            return false;
        }
        slot.token_gen += 1;
        slot.health.refreshed();
        self.events.push_back(PoolEvent::RecordChanged(id));
        true
    }

    /// Enabled accounts whose token should be renewed now — close to expiry, or rejected with
    /// a 401 and not renewed since — and that have a way to renew it.
    pub fn refresh_due(&self, now_unix: u64) -> Vec<AccountId> {
        self.slots
            .iter()
            .filter(|s| s.record.disabled.is_none() && s.record.refresh_method().is_some())
            .filter(|s| s.record.needs_refresh(now_unix) || s.health.refresh_requested(s.token_gen))
            .map(|s| s.id)
            .collect()
    }

    /// Counts one finished client request (see [`super::usage`]): `account` is the one that
    /// served it, `None` when none did.
    pub fn record_usage(&mut self, account: Option<AccountId>, r: &UsageRecord<'_>) {
        if let Some(slot) = account.and_then(|id| self.slot_mut(id)) {
            slot.usage.add_served(r);
        }
        if let Some(client) = r.client {
            self.clients.entry(client.to_owned()).or_default().add(r);
        }
    }

    // ----- management -----------------------------------------------------------------------

    /// Puts a disabled account back into rotation. Returns whether the account exists.
    pub fn enable(&mut self, id: AccountId) -> bool {
        self.set_disabled(id, None)
    }

    /// Takes an account out of rotation with a visible reason.
    pub fn disable(&mut self, id: AccountId, reason: impl Into<String>) -> bool {
        self.set_disabled(id, Some(reason.into()))
    }

    /// Ends every rest of an account and forgets its backoff and 401s: one call un-sticks
    /// it (a disabled account also needs [`Pool::enable`]).
    pub fn reset_cooldown(&mut self, id: AccountId) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        slot.health.reset();
        true
    }

    /// Changes an account's priority tier.
    pub fn set_priority(&mut self, id: AccountId, priority: i32) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        if slot.record.priority != priority {
            slot.record.priority = priority;
            self.events.push_back(PoolEvent::RecordChanged(id));
        }
        true
    }

    fn set_disabled(&mut self, id: AccountId, reason: Option<String>) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        if slot.record.disabled != reason {
            slot.record.disabled = reason;
            if slot.record.disabled.is_none() {
                slot.health.first_401_gen = None;
            }
            self.events.push_back(PoolEvent::RecordChanged(id));
        }
        true
    }

    /// The next change the adapter must act on (write a credential file).
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// Remaining rest of `id` for `model` (zero when usable or unknown).
    pub fn cooldown_remaining(&self, id: AccountId, model: &str, now: Instant) -> Duration {
        self.recovery(id, model, now)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }
}
