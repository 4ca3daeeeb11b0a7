//! Parked turns between two client requests.
//!
//! When a turn parks, its downstream response is over and the client will come back with a
//! new request carrying the tool results. [`ParkedTurns`] finds the turn again by the client's
//! key (e.g. a hash of its API key, so one client can never resume another's run) and the
//! tool-use ids in that request. A parked turn that is not resumed within the TTL (counted from
//! when it was parked or last touched) is expired: the caller cancels it upstream
//! ([`super::Turn::handle_client_gone`]) and drains its transmits.
//!
//! The registry is generic over what it holds: the [`super::Turn`] itself by default, or
//! whatever handle an adapter uses to reach a turn owned by another task. Its
//! [`ParkedTurns::poll_timeout`] covers expiry only: a turn held here still has its own timers
//! (heartbeats, stall) and upstream bytes, fed through [`ParkedTurns::get_mut`] /
//! [`ParkedTurns::iter_mut`]; one that finishes or fails meanwhile is taken out with
//! [`ParkedTurns::remove`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Turn;

/// Default time a parked turn waits for its tool results.
pub const DEFAULT_PARK_TTL: Duration = Duration::from_secs(30 * 60);

/// Identifies one parked entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParkId(u64);

#[derive(Debug)]
struct Entry<T> {
    client_key: String,
    tool_use_ids: Vec<String>,
    value: T,
    last_used: Instant,
}

/// Parked turns keyed by (client key, tool-use id) (see the module docs).
#[derive(Debug)]
pub struct ParkedTurns<T = Turn> {
    ttl: Duration,
    next: u64,
    entries: BTreeMap<ParkId, Entry<T>>,
    /// A B-tree: thousands of parked calls must not rehash all at once on one request.
    index: BTreeMap<(String, String), ParkId>,
}

impl<T> Default for ParkedTurns<T> {
    fn default() -> Self {
        Self::new(DEFAULT_PARK_TTL)
    }
}

impl ParkedTurns<Turn> {
    /// Parks `turn` under `client_key` and the tool-use ids it waits for. `Err(turn)` when the
    /// turn is not parked, or when one of its ids is already parked for this client (the
    /// caller closes it instead).
    #[expect(
        clippy::result_large_err,
        reason = "the refused turn goes back to the caller, which must close it; boxing it \
                  would only move the cost"
    )]
    pub fn park(&mut self, client_key: &str, turn: Turn, now: Instant) -> Result<ParkId, Turn> {
        let ids = turn.parked_tool_use_ids().to_vec();
        self.park_with_ids(client_key, ids, turn, now)
    }
}

