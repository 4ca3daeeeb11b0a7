//! What survives a restart, on disk: conversation checkpoints, account credential files and the
//! pool's state. The policies (what to keep, for how long, which account) live in core; this
//! module only moves their bytes to and from files.
//!
//! - [`atomic`]: crash-safe file replacement (temp file, fsync, rename, fsync of the directory)
//!   with private permissions (files 0600, directories 0700).
//! - [`conversations`]: [`FileStorage`], a [`cursorpool_core::conversation::ConversationStorage`]
//!   with one file per conversation, written behind the request path by a background thread.
//! - [`accounts`]: the auth directory ([`AuthDir`]: credential files, and a poller that picks
//!   up changes made by other processes) and the pool state file ([`PoolStateFile`]).
//!
//! # Layout
//!
//! ```text
//! ~/.cursorpool/auth/cursor.<key>.json        one account each (default_auth_dir)
//! ~/.cursorpool/state/pool.json               cooldowns, usage, sticky bindings
//! ~/.cursorpool/state/conversations/<hex>.cpce  one conversation each
//! ```
//!
//! Both roots can be overridden (the CLI passes other paths to the constructors); the defaults
//! come from `$HOME`.

pub mod accounts;
pub mod atomic;
pub mod conversations;

use std::path::{Path, PathBuf};

pub use accounts::{AuthChange, AuthDir, PoolStateFile};
pub use atomic::{ensure_private_dir, write_atomic};
pub use conversations::FileStorage;

/// The directory holding everything cursorpool keeps: `$HOME/.cursorpool`, or `.cursorpool`
/// in the working directory when `$HOME` is unset or empty.
pub fn default_root() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".cursorpool"),
        _ => PathBuf::from(".cursorpool"),
    }
}

/// The default state directory, `~/.cursorpool/state`.
pub fn default_state_dir() -> PathBuf {
    default_root().join("state")
}

/// The default auth directory (credential files), `~/.cursorpool/auth`.
pub fn default_auth_dir() -> PathBuf {
    default_root().join("auth")
}

/// Where [`FileStorage`] keeps conversations under a state directory.
pub fn conversations_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("conversations")
}

/// Where the pool's state is saved under a state directory.
pub fn pool_state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("pool.json")
}
