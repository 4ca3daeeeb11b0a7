//! The subcommands both binaries share besides `serve` and `login`:
//!
//! - `accounts list|enable|disable|remove` work on the auth directory's credential files (a
//!   running `serve` picks every change up within seconds, like a new login);
//!   `accounts status` asks a running `serve` for the live state (rests, usage, last error)
//!   through its management API (needs its management secret);
//! - `models` shows the model ids clients can ask for, how they map onto Cursor's, and the
//!   models Cursor offers to the first account;
//! - `check` validates the configuration and reaches every account upstream with one cheap
//!   authenticated call (`GetUsableModels`), one progress line per account;
//! - `completions SHELL` prints a completion script.
//!
//! Output goes to stdout (progress to stderr); nothing printed carries a token, key or secret.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cursorpool_core::catalogue::{CursorModel, parse_usable_models, usable_models_request};
use cursorpool_core::conductor::refresh::refresh_request;
use cursorpool_core::conductor::{AccountRecord, Secret, TokenGrant};
use cursorpool_core::headers::{self, CallHeaders, CallKind, ClientIdentity};
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::cli::ServeArgs;
use crate::config::expand;
use crate::login::{say, unix_now};
use crate::persist::AuthDir;
use crate::reload::Startup;
use crate::upstream::{self, Platform, Upstream};

/// Bound on one upstream or management call.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// Largest answer read.
const ANSWER_LIMIT: usize = 4 * 1024 * 1024;

/// `accounts`.
#[derive(Debug, Clone, clap::Args)]
pub struct AccountsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AccountsAction,
    /// Where credential files are kept. Default: the configuration's `auth-dir`, else
    /// `~/.cursorpool/auth`.
    #[arg(long, global = true, value_name = "DIR", env = "CURSORPOOL_AUTH_DIR")]
    pub auth_dir: Option<PathBuf>,
}

/// `accounts` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountsAction {
    /// List the accounts of the auth directory: name, whether in rotation, token expiry, email,
    /// file.
    List,
    /// The live state of every account of a running `serve` (state, rests, usage, last error),
    /// read through its management API.
    Status(RemoteArgs),
    /// Put an account back into rotation (edits its credential file).
    Enable {
        /// The account's label (or key, or file name).
        name: String,
    },
    /// Take an account out of rotation (edits its credential file).
    Disable {
        /// The account's label (or key, or file name).
        name: String,
        /// Why (shown by `accounts list` and the status page).
        #[arg(long, default_value = "disabled with `accounts disable`")]
        reason: String,
    },
    /// Delete an account's credential file (a running `serve` drops the account).
    Remove {
        /// The account's label (or key, or file name).
        name: String,
    },
}

/// Where a running `serve` is and how to get in.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// The running proxy's base URL. Default: the configuration's `host` and `port`
    /// (`http://127.0.0.1:8317`).
    #[arg(long, value_name = "URL", env = "CURSORPOOL_URL")]
    pub url: Option<String>,
    /// Its management secret. Default: the configuration's `management-secret`.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CURSORPOOL_MANAGEMENT_SECRET",
        hide_env_values = true
    )]
    pub management_secret: Option<String>,
}

/// `models`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsArgs {
    /// The proxy's options (model mapping, accounts, upstream), as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Do not ask Cursor for its model list.
    #[arg(long)]
    pub offline: bool,
}

/// `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The proxy's options, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `completions`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `command` for `args.shell`.
pub fn completions(args: &CompletionsArgs, mut command: clap::Command) -> ExitCode {
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut io::stdout().lock());
    ExitCode::SUCCESS
}

/// Runs `accounts`.
pub async fn accounts(
    args: &AccountsArgs,
    startup: &Startup,
    platform: Arc<dyn Platform>,
    binary: &str,
) -> ExitCode {
    let dir = AuthDir::new(
        args.auth_dir
            .clone()
            .or_else(|| startup.file.config.auth_dir.as_deref().map(expand))
            .unwrap_or_else(crate::persist::default_auth_dir),
    );
    let result = match &args.action {
        AccountsAction::List => list(&dir).await,
        AccountsAction::Status(remote) => status(remote, startup, platform.as_ref()).await,
        AccountsAction::Enable { name } => set_disabled(&dir, name, None).await,
        AccountsAction::Disable { name, reason } => {
            set_disabled(&dir, name, Some(reason.clone())).await
        }
        AccountsAction::Remove { name } => remove(&dir, name).await,
    };
    finish(binary, "accounts", result)
}

