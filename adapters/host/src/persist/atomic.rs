//! Crash-safe, private file replacement.
//!
//! [`write_atomic`] writes the new content to a temporary file in the target's directory
//! (created with mode 0600, so credentials are never readable by others even for an instant),
//! fsyncs it, renames it over the target and fsyncs the directory. `rename(2)` within one
//! directory is atomic, so a crash or a concurrent reader at any point sees either the complete
//! old file or the complete new one, never a torn mix; at worst a stray temporary file is left
//! behind, which [`is_temp_name`] recognizes for cleanup.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Permissions of every file cursorpool writes: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// Permissions of the directories cursorpool creates: owner only.
pub const DIR_MODE: u32 = 0o700;

/// Suffix of temporary files (their names also start with a dot).
const TEMP_SUFFIX: &str = ".tmp";

/// Makes temporary names unique among the threads of this process (the pid separates
/// processes).
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically (see the module docs); the file ends up with mode
/// 0600. The parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "atomic write target has no file name",
        )
    })?;
    let dir = parent_dir(path);
    let temp = dir.join(format!(
        ".{}.{}.{}{TEMP_SUFFIX}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_new_file(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        // Best effort: the temporary file holds nothing the target does not.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Removes `path` and makes the removal durable; `Ok(false)` when there was no such file.
pub fn remove_durable(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent_dir(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `path` (and missing parents) with mode 0700. An existing directory is left as it
/// is, with a warning when group or others can access it.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    dir = %path.display(),
                    mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                    "directory is accessible by other users; consider `chmod 700`"
                );
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path),
        Err(e) => Err(e),
    }
}

/// Whether `name` is a temporary file left by [`write_atomic`] (an interrupted write).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Reads `path` whole unless it holds more than `max` bytes (`Ok(None)`); never allocates more
/// than `max + 1` bytes, even when the file grows while it is read.
pub fn read_limited(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(len as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= max).then_some(out))
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes` durably.
fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the directory's entries (a rename, a removal) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
