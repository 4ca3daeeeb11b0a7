//! Conversation → account affinity, bounded: the least recently used conversation is forgotten
//! first when the map is full.

use std::collections::BTreeMap;

use super::AccountId;

/// Default number of conversations remembered.
pub const DEFAULT_STICKY_CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct Sticky {
    /// A B-tree: a hash map of this size stalls a request when it rehashes (see
    /// `MemoryStorage`).
    map: BTreeMap<String, (AccountId, u64)>,
    order: BTreeMap<u64, String>,
    seq: u64,
    capacity: usize,
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
        self.map.get(conversation).map(|(id, _)| *id)
    }

    /// Binds `conversation` to `account` and marks it most recently used.
    pub(crate) fn set(&mut self, conversation: &str, account: AccountId) {
        if self.capacity == 0 {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some((id, old)) = self.map.get_mut(conversation) {
            self.order.remove(old);
            *id = account;
            *old = seq;
        } else {
            self.map.insert(conversation.to_owned(), (account, seq));
        }
        self.order.insert(seq, conversation.to_owned());
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
    }

    /// Forgets every conversation bound to `account`.
    pub(crate) fn remove_account(&mut self, account: AccountId) {
        let map = &mut self.map;
        self.order.retain(|_, conv| {
            let keep = map.get(conv).is_some_and(|(id, _)| *id != account);
            if !keep {
                map.remove(conv);
            }
            keep
        });
    }

    /// Bindings, least recently used first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, AccountId)> {
        self.order
            .values()
            .filter_map(|conv| self.map.get(conv).map(|(id, _)| (conv.as_str(), *id)))
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
