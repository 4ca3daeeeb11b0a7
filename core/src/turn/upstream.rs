//! What the turn does with each message Cursor sends (spec §6): reply content goes downstream,
//! everything Cursor asks of a client is answered here.

use std::time::Instant;

use bytes::Bytes;

use super::{Held, Outstanding, Phase, Reply, Turn, protocol_violation};
use crate::chat::{ReplyEvent, StopReason};
use crate::classify::{Failure, TransportFailure, classify};
use crate::client::{
    RequestContextParams, answer_query, exec_stream_close, get_blob_found, get_blob_not_found,
    mcp_error, reject_exec, request_context_success, set_blob_error, set_blob_ok,
};
use crate::connect::end_stream;
use crate::connect::envelope::Frame;
use crate::update::{
    ExecKind, ExecRequest, McpCall, ServerEvent, TurnTotals, checkpoint_summary,
    decode_server_message,
};

use super::stops::Filtered;

impl Turn {
    /// Decodes and handles every complete frame buffered in the decoder.
    pub(super) fn drain_frames(&mut self, now: Instant) {
        while self.phase != Phase::Done {
            match self.decoder.poll_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Message(payload))) => match decode_server_message(payload) {
                    Ok(ev) => self.on_server_event(ev, now),
                    Err(e) => self.fail_and_cancel(protocol_violation(&e)),
                },
                Ok(Some(Frame::EndStream(json))) => self.on_end_stream(&json),
                Err(e) => self.fail_and_cancel(protocol_violation(&e)),
            }
        }
    }

    fn on_end_stream(&mut self, json: &[u8]) {
        match end_stream::parse(json) {
            Err(e) => self.fail(protocol_violation(&e)),
            Ok(end) => match Failure::from_end_stream(&end) {
                Some(f) => self.fail(classify(f)),
                None if self.turn_ended => self.finish_ok(),
                None => self.fail(classify(Failure::Transport(
                    TransportFailure::EndedWithoutTurnEnded,
                ))),
            },
        }
    }

    fn on_server_event(&mut self, ev: ServerEvent, now: Instant) {
        match ev {
            ServerEvent::TextDelta(t) => self.on_text(t, now),
            ServerEvent::ThinkingDelta { text, .. } => self.on_thinking(text, now),
            ServerEvent::TokenDelta { tokens } => {
                self.meter.add_tokens(tokens);
                self.check_max_tokens(now);
            }
            ServerEvent::TurnEnded(totals) => self.on_turn_ended(totals, now),
            ServerEvent::Checkpoint(state) => self.on_checkpoint(state, now),
            ServerEvent::Exec(req) => self.on_exec(req, now),
            ServerEvent::ExecAbort { id } => {
                if let Some(i) = self.outstanding.iter().position(|o| o.exec == id) {
                    let o = self.outstanding.remove(i);
                    self.aborted.insert(o.tool_use_id);
                }
            }
            ServerEvent::GetBlob { id, blob_id } => {
                let reply = match self.blobs.get(&blob_id) {
                    Some(data) => get_blob_found(id, data.clone()),
                    None => get_blob_not_found(id),
                };
                self.send(&reply);
            }
            ServerEvent::SetBlob { id, blob_id, data } => {
                let reply = match self.blobs.set(&blob_id, data) {
                    Ok(()) => set_blob_ok(id),
                    Err(e) => set_blob_error(id, &e.to_string()),
                };
                self.send(&reply);
            }
            ServerEvent::Query { id, kind } => {
                match answer_query(id, kind, &self.cfg.refusal_reason) {
                    Some(reply) => self.send(&reply),
                    // Nothing can answer it, and an unanswered query blocks the model forever.
                    None => self.fail_and_cancel(protocol_violation(&format_args!(
                        "unanswerable interaction query (field {})",
                        kind.field()
                    ))),
                }
            }
            // Non-tool messages: the model has moved on, so a tool batch is complete.
            ServerEvent::Heartbeat
            | ServerEvent::ThinkingCompleted { .. }
            | ServerEvent::ToolCallCompleted(_) => self.complete_batch(now),
            // Tool-call progress, summaries, steps and UI extras change nothing here (a batch
            // stays open across them).
            ServerEvent::PartialToolCall(_)
            | ServerEvent::ToolCallStarted(_)
            | ServerEvent::ToolCallDelta { .. }
            | ServerEvent::UserMessageAppended { .. }
            | ServerEvent::Summary(_)
            | ServerEvent::SummaryStarted
            | ServerEvent::SummaryCompleted { .. }
            | ServerEvent::ShellOutput(_)
            | ServerEvent::StepStarted { .. }
            | ServerEvent::StepCompleted { .. }
            | ServerEvent::PromptSuggestion(_)
            | ServerEvent::PostRequestPrompt { .. }
            | ServerEvent::ActiveBranchChange { .. }
            | ServerEvent::FeedbackRequest { .. }
            | ServerEvent::UnknownUpdate { .. }
            | ServerEvent::Unknown { .. } => {}
        }
    }

    /// Answer text: through the stop-sequence filter into the reply (held while parked).
    pub(super) fn on_text(&mut self, text: String, now: Instant) {
        self.complete_batch(now);
        match self.phase {
            Phase::Parked => {
                self.held.push(Held::Text(text));
                return;
            }
            Phase::Done => return,
            Phase::Running if self.reply == Reply::Closed => return,
            Phase::Running => {}
        }
        self.meter.add_chars(text.len());
        match self.stops.push(text) {
            Filtered::Pass(t) => {
                if !t.is_empty() {
                    self.emit(ReplyEvent::TextDelta(t), now);
                }
            }
            Filtered::Stop { text, sequence } => {
                if !text.is_empty() {
                    self.emit(ReplyEvent::TextDelta(text), now);
                }
                self.finish_reply(StopReason::StopSequence, Some(sequence), now);
                self.cancel("stop sequence");
                return;
            }
        }
        self.check_max_tokens(now);
    }

    /// Reasoning text (held while parked).
    pub(super) fn on_thinking(&mut self, text: String, now: Instant) {
        self.complete_batch(now);
        match self.phase {
            Phase::Parked => {
                self.held.push(Held::Thinking(text));
                return;
            }
            Phase::Done => return,
            Phase::Running if self.reply == Reply::Closed => return,
            Phase::Running => {}
        }
        self.meter.add_chars(text.len());
        self.flush_text(now);
        self.emit(ReplyEvent::ThinkingDelta(text), now);
        self.check_max_tokens(now);
    }

    /// Ends the reply (and the run) once the client's output bound is reached.
    fn check_max_tokens(&mut self, now: Instant) {
        let Some(max) = self.reply_opts.max_tokens else {
            return;
        };
        if self.phase == Phase::Running
            && self.reply != Reply::Closed
            && self.meter.reply_output() >= u64::from(max)
        {
            self.finish_reply(StopReason::MaxTokens, None, now);
            self.cancel("max_tokens reached");
        }
    }

    fn on_turn_ended(&mut self, totals: TurnTotals, now: Instant) {
        self.turn_ended = true;
        self.meter.set_totals(totals);
        self.complete_batch(now);
        if self.phase == Phase::Running {
            self.finish_reply(StopReason::EndTurn, None, now);
        }
    }

    fn on_checkpoint(&mut self, state: Bytes, now: Instant) {
        if let Ok(summary) = checkpoint_summary(&state) {
            self.meter.set_used_tokens(summary.used_tokens);
        }
        self.checkpoint = Some(state);
        self.final_checkpoint = self.turn_ended;
        self.complete_batch(now);
    }

    fn on_exec(&mut self, req: ExecRequest, now: Instant) {
        match &req.kind {
            ExecKind::RequestContext(_) => {
                let ctx = RequestContextParams {
                    tools: self.tools.definitions().to_vec(),
                    env: Some((*self.context.env).clone()),
                    cloud_rule: self.context.cloud_rule.clone(),
                };
                self.send(&request_context_success(req.id, &req.exec_id, ctx));
                self.send(&exec_stream_close(req.id));
            }
            ExecKind::Mcp(call) => self.on_tool_call(req.id, &req.exec_id, call, now),
            _ => {
                for msg in reject_exec(&req, &self.cfg.refusal_reason) {
                    self.send(&msg);
                }
            }
        }
    }

    /// `mcp_args`: a call of a client tool goes downstream and joins the current batch.
    fn on_tool_call(&mut self, exec: u32, exec_id: &str, call: &McpCall, now: Instant) {
        let Some(name) = self.tools.client_name(call).map(str::to_owned) else {
            let name = if call.name.is_empty() {
                &call.tool_name
            } else {
                &call.name
            };
            self.send(&mcp_error(exec, exec_id, &format!("Unknown tool: {name}")));
            self.send(&exec_stream_close(exec));
            return;
        };
        let id = if call.tool_call_id.is_empty() {
            format!("toolu_cursorpool_{exec}")
        } else {
            call.tool_call_id.clone()
        };
        let duplicate = self.outstanding.iter().any(|o| o.tool_use_id == id);
        if self.phase != Phase::Running || self.reply == Reply::Closed || duplicate {
            // The batch already went to the client (or the id is taken): it cannot see this
            // call, so the model is told to make it again.
            let msg = "The tool call arrived after the batch was returned to the client; \
                       call the tool again.";
            self.send(&mcp_error(exec, exec_id, msg));
            self.send(&exec_stream_close(exec));
            return;
        }
        self.flush_text(now);
        self.meter.add_chars(
            name.len()
                + serde_json::Value::Object(call.args.clone())
                    .to_string()
                    .len(),
        );
        self.emit(
            ReplyEvent::ToolCall {
                id: id.clone(),
                name,
                input: call.args.clone(),
            },
            now,
        );
        self.batch.push(id.clone());
        self.outstanding.push(Outstanding {
            tool_use_id: id,
            exec,
            exec_id: exec_id.to_owned(),
        });
        self.quiet_deadline = Some(now + self.cfg.tool_batch_quiet);
        if self.next_exec_heartbeat.is_none() {
            self.next_exec_heartbeat = Some(now + self.cfg.exec_heartbeat_interval);
        }
    }
}
