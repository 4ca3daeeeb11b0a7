//! Atomic private files: mode 0600 in a 0700 directory, and a target replaced concurrently by
//! many writers is only ever seen whole.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cursorpool_host::persist::atomic::{
    ensure_private_dir, is_temp_name, read_limited, remove_durable, write_atomic,
};

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
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

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn files_are_private_and_replace_an_existing_public_file() {
    let tmp = TempDir::new("atomic-mode");
    let dir = tmp.0.join("a").join("b");
    ensure_private_dir(&dir).expect("create dir");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        mode(&tmp.0.join("a")),
        0o700,
        "created parents are private too"
    );
    ensure_private_dir(&dir).expect("an existing dir is fine");

    let file = dir.join("f.json");
    fs::write(&file, b"old").expect("plain write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    write_atomic(&file, b"new content").expect("atomic write");
    assert_eq!(fs::read(&file).expect("read"), b"new content");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(names(&dir), ["f.json"], "no temporary file left behind");

    assert_eq!(
        read_limited(&file, 11).expect("read"),
        Some(b"new content".to_vec())
    );
    assert_eq!(read_limited(&file, 10).expect("read"), None);
    assert!(remove_durable(&file).expect("remove"));
    assert!(!remove_durable(&file).expect("remove again"));
    assert!(ensure_private_dir(&tmp.0.join("a").join("b")).is_ok());
}

#[test]
fn temporary_names_are_recognized() {
    assert!(is_temp_name(".cursor.work.json.123.0.tmp"));
    assert!(!is_temp_name("cursor.work.json"));
    assert!(!is_temp_name("0123abcd.cpce"));
}

#[test]
fn concurrent_replacements_are_never_torn() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 40;
    let tmp = TempDir::new("atomic-race");
    let target = Arc::new(tmp.0.join("target.bin"));
    // Each version is a distinct byte repeated, of a distinct length, so any mix of two
    // versions (or a short read) is detectable.
    let version = |w: usize, r: usize| -> Vec<u8> {
        let n = w * ROUNDS + r;
        vec![(n % 251) as u8; 64 * 1024 + n * 97]
    };
    write_atomic(&target, &version(0, 0)).expect("initial write");

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (target, stop) = (target.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0usize;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let data = fs::read(&*target).expect("the target always exists");
                    let n = (data.len() - 64 * 1024) / 97;
                    assert_eq!(data.len(), 64 * 1024 + n * 97, "torn length");
                    assert!(data.iter().all(|b| *b == (n % 251) as u8), "mixed content");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let target = target.clone();
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    write_atomic(&target, &version(w, r)).expect("atomic write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    assert_eq!(mode(&target), 0o600);
    assert_eq!(
        names(&tmp.0),
        ["target.bin"],
        "no temporary file left behind"
    );
}
