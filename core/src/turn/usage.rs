//! Token accounting of a turn and of each downstream reply.
//!
//! Cursor reports output tokens incrementally (`token_delta`) and, optionally, authoritative
//! per-turn totals in `turn_ended` (§6.5); prompt tokens only in those totals or as the
//! checkpoint's `token_details.used_tokens` (§5.3). Where it reports nothing the meter
//! estimates (4 characters per token), and it never reports 0 input tokens: clients divide by
//! them or treat 0 as "unknown".

use crate::chat::Usage;
use crate::update::TurnTotals;

use super::prompt::estimate_tokens;

/// Token counters of one turn.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    /// Prompt-token estimate (grows with each reply and tool result).
    input_estimate: u64,
    /// `used_tokens` of the latest checkpoint that had `token_details`.
    used_tokens: Option<u64>,
    /// `turn_ended` totals.
    totals: Option<TurnTotals>,
    /// Whether Cursor sent any `token_delta` this run.
    saw_deltas: bool,
    reply_deltas: u64,
    reply_chars: usize,
    turn_deltas: u64,
    turn_chars: usize,
    /// Output tokens reported in the `Stop` of earlier replies of this turn.
    earlier_output: u64,
}

fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0)
}

impl Meter {
    pub(crate) fn new(input_estimate: u64) -> Self {
        Self {
            input_estimate: input_estimate.max(1),
            ..Self::default()
        }
    }

    /// Generated text, thinking or tool arguments of `chars` characters.
    pub(crate) fn add_chars(&mut self, chars: usize) {
        self.reply_chars += chars;
        self.turn_chars += chars;
    }

    /// A `token_delta`.
    pub(crate) fn add_tokens(&mut self, tokens: i32) {
        let Ok(t) = u64::try_from(tokens) else {
            return;
        };
        self.saw_deltas = true;
        self.reply_deltas = self.reply_deltas.saturating_add(t);
        self.turn_deltas = self.turn_deltas.saturating_add(t);
    }

    /// A checkpoint's `used_tokens`.
    pub(crate) fn set_used_tokens(&mut self, used: Option<u32>) {
        if let Some(u) = used.filter(|u| *u > 0) {
            self.used_tokens = Some(u64::from(u));
        }
    }

    /// `turn_ended`'s totals.
    pub(crate) fn set_totals(&mut self, totals: TurnTotals) {
        self.totals = Some(totals);
    }

    fn cache(&self) -> (u64, u64) {
        let t = self.totals.unwrap_or_default();
        (
            positive(t.cache_read_tokens).unwrap_or(0),
            positive(t.cache_write_tokens).unwrap_or(0),
        )
    }

    /// Uncached prompt tokens (Anthropic's `input_tokens`; Cursor's totals include the cache).
    fn input_tokens(&self) -> u64 {
        let (read, write) = self.cache();
        let reported = self
            .totals
            .and_then(|t| positive(t.input_tokens))
            .map(|i| i.saturating_sub(read).saturating_sub(write));
        reported
            .or(self.used_tokens)
            .unwrap_or(self.input_estimate)
            .max(1)
    }

    /// Output of the current reply so far.
    pub(crate) fn reply_output(&self) -> u64 {
        if self.saw_deltas {
            self.reply_deltas
        } else {
            estimate_tokens(self.reply_chars).min(self.reply_chars as u64)
        }
    }

    /// Usage at the start of a reply.
    pub(crate) fn start_usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens(),
            ..Usage::default()
        }
    }

    /// Usage at the end of the current reply; remembers its output for the next reply's share
    /// of the turn totals.
    pub(crate) fn stop_usage(&mut self) -> Usage {
        let mut output = self.reply_output();
        if let Some(total) = self.totals.and_then(|t| positive(t.output_tokens)) {
            output = total.saturating_sub(self.earlier_output).max(output);
        }
        self.earlier_output = self.earlier_output.saturating_add(output);
        let (read, write) = self.cache();
        Usage {
            input_tokens: self.input_tokens(),
            output_tokens: output,
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
        }
    }

    /// A new reply of the same turn begins: the previous reply and the tool results
    /// (`result_chars` characters) are now part of the prompt.
    pub(crate) fn new_reply(&mut self, result_chars: usize) {
        self.input_estimate = self
            .input_estimate
            .saturating_add(self.reply_output())
            .saturating_add(estimate_tokens(result_chars));
        self.reply_deltas = 0;
        self.reply_chars = 0;
    }

    /// Usage of the whole turn.
    pub(crate) fn turn_usage(&self) -> Usage {
        let (read, write) = self.cache();
        let estimated = if self.saw_deltas {
            self.turn_deltas
        } else {
            estimate_tokens(self.turn_chars).min(self.turn_chars as u64)
        };
        Usage {
            input_tokens: self.input_tokens(),
            output_tokens: self
                .totals
                .and_then(|t| positive(t.output_tokens))
                .unwrap_or(estimated),
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_override_deltas_and_are_split_across_replies() {
        let mut m = Meter::new(0);
        assert_eq!(m.start_usage().input_tokens, 1);
        m.add_chars(40);
        assert_eq!(m.reply_output(), 10);
        m.add_tokens(3);
        assert_eq!(m.stop_usage().output_tokens, 3);
        m.new_reply(400);
        assert_eq!(m.start_usage().input_tokens, 1 + 3 + 100);
        m.set_used_tokens(Some(500));
        assert_eq!(m.start_usage().input_tokens, 500);
        m.add_tokens(4);
        m.set_totals(TurnTotals {
            input_tokens: Some(900),
            output_tokens: Some(10),
            cache_read_tokens: Some(100),
            ..TurnTotals::default()
        });
        let u = m.stop_usage();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_input_tokens),
            (800, 7, 100)
        );
        assert_eq!(m.turn_usage().output_tokens, 10);
        m.add_tokens(-5);
        assert_eq!(m.turn_usage().output_tokens, 10);
    }
}
