//! The claim on a blob's partial file, across processes: an exclusive
//! `flock` on the file itself. Only its holder writes the file, renames it
//! into `blobs/` or removes it; a process that wants the blob meanwhile
//! waits for the lock. The kernel releases the lock when its holder exits
//! or is killed, so a claim never outlives its process.
//!
//! Not a lock on the cache as a whole: different blobs download in parallel,
//! in one process or many.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Want;
use crate::error::{Error, Result};
use crate::lock::{try_lock, unlock};

/// How often a process waiting for another's claim looks again: short next
/// to a download, long next to a busy loop.
const WAIT_POLL: Duration = Duration::from_millis(100);

pub(super) struct Claim {
    /// Locked; readers of this process share it (see the module docs of
    /// the cache).
    pub file: Arc<File>,
    pub path: PathBuf,
    /// The claim was held by another process first.
    pub waited: bool,
}

impl Claim {
    /// Opens (creating it) and locks the partial file at `path`, waiting
    /// while another process holds it, and reporting that process's
    /// progress as the file grows (`shown` bytes so far). `None` when the
    /// file locked is no longer the one at `path` (its holder finished or
    /// dropped it): the caller looks again.
    pub fn take(
        path: PathBuf,
        cache: &Path,
        want: &Want,
        shown: &mut u64,
    ) -> Result<Option<Claim>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let mut waited = false;
        while !try_lock(&file).map_err(|e| lock_failed(&path, e))? {
            if !waited {
                waited = true;
                (want.report.note)(&format!(
                    "blob {}: another airlock process is downloading it into {}; waiting for it",
                    want.digest,
                    cache.display()
                ));
            }
            let len = file.metadata().map_or(0, |m| m.len()).min(want.size);
            if len > *shown {
                (want.report.bytes)(len - *shown);
                *shown = len;
            }
            std::thread::sleep(WAIT_POLL);
        }
        if !same_file(&file, &path).map_err(|e| Error::io("stat", &path, e))? {
            return Ok(None);
        }
        Ok(Some(Claim {
            file: Arc::new(file),
            path,
            waited,
        }))
    }

    /// True while the path still names the file claimed.
    pub fn at_path(&self) -> Result<bool> {
        same_file(&self.file, &self.path).map_err(|e| Error::io("stat", &self.path, e))
    }

    /// Removes the partial file (a bad download, or one not needed), if the
    /// path still names it, then gives up the claim.
    pub fn remove(self) -> Result<()> {
        if !self.at_path()? {
            return Ok(());
        }
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.path, e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Claim {
    /// Explicitly: readers of this process may keep the descriptor open,
    /// and with it the lock.
    fn drop(&mut self) {
        unlock(&self.file);
    }
}

fn lock_failed(path: &Path, e: io::Error) -> Error {
    Error::Unsupported {
        what: format!("cache file {}", path.display()),
        reason: format!("cannot lock it ({e}); put the cache (--cache DIR) on a local file system"),
    }
}

/// True if the path names the same file as the descriptor (false if the
/// path is gone).
pub(super) fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