impl<T> ParkedTurns<T> {
    /// An empty registry whose entries expire `ttl` after they were parked or touched.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            next: 0,
            entries: BTreeMap::new(),
            index: BTreeMap::new(),
        }
    }

    /// Parks `value` under `client_key` and `tool_use_ids`. `Err(value)` when there are no ids
    /// or one of them is already parked for this client.
    pub fn park_with_ids(
        &mut self,
        client_key: &str,
        tool_use_ids: Vec<String>,
        value: T,
        now: Instant,
    ) -> Result<ParkId, T> {
        let taken = tool_use_ids.iter().any(|id| {
            self.index
                .contains_key(&(client_key.to_owned(), id.clone()))
        });
        if tool_use_ids.is_empty() || taken {
            return Err(value);
        }
        let id = ParkId(self.next);
        self.next += 1;
        for t in &tool_use_ids {
            self.index.insert((client_key.to_owned(), t.clone()), id);
        }
        self.entries.insert(
            id,
            Entry {
                client_key: client_key.to_owned(),
                tool_use_ids,
                value,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// Takes out the parked entry that every one of `tool_use_ids` (non-empty) belongs to, for
    /// this client. `None` when any id is unknown or the ids belong to different entries; then
    /// nothing changes and the caller starts a new run. The ids need not cover all of the
    /// entry's calls: resuming then reports the missing ones
    /// ([`super::ResumeError::MissingToolResult`]) and the caller closes the turn.
    pub fn take_for<S: AsRef<str>>(&mut self, client_key: &str, tool_use_ids: &[S]) -> Option<T> {
        let mut found: Option<ParkId> = None;
        for t in tool_use_ids {
            let id = *self
                .index
                .get(&(client_key.to_owned(), t.as_ref().to_owned()))?;
            if found.is_some_and(|f| f != id) {
                return None;
            }
            found = Some(id);
        }
        self.remove(found?)
    }

    /// The entry `id`, still parked (e.g. to feed it upstream bytes and timeouts).
    pub fn get_mut(&mut self, id: ParkId) -> Option<&mut T> {
        self.entries.get_mut(&id).map(|e| &mut e.value)
    }

    /// Every parked entry.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParkId, &mut T)> {
        self.entries.iter_mut().map(|(id, e)| (*id, &mut e.value))
    }

    /// Removes the entry `id` (it finished or failed while parked).
    pub fn remove(&mut self, id: ParkId) -> Option<T> {
        let e = self.entries.remove(&id)?;
        for t in e.tool_use_ids {
            self.index.remove(&(e.client_key.clone(), t));
        }
        Some(e.value)
    }

    /// Restarts the TTL of entry `id` at `now`.
    pub fn touch(&mut self, id: ParkId, now: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.last_used = now;
        }
    }

    /// When the next entry expires; call [`ParkedTurns::expire`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.last_used + self.ttl).min()
    }

    /// Removes and returns every entry whose TTL has run out by `now`, oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut due: Vec<(Instant, ParkId)> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.last_used + self.ttl)
            .map(|(id, e)| (e.last_used, *id))
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(_, id)| self.remove(id))
            .collect()
    }

    /// Number of parked entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The origin of simulated time. Read once; every later instant is computed from it.
    #[expect(
        clippy::disallowed_methods,
        reason = "tests need one arbitrary origin for simulated time; the clock is never read again"
    )]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn entries_are_found_by_client_and_every_id() {
        let t0 = epoch();
        let mut p: ParkedTurns<&str> = ParkedTurns::default();
        p.park_with_ids("k", ids(&["a", "b"]), "one", t0).unwrap();
        p.park_with_ids("k", ids(&["c"]), "two", t0).unwrap();
        assert_eq!(p.park_with_ids("k", ids(&["a"]), "dup", t0), Err("dup"));
        assert_eq!(p.park_with_ids("k", vec![], "none", t0), Err("none"));
        assert_eq!(p.take_for("other", &["a"]), None);
        assert_eq!(p.take_for("k", &["a", "c"]), None);
        assert_eq!(p.take_for::<&str>("k", &[]), None);
        assert_eq!(p.len(), 2);
        assert_eq!(p.take_for("k", &["b", "a"]), Some("one"));
        assert_eq!(p.take_for("k", &["a"]), None);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn entries_expire_a_ttl_after_their_last_use() {
        let t0 = epoch();
        let ttl = Duration::from_secs(60);
        let mut p: ParkedTurns<u8> = ParkedTurns::new(ttl);
        let a = p.park_with_ids("k", ids(&["a"]), 1, t0).unwrap();
        p.park_with_ids("k", ids(&["b"]), 2, t0 + ttl / 2).unwrap();
        assert_eq!(p.poll_timeout(), Some(t0 + ttl));
        p.touch(a, t0 + ttl);
        assert_eq!(p.poll_timeout(), Some(t0 + ttl / 2 + ttl));
        assert_eq!(p.expire(t0 + ttl + ttl / 2), vec![2]);
        assert_eq!(p.expire(t0 + 2 * ttl), vec![1]);
        assert!(p.is_empty());
        assert_eq!(p.poll_timeout(), None);
    }
}
