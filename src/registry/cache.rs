//! A local content-addressed cache of downloaded blobs, so a re-run of an
//! interrupted pack fetches only what is missing.
//!
//! ```text
//! CACHE/blobs/sha256/<hex>     complete; its digest was checked
//! CACHE/partial/sha256/<hex>   a download in progress: a prefix of the blob
//! ```
//!
//! A download appends to its partial file and continues after a cut or a
//! kill with an HTTP Range request from the partial file's length. Only a
//! complete file whose digest matches is renamed into `blobs/`, and entries
//! there are checked again before use: a corrupt entry is deleted and
//! fetched again. Two airlock processes must not share a cache at once.
//!
//! A partial file only ever grows, so a reader can follow a download in
//! progress ([`BlobCache::open_or_follow`]): every byte in it is one the
//! download hashes, and the follower's end-of-file waits for the verdict.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::integrity::hash_reader;
use crate::model::Digest;

pub struct BlobCache {
    root: PathBuf,
    /// Downloads claimed by a thread of this process, so that a reader
    /// waits for a blob the pool is fetching instead of fetching it twice.
    inflight: Mutex<HashMap<Digest, Slot>>,
    changed: Condvar,
    /// Bytes downloaded through this cache by this process, whichever
    /// thread asked for them.
    downloaded: AtomicU64,
}

enum Slot {
    /// Claimed by a thread that is checking the cache or a partial file.
    Claimed,
    /// Being downloaded: the partial file holds this many bytes, all of
    /// them part of the blob if its digest matches in the end.
    Downloading(u64),
    /// Cached, and hashed by this process.
    Done,
    Failed,
}

/// What a downloader returns: the body, and whether it starts at the
/// requested offset (a server may ignore Range and send everything).
pub struct Download {
    pub body: Box<dyn Read + Send>,
    pub from_offset: bool,
}

