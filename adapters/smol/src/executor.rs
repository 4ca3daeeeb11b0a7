//! Where `cursorpool-lite`'s tasks run: one smol [`Executor`] driven by one thread, or by as
//! many as [`set_threads`] asked for before the first task (the binary reads
//! `CURSORPOOL_LITE_THREADS`), started on first use.
//!
//! One thread by default: the lite binary is for small boxes, and measured on two cores
//! (bench/results) a second executor thread costs more CPU per request in cross-thread
//! wake-ups than it gains, even at 64 concurrent streams. A big shared box can raise it.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::OnceLock;

use smol::{Executor, Task};

static EXECUTOR: OnceLock<&'static Executor<'static>> = OnceLock::new();
static THREADS: OnceLock<NonZeroUsize> = OnceLock::new();

/// The number of executor threads; effective only before the first task is spawned (the
/// threads start then). Returns whether it took effect.
pub fn set_threads(n: NonZeroUsize) -> bool {
    THREADS.set(n).is_ok() && EXECUTOR.get().is_none()
}

fn executor() -> &'static Executor<'static> {
    EXECUTOR.get_or_init(|| {
        let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        let threads = THREADS.get().map_or(1, |n| n.get());
        for i in 0..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("cursorpool-lite-{i}"))
                .spawn(move || smol::block_on(ex.run(std::future::pending::<()>())));
            if let Err(e) = spawned {
                tracing::warn!("cannot start executor thread {i}: {e}");
            }
        }
        ex
    })
}

/// Runs `fut` on the executor's threads; dropping the task cancels it (or `detach` it).
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    executor().spawn(fut)
}
