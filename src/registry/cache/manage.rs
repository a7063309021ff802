//! The cache as a whole, for `airlock cache`: what it holds, when each
//! entry was last used, and the lock that keeps a prune away from packs.
//!
//! **Use.** A blob's modification time is its last use: set when its
//! download completes and again each time a pack finds it cached
//! ([`touch`]). Access times are not used: `noatime` and `relatime` mounts
//! keep them stale.
//!
//! **The cache lock.** Every [`super::BlobCache`] holds a shared `flock` on
//! `CACHE/lock` for as long as it is open; a prune takes it exclusively, or
//! is refused at once while any pack holds it. A pack that starts during a
//! prune waits for it. The kernel drops a dead process's lock.
//!
//! Not for downloads or reading blobs (`mod.rs`, `claim.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::model::Digest;

/// The lock file of a cache directory.
pub const LOCK_NAME: &str = "lock";

/// One file of the cache: a complete blob or a partial download.
#[derive(Debug, Clone)]
pub struct Entry {
    pub digest: Digest,
    pub size: u64,
    /// Its last use (complete) or last write (partial).
    pub used: SystemTime,
    pub partial: bool,
    pub path: PathBuf,
}

/// Every entry of the cache at `root`, least recently used first (a cache
/// that does not exist is empty). Files not named by a digest are skipped.
pub fn entries(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (sub, partial) in [("blobs/sha256", false), ("partial/sha256", true)] {
        let dir = root.join(sub);
        let list = match std::fs::read_dir(&dir) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read cache directory", &dir, e)),
        };
        for entry in list {
            let entry = entry.map_err(|e| Error::io("read cache directory", &dir, e))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                // Removed meanwhile (a pack moved a partial into blobs/).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", &path, e)),
            };
            out.push(Entry {
                digest,
                size: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                partial,
                path,
            });
        }
    }
    out.sort_by(|a, b| a.used.cmp(&b.used).then(a.digest.cmp(&b.digest)));
    Ok(out)
}

/// Records a use of a cached blob. Best effort: a cache on a read-only
/// mount still serves, its order for pruning is only older.
pub(super) fn touch(file: &File) {
    let _ = file.set_modified(SystemTime::now());
}

/// The shared hold a pack keeps on its cache, waiting (and saying so in
/// the log) while a prune runs.
pub(super) fn hold(root: &Path) -> Result<File> {
    let path = root.join(LOCK_NAME);
    let file = open_lock(&path)?;
    if !flock(&file, libc::LOCK_SH | libc::LOCK_NB).map_err(|e| lock_failed(&path, e))? {
        log::warn!(
            "the cache {} is being pruned; waiting for the prune to finish",
            root.display()
        );
        flock(&file, libc::LOCK_SH).map_err(|e| lock_failed(&path, e))?;
    }
    Ok(file)
}

/// The cache held exclusively, for a prune; refused while a pack holds it.
pub struct Exclusive {
    _file: File,
}

impl Exclusive {
    pub fn take(root: &Path) -> Result<Exclusive> {
        let path = root.join(LOCK_NAME);
        let file = open_lock(&path)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(|e| lock_failed(&path, e))? {
            return Err(Error::Refused {
                what: format!("cache {}", root.display()),
                reason: format!(
                    "an airlock pack is using it (it holds {}); pruning now could remove a blob it is about to read",
                    path.display()
                ),
                hint: "run the prune again once the pack has finished".into(),
            });
        }
        Ok(Exclusive { _file: file })
    }
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open the cache lock", path, e))
}

fn lock_failed(path: &Path, e: io::Error) -> Error {
    Error::Unsupported {
        what: format!("cache lock {}", path.display()),
        reason: format!("cannot lock it ({e}); put the cache (--cache DIR) on a local file system"),
    }
}

/// One `flock` call, retried when a signal interrupts it; false when a
/// non-blocking request finds the lock taken. (`crate::lock` has only
/// exclusive locks; packs share this one.)
fn flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: a plain syscall on a descriptor `file` owns; it reads and
        // writes no memory of ours.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}
