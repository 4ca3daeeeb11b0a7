//! Conversation → account affinity, bounded: the least recently used conversation is forgotten
//! first when the map is full.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use super::AccountId;

/// Default number of conversations remembered.
pub const DEFAULT_STICKY_CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct Sticky {
    /// Bindings by a 64-bit hash of the conversation id. A B-tree: a hash map of this size
    /// stalls a request when it rehashes (see `MemoryStorage`). Hashed keys sit inline in the
    /// tree's nodes, where string keys cost a pointer chase (a cache miss) per comparison:
    /// with string keys these lookups were ~3 % of the proxy's CPU per request. The id is
    /// kept beside the binding, so two ids of the same hash never answer for each other.
    map: BTreeMap<u64, Binding>,
    /// Keys by the sequence number of their last use, oldest first.
    order: BTreeMap<u64, u64>,
    seq: u64,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct Binding {
    conversation: Box<str>,
    account: AccountId,
    seq: u64,
}

/// The map key of a conversation id (SipHash with fixed keys: the same in every run).
fn key_of(conversation: &str) -> u64 {
    let mut h = DefaultHasher::new();
    conversation.hash(&mut h);
    h.finish()
}

impl Sticky {
    pub(crate) fn new(capacity: usize) -> Self {
        Sticky {
            map: BTreeMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            capacity,
        }
    }

    pub(crate) fn get(&self, conversation: &str) -> Option<AccountId> {
        self.get_keyed(key_of(conversation), conversation)
    }

    /// Binds `conversation` to `account` and marks it most recently used.
    pub(crate) fn set(&mut self, conversation: &str, account: AccountId) {
        self.set_keyed(key_of(conversation), conversation, account);
    }

    fn get_keyed(&self, key: u64, conversation: &str) -> Option<AccountId> {
        self.map
            .get(&key)
            .filter(|b| *b.conversation == *conversation)
            .map(|b| b.account)
    }

    /// [`Sticky::set`] under `key`. Another conversation of the same key loses its binding:
    /// affinity is a preference, and such a pair is one in ~10¹¹ at full capacity.
    fn set_keyed(&mut self, key: u64, conversation: &str, account: AccountId) {
        if self.capacity == 0 {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some(b) = self.map.get_mut(&key) {
            self.order.remove(&b.seq);
            if *b.conversation != *conversation {
                b.conversation = conversation.into();
            }
            b.account = account;
            b.seq = seq;
        } else {
            self.map.insert(
                key,
                Binding {
                    conversation: conversation.into(),
                    account,
                    seq,
                },
            );
        }
        self.order.insert(seq, key);
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    /// Forgets every conversation bound to `account`.
    pub(crate) fn remove_account(&mut self, account: AccountId) {
        self.map.retain(|_, b| b.account != account);
        let map = &self.map;
        self.order.retain(|_, key| map.contains_key(key));
    }

    /// Bindings, least recently used first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, AccountId)> {
        self.order
            .values()
            .filter_map(|key| self.map.get(key))
            .map(|b| (&*b.conversation, b.account))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(s: &Sticky) -> Vec<(String, AccountId)> {
        s.entries().map(|(c, a)| (c.to_owned(), a)).collect()
    }

    #[test]
    fn remembers_the_latest_binding_and_forgets_the_least_recently_used_first() {
        let mut s = Sticky::new(2);
        s.set("a", AccountId(1));
        s.set("b", AccountId(2));
        s.set("a", AccountId(3));
        assert_eq!(s.get("a"), Some(AccountId(3)));
        s.set("c", AccountId(1));
        assert_eq!(s.get("b"), None, "b was the least recently used");
        assert_eq!(s.len(), 2);
        assert_eq!(
            listed(&s),
            vec![
                ("a".to_owned(), AccountId(3)),
                ("c".to_owned(), AccountId(1))
            ]
        );
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut s = Sticky::new(0);
        s.set("a", AccountId(1));
        assert_eq!(s.get("a"), None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn removing_an_account_forgets_only_its_conversations() {
        let mut s = Sticky::new(10);
        s.set("a", AccountId(1));
        s.set("b", AccountId(2));
        s.set("c", AccountId(1));
        s.remove_account(AccountId(1));
        assert_eq!(listed(&s), vec![("b".to_owned(), AccountId(2))]);
        // The order stays consistent: filling up evicts b, not a stale key.
        let mut s2 = s.clone();
        s2.capacity = 1;
        s2.set("d", AccountId(3));
        assert_eq!(listed(&s2), vec![("d".to_owned(), AccountId(3))]);
    }

    #[test]
    fn conversations_sharing_a_key_never_answer_for_each_other() {
        let mut s = Sticky::new(10);
        s.set_keyed(7, "first", AccountId(1));
        assert_eq!(s.get_keyed(7, "second"), None);
        s.set_keyed(7, "second", AccountId(2));
        assert_eq!(s.get_keyed(7, "second"), Some(AccountId(2)));
        assert_eq!(
            s.get_keyed(7, "first"),
            None,
            "the newer binding replaced it"
        );
        assert_eq!(listed(&s), vec![("second".to_owned(), AccountId(2))]);
    }
}
