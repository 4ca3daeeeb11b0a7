//! Counts of what a running proxy holds alive — tasks, upstream runs, parked tool calls,
//! upstream connections — so that a test (or an operator) can check that every one of them
//! returns to its baseline after a scenario: no leaked task, run or connection.
//!
//! Tasks are counted through the [`Platform::spawn`] seam ([`CountedPlatform`] wraps the
//! adapter's platform), runs by a guard the run's task holds, connections by the adapters'
//! [`Upstream::connections`](crate::upstream::Upstream::connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::upstream::{BoxFuture, Pairing, Platform, Upstream, UpstreamError};

/// A count of live things, raised by [`Gauge::enter`] and lowered when the guard drops.
#[derive(Debug, Default)]
pub struct Gauge(AtomicUsize);

impl Gauge {
    /// One more live thing until the guard is dropped (also when its future is cancelled).
    pub fn enter(self: &Arc<Self>) -> GaugeGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        GaugeGuard(self.clone())
    }

    /// How many are alive now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Lowers its [`Gauge`] when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An upstream's connections: every open one, and those of them resting in its pool (the
/// rest carry a call or are closing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open connections (TCP sockets) of the upstream.
    pub open: usize,
    /// Of those, the ones kept for reuse with no call on them.
    pub pooled: usize,
}

/// What the proxy holds alive now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Tasks spawned through the platform seam that have not ended (run drivers, streamed
    /// replies, background upkeep).
    pub tasks: usize,
    /// Upstream runs whose task is alive (running or parked on tool calls).
    pub runs: usize,
    /// Tool calls waiting for their results.
    pub parked: usize,
    /// Upstream connections over all accounts (pooled and in use).
    pub upstream: Connections,
}

impl LiveCounts {
    /// Whether nothing is held beyond `baseline`: no more tasks, no run, no parked call, and
    /// every open upstream connection resting in its pool (the pool itself may differ: a
    /// connection a fault killed is replaced on the next call).
    pub fn settled_to(&self, baseline: &Self) -> bool {
        self.tasks <= baseline.tasks
            && self.runs == 0
            && self.parked == 0
            && self.upstream.open <= self.upstream.pooled
    }
}

/// The adapter's platform with every spawned task counted in a [`Gauge`].
#[derive(Debug)]
pub struct CountedPlatform {
    inner: Arc<dyn Platform>,
    tasks: Arc<Gauge>,
}

impl CountedPlatform {
    /// Wraps `inner`; its tasks are counted in `tasks`.
    pub fn new(inner: Arc<dyn Platform>, tasks: Arc<Gauge>) -> Self {
        Self { inner, tasks }
    }
}

impl Platform for CountedPlatform {
    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        let guard = self.tasks.enter();
        self.inner.spawn(Box::pin(async move {
            let _alive = guard;
            fut.await;
        }));
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(d)
    }

    fn upstream(
        &self,
        base_url: &str,
        extra_roots_pem: Option<&[u8]>,
    ) -> Result<Arc<dyn Upstream>, UpstreamError> {
        self.inner.upstream(base_url, extra_roots_pem)
    }

    fn pairing(&self) -> Pairing {
        self.inner.pairing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_counts_live_guards_only() {
        let g = Arc::new(Gauge::default());
        let a = g.enter();
        let b = g.enter();
        assert_eq!(g.get(), 2);
        drop(a);
        assert_eq!(g.get(), 1);
        drop(b);
        assert_eq!(g.get(), 0);
    }

    #[test]
    fn settled_means_no_run_no_parked_call_and_no_busy_connection() {
        let base = LiveCounts {
            tasks: 3,
            ..LiveCounts::default()
        };
        let mut now = base;
        now.upstream = Connections { open: 1, pooled: 1 };
        assert!(now.settled_to(&base));
        now.upstream.pooled = 0;
        assert!(!now.settled_to(&base), "a connection outside the pool");
        now.upstream.pooled = 1;
        now.tasks = 4;
        assert!(!now.settled_to(&base), "one more task");
        now.tasks = 3;
        now.runs = 1;
        assert!(!now.settled_to(&base));
        now.runs = 0;
        now.parked = 1;
        assert!(!now.settled_to(&base));
    }
}
