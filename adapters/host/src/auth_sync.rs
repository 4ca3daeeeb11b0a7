//! The serving proxy and the auth directory: every credential file is loaded into the pool at
//! start, files added, changed or removed later reach the pool without a restart, and tokens
//! close to expiry are renewed in the background (renewed records are written back by the
//! app, see [`App::set_auth_dir`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::app::App;
use crate::persist::{AuthChange, AuthDir};
use crate::tasks::{self, Background};

/// How often the auth directory is scanned for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How often accounts due for a renewal are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Loads every credential file of `dir` into `app` and makes the app write changed records
/// back there. Returns how many accounts were loaded.
pub async fn load(app: &App, dir: &AuthDir) -> usize {
    app.set_auth_dir(dir.clone());
    let d = dir.clone();
    let records = blocking::unblock(move || d.load()).await;
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

/// Starts watching `dir` (every `watch_interval`) and refreshing due accounts (every
/// `refresh_interval`, the first time right away). The loops end when `app` is dropped or the
/// returned guard is.
pub fn spawn(
    app: &Arc<App>,
    dir: &AuthDir,
    watch_interval: Duration,
    refresh_interval: Duration,
) -> Background {
    let guard = Background::new();
    let platform = app.platform().clone();
    let changes = dir.watch(&platform, guard.signal(), watch_interval);
    let weak: Weak<App> = Arc::downgrade(app);
    let stop = guard.signal();
    platform.spawn(Box::pin(async move {
        loop {
            let next = futures_lite::future::or(async { changes.recv().await.ok() }, async {
                stop.wait().await;
                None
            })
            .await;
            let Some(change) = next else {
                return;
            };
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
    }));
    let weak: Weak<App> = Arc::downgrade(app);
    tasks::every(
        &platform,
        guard.signal(),
        Duration::ZERO,
        refresh_interval,
        move || {
            let weak = weak.clone();
            async move {
                let Some(app) = weak.upgrade() else {
                    return false;
                };
                let n = app.refresh_due().await;
                if n > 0 {
                    tracing::debug!(accounts = n, "due tokens refreshed");
                }
                true
            }
        },
    );
    guard
}
