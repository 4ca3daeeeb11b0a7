//! Fault injection. Every frame a run produces passes through its [`Shaper`], which delays the
//! first byte, trickles frames, and at the configured point resets the stream, sends GOAWAY,
//! drops the connection, stalls forever or ends the stream with an error. The run logic never
//! knows about faults; the shaper decides what actually leaves.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::end_stream::EndStream;
use cursorpool_core::connect::envelope::encode_end_stream;
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::aiserver_v1::{CustomErrorDetails, ErrorDetails};

use super::RunOutput;
use super::config::{Fault, FaultRule, FaultRuns};

/// Picks the faults for a new run of account `label` and spends `Next(n)` rules. Rules are
/// consulted in order; every matching rule applies.
pub(crate) fn take_faults(rules: &mut Vec<FaultRule>, label: &str) -> Vec<Fault> {
    let mut out = Vec::new();
    for rule in rules.iter_mut() {
        if rule.account.as_deref().is_some_and(|a| a != label) {
            continue;
        }
        match &mut rule.runs {
            FaultRuns::All => out.push(rule.fault.clone()),
            FaultRuns::Next(n) if *n > 0 => {
                *n -= 1;
                out.push(rule.fault.clone());
            }
            FaultRuns::Next(_) => {}
        }
    }
    rules.retain(|r| r.runs != FaultRuns::Next(0));
    out
}

/// A frame waiting in the shaper.
#[derive(Debug)]
enum Frame {
    /// One `AgentServerMessage` envelope.
    Msg(Bytes),
    /// The end-stream envelope; the response ends after it.
    End(Bytes),
}

/// Whether the shaper still lets frames through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The run asked to end; nothing more is accepted.
    Ending,
    /// A stall fault struck: everything is swallowed, forever.
    Stalled,
    /// The response is over (finished, reset, dropped).
    Closed,
}

/// What one [`Shaper::release`] did, for the counters.
#[derive(Debug, Default)]
pub(crate) struct Released {
    /// Bytes handed to the adapter.
    pub(crate) bytes: u64,
    /// Message envelopes (server messages) among them, end-stream not counted.
    pub(crate) messages: u64,
    /// The code of an error end-stream the fault produced.
    pub(crate) error: Option<Code>,
}

/// Per-run output gate applying the run's faults.
#[derive(Debug)]
pub(crate) struct Shaper {
    queue: VecDeque<Frame>,
    sent: u32,
    hold_until: Option<Instant>,
    trickle: Option<Duration>,
    next_at: Option<Instant>,
    terminal: Vec<Fault>,
    /// Faults armed once the run waits for tool results ([`Fault::WhileWaiting`]).
    waiting: Vec<Fault>,
    state: State,
}

impl Shaper {
    /// A shaper for a run opened at `now` with `faults`.
    pub(crate) fn new(faults: Vec<Fault>, now: Instant) -> Self {
        let mut s = Self {
            queue: VecDeque::new(),
            sent: 0,
            hold_until: None,
            trickle: None,
            next_at: None,
            terminal: Vec::new(),
            waiting: Vec::new(),
            state: State::Open,
        };
        for f in faults {
            match f {
                Fault::DelayFirstByte(d) => {
                    let until = now + d;
                    s.hold_until = Some(s.hold_until.map_or(until, |h| h.max(until)));
                }
                Fault::Trickle { interval } => s.trickle = Some(interval),
                Fault::WhileWaiting(inner) => s.waiting.push(*inner),
                other => s.terminal.push(other),
            }
        }
        s
    }

    /// Queues one message envelope.
    pub(crate) fn push_msg(&mut self, envelope: Bytes) {
        if self.state == State::Open {
            self.queue.push_back(Frame::Msg(envelope));
        }
    }

    /// Queues the end-stream envelope; later frames are refused.
    pub(crate) fn push_end(&mut self, envelope: Bytes) {
        if self.state == State::Open {
            self.queue.push_back(Frame::End(envelope));
            self.state = State::Ending;
        }
    }

    /// The run now waits for the client's tool results: arms its [`Fault::WhileWaiting`]
    /// faults, counting their updates from the messages already queued.
    pub(crate) fn waiting_for_client(&mut self) {
        let queued = self
            .queue
            .iter()
            .filter(|f| matches!(f, Frame::Msg(_)))
            .count();
        let base = self
            .sent
            .saturating_add(u32::try_from(queued).unwrap_or(u32::MAX));
        for mut f in std::mem::take(&mut self.waiting) {
            if let Fault::RstStream { after_updates, .. }
            | Fault::GoAway { after_updates, .. }
            | Fault::DropConnection { after_updates }
            | Fault::Stall { after_updates }
            | Fault::ErrorAfter { after_updates, .. } = &mut f
            {
                *after_updates = after_updates.saturating_add(base);
            }
            self.terminal.push(f);
        }
    }

    /// Whether the run may still produce frames.
    pub(crate) fn accepts(&self) -> bool {
        self.state == State::Open
    }

    /// Whether a stall swallowed the stream.
    pub(crate) fn is_stalled(&self) -> bool {
        self.state == State::Stalled
    }

    /// Whether the response is over: the run can be forgotten.
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Closes the shaper without output (the client went away from a stalled run).
    pub(crate) fn close(&mut self) {
        self.queue.clear();
        self.state = State::Closed;
    }

