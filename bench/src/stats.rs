//! Pure statistics over measured samples: percentiles and per-cell summaries.

use std::time::Duration;

/// The nearest-rank percentile `p` (0..=100) of `sorted` (ascending). `None` when empty.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "sample counts are far below 2^52 and the rank is clamped to the slice"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50 and p99 of a set of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Quantiles {
    /// Median.
    pub(crate) p50: Option<Duration>,
    /// 99th percentile.
    pub(crate) p99: Option<Duration>,
}

impl Quantiles {
    /// The quantiles of `samples` (any order).
    pub(crate) fn of(samples: &[Duration]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Self {
            p50: percentile(&s, 50.0),
            p99: percentile(&s, 99.0),
        }
    }
}

/// Milliseconds of `d` as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a − b` in milliseconds (may be negative), when both exist.
pub(crate) fn diff_ms(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    Some(ms(a?) - ms(b?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = d(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
        let one = d(&[7]);
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
    }

    #[test]
    fn quantiles_sort_their_input() {
        let q = Quantiles::of(&d(&[30, 10, 20]));
        assert_eq!(q.p50, Some(Duration::from_millis(20)));
        assert_eq!(q.p99, Some(Duration::from_millis(30)));
        assert_eq!(diff_ms(q.p50, Some(Duration::from_millis(5))), Some(15.0));
    }
}
