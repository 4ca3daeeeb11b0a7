//! `BidiAppend` reassembly (spec §2.5, §9.7): per request id, appends are buffered and released
//! in `append_seqno` order to the `RunSSE` run of that id. Appends may arrive out of order,
//! before the `RunSSE` request (up to 16 in flight) or after the run ended; duplicates are
//! ignored.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use super::RunId;

/// How one append was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// A seqno already delivered or buffered: ignored.
    Duplicate,
    /// The run of this request id already ended: accepted and dropped.
    AfterEnd,
    /// Stored (and possibly released).
    Taken {
        /// No `RunSSE` has been opened for this id yet.
        early: bool,
        /// A gap precedes it: it waits for earlier seqnos.
        out_of_order: bool,
    },
}

#[derive(Debug, Default)]
struct Channel {
    next: i64,
    buffered: BTreeMap<i64, Bytes>,
    run: Option<RunId>,
    ended: bool,
}

impl Channel {
    fn release(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.run.is_none() || self.ended {
            return out;
        }
        while let Some(p) = self.buffered.remove(&self.next) {
            out.push(p);
            self.next += 1;
        }
        out
    }
}

/// How many ended request ids are remembered (so their late appends are recognised); older
/// ones are forgotten to bound memory in a long-running server.
const MAX_ENDED: usize = 4096;

/// Every request id's append buffer.
#[derive(Debug, Default)]
pub(crate) struct BidiChannels {
    map: HashMap<String, Channel>,
    ended: VecDeque<String>,
}

impl BidiChannels {
    /// Takes one append; returns how it was taken, the run to deliver to and the messages now
    /// ready for it, in order.
    pub(crate) fn append(
        &mut self,
        request_id: &str,
        seqno: i64,
        payload: Bytes,
    ) -> (Appended, Option<RunId>, Vec<Bytes>) {
        let ch = self.map.entry(request_id.to_owned()).or_default();
        if ch.ended {
            return (Appended::AfterEnd, None, Vec::new());
        }
        if seqno < ch.next || ch.buffered.contains_key(&seqno) {
            return (Appended::Duplicate, ch.run, Vec::new());
        }
        let early = ch.run.is_none();
        let out_of_order = seqno != ch.next;
        ch.buffered.insert(seqno, payload);
        let ready = ch.release();
        (
            Appended::Taken {
                early,
                out_of_order,
            },
            ch.run,
            ready,
        )
    }

    /// Binds `request_id` to `run` (the `RunSSE` opened); returns appends already waiting.
    /// `None` if another live run already holds this id.
    pub(crate) fn attach(&mut self, request_id: &str, run: RunId) -> Option<Vec<Bytes>> {
        let ch = self.map.entry(request_id.to_owned()).or_default();
        if ch.ended || ch.run.is_some_and(|r| r != run) {
            return None;
        }
        ch.run = Some(run);
        Some(ch.release())
    }

    /// The run of `request_id` ended: later appends are accepted and dropped.
    pub(crate) fn end(&mut self, request_id: &str) {
        let ch = self.map.entry(request_id.to_owned()).or_default();
        if ch.ended {
            return;
        }
        ch.ended = true;
        ch.buffered.clear();
        self.ended.push_back(request_id.to_owned());
        while self.ended.len() > MAX_ENDED {
            if let Some(old) = self.ended.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}
