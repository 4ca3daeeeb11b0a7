//! The auth directory and the pool state file: loading ignores foreign and invalid files,
//! writes are private and named by label or subject hash, the watcher reports files added,
//! changed and removed by others but not this process's own writes, and the pool state
//! round-trips.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cursorpool_core::conductor::cooldown::CoolCause;
use cursorpool_core::conductor::state::{STATE_VERSION, SavedAccount, SavedCooling, SavedModel};
use cursorpool_core::conductor::{AccountRecord, PoolState, Secret};
use cursorpool_host::persist::{self, AuthChange, AuthDir, PoolStateFile};
use cursorpool_host::tasks::Background;
use cursorpool_host::upstream::{BoxFuture, Pairing, Platform, Upstream, UpstreamError};

/// Upper bound on waiting for one watcher event (a hang guard, not a timing assertion).
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("cursorpool-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn account(label: Option<&str>, subject: &str) -> AccountRecord {
    AccountRecord {
        label: label.map(str::to_owned),
        subject: subject.to_owned(),
        access_token: Secret::new(format!("access-{subject}")),
        refresh_token: Some(Secret::new(format!("refresh-{subject}"))),
        api_key: None,
        expires_at: 1_900_000_000,
        disabled: None,
        priority: 0,
        email: None,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Writes a file the way another process would (not through `AuthDir`).
fn external_write(dir: &Path, record: &AccountRecord) {
    fs::write(dir.join(record.file_name()), record.to_json()).expect("external write");
}

/// A platform on smol's global executor (no upstream: these tests make no call).
#[derive(Debug)]
struct SmolTimers;

impl Platform for SmolTimers {
    fn spawn(&self, fut: BoxFuture<'static, ()>) {
        smol::spawn(fut).detach();
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::after(d).await;
        })
    }
    fn upstream(&self, url: &str, _: Option<&[u8]>) -> Result<Arc<dyn Upstream>, UpstreamError> {
        Err(UpstreamError::BadBaseUrl(url.to_owned()))
    }
    fn pairing(&self) -> Pairing {
        Pairing::RunSse
    }
}

async fn next(rx: &async_channel::Receiver<AuthChange>) -> AuthChange {
    let wait = async {
        smol::Timer::after(EVENT_WAIT).await;
        None
    };
    smol::future::or(async { rx.recv().await.ok() }, wait)
        .await
        .expect("a watcher event while the watcher runs")
}

