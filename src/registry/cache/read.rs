//! Reading a blob out of the cache through the descriptor that was hashed,
//! also while a thread of this process is still downloading into it.
//!
//! Not a check: the bytes were hashed as they were written or when the
//! cached copy was checked (see the cache's module docs). A reader only
//! makes sure it hands out exactly those bytes, and never waits for bytes
//! that the file no longer holds.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{failed, BlobCache, Slot};
use crate::error::{into_io, Error};
use crate::model::Digest;

/// How long a follower sleeps at most between looks at the download, even
/// without a notification.
const POLL: Duration = Duration::from_millis(50);

pub(super) struct CacheReader<'a> {
    /// The download being followed, or none for a finished blob.
    cache: Option<&'a BlobCache>,
    digest: Digest,
    file: Arc<File>,
    path: PathBuf,
    read: u64,
    size: u64,
    /// Bytes known to be in the file: all of them once the digest matched.
    ready: u64,
}

impl<'a> CacheReader<'a> {
    /// A blob this process hashed in full.
    pub fn finished(digest: &Digest, file: Arc<File>, size: u64, path: PathBuf) -> Self {
        CacheReader {
            cache: None,
            digest: digest.clone(),
            file,
            path,
            read: 0,
            size,
            ready: size,
        }
    }

    /// A blob a thread of `cache` is downloading into `file`.
    pub fn live(
        cache: &'a BlobCache,
        digest: &Digest,
        file: Arc<File>,
        size: u64,
        path: PathBuf,
    ) -> Self {
        CacheReader {
            cache: Some(cache),
            ready: 0,
            ..CacheReader::finished(digest, file, size, path)
        }
    }

    /// Waits until the download holds bytes past `read`, or its digest
    /// matched; fails if it failed.
    fn wait(&mut self, cache: &BlobCache) -> io::Result<()> {
        let mut slots = cache.inflight.lock().expect("not poisoned");
        loop {
            match slots.get(&self.digest) {
                Some(Slot::Downloading { at, .. }) if *at > self.read => {
                    self.ready = *at;
                    return Ok(());
                }
                Some(Slot::Done(_)) => {
                    self.ready = self.size;
                    self.cache = None;
                    return Ok(());
                }
                Some(Slot::Claimed | Slot::Downloading { .. }) => {
                    slots = cache
                        .changed
                        .wait_timeout(slots, POLL)
                        .expect("not poisoned")
                        .0;
                }
                Some(Slot::Failed) | None => {
                    return Err(into_io(failed(&format!("blob {}", self.digest))))
                }
            }
        }
    }

    /// The file ends before bytes that were written to it and hashed.
    fn shrank(&self) -> io::Error {
        into_io(Error::Unsupported {
            what: format!(
                "cache file {} of blob {}",
                self.path.display(),
                self.digest
            ),
            reason: format!(
                "it ends at {} bytes, but {} were written to it and hashed: another program truncated it; delete it and pack again",
                self.read, self.ready
            ),
        })
    }
}

impl Read for CacheReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read == self.ready {
            match self.cache {
                Some(cache) => self.wait(cache)?,
                None => return Ok(0),
            }
            if self.read == self.size {
                return Ok(0);
            }
        }
        let want = buf.len().min((self.ready - self.read) as usize);
        let n = self.file.read_at(&mut buf[..want], self.read)?;
        if n == 0 && want > 0 {
            return Err(self.shrank());
        }
        self.read += n as u64;
        Ok(n)
    }
}
