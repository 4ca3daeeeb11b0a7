//! The pool's state across restarts: rests, backoff levels, usage and sticky bindings are
//! loaded from `<state dir>/` at start (after the accounts, which they are matched to by key)
//! and saved periodically and at shutdown.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::app::App;
use crate::persist::{PoolStateFile, pool_state_path};
use crate::tasks::{self, Background};

/// How often the pool's state is saved while serving.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Restores the state saved under `state_dir` into `app`'s pool; whether there was one.
pub async fn load(app: &App, state_dir: &Path) -> bool {
    let file = PoolStateFile::new(pool_state_path(state_dir));
    let state = blocking::unblock(move || file.load()).await;
    match state {
        Some(state) => {
            app.restore_pool_state(&state);
            tracing::info!(accounts = state.accounts.len(), "pool state restored");
            true
        }
        None => false,
    }
}

/// Saves `app`'s pool state under `state_dir` (atomically, mode 0600).
pub async fn save(app: &App, state_dir: &Path) -> std::io::Result<()> {
    let file = PoolStateFile::new(pool_state_path(state_dir));
    let state = app.pool_state();
    blocking::unblock(move || file.save(&state)).await
}

/// Saves the pool state every `interval` (the first time after one interval) until `app` is
/// dropped or the returned guard is.
pub fn spawn(app: &Arc<App>, state_dir: &Path, interval: Duration) -> Background {
    let guard = Background::new();
    let weak: Weak<App> = Arc::downgrade(app);
    let dir = state_dir.to_path_buf();
    tasks::every(
        app.platform(),
        guard.signal(),
        interval,
        interval,
        move || {
            let (weak, dir) = (weak.clone(), dir.clone());
            async move {
                let Some(app) = weak.upgrade() else {
                    return false;
                };
                if let Err(e) = save(&app, &dir).await {
                    tracing::warn!(error = %e, "cannot save the pool state");
                }
                true
            }
        },
    );
    guard
}