#[test]
fn load_reads_credential_files_and_skips_the_rest() {
    let tmp = TempDir::new("auth-load");
    let work = account(Some("work"), "auth0|work");
    let home = account(None, "auth0|home");
    external_write(&tmp.0, &work);
    external_write(&tmp.0, &home);
    fs::write(tmp.0.join("cursor.broken.json"), b"{\"access_token\": ").expect("write");
    fs::write(
        tmp.0.join("cursor.empty.json"),
        b"{\"subject\":\"s\",\"access_token\":\"\",\"expires_at\":1}",
    )
    .expect("write");
    fs::write(tmp.0.join("notes.json"), b"{}").expect("write");
    fs::write(tmp.0.join("cursor..json"), b"{}").expect("write");

    let loaded = AuthDir::new(&tmp.0).load();
    let mut expected = vec![(home.file_name(), home), (work.file_name(), work)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(loaded, expected);
}

#[test]
fn writes_are_private_and_named_by_label_or_subject_hash() {
    let tmp = TempDir::new("auth-write");
    let dir = tmp.0.join("auth");
    let auth = AuthDir::new(&dir);
    let labelled = account(Some("work"), "auth0|work");
    let unlabelled = account(None, "auth0|home");
    auth.write(&labelled).expect("write");
    auth.write(&unlabelled).expect("write");
    assert_eq!(mode(&dir), 0o700);

    let work = dir.join("cursor.work.json");
    assert_eq!(mode(&work), 0o600);
    let hashed = unlabelled.file_name();
    let hex = hashed
        .strip_prefix("cursor.")
        .and_then(|n| n.strip_suffix(".json"))
        .expect("cursor.<key>.json");
    assert_eq!(hex.len(), 8);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(mode(&dir.join(&hashed)), 0o600);

    // Logging in again to the same account rewrites its one file.
    let mut renewed = unlabelled.clone();
    renewed.access_token = Secret::new("renewed");
    auth.write(&renewed).expect("rewrite");
    let loaded = AuthDir::new(&dir).load();
    assert_eq!(
        loaded,
        [
            (hashed, renewed.clone()),
            ("cursor.work.json".to_owned(), labelled.clone())
        ]
    );

    assert!(auth.remove(&labelled).expect("remove"));
    assert!(!work.exists());
    assert!(!auth.remove(&labelled).expect("remove again"));
}

#[test]
fn the_watcher_reports_others_changes_but_not_its_own_writes() {
    smol::block_on(watcher_reports_others_changes());
}

async fn watcher_reports_others_changes() {
    let tmp = TempDir::new("auth-watch");
    let auth = AuthDir::new(&tmp.0);
    let own = account(Some("own"), "auth0|own");
    auth.write(&own).expect("write");
    let preexisting = account(Some("old"), "auth0|old");
    external_write(&tmp.0, &preexisting);
    assert_eq!(auth.load().len(), 2);

    let platform: Arc<dyn Platform> = Arc::new(SmolTimers);
    let guard = Background::new();
    let rx = auth.watch(&platform, guard.signal(), Duration::from_millis(10));

    // Added by another process, after this process wrote its own file.
    let mut own_renewed = own.clone();
    own_renewed.access_token = Secret::new("renewed-by-this-process");
    auth.write(&own_renewed).expect("own write");
    let other = account(Some("other"), "auth0|other");
    external_write(&tmp.0, &other);
    assert_eq!(next(&rx).await, AuthChange::Upserted(other.clone()));

    // Changed by another process.
    let mut edited = other.clone();
    edited.priority = 7;
    edited.email = Some("someone@example.com".to_owned());
    external_write(&tmp.0, &edited);
    assert_eq!(next(&rx).await, AuthChange::Upserted(edited.clone()));

    // This process removes its own file and rewrites another; then another process removes one.
    auth.remove(&own_renewed).expect("own remove");
    let mut old_disabled = preexisting.clone();
    old_disabled.disabled = Some("disabled by an operator".to_owned());
    auth.write(&old_disabled).expect("own write");
    fs::remove_file(tmp.0.join(edited.file_name())).expect("external remove");
    assert_eq!(next(&rx).await, AuthChange::Removed("other".to_owned()));

    // A last external change: every event before it was asserted above, so none of this
    // process's writes or removes was reported.
    let last = account(None, "auth0|last");
    external_write(&tmp.0, &last);
    assert_eq!(next(&rx).await, AuthChange::Upserted(last));
    assert!(rx.try_recv().is_err());

    drop(guard);
    // Stopped: the loop ends and closes the channel.
    let closed = smol::future::or(
        async {
            while rx.recv().await.is_ok() {}
            true
        },
        async {
            smol::Timer::after(EVENT_WAIT).await;
            false
        },
    );
    assert!(closed.await, "the watcher stops when its guard is dropped");
}

#[test]
fn pool_state_round_trips() {
    let tmp = TempDir::new("pool-state");
    let file = PoolStateFile::new(persist::pool_state_path(&tmp.0.join("state")));
    assert_eq!(file.load(), None, "no state yet");

    let mut models = BTreeMap::new();
    models.insert(
        "claude-4-sonnet".to_owned(),
        SavedModel {
            cooling: Some(SavedCooling {
                until: 1_800_000_100,
                cause: CoolCause::Quota,
            }),
            quota_level: 3,
        },
    );
    let mut accounts = BTreeMap::new();
    accounts.insert(
        "work".to_owned(),
        SavedAccount {
            cooling: Some(SavedCooling {
                until: 1_800_000_050,
                cause: CoolCause::Forbidden,
            }),
            models,
            ..SavedAccount::default()
        },
    );
    let state = PoolState {
        version: STATE_VERSION,
        saved_at: 1_800_000_000,
        accounts,
        clients: BTreeMap::new(),
        sticky: vec![("conv-1".to_owned(), "work".to_owned())],
    };
    file.save(&state).expect("save");
    assert_eq!(mode(file.path()), 0o600);
    assert_eq!(mode(&tmp.0.join("state")), 0o700);
    assert_eq!(file.load(), Some(state.clone()));

    let mut later = state.clone();
    later.saved_at += 60;
    later.sticky.clear();
    file.save(&later).expect("save again");
    assert_eq!(file.load(), Some(later));

    fs::write(file.path(), b"{ not json").expect("corrupt");
    assert_eq!(file.load(), None, "a corrupt file is ignored, not fatal");
}

#[test]
fn default_locations_are_under_home() {
    let root = persist::default_root();
    assert!(root.ends_with(".cursorpool"));
    assert_eq!(persist::default_state_dir(), root.join("state"));
    assert_eq!(persist::default_auth_dir(), root.join("auth"));
    let state = Path::new("/x/state");
    assert_eq!(
        persist::conversations_dir(state),
        Path::new("/x/state/conversations")
    );
}
