//! `cursorpool login`: Cursor's PKCE browser login (spec §7.1) with IO. Core decides
//! ([`PkceLogin`], [`LoginPoller`]); this module reads the randomness, shows the URL, opens the
//! browser, polls over the upstream connection and writes the credential file.
//!
//! Neither the verifier (it is in the poll URL) nor a token is ever printed or logged.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cursorpool_core::conductor::login::{LoginError, LoginPoller, PkceLogin, PollSchedule};
use cursorpool_core::conductor::login::{POLL_MAX_ERRORS, PollStep};
use cursorpool_core::conductor::refresh::{RefreshFailure, exchange_request};
use cursorpool_core::conductor::{AccountRecord, Secret, account::AccountError};
use http::{HeaderMap, Method};

use crate::persist::AuthDir;
use crate::upstream::{self, Platform, Upstream, UpstreamError};

/// Largest poll answer read.
const POLL_ANSWER_LIMIT: usize = 64 * 1024;
/// Bound on one poll request.
const POLL_REQUEST_LIMIT: Duration = Duration::from_secs(30);
/// Bound on one API-key exchange.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// What a login needs.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// Label of the account (`cursor.<label>.json`); `None` names the file by the subject.
    pub label: Option<String>,
    /// Where the credential file is written.
    pub auth_dir: PathBuf,
    /// Cursor's API base (polled for the result), or the simulator's.
    pub upstream: String,
    /// Extra trusted root certificates (PEM) for the upstream.
    pub upstream_root_pem: Option<Vec<u8>>,
    /// The site the user logs in on.
    pub login_site: String,
    /// Delays between polls.
    pub schedule: PollSchedule,
    /// Print a progress dot on stderr per poll.
    pub progress: bool,
}

/// The public facts of a login in progress, handed to the caller once polling can start (the
/// verifier stays inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStarted {
    /// The page the user opens.
    pub url: String,
    /// The login's UUID.
    pub uuid: String,
    /// The PKCE challenge in the URL.
    pub challenge: String,
}

