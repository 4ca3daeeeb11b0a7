//! The serving proxy and the auth directory: every credential file is loaded into the pool at
//! start, files added, changed or removed later reach the pool without a restart, and tokens
//! close to expiry are renewed in the background (renewed records are written back by the
//! app, see [`App::set_auth_dir`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::app::App;
use crate::persist::{AuthChange, AuthDir};

/// How often the auth directory is scanned for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How often accounts due for a renewal are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Loads every credential file of `dir` into `app` and makes the app write changed records
/// back there. Returns how many accounts were loaded.
pub async fn load(app: &App, dir: &AuthDir) -> usize {
    app.set_auth_dir(dir.clone());
    let d = dir.clone();
    let records = tokio::task::spawn_blocking(move || d.load())
        .await
        .unwrap_or_default();
    let mut n = 0;
    for (file, record) in records {
        match app.upsert_account(record) {
            Ok(id) => {
                tracing::info!(account = %id, file, "account loaded");
                n += 1;
            }
            Err(e) => tracing::warn!(file, "account left out: {e}"),
        }
    }
    n
}

/// The background tasks of [`spawn`]; dropping it stops them.
#[derive(Debug)]
pub struct AuthTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AuthTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts watching `dir` (every `watch_interval`) and refreshing due accounts (every
/// `refresh_interval`, the first time right away). The tasks end when `app` is dropped or the
/// returned [`AuthTasks`] is.
pub fn spawn(
    app: &Arc<App>,
    dir: &AuthDir,
    watch_interval: Duration,
    refresh_interval: Duration,
) -> AuthTasks {
    let (watcher, mut changes) = dir.watch(watch_interval);
    let weak: Weak<App> = Arc::downgrade(app);
    let apply = tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let Some(app) = weak.upgrade() else {
                return;
            };
            match change {
                AuthChange::Upserted(record) => {
                    let file = record.file_name();
                    match app.upsert_account(record) {
                        Ok(id) => tracing::info!(account = %id, file, "account file picked up"),
                        Err(e) => tracing::warn!(file, "account left out: {e}"),
                    }
                }
                AuthChange::Removed(key) => {
                    if app.remove_account(&key) {
                        tracing::info!(account = key, "account file removed; account dropped");
                    }
                }
            }
        }
    });
    let weak: Weak<App> = Arc::downgrade(app);
    let refresh = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(refresh_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(app) = weak.upgrade() else {
                return;
            };
            let n = app.refresh_due().await;
            if n > 0 {
                tracing::debug!(accounts = n, "due tokens refreshed");
            }
        }
    });
    AuthTasks {
        tasks: vec![watcher, apply, refresh],
    }
}
