//! Exclusive locks between airlock processes: `flock` on an open file.
//!
//! The kernel releases such a lock when the last descriptor of its open file
//! closes, however the process ends, so a killed airlock never leaves a
//! stale lock behind. A lock belongs to the open file, not the process: two
//! opens of one path contend even within one process (the tests rely on it).
//! Advisory only: other tools (skopeo, umoci) do not take these locks.
//!
//! Not for deciding what to lock; the layout, the cache and the journal each
//! say which file stands for what.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// A lock file held until dropped.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for, then takes, the lock on `path` (created if missing).
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = open(path)?;
        lock(&file).map_err(|e| Error::io("lock", path, e))?;
        Ok(FileLock { _file: file })
    }

    /// Takes the lock on `path` (created if missing), or `None` at once if
    /// another open file holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = open(path)?;
        match try_lock(&file).map_err(|e| Error::io("lock", path, e))? {
            true => Ok(Some(FileLock { _file: file })),
            false => Ok(None),
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open the lock file", path, e))
}

/// Waits until `file` holds the exclusive lock.
pub fn lock(file: &File) -> io::Result<()> {
    flock(file, libc::LOCK_EX).map(|_| ())
}

/// Takes the exclusive lock on `file` if no other open file holds it; false
/// if one does.
pub fn try_lock(file: &File) -> io::Result<bool> {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// Gives up a lock taken with [`lock`] or [`try_lock`] while the file stays
/// open (closing it does the same).
pub fn unlock(file: &File) {
    let _ = flock(file, libc::LOCK_UN);
}

/// One `flock` call, retried when a signal interrupts it; false when a
/// non-blocking request finds the lock taken.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let first = FileLock::acquire(&path).unwrap();
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        let got = Arc::new(AtomicBool::new(false));
        let (p, g) = (path.clone(), got.clone());
        let waiter = std::thread::spawn(move || {
            let _second = FileLock::acquire(&p).unwrap();
            g.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!got.load(Ordering::SeqCst), "took a held lock");
        drop(first);
        waiter.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
    }
}