/// A completed login.
#[derive(Debug, Clone)]
pub struct LoginDone {
    /// The credential file written.
    pub path: PathBuf,
    /// The account's record (its tokens are in [`cursorpool_core::conductor::Secret`]s).
    pub record: AccountRecord,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    /// The label cannot name a file, or the answer names no account.
    #[error("{0}")]
    Account(#[from] AccountError),
    /// No randomness.
    #[error("cannot read randomness from /dev/urandom: {0}")]
    Random(io::Error),
    /// The upstream URL is unusable.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The login did not complete.
    #[error("{0}")]
    Login(#[from] LoginError),
    /// The API key could not be exchanged for tokens.
    #[error("cannot add the account by API key: {0}")]
    Exchange(RefreshFailure),
    /// The credential file could not be written.
    #[error("cannot write the credential file in {dir}: {source}")]
    Write {
        /// The auth directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A fresh login from the OS's randomness (32 bytes for the verifier, 16 for the UUID).
pub fn new_login() -> Result<PkceLogin, LoginFailure> {
    let mut bytes = [0u8; 48];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(LoginFailure::Random)?;
    let mut verifier = [0u8; 32];
    let mut uuid = [0u8; 16];
    verifier.copy_from_slice(&bytes[..32]);
    uuid.copy_from_slice(&bytes[32..]);
    Ok(PkceLogin::new(verifier, uuid))
}

/// Runs one browser login: `started` gets the URL (to show it, open it, or — in tests —
/// complete it), then the poll URL is polled until the login completes, fails or times out,
/// and the account's credential file is written to `opts.auth_dir` (mode 0600).
pub async fn run(
    platform: &dyn Platform,
    opts: &LoginOptions,
    started: impl FnOnce(&LoginStarted),
) -> Result<LoginDone, LoginFailure> {
    if let Some(label) = &opts.label {
        cursorpool_core::conductor::account::validate_label(label)?;
    }
    let upstream = platform.upstream(&opts.upstream, opts.upstream_root_pem.as_deref())?;
    let login = new_login()?;
    started(&LoginStarted {
        url: login.login_url(&opts.login_site),
        uuid: login.uuid().to_owned(),
        challenge: login.challenge().to_owned(),
    });
    // The path and query below the upstream base; it holds the verifier: never log it.
    let poll_path = login.poll_url("");
    let mut poller = LoginPoller::with_schedule(opts.schedule.clone(), POLL_MAX_ERRORS);
    let mut step = poller.first_delay();
    let grant = loop {
        match step {
            PollStep::Wait(delay) => platform.sleep(delay).await,
            PollStep::Done(grant) => break grant,
            PollStep::Failed(e) => {
                if opts.progress {
                    eprintln!();
                }
                return Err(e.into());
            }
        }
        if opts.progress {
            eprint!(".");
            let _ = io::stderr().flush();
        }
        let headers = HeaderMap::new();
        let answer = upstream::timeout(
            platform,
            POLL_REQUEST_LIMIT,
            upstream.unary(
                Method::GET,
                &poll_path,
                &headers,
                bytes::Bytes::new(),
                POLL_ANSWER_LIMIT,
            ),
        )
        .await;
        step = match answer {
            Ok((status, _, body)) => poller.on_response(status, &body),
            Err(_) => {
                // The error may quote the request path (with the verifier): not shown.
                tracing::debug!("login poll failed below HTTP");
                poller.on_network_error()
            }
        };
    };
    if opts.progress {
        eprintln!();
    }
    let record = AccountRecord::from_grant(grant, opts.label.clone(), unix_now())?;
    store(&opts.auth_dir, record).await
}

/// Writes `record`'s credential file (mode 0600) in `auth_dir`; an account already there
/// keeps its priority.
pub async fn store(auth_dir: &Path, mut record: AccountRecord) -> Result<LoginDone, LoginFailure> {
    let dir = AuthDir::new(auth_dir);
    let write_err = |source| LoginFailure::Write {
        dir: auth_dir.to_path_buf(),
        source,
    };
    // Logging in again to a known account keeps its priority.
    let existing = {
        let d = dir.clone();
        let key = record.key();
        blocking::unblock(move || d.load().into_iter().find(|(_, r)| r.key() == key)).await
    };
    if let Some((_, old)) = existing {
        record.priority = old.priority;
    }
    let path = dir.path().join(record.file_name());
    let to_write = record.clone();
    let d = dir.clone();
    blocking::unblock(move || d.write(&to_write))
        .await
        .map_err(write_err)?;
    Ok(LoginDone { path, record })
}

/// Exchanges a Cursor API key for tokens (spec §7.3) over `upstream` and makes the account's
/// record from them. The record keeps the key, so later refreshes exchange it again. Neither
/// the key nor a token is logged or part of an error.
pub async fn exchange_api_key(
    platform: &dyn Platform,
    upstream: &dyn Upstream,
    api_key: &Secret,
    label: Option<String>,
) -> Result<AccountRecord, LoginFailure> {
    if let Some(label) = &label {
        cursorpool_core::conductor::account::validate_label(label)?;
    }
    if api_key.is_empty() {
        return Err(LoginFailure::Exchange(RefreshFailure::Rejected(
            "the API key is empty".to_owned(),
        )));
    }
    let limit = platform.sleep(EXCHANGE_LIMIT);
    let grant = futures_lite::future::or(
        crate::app::token_call(upstream, exchange_request(api_key)),
        async {
            limit.await;
            Err(RefreshFailure::Transient(
                "the exchange did not answer in time".to_owned(),
            ))
        },
    )
    .await
    .map_err(LoginFailure::Exchange)?;
    let mut record = AccountRecord::from_grant(grant, label, unix_now())?;
    record.api_key = Some(api_key.clone());
    Ok(record)
}

/// `cursorpool login --api-key`: exchanges the key against `opts.upstream`, writes the
/// credential file in `opts.auth_dir` and says which.
pub async fn cli_api_key(
    platform: &dyn Platform,
    opts: &LoginOptions,
    api_key: &Secret,
) -> Result<LoginDone, LoginFailure> {
    let upstream = platform.upstream(&opts.upstream, opts.upstream_root_pem.as_deref())?;
    let record = exchange_api_key(platform, upstream.as_ref(), api_key, opts.label.clone()).await?;
    let done = store(&opts.auth_dir, record).await?;
    let who = done
        .record
        .email
        .clone()
        .unwrap_or_else(|| done.record.subject.clone());
    say(&format!(
        "Added {who} by API key; credentials written to {}",
        done.path.display()
    ));
    Ok(done)
}

/// Tries to open `url` in the user's browser (`open` on macOS, else `xdg-open`); failing is
/// fine, the URL is printed anyway.
pub fn open_browser(url: &str) -> bool {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it whenever it ends; its status does not matter.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            true
        }
        Err(_) => false,
    }
}

/// `cursorpool login`: prints the URL, opens the browser unless `no_browser`, polls, writes
/// the file and says which.
pub async fn cli(
    platform: &dyn Platform,
    opts: &LoginOptions,
    no_browser: bool,
) -> Result<LoginDone, LoginFailure> {
    let done = run(platform, opts, |s| {
        say(&format!(
            "Open this page to log in to Cursor:\n\n  {}\n",
            s.url
        ));
        if !no_browser && !open_browser(&s.url) {
            say("(could not open a browser; open the page yourself)");
        }
        eprint!("Waiting for the login to complete");
        let _ = io::stderr().flush();
    })
    .await?;
    let who = done
        .record
        .email
        .clone()
        .unwrap_or_else(|| done.record.subject.clone());
    say(&format!(
        "Logged in as {who}; credentials written to {}",
        done.path.display()
    ));
    Ok(done)
}

/// One line for the user on stdout.
pub(crate) fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