impl BlobCache {
    pub fn open(root: &Path) -> Result<BlobCache> {
        for sub in ["blobs/sha256", "partial/sha256"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("create cache directory", &d, e))?;
        }
        Ok(BlobCache {
            root: root.to_path_buf(),
            inflight: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            downloaded: AtomicU64::new(0),
        })
    }

    /// `$XDG_CACHE_HOME/airlock`, else `~/.cache/airlock`.
    pub fn default_dir() -> PathBuf {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("airlock")
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    fn partial(&self, d: &Digest) -> PathBuf {
        self.root.join("partial/sha256").join(d.hex())
    }

    /// True if a good copy is cached. A copy of the wrong size or digest is
    /// removed, so the caller fetches it again.
    pub fn has(&self, d: &Digest, size: u64) -> Result<bool> {
        let path = self.path(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let (actual, len) = hash_reader(file).map_err(|e| Error::io("read", &path, e))?;
        if &actual == d && len == size {
            return Ok(true);
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io("remove corrupt cache entry", &path, e))?;
        Ok(false)
    }

    /// Opens a blob that this process has cached, or is downloading, for
    /// reading. A download in progress is followed: reads wait for more
    /// bytes, and the final read waits for the digest check and fails if it
    /// failed. `None` when no thread has claimed the blob: the caller
    /// fetches it with [`BlobCache::ensure`].
    pub fn open_or_follow(
        &self,
        d: &Digest,
        size: u64,
    ) -> Result<Option<Box<dyn Read + Send + '_>>> {
        let mut slots = self.inflight.lock().expect("not poisoned");
        loop {
            let (path, following) = match slots.get(d) {
                None => return Ok(None),
                Some(Slot::Claimed) => {
                    slots = self.changed.wait(slots).expect("not poisoned");
                    continue;
                }
                Some(Slot::Failed) => return Err(failed(&format!("blob {d}"))),
                Some(Slot::Done) => (self.path(d), false),
                Some(Slot::Downloading(_)) => (self.partial(d), true),
            };
            match File::open(&path) {
                Ok(file) if !following => return Ok(Some(Box::new(file))),
                Ok(file) => {
                    return Ok(Some(Box::new(Follow {
                        cache: self,
                        digest: d.clone(),
                        file,
                        read: 0,
                        size,
                    })))
                }
                // The download finished (or failed) and moved its file
                // between the look and the open: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    slots = self
                        .changed
                        .wait_timeout(slots, POLL)
                        .expect("not poisoned")
                        .0;
                }
                Err(e) => return Err(Error::io("open", &path, e)),
            }
        }
    }

    fn set_slot(&self, d: &Digest, slot: Slot) {
        self.inflight
            .lock()
            .expect("not poisoned")
            .insert(d.clone(), slot);
        self.changed.notify_all();
    }

    /// Bytes downloaded so far by this process.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Makes sure a good copy of the blob is cached: reuses one (checking
    /// it), waits for another thread that is fetching it, or fetches it.
    /// The bytes transferred are added to [`BlobCache::downloaded`].
    pub fn ensure(
        &self,
        d: &Digest,
        size: u64,
        what: &str,
        attempts: u32,
        download: impl FnMut(u64) -> Result<Download>,
        on_bytes: &dyn Fn(u64),
    ) -> Result<()> {
        {
            let mut slots = self.inflight.lock().expect("not poisoned");
            loop {
                match slots.get(d) {
                    Some(Slot::Claimed | Slot::Downloading(_)) => {
                        slots = self.changed.wait(slots).expect("not poisoned")
                    }
                    Some(Slot::Done) => return Ok(()),
                    Some(Slot::Failed) => return Err(failed(what)),
                    None => {
                        slots.insert(d.clone(), Slot::Claimed);
                        break;
                    }
                }
            }
        }
        let result = match self.has(d, size) {
            Ok(true) => {
                on_bytes(size);
                Ok(())
            }
            Ok(false) => self
                .fetch(d, size, what, attempts, download, on_bytes)
                .map(|n| {
                    self.downloaded.fetch_add(n, Ordering::Relaxed);
                }),
            Err(e) => Err(e),
        };
        self.set_slot(
            d,
            if result.is_ok() {
                Slot::Done
            } else {
                Slot::Failed
            },
        );
        result
    }

    /// Downloads a blob into the cache, continuing a partial download.
    /// Callers go through [`BlobCache::ensure`], which keeps two threads from
    /// fetching the same blob.
    ///
    /// `download(offset)` starts a request for the bytes from `offset`. A
    /// body that breaks off is continued from where it stopped, up to
    /// `attempts` times in a row without progress. `on_bytes` reports
    /// progress. Returns the bytes transferred by this call.
    fn fetch(
        &self,
        d: &Digest,
        size: u64,
        what: &str,
        attempts: u32,
        mut download: impl FnMut(u64) -> Result<Download>,
        on_bytes: &dyn Fn(u64),
    ) -> Result<u64> {
        let partial = self.partial(d);
        let (mut hasher, mut offset) = resume_state(&partial, size)?;
        on_bytes(offset);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .map_err(|e| Error::io("open", &partial, e))?;
        self.set_slot(d, Slot::Downloading(offset));
        let mut transferred = 0u64;
        let mut stalls = 0;
        while offset < size {
            let mut got = download(offset)?;
            let before = offset;
            let body = if !got.from_offset && offset > 0 {
                // The server ignored Range and sends the whole blob: skip
                // what the partial file holds, which only ever grows.
                let skipped = io::copy(&mut (&mut got.body).take(offset), &mut io::sink());
                match skipped {
                    Ok(n) if n == offset => Ok(got.body),
                    Ok(_) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    Err(e) => Err(e),
                }
            } else {
                Ok(got.body)
            };
            let result = match body {
                Ok(body) => append(
                    body,
                    &mut file,
                    &partial,
                    &mut hasher,
                    &mut offset,
                    size,
                    &|n, at| {
                        on_bytes(n);
                        self.set_slot(d, Slot::Downloading(at));
                    },
                )?,
                Err(e) => Err(e),
            };
            transferred += offset - before;
            match result {
                Ok(()) if offset == size => break,
                Ok(()) | Err(_) if offset > before => stalls = 0,
                _ => stalls += 1,
            }
            if offset > size {
                break;
            }
            if stalls >= attempts {
                return Err(match result {
                    Err(e) => Error::io("download", what, e),
                    Ok(()) => Error::SizeMismatch {
                        what: what.to_string(),
                        expected: size,
                        actual: offset,
                    },
                });
            }
        }
        // No fsync: an entry is checked against its digest before every use,
        // so a torn write after a crash costs a download, not correctness.
        drop(file);
        let actual = Digest::from_hasher(hasher);
        if offset != size || &actual != d {
            let _ = std::fs::remove_file(&partial);
            return Err(if offset != size {
                Error::SizeMismatch {
                    what: what.to_string(),
                    expected: size,
                    actual: offset,
                }
            } else {
                Error::DigestMismatch {
                    what: what.to_string(),
                    expected: d.clone(),
                    actual,
                }
            });
        }
        let done = self.path(d);
        std::fs::rename(&partial, &done).map_err(|e| Error::io("move into cache", &done, e))?;
        Ok(transferred)
    }
}

