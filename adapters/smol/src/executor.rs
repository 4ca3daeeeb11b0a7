//! Where `cursorpool-lite`'s tasks run: one smol [`Executor`] driven by as many threads as the
//! machine has cores, started on first use. (smol's global executor runs one thread unless
//! the environment says otherwise; a shared proxy wants every core.)

use std::future::Future;
use std::sync::OnceLock;

use smol::{Executor, Task};

static EXECUTOR: OnceLock<&'static Executor<'static>> = OnceLock::new();

fn executor() -> &'static Executor<'static> {
    EXECUTOR.get_or_init(|| {
        let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
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