    /// When a held or trickled frame becomes due.
    pub(crate) fn timeout(&self) -> Option<Instant> {
        if self.queue.is_empty() || matches!(self.state, State::Stalled | State::Closed) {
            return None;
        }
        match (self.hold_until, self.next_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets every due frame through to `out` (as one coalesced `Data` unless trickling).
    pub(crate) fn release(
        &mut self,
        run: super::RunId,
        now: Instant,
        out: &mut VecDeque<(super::RunId, RunOutput)>,
    ) -> Released {
        let mut rel = Released::default();
        if matches!(self.state, State::Stalled | State::Closed) {
            self.queue.clear();
            return rel;
        }
        if self.hold_until.is_some_and(|h| now < h) {
            return rel;
        }
        self.hold_until = None;
        let mut data = BytesMut::new();
        while !self.queue.is_empty() {
            if self.trickle.is_some() && self.next_at.is_some_and(|t| now < t) {
                break;
            }
            if let Some(fault) = self.due_fault() {
                flush(&mut data, run, out, &mut rel);
                self.strike(fault, run, out, &mut rel);
                return rel;
            }
            let Some(frame) = self.queue.pop_front() else {
                break;
            };
            match frame {
                Frame::Msg(b) => {
                    self.sent = self.sent.saturating_add(1);
                    rel.messages += 1;
                    data.extend_from_slice(&b);
                }
                Frame::End(b) => {
                    data.extend_from_slice(&b);
                    flush(&mut data, run, out, &mut rel);
                    out.push_back((run, RunOutput::Finished));
                    self.state = State::Closed;
                    return rel;
                }
            }
            if let Some(iv) = self.trickle {
                self.next_at = Some(now + iv);
                flush(&mut data, run, out, &mut rel);
            }
        }
        flush(&mut data, run, out, &mut rel);
        rel
    }

    /// The terminal fault whose moment has come (`after_updates == sent`).
    fn due_fault(&mut self) -> Option<Fault> {
        let sent = self.sent;
        let idx = self.terminal.iter().position(|f| match f {
            Fault::RstStream { after_updates, .. }
            | Fault::GoAway { after_updates, .. }
            | Fault::DropConnection { after_updates }
            | Fault::Stall { after_updates }
            | Fault::ErrorAfter { after_updates, .. } => *after_updates <= sent,
            Fault::Trickle { .. } | Fault::DelayFirstByte(_) | Fault::WhileWaiting(_) => false,
        })?;
        Some(self.terminal.remove(idx))
    }

    fn strike(
        &mut self,
        fault: Fault,
        run: super::RunId,
        out: &mut VecDeque<(super::RunId, RunOutput)>,
        rel: &mut Released,
    ) {
        self.queue.clear();
        self.state = State::Closed;
        match fault {
            Fault::RstStream { code, .. } => out.push_back((run, RunOutput::Reset { code })),
            Fault::GoAway { code, .. } => out.push_back((run, RunOutput::GoAway { code })),
            Fault::DropConnection { .. } => out.push_back((run, RunOutput::DropConnection)),
            Fault::Stall { .. } => self.state = State::Stalled,
            Fault::ErrorAfter {
                code, cursor_error, ..
            } => {
                let env = error_end_stream(&fault_error(code, cursor_error));
                rel.bytes += env.len() as u64;
                rel.error = Some(code);
                out.push_back((run, RunOutput::Data(env)));
                out.push_back((run, RunOutput::Finished));
            }
            Fault::Trickle { .. } | Fault::DelayFirstByte(_) | Fault::WhileWaiting(_) => {}
        }
    }
}

fn flush(
    data: &mut BytesMut,
    run: super::RunId,
    out: &mut VecDeque<(super::RunId, RunOutput)>,
    rel: &mut Released,
) {
    if !data.is_empty() {
        rel.bytes += data.len() as u64;
        out.push_back((run, RunOutput::Data(data.split().freeze())));
    }
}

/// The error an `ErrorAfter` fault ends the stream with: Cursor's shapes for the usual cases
/// (a provider error for `unavailable`/`resource_exhausted`, plain messages otherwise).
fn fault_error(code: Code, cursor_error: Option<i32>) -> ConnectError {
    let message = match code {
        Code::Internal => "Internal server error",
        Code::Unavailable => "Service temporarily unavailable",
        Code::ResourceExhausted => "Error",
        _ => "Simulated failure",
    };
    let err = ConnectError::new(code, message);
    match cursor_error {
        Some(e) => err.with_cursor_details(&ErrorDetails {
            error: e,
            details: Some(CustomErrorDetails {
                title: "Provider Error".to_owned(),
                detail: "We're having trouble connecting to the model provider. (simulated)"
                    .to_owned(),
                is_retryable: Some(true),
                ..Default::default()
            }),
            is_expected: Some(false),
        }),
        None => err,
    }
}

/// The end-stream envelope carrying `err`.
pub(crate) fn error_end_stream(err: &ConnectError) -> Bytes {
    let json = EndStream::from_error(err.clone()).to_json_bytes();
    let mut b = BytesMut::new();
    // An end-stream JSON is small; it always fits an envelope.
    let _ = encode_end_stream(&json, &mut b);
    b.freeze()
}

/// The successful end-stream envelope `{}`.
pub(crate) fn ok_end_stream() -> Bytes {
    let json = EndStream::ok().to_json_bytes();
    let mut b = BytesMut::new();
    let _ = encode_end_stream(&json, &mut b);
    b.freeze()
}