/// Hashes what a previous run left in the partial file.
fn resume_state(partial: &Path, size: u64) -> Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let file = match File::open(partial) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(Error::io("open", partial, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", partial, e))?
        .len();
    if len > size {
        std::fs::remove_file(partial).map_err(|e| Error::io("remove", partial, e))?;
        return Ok((hasher, 0));
    }
    let mut r = io::BufReader::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| Error::io("read", partial, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hasher, n_total))
}

/// Appends a body to the partial file, hashing what is written, in writes
/// of up to 1 MiB; `written(n, offset)` follows each. Returns how the body
/// ended (`Err` if it broke off: the bytes received so far are written and
/// counted, so the next request continues exactly after them), or fails if
/// the file cannot be written, which no retry mends.
fn append(
    mut body: Box<dyn Read + Send>,
    file: &mut File,
    path: &Path,
    hasher: &mut Sha256,
    offset: &mut u64,
    size: u64,
    written: &dyn Fn(u64, u64),
) -> Result<io::Result<()>> {
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Fill the buffer before writing: bodies arrive in small reads.
        let room = (size - *offset).saturating_add(1).min(CHUNK as u64) as usize;
        let mut filled = 0;
        let mut ended = Ok(false);
        while filled < room {
            match body.read(&mut buf[filled..room]) {
                Ok(0) => {
                    ended = Ok(true);
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ended = Err(e);
                    break;
                }
            }
        }
        if filled > 0 {
            if let Err(e) = file.write_all(&buf[..filled]) {
                // Keep the file exactly what was hashed, for a later resume.
                let _ = file.set_len(*offset);
                return Err(Error::io("write to the cache", path, e));
            }
            hasher.update(&buf[..filled]);
            *offset += filled as u64;
            written(filled as u64, *offset);
        }
        match ended {
            Ok(false) if *offset <= size => {}
            ended => return Ok(ended.map(|_| ())),
        }
    }
}

/// How often a reader waiting on the in-flight table looks again even
/// without a notification (which it may miss between two locks).
const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A blob whose download in this process failed; that failure is reported
/// on its own.
fn failed(what: &str) -> Error {
    Error::Unsupported {
        what: what.to_string(),
        reason: "its download failed (see the error about it)".into(),
    }
}

/// Reads a partial file while another thread downloads into it.
struct Follow<'a> {
    cache: &'a BlobCache,
    digest: Digest,
    file: File,
    read: u64,
    size: u64,
}

impl Read for Follow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.read < self.size {
                let want = buf.len().min((self.size - self.read) as usize);
                let n = self.file.read(&mut buf[..want])?;
                if n > 0 {
                    self.read += n as u64;
                    return Ok(n);
                }
            }
            // At the end of what is written: wait for more, or, with the
            // whole blob read, for the digest check.
            let mut slots = self.cache.inflight.lock().expect("not poisoned");
            loop {
                match slots.get(&self.digest) {
                    Some(Slot::Downloading(at)) if *at > self.read => break,
                    Some(Slot::Claimed | Slot::Downloading(_)) => {
                        slots = self
                            .cache
                            .changed
                            .wait_timeout(slots, POLL)
                            .expect("not poisoned")
                            .0;
                    }
                    Some(Slot::Done) if self.read == self.size => return Ok(0),
                    Some(Slot::Done) => break,
                    Some(Slot::Failed) | None => {
                        return Err(io::Error::other(
                            failed(&format!("blob {}", self.digest)).to_string(),
                        ))
                    }
                }
            }
        }
    }
}
