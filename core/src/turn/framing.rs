//! How a turn's client messages travel upstream: as Connect envelopes on the `Run` request body
//! (HTTP/2), or as one `BidiAppend` unary call each (HTTP/1.1, spec §2.5).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use cursorpool_proto::agent_v1::AgentClientMessage;

use crate::bidi::{self, DataEncoding};
use crate::connect::envelope::{self, PayloadTooLarge};

/// The upstream transport of one run, which decides what [`super::Turn::poll_transmit`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `agent.v1.AgentService/Run` over HTTP/2: each transmit is one or more Connect envelopes
    /// to write on the (long-lived) request body.
    Run,
    /// `RunSSE` + `BidiAppend` over HTTP/1.1: each transmit is the whole body of one
    /// `BidiAppend` call (`append_seqno` 0, 1, 2, … from the run request on, data as lowercase
    /// hex like SDK 1.0.18). The `RunSSE` request carries
    /// [`super::Turn::run_sse_request_body`].
    BidiAppend {
        /// The run's request id: the `x-request-id` of the `RunSSE` call and of every append.
        request_id: String,
    },
}

/// The queue of framed client messages.
#[derive(Debug)]
pub(crate) struct Outbox {
    framing: Framing,
    /// `Run`: envelopes not yet handed out, coalesced into one write.
    pending: BytesMut,
    /// `BidiAppend`: one body per message.
    appends: VecDeque<Bytes>,
    next_seqno: i64,
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(framing: Framing) -> Self {
        Self {
            framing,
            pending: BytesMut::new(),
            appends: VecDeque::new(),
            next_seqno: 0,
            closed: false,
        }
    }

    /// Frames and queues `msg`. Nothing is queued once the outbox is closed.
    pub(crate) fn push(&mut self, msg: &AgentClientMessage) -> Result<(), PayloadTooLarge> {
        if self.closed {
            return Ok(());
        }
        match &self.framing {
            Framing::Run => envelope::encode_proto(msg, &mut self.pending),
            Framing::BidiAppend { request_id } => {
                let body = bidi::encode_append(request_id, self.next_seqno, msg, DataEncoding::Hex);
                self.next_seqno += 1;
                self.appends.push_back(body);
                Ok(())
            }
        }
    }

    /// The next thing to send upstream.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        match self.framing {
            Framing::Run => (!self.pending.is_empty()).then(|| self.pending.split().freeze()),
            Framing::BidiAppend { .. } => self.appends.pop_front(),
        }
    }

    /// Stops queueing: after the upstream closed nothing more may be written (what is already
    /// queued, e.g. a cancel, is still handed out).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// The `RunSSE` request body, for [`Framing::BidiAppend`].
    pub(crate) fn run_sse_request_body(&self) -> Option<Bytes> {
        match &self.framing {
            Framing::Run => None,
            Framing::BidiAppend { request_id } => Some(bidi::run_sse_request_body(request_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bidi::decode_append;
    use crate::client::client_heartbeat;

    #[test]
    fn bidi_appends_count_from_zero_and_run_envelopes_coalesce() {
        let mut o = Outbox::new(Framing::BidiAppend {
            request_id: "r".into(),
        });
        for _ in 0..3 {
            o.push(&client_heartbeat()).unwrap();
        }
        let seqnos: Vec<i64> = std::iter::from_fn(|| o.pop())
            .map(|b| decode_append(&b).unwrap().seqno)
            .collect();
        assert_eq!(seqnos, [0, 1, 2]);
        assert!(o.run_sse_request_body().is_some());

        let mut o = Outbox::new(Framing::Run);
        o.push(&client_heartbeat()).unwrap();
        o.push(&client_heartbeat()).unwrap();
        assert_eq!(o.pop().map(|b| b.len()), Some(14));
        assert_eq!(o.pop(), None);
        o.close();
        o.push(&client_heartbeat()).unwrap();
        assert_eq!(o.pop(), None);
    }
}
