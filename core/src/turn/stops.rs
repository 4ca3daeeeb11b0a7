//! Stop sequences, enforced by the proxy on the streamed answer text (Cursor has no such
//! option). A match may span several deltas, so the filter holds back the shortest tail that
//! could still grow into a stop sequence and releases it once it cannot.

/// What a delta produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// Text that is safe to send (possibly empty).
    Pass(String),
    /// A stop sequence matched: send `text` (what precedes the match) and stop.
    Stop {
        /// Text before the match.
        text: String,
        /// The stop sequence that matched.
        sequence: String,
    },
}

/// The stop-sequence filter of one reply.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopFilter {
    stops: Vec<String>,
    held: String,
}

impl StopFilter {
    /// A filter for these sequences (empty ones are ignored).
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Feeds the next delta (taken by value: without stop sequences it passes through as is,
    /// no copy per token).
    pub(crate) fn push(&mut self, delta: String) -> Filtered {
        if self.stops.is_empty() {
            return Filtered::Pass(delta);
        }
        let mut buf = std::mem::take(&mut self.held);
        if buf.is_empty() {
            buf = delta;
        } else {
            buf.push_str(&delta);
        }
        // The earliest match wins; at the same position, the longest sequence.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                buf.find(s.as_str())
                    .map(|at| (at, std::cmp::Reverse(s.len()), s))
            })
            .min();
        if let Some((at, _, sequence)) = hit {
            buf.truncate(at);
            return Filtered::Stop {
                text: buf,
                sequence: sequence.clone(),
            };
        }
        let keep = self.partial_suffix_len(&buf);
        self.held = buf.split_off(buf.len() - keep);
        Filtered::Pass(buf)
    }

    /// Releases the held tail (the reply ends, or something else is sent in between).
    pub(crate) fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `buf` that is a proper prefix of some stop sequence.
    fn partial_suffix_len(&self, buf: &str) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let max = longest.saturating_sub(1).min(buf.len());
        (1..=max)
            .rev()
            .filter(|k| buf.is_char_boundary(buf.len() - k))
            .find(|k| {
                let tail = &buf[buf.len() - k..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], deltas: &[&str]) -> (String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        for d in deltas {
            match f.push((*d).to_owned()) {
                Filtered::Pass(t) => out.push_str(&t),
                Filtered::Stop { text, sequence } => {
                    out.push_str(&text);
                    return (out, Some(sequence));
                }
            }
        }
        out.push_str(&f.flush());
        (out, None)
    }

    #[test]
    fn a_match_across_deltas_cuts_the_text() {
        assert_eq!(
            run(&["STOP"], &["hello ST", "O", "P world"]),
            ("hello ".into(), Some("STOP".into()))
        );
    }

    #[test]
    fn a_false_start_is_released() {
        assert_eq!(run(&["STOP"], &["a ST", "ill"]), ("a STill".into(), None));
        assert_eq!(run(&["STOP"], &["a ST"]), ("a ST".into(), None));
    }

    #[test]
    fn earliest_match_wins_and_multibyte_text_is_safe() {
        assert_eq!(
            run(&["b", "é!"], &["xé", "!b"]),
            ("x".into(), Some("é!".into()))
        );
        assert_eq!(run(&[], &["é", "ü"]), ("éü".into(), None));
        assert_eq!(run(&["", "zz"], &["éü"]), ("éü".into(), None));
    }
}
