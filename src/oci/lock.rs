//! The lock that serialises writers of one OCI layout's `index.json`.
//!
//! An exclusive `flock` on `DIR/.airlock.lock`, held while index.json is
//! read, changed and replaced, so two exports into one layout both land.
//! The kernel drops the lock when its holder exits, however it exits, so a
//! killed export never leaves a stale lock. Not for blobs: they are content
//! addressed and renamed into place, so concurrent writers of one blob agree.
//! Only other airlock processes take this lock; skopeo and umoci do not.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name inside the layout directory.
pub const LOCK_FILE: &str = ".airlock.lock";

/// Held until dropped (closing the file releases the lock).
pub struct LayoutLock {
    _file: File,
}

impl LayoutLock {
    /// Waits for, then takes, the exclusive lock on the layout at `dir`.
    pub fn acquire(dir: &Path) -> Result<LayoutLock> {
        let path: PathBuf = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        loop {
            // SAFETY: flock on a descriptor this process owns; it touches
            // no memory of ours.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(LayoutLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("lock", &path, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = LayoutLock::acquire(dir.path()).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let (p, g) = (dir.path().to_path_buf(), got.clone());
        // flock locks belong to the open file, so a second open in another
        // thread contends just as another process would.
        let waiter = std::thread::spawn(move || {
            let _second = LayoutLock::acquire(&p).unwrap();
            g.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!got.load(Ordering::SeqCst), "took a held lock");
        drop(first);
        waiter.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
    }
}
