//! Background loops (token refresh, auth-directory watch, pool-state saves, parked-run
//! sweeps) on whatever runtime the adapter brought, each stopped when its guard is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::upstream::Platform;

/// Stops its loops when dropped (their next wait ends at once).
#[derive(Debug)]
pub struct Background {
    _stop: async_channel::Sender<()>,
    stopped: async_channel::Receiver<()>,
}

impl Background {
    /// A guard and the signal its loops listen to.
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self {
            _stop: tx,
            stopped: rx,
        }
    }

    /// Resolves when the guard is dropped.
    pub fn signal(&self) -> Stopped {
        Stopped(self.stopped.clone())
    }
}

impl Default for Background {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves once its [`Background`] guard is gone.
#[derive(Debug, Clone)]
pub struct Stopped(async_channel::Receiver<()>);

impl Stopped {
    /// Waits for the guard to be dropped.
    pub async fn wait(&self) {
        let _ = self.0.recv().await;
    }

    /// Sleeps `d` on `platform`; `false` when stopped first.
    pub async fn sleep(&self, platform: &dyn Platform, d: Duration) -> bool {
        let sleep = platform.sleep(d);
        futures_lite::future::or(
            async {
                sleep.await;
                true
            },
            async {
                self.wait().await;
                false
            },
        )
        .await
    }
}

/// Runs `tick` after `first`, then every `interval`, until `stop` fires or `tick` says `false`.
pub fn every<F, Fut>(
    platform: &Arc<dyn Platform>,
    stop: Stopped,
    first: Duration,
    interval: Duration,
    mut tick: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let p = platform.clone();
    platform.spawn(Box::pin(async move {
        let mut wait = first;
        loop {
            if !stop.sleep(p.as_ref(), wait).await || !tick().await {
                return;
            }
            wait = interval;
        }
    }));
}