fn finish(binary: &str, what: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{binary} {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn load(dir: &AuthDir) -> Vec<(String, AccountRecord)> {
    let d = dir.clone();
    blocking::unblock(move || d.load()).await
}

async fn list(dir: &AuthDir) -> Result<(), String> {
    let records = load(dir).await;
    if records.is_empty() {
        say(&format!(
            "no account in {} (add one with `login`)",
            dir.path().display()
        ));
        return Ok(());
    }
    let now = unix_now();
    let mut rows = vec![[
        "NAME".to_owned(),
        "ROTATION".to_owned(),
        "TOKEN".to_owned(),
        "EMAIL".to_owned(),
        "FILE".to_owned(),
    ]];
    for (file, r) in &records {
        rows.push([
            r.key(),
            match &r.disabled {
                Some(why) => format!("disabled ({why})"),
                None => "enabled".to_owned(),
            },
            expiry(r, now),
            r.email.clone().unwrap_or_else(|| "-".to_owned()),
            file.clone(),
        ]);
    }
    say(&table(&rows));
    Ok(())
}

/// "valid 5h 3m", "renewable (expired)", "expired".
fn expiry(r: &AccountRecord, now: u64) -> String {
    if r.expires_at > now {
        let left = r.expires_at - now;
        format!("valid {}h {}m", left / 3600, (left % 3600) / 60)
    } else if r.refresh_method().is_some() {
        "expired (renewed by serve/check)".to_owned()
    } else {
        "expired (log in again)".to_owned()
    }
}

async fn find(dir: &AuthDir, name: &str) -> Result<AccountRecord, String> {
    let records = load(dir).await;
    let names: Vec<String> = records.iter().map(|(_, r)| r.key()).collect();
    records
        .into_iter()
        .find(|(file, r)| r.key() == name || r.label.as_deref() == Some(name) || file == name)
        .map(|(_, r)| r)
        .ok_or_else(|| {
            format!(
                "no account {name:?} in {} (accounts: {})",
                dir.path().display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })
}

async fn set_disabled(dir: &AuthDir, name: &str, reason: Option<String>) -> Result<(), String> {
    let mut record = find(dir, name).await?;
    let verb = if reason.is_some() {
        "disabled"
    } else {
        "enabled"
    };
    record.disabled = reason;
    let d = dir.clone();
    let key = record.key();
    blocking::unblock(move || d.write(&record))
        .await
        .map_err(|e| format!("cannot write the credential file: {e}"))?;
    say(&format!(
        "{key} {verb} (a running serve applies it within seconds)"
    ));
    Ok(())
}

async fn remove(dir: &AuthDir, name: &str) -> Result<(), String> {
    let record = find(dir, name).await?;
    let key = record.key();
    let file = record.file_name();
    let d = dir.clone();
    blocking::unblock(move || d.remove(&record))
        .await
        .map_err(|e| format!("cannot delete the credential file: {e}"))?;
    say(&format!(
        "{key} removed ({file} deleted; a running serve drops the account within seconds)"
    ));
    Ok(())
}

/// The running serve's base URL: `--url`, else the configuration's host and port.
fn remote_url(remote: &RemoteArgs, startup: &Startup) -> String {
    if let Some(u) = &remote.url {
        return u.trim_end_matches('/').to_owned();
    }
    // A serve listening on every address is reached on loopback.
    let host = match startup.file.config.host {
        None => "127.0.0.1".to_owned(),
        Some(std::net::IpAddr::V4(v4)) if v4.is_unspecified() => "127.0.0.1".to_owned(),
        Some(std::net::IpAddr::V6(v6)) if v6.is_unspecified() => "[::1]".to_owned(),
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        Some(v4) => v4.to_string(),
    };
    format!("http://{host}:{}", startup.file.config.port.unwrap_or(8317))
}

async fn status(
    remote: &RemoteArgs,
    startup: &Startup,
    platform: &dyn Platform,
) -> Result<(), String> {
    let url = remote_url(remote, startup);
    let secret = remote
        .management_secret
        .clone()
        .or_else(|| startup.file.config.management_secret.clone())
        .ok_or(
            "needs the running serve's management secret (--management-secret, \
                CURSORPOOL_MANAGEMENT_SECRET or management-secret in the configuration)",
        )?;
    let up = platform.upstream(&url, None).map_err(|e| e.to_string())?;
    let mut h = HeaderMap::new();
    let mut v = http::HeaderValue::from_str(&format!("Bearer {secret}"))
        .map_err(|_| "the management secret is not a valid header value")?;
    v.set_sensitive(true);
    h.insert(http::header::AUTHORIZATION, v);
    let (code, _, body) = upstream::timeout(
        platform,
        CALL_LIMIT,
        up.unary(
            Method::GET,
            "/v0/management/accounts",
            &h,
            Bytes::new(),
            ANSWER_LIMIT,
        ),
    )
    .await
    .map_err(|e| format!("cannot reach a running serve at {url}: {e}"))?;
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if code != 200 {
        return Err(format!(
            "{url} answered {code}: {}",
            v["error"]
                .as_str()
                .unwrap_or("no management API (is management-secret set?)")
        ));
    }
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "COOLDOWN",
            "REQUESTS",
            "TOKENS IN/OUT",
            "LAST ERROR",
        ]
        .map(str::to_owned),
    ];
    for a in v["accounts"].as_array().into_iter().flatten() {
        let cooldowns: Vec<String> = a["cooldowns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}s ({})",
                    c["model"].as_str().unwrap_or("all"),
                    c["remaining_secs"],
                    c["cause"].as_str().unwrap_or("")
                )
            })
            .collect();
        let t = &a["usage"]["total"];
        rows.push([
            a["label"]
                .as_str()
                .or(a["key"].as_str())
                .unwrap_or("?")
                .to_owned(),
            a["state"].as_str().unwrap_or("?").to_owned(),
            if cooldowns.is_empty() {
                "-".to_owned()
            } else {
                cooldowns.join("; ")
            },
            t["requests"].to_string(),
            format!("{}/{}", t["input_tokens"], t["output_tokens"]),
            a["last_error"]["kind"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    say(&format!(
        "{url}: {} account(s), strategy {}\n{}",
        rows.len() - 1,
        v["strategy"].as_str().unwrap_or("?"),
        table(&rows)
    ));
    Ok(())
}

/// The accounts a `check` or `models` works with: `(name, record, from a file)`.
type Accounts = Vec<(String, AccountRecord, bool)>;

/// The configuration `args` and the file describe, and every account it serves. Exit code 2
/// (printed) when the configuration is invalid.
async fn configured(
    args: &ServeArgs,
    startup: &Startup,
    binary: &str,
) -> Result<(crate::app::AppConfig, ServeArgs, AuthDir, Accounts), ExitCode> {
    let args = startup.serve_args(args);
    let config = match args.app_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{binary}: invalid configuration: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let dir = AuthDir::new(args.auth_dir());
    let mut accounts: Accounts = load(&dir)
        .await
        .into_iter()
        .map(|(_, r)| (r.key(), r, true))
        .collect();
    let now = unix_now();
    for (label, token) in &config.accounts {
        let grant = TokenGrant {
            access_token: Secret::new(token.clone()),
            refresh_token: None,
            auth_id: Some(label.clone()),
        };
        match AccountRecord::from_grant(grant, Some(label.clone()), now) {
            Ok(r) => accounts.push((label.clone(), r, false)),
            Err(e) => eprintln!("{binary}: token {label:?} left out: {e}"),
        }
    }
    Ok((config, args, dir, accounts))
}

/// Runs `check`: exit 0 when the configuration is valid and every account answered, 1 when an
/// account failed (or there is none), 2 when the configuration is invalid.
pub async fn check(
    args: &CheckArgs,
    startup: &Startup,
    platform: Arc<dyn Platform>,
    binary: &str,
) -> ExitCode {
    let (config, args, dir, accounts) = match configured(&args.serve, startup, binary).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    say(&format!(
        "configuration: ok ({}); listening on {}; upstream {}; auth dir {}",
        startup.file.path.as_ref().map_or_else(
            || "no file, defaults".to_owned(),
            |p| p.display().to_string()
        ),
        args.listen,
        config.upstream_url,
        dir.path().display()
    ));
    if accounts.is_empty() {
        say(&format!(
            "accounts: none (run `{binary} login`, or set token-file)"
        ));
        return ExitCode::FAILURE;
    }
    let n = accounts.len();
    let mut failed = 0;
    for (i, (name, record, from_file)) in accounts.into_iter().enumerate() {
        progress(&format!("[{}/{n}] reaching {name} ...\n", i + 1));
        match check_account(&config, platform.as_ref(), &dir, record, from_file).await {
            Ok((models, renewed)) => say(&format!(
                "{name}: ok ({} models{})",
                models.len(),
                if renewed { ", token renewed" } else { "" }
            )),
            Err(e) => {
                failed += 1;
                say(&format!("{name}: FAILED: {e}"));
            }
        }
    }
    if failed == 0 {
        say(&format!("all {n} account(s) answered"));
        ExitCode::SUCCESS
    } else {
        say(&format!("{failed} of {n} account(s) failed"));
        ExitCode::FAILURE
    }
}

/// Reaches one account: renews its token first when due (writing the file back), then lists
/// Cursor's models with it. Returns the models and whether the token was renewed.
async fn check_account(
    config: &crate::app::AppConfig,
    platform: &dyn Platform,
    dir: &AuthDir,
    mut record: AccountRecord,
    from_file: bool,
) -> Result<(Vec<CursorModel>, bool), String> {
    if record.disabled.is_some() {
        return Err("disabled (`accounts enable` puts it back)".to_owned());
    }
    let up = platform
        .upstream(&config.upstream_url, config.upstream_root_pem.as_deref())
        .map_err(|e| e.to_string())?;
    let now = unix_now();
    let mut renewed = false;
    if record.needs_refresh(now)
        && let Some(request) = refresh_request(&record)
    {
        let grant = crate::app::token_call(up.as_ref(), request)
            .await
            .map_err(|e| format!("token renewal failed: {e}"))?;
        record.apply_grant(&grant, now);
        renewed = true;
        if from_file {
            let (d, r) = (dir.clone(), record.clone());
            blocking::unblock(move || d.write(&r))
                .await
                .map_err(|e| format!("cannot write the renewed credential file: {e}"))?;
        }
    }
    let models = usable_models(platform, up.as_ref(), &record).await?;
    Ok((models, renewed))
}

/// Cursor's model list for `record`.
async fn usable_models(
    platform: &dyn Platform,
    up: &dyn Upstream,
    record: &AccountRecord,
) -> Result<Vec<CursorModel>, String> {
    let request_id = format!("check-{:x}", crate::cli::seed_from_clock());
    let h = headers::build(
        &ClientIdentity::default(),
        CallHeaders {
            access_token: record.access_token.expose(),
            request_id: &request_id,
            original_request_id: None,
            kind: CallKind::Unary,
        },
    )
    .map_err(|e| e.to_string())?;
    let (status, _, body) = upstream::timeout(
        platform,
        CALL_LIMIT,
        up.unary(
            Method::POST,
            headers::path::GET_USABLE_MODELS,
            &h,
            Bytes::from(usable_models_request()),
            ANSWER_LIMIT,
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    parse_usable_models(status, &body).map_err(|e| e.to_string())
}

/// Runs `models`.
pub async fn models(
    args: &ModelsArgs,
    startup: &Startup,
    platform: Arc<dyn Platform>,
    binary: &str,
) -> ExitCode {
    let (config, _, _, accounts) = match configured(&args.serve, startup, binary).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut rows = vec![["CLIENT MODEL".to_owned(), "CURSOR MODEL".to_owned()]];
    let mut listed: Vec<&String> = config.listed_models.iter().collect();
    listed.extend(config.models.entries.keys());
    listed.sort();
    listed.dedup();
    for m in listed {
        rows.push([m.clone(), config.models.resolve(m).to_owned()]);
    }
    rows.push(["(any other)".to_owned(), config.models.default.clone()]);
    say(&format!(
        "Models clients can ask for (GET /v1/models lists the first column):\n{}",
        table(&rows)
    ));
    if args.offline {
        return ExitCode::SUCCESS;
    }
    let Some((name, record, _)) = accounts.into_iter().find(|(_, r, _)| r.disabled.is_none())
    else {
        say("Cursor's models: no account to ask (log in first, or use --offline)");
        return ExitCode::SUCCESS;
    };
    progress(&format!(
        "asking Cursor for its models with account {name} ...\n"
    ));
    let up = match platform.upstream(&config.upstream_url, config.upstream_root_pem.as_deref()) {
        Ok(u) => u,
        Err(e) => {
            say(&format!("Cursor's models: FAILED: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match usable_models(platform.as_ref(), up.as_ref(), &record).await {
        Ok(models) => {
            let mut rows = vec![["CURSOR MODEL".to_owned(), "NAME".to_owned()]];
            rows.extend(models.into_iter().map(|m| [m.id, m.display_name]));
            say(&format!("Cursor's models for {name}:\n{}", table(&rows)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("Cursor's models for {name}: FAILED: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Left-aligned columns separated by two spaces.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// Progress on stderr, without a newline.
fn progress(text: &str) {
    let mut err = io::stderr().lock();
    let _ = write!(err, "{text}");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = [
            ["A".to_owned(), "B".to_owned()],
            ["long".to_owned(), "x".to_owned()],
        ];
        assert_eq!(table(&rows), "A     B\nlong  x");
    }
}

/// The subcommands both binaries have (each binary flattens this into its own list).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Shared {
    /// Serve the Anthropic and OpenAI APIs on a local port.
    Serve(Box<ServeArgs>),
    /// Log in to a Cursor account in the browser and store its credential file in the auth
    /// directory (picked up by a running `serve`).
    Login(crate::cli::LoginArgs),
    /// List, inspect, enable, disable or remove accounts.
    Accounts(AccountsArgs),
    /// Show the models clients can ask for, their mapping onto Cursor's, and Cursor's list.
    Models(Box<ModelsArgs>),
    /// Validate the configuration and reach every account upstream.
    Check(Box<CheckArgs>),
    /// Print a shell completion script (e.g. `completions bash > /etc/bash_completion.d/NAME`).
    Completions(CompletionsArgs),
}

/// Worker threads asked for by the environment variable `var`: unset or empty → `None` (the
/// binary's default); a positive integer → that many. Anything else is refused at startup
/// with a message naming the variable (exit code 2), never silently replaced by the default.
pub fn threads_from_env(var: &str) -> Result<Option<std::num::NonZeroUsize>, String> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{var}: not valid UTF-8")),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<std::num::NonZeroUsize>()
            .map(Some)
            .map_err(|_| format!("{var}: expected a number of threads of at least 1, got {v:?}")),
    }
}

/// Reads the configuration file and sets up logging (`default_filter` when nothing sets a
/// level). An unusable file is reported and ends the process with exit code 2.
pub fn startup(
    global: &crate::cli::GlobalArgs,
    matches: &clap::ArgMatches,
    default_filter: &str,
    binary: &str,
) -> Result<(Startup, crate::logging::LogControl), ExitCode> {
    let startup = Startup::new(global, matches).map_err(|e| {
        eprintln!("{binary}: invalid configuration: {e}");
        ExitCode::from(2)
    })?;
    let log = crate::logging::init(&startup.log_filter(default_filter), startup.log_format());
    Ok((startup, log))
}

/// Runs every shared subcommand but `serve`, which the adapter runs (it is handed back).
pub async fn run(
    command: Shared,
    startup: &Startup,
    platform: Arc<dyn Platform>,
    binary: &str,
    cli: clap::Command,
) -> Result<ExitCode, Box<ServeArgs>> {
    Ok(match command {
        Shared::Serve(args) => return Err(args),
        Shared::Login(mut args) => {
            args.apply_file(&startup.file.config, &startup.explicit);
            crate::serve::login(&args, platform, binary).await
        }
        Shared::Accounts(args) => accounts(&args, startup, platform, binary).await,
        Shared::Models(args) => models(&args, startup, platform, binary).await,
        Shared::Check(args) => check(&args, startup, platform, binary).await,
        Shared::Completions(args) => completions(&args, cli),
    })
}
