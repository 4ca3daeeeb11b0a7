//! How replies and the run begin and end: `Start` before the first content of each reply,
//! `Stop` at its end, the hand-over of a complete tool batch (`Stop{ToolUse}` + `Parked`), and
//! the terminal events (`UpstreamClose`, then `Finished` or `Failed`, after which the turn is
//! sealed and emits nothing more).

use std::time::Instant;

use cursorpool_proto::agent_v1 as pb;

use super::{Phase, Reply, Response, Turn, TurnEvent};
use crate::chat::{ApiKind, ReplyEvent, StopReason};
use crate::classify::{Classification, CoolDown, Failure, FailureKind, TransportFailure, classify};
use crate::client;

impl Turn {
    /// Queues an event, unless the terminal event has already gone out.
    pub(super) fn push_event(&mut self, ev: TurnEvent) {
        if !self.sealed {
            self.events.push_back(ev);
        }
    }

    /// Frames a client message for upstream. Only a message beyond the envelope's 4 GiB limit
    /// can fail, and that fails the run as the client's (too large a request).
    pub(super) fn send(&mut self, msg: &pb::AgentClientMessage) {
        if let Err(e) = self.out.push(msg) {
            self.fail(Classification {
                kind: FailureKind::BadRequest,
                client_status: 400,
                cool_down: CoolDown::None,
                try_another_account: false,
                refresh_token_first: false,
                retry_after: None,
                message: format!("request too large for Cursor: {e}"),
            });
        }
    }

    /// Emits `Start` if the current reply has not begun.
    pub(super) fn ensure_started(&mut self, now: Instant) {
        if self.reply != Reply::Pending {
            return;
        }
        let prefix = match self.reply_opts.api {
            ApiKind::Anthropic => "msg_",
            ApiKind::OpenAi => "chatcmpl-",
        };
        let start = ReplyEvent::Start {
            id: self.ids.prefixed(prefix),
            model: self.reply_opts.model.clone(),
            usage: self.meter.start_usage(),
        };
        self.push_event(TurnEvent::Reply(start));
        self.reply = Reply::Open;
        self.started = true;
        self.last_downstream = now;
    }

    /// Emits reply content (text, thinking, a tool call), starting the reply if needed.
    pub(super) fn emit(&mut self, ev: ReplyEvent, now: Instant) {
        if self.reply == Reply::Closed {
            return;
        }
        self.ensure_started(now);
        self.push_event(TurnEvent::Reply(ev));
        self.last_downstream = now;
    }

    /// Sends the text the stop filter held back.
    pub(super) fn flush_text(&mut self, now: Instant) {
        let tail = self.stops.flush();
        if !tail.is_empty() {
            self.emit(ReplyEvent::TextDelta(tail), now);
        }
    }

    /// Ends the current reply with `Stop{reason}`.
    pub(super) fn finish_reply(
        &mut self,
        reason: StopReason,
        stop_sequence: Option<String>,
        now: Instant,
    ) {
        if self.reply == Reply::Closed {
            return;
        }
        self.flush_text(now);
        self.ensure_started(now);
        let usage = self.meter.stop_usage();
        self.push_event(TurnEvent::Reply(ReplyEvent::Stop {
            reason,
            stop_sequence,
            usage,
        }));
        self.reply = Reply::Closed;
    }

    /// Hands a complete tool batch to the client: `Stop{ToolUse}`, then `Parked`.
    pub(super) fn complete_batch(&mut self, now: Instant) {
        if self.batch.is_empty() || self.phase != Phase::Running {
            return;
        }
        self.finish_reply(StopReason::ToolUse, None, now);
        self.parked_ids = std::mem::take(&mut self.batch);
        self.quiet_deadline = None;
        self.phase = Phase::Parked;
        let tool_use_ids = self.parked_ids.clone();
        self.push_event(TurnEvent::Parked { tool_use_ids });
    }

    /// Ends the run: `UpstreamClose`, then the terminal event.
    pub(super) fn terminate(&mut self, last: TurnEvent) {
        self.phase = Phase::Done;
        self.reply = Reply::Closed;
        self.out.close();
        self.quiet_deadline = None;
        self.next_exec_heartbeat = None;
        self.push_event(TurnEvent::UpstreamClose);
        self.push_event(last);
        self.sealed = true;
    }

    pub(super) fn finish_ok(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        if self.reply == Reply::Open {
            let now = self.last_downstream;
            self.finish_reply(StopReason::EndTurn, None, now);
        }
        let usage = self.meter.turn_usage();
        let checkpoint = self.checkpoint.clone();
        self.terminate(TurnEvent::Finished { checkpoint, usage });
    }

    /// Fails the run; an open downstream reply gets a [`ReplyEvent::Error`] first.
    pub(super) fn fail(&mut self, classification: Classification) {
        if self.phase == Phase::Done {
            return;
        }
        if self.reply == Reply::Open {
            self.push_event(TurnEvent::Reply(ReplyEvent::Error(classification.clone())));
        }
        let downstream_started = self.started;
        self.terminate(TurnEvent::Failed {
            classification,
            downstream_started,
        });
    }

    /// Fails a run the upstream may still be playing: ask it to stop first.
    pub(super) fn fail_and_cancel(&mut self, classification: Classification) {
        if self.phase != Phase::Done {
            self.send(&client::cancel(&classification.message));
        }
        self.fail(classification);
    }

    /// The proxy ends the run (client gone, stop sequence, `max_tokens`, expired park).
    pub(super) fn cancel(&mut self, reason: &str) {
        if self.phase == Phase::Done {
            return;
        }
        self.send(&client::cancel(reason));
        let usage = self.meter.turn_usage();
        self.terminate(TurnEvent::Finished {
            checkpoint: None,
            usage,
        });
    }

    /// The classification of a rejected response, with the body received so far.
    pub(super) fn rejection(&self) -> Classification {
        match &self.response {
            Response::Rejected {
                status,
                headers,
                body,
            } => classify(Failure::HttpResponse {
                status: *status,
                headers,
                body,
            }),
            _ => classify(Failure::Transport(TransportFailure::ProtocolViolation)),
        }
    }
}
