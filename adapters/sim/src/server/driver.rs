//! The one place the server touches the model: a [`Sim`] behind a mutex, the routing of each
//! run's outputs to the task writing that run's response, and the timer task.
//!
//! Every input goes through [`Shared::apply`]: lock, feed the model with the current time,
//! drain every output it produced (routing each to its run's channel), unlock, and wake the
//! timer task because the next deadline may have moved. The lock is never held across an
//! `.await`, so the model is only ever driven from synchronous sections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use tokio::sync::{Notify, mpsc};

use crate::model::{HttpResponse, RunId, RunOutput, Sim, Transport};

/// The receiving end of one run's outputs, in the order the model produced them.
pub(crate) type RunOutputs = mpsc::UnboundedReceiver<RunOutput>;

/// The model plus the per-run output routes.
#[derive(Debug)]
struct State {
    sim: Sim,
    routes: HashMap<RunId, mpsc::UnboundedSender<RunOutput>>,
}

impl State {
    /// Drains every pending output into its run's channel. A route is removed after the
    /// output that ends the run, so the receiver sees the channel close right after it.
    fn drain(&mut self) {
        while let Some((run, output)) = self.sim.poll_output() {
            let last = ends_run(&output);
            match self.routes.get(&run) {
                // A closed receiver means the transport is gone; the model learns that
                // through `handle_run_closed`, so the output is simply dropped here.
                Some(tx) => drop(tx.send(output)),
                None => tracing::trace!(run = run.0, "output for a run with no transport"),
            }
            if last {
                self.routes.remove(&run);
            }
        }
    }
}

/// Whether `output` is the last one a run produces (the model stops a run at any fault).
fn ends_run(output: &RunOutput) -> bool {
    !matches!(output, RunOutput::Data(_))
}

/// State shared by every connection task, the timer task and the [`super::SimHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the timer task after any input (the deadline may have moved).
    timer: Notify,
}

impl Shared {
    pub(crate) fn new(sim: Sim) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                sim,
                routes: HashMap::new(),
            }),
            timer: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside the model poisons the lock; the state is still the best we have.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one input against the model with the current time, then drains its outputs.
    pub(crate) fn apply<R>(&self, f: impl FnOnce(&mut Sim, Instant, SystemTime) -> R) -> R {
        let mut state = self.lock();
        let result = f(&mut state.sim, Instant::now(), SystemTime::now());
        state.drain();
        drop(state);
        self.timer.notify_one();
        result
    }

    /// Opens a run and registers the channel its outputs go to, in the same critical section
    /// so that no output produced while opening it is lost.
    pub(crate) fn open_run(
        self: &Arc<Self>,
        transport: Transport,
        headers: &http::HeaderMap,
    ) -> Result<(RunGuard, RunOutputs), HttpResponse> {
        let mut state = self.lock();
        let opened = state
            .sim
            .open_run(transport, headers, Instant::now(), SystemTime::now());
        let result = opened.map(|run| {
            let (tx, rx) = mpsc::unbounded_channel();
            state.routes.insert(run, tx);
            (run, rx)
        });
        state.drain();
        drop(state);
        self.timer.notify_one();
        result.map(|(run, rx)| {
            tracing::debug!(run = run.0, "run opened");
            let guard = RunGuard {
                shared: Arc::clone(self),
                run,
                closed: false,
                ended: false,
            };
            (guard, rx)
        })
    }

    /// The model's next deadline.
    fn poll_timeout(&self) -> Option<Instant> {
        self.lock().sim.poll_timeout()
    }

    /// Runs `f` on the model (a control operation, a counter read) and drains its outputs.
    pub(crate) fn with_sim<R>(&self, f: impl FnOnce(&mut Sim) -> R) -> R {
        self.apply(|sim, _, _| f(sim))
    }
}

/// A transport's handle on one open run. Dropping it tells the model that a client which went
/// away before the run ended has closed it, and forgets the run's output route.
#[derive(Debug)]
pub(crate) struct RunGuard {
    shared: Arc<Shared>,
    run: RunId,
    /// `handle_run_closed` was already reported.
    closed: bool,
    /// The model ended the run (its last output was received).
    ended: bool,
}

impl RunGuard {
    /// Feeds request-body bytes of the run to the model.
    pub(crate) fn body(&self, data: &[u8]) {
        let run = self.run;
        self.shared
            .apply(|sim, now, _| sim.handle_run_body(run, data, now));
    }

    /// Reports that the client closed its side of the run (at most once).
    pub(crate) fn client_closed(&mut self) {
        if !self.closed {
            self.closed = true;
            let run = self.run;
            tracing::debug!(run = run.0, "client closed the run");
            self.shared
                .apply(|sim, now, _| sim.handle_run_closed(run, now));
        }
    }

    /// Records that the run's last output was received: nothing needs reporting on drop.
    pub(crate) fn mark_ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.client_closed();
        }
        self.shared.lock().routes.remove(&self.run);
    }
}

/// Sleeps until the model's next deadline and calls `handle_timeout`; re-arms whenever an
/// input may have changed the deadline.
pub(crate) async fn run_timer(shared: Arc<Shared>) {
    loop {
        match shared.poll_timeout() {
            Some(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {
                        shared.apply(|sim, now, wall| sim.handle_timeout(now, wall));
                    }
                    () = shared.timer.notified() => {}
                }
            }
            None => shared.timer.notified().await,
        }
    }
}
