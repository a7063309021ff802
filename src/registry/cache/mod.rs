//! A local content-addressed cache of downloaded blobs, so a re-run of an
//! interrupted pack fetches only what is missing, and packs running at the
//! same time fetch a blob once.
//!
//! ```text
//! CACHE/blobs/sha256/<hex>     complete; its digest was checked; never written again
//! CACHE/partial/sha256/<hex>   a download in progress: a prefix of the blob,
//!                              written only by the process that holds its lock
//! ```
//!
//! **Shared by any number of processes.** A process writes a partial file
//! only while it holds an exclusive `flock` on it (`claim.rs`). Another
//! process that wants the blob waits for that lock, says so, and then looks
//! again: the blob is in `blobs/` (it checks that copy and uses it), or the
//! holder stopped (killed, cut off) and the waiter continues the partial
//! file where it ends. The kernel drops the lock of a process that dies, so
//! a `kill -9` never leaves a blob claimed.
//!
//! A download continues after a cut or a kill with an HTTP Range request
//! from the partial file's length. Only a complete file whose digest matches
//! is renamed into `blobs/`, and an entry there is hashed again by each
//! process that uses it: a corrupt entry is deleted and fetched again.
//!
//! **Bytes read are bytes hashed.** A blob is read through the very file
//! descriptor that was hashed: the one its download wrote (hashing each
//! buffer as it wrote it) or the one the check of a cached copy read, never
//! a second open of the path. Renaming or replacing a path cannot change
//! what is read; only the lock holder writes a partial file and nothing
//! writes a complete one, so the bytes read are the ones hashed, once.
//! A reader may follow a download in progress ([`BlobCache::open_or_follow`]):
//! its end-of-file waits for the digest verdict, and a file that shrinks
//! under it (another program) is an error at once, never a wait.
//!
//! **Leftovers.** A partial file that no process holds and no download can
//! use is removed by [`BlobCache::sweep`] at the start of a pack: an empty
//! one (a download that failed before its first byte) or one whose blob is
//! complete in `blobs/`. One that holds a prefix of a blob not yet cached
//! is kept: the next pack that wants the blob continues it.
//!
//! **Use and pruning.** A blob's modification time records its last use,
//! and every open cache holds a shared lock that `airlock cache prune`
//! needs exclusively (`manage.rs`): a prune never runs beside a pack.
//!
//! Not for manifests (the registry source keeps those in memory), and no
//! eviction of its own: `airlock cache prune` removes entries.

mod claim;
pub mod manage;
mod read;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest as _, Sha256};

use crate::atomic::{remove_if_free, Swept};
use crate::error::{Error, Result};
use crate::integrity::hash_reader;
use crate::model::Digest;

use claim::{same_file, Claim};
use read::CacheReader;

pub struct BlobCache {
    root: PathBuf,
    /// Downloads claimed by a thread of this process, so that a reader
    /// waits for a blob the pool is fetching instead of fetching it twice.
    inflight: Mutex<HashMap<Digest, Slot>>,
    changed: Condvar,
    /// Bytes downloaded through this cache by this process, whichever
    /// thread asked for them.
    downloaded: AtomicU64,
    /// Descriptors kept in `Done` slots, at most [`HELD_MAX`].
    held: AtomicUsize,
    /// The shared lock that keeps a prune out while this cache is open.
    _hold: File,
}

/// Hashed descriptors kept for readers to come. The download pool may run
/// far ahead of the bundle writer (a catalog of cached blobs); past this
/// many, a blob is hashed again when read instead of holding a descriptor,
/// so a large pack does not run out of them.
const HELD_MAX: usize = 256;

enum Slot {
    /// Claimed by a thread that is checking the cache, or waiting for
    /// another process that is downloading the blob.
    Claimed,
    /// Being downloaded by a thread of this process into `file`, which
    /// holds `at` bytes, all of them hashed. `followed` once a reader holds
    /// `file`, which then needs no keeping once done.
    Downloading {
        file: Arc<File>,
        at: u64,
        followed: bool,
    },
    /// Cached, and hashed by this process through this descriptor, kept
    /// until a reader takes it (`None` after: a second reader hashes again).
    Done(Option<Arc<File>>),
    Failed,
}

/// What a downloader returns: the body, and whether it starts at the
/// requested offset (a server may ignore Range and send everything).
pub struct Download {
    pub body: Box<dyn Read + Send>,
    pub from_offset: bool,
}

/// Where [`BlobCache::ensure`] reports: bytes of the blob accounted for,
/// `bytes` as they move in this run (downloaded, or by a process it waits
/// for) and `held` for those it found (cached, or in a partial file), and
/// lines for the user (waiting for another process, taking over).
pub struct Report<'a> {
    pub bytes: &'a dyn Fn(u64),
    pub held: &'a dyn Fn(u64),
    pub note: &'a dyn Fn(&str),
}

/// One blob wanted by [`BlobCache::ensure`], for the steps it takes.
struct Want<'a> {
    digest: &'a Digest,
    size: u64,
    what: &'a str,
    report: &'a Report<'a>,
}

type Downloader<'a> = dyn FnMut(u64) -> Result<Download> + 'a;

impl BlobCache {
    pub fn open(root: &Path) -> Result<BlobCache> {
        for sub in ["blobs/sha256", "partial/sha256"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("create cache directory", &d, e))?;
        }
        let hold = manage::hold(root)?;
        Ok(BlobCache {
            _hold: hold,
            root: root.to_path_buf(),
            inflight: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            downloaded: AtomicU64::new(0),
            held: AtomicUsize::new(0),
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

    /// Removes the partial files that no process holds (see the module
    /// docs) and that are empty, complete in `blobs/` already, or not named
    /// by a digest. Best effort: what cannot be removed stays.
    pub fn sweep(&self) -> Swept {
        let mut swept = Swept::default();
        let dir = self.root.join("partial/sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return swept;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            let cached = digest.as_ref().is_some_and(|d| self.path(d).is_file());
            let useless = |len: u64| len == 0 || cached || digest.is_none();
            if let Some(bytes) = remove_if_free(&entry.path(), useless) {
                swept.files += 1;
                swept.bytes += bytes;
            }
        }
        swept
    }

    /// A good cached copy, opened and hashed; the descriptor is the one to
    /// read it through. A copy of the wrong size or digest is removed, so
    /// the caller fetches it again.
    fn cached(&self, d: &Digest, size: u64) -> Result<Option<File>> {
        let path = self.path(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let (actual, len) = hash_reader(&file).map_err(|e| Error::io("read", &path, e))?;
        if &actual == d && len == size {
            manage::touch(&file);
            return Ok(Some(file));
        }
        // Only the copy hashed: another process may have put a good one in
        // its place meanwhile.
        if same_file(&file, &path).map_err(|e| Error::io("stat", &path, e))? {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io("remove corrupt cache entry", &path, e))
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Opens a blob that this process has cached, or is downloading, for
    /// reading, through the descriptor that was hashed. A download in
    /// progress is followed: reads wait for more bytes, and the final read
    /// waits for the digest check and fails if it failed. `None` when no
    /// thread has claimed the blob: the caller fetches it with
    /// [`BlobCache::ensure`].
    pub fn open_or_follow(
        &self,
        d: &Digest,
        size: u64,
    ) -> Result<Option<Box<dyn Read + Send + '_>>> {
        let mut slots = self.inflight.lock().expect("not poisoned");
        let taken = loop {
            match slots.get_mut(d) {
                None => return Ok(None),
                Some(Slot::Claimed) => slots = self.changed.wait(slots).expect("not poisoned"),
                Some(Slot::Failed) => return Err(failed(&format!("blob {d}"))),
                Some(Slot::Downloading { file, followed, .. }) => {
                    *followed = true;
                    let file = file.clone();
                    return Ok(Some(Box::new(CacheReader::live(
                        self,
                        d,
                        file,
                        size,
                        self.partial(d),
                    ))));
                }
                Some(Slot::Done(file)) => break file.take(),
            }
        };
        drop(slots);
        if taken.is_some() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        let file = match taken {
            Some(file) => file,
            // Read before: hash it again rather than trust the path.
            None => match self.cached(d, size)? {
                Some(file) => Arc::new(file),
                None => {
                    return Err(Error::Unsupported {
                        what: format!("blob {d}"),
                        reason: format!(
                            "its copy in the cache at {} went away or changed after it was checked; pack again",
                            self.path(d).display()
                        ),
                    })
                }
            },
        };
        Ok(Some(Box::new(CacheReader::finished(
            d,
            file,
            size,
            self.path(d),
        ))))
    }

    fn set_slot(&self, d: &Digest, slot: Slot) {
        self.inflight
            .lock()
            .expect("not poisoned")
            .insert(d.clone(), slot);
        self.changed.notify_all();
    }

    /// A download in progress now holds `at` bytes.
    fn advance(&self, d: &Digest, at: u64) {
        if let Some(Slot::Downloading { at: a, .. }) =
            self.inflight.lock().expect("not poisoned").get_mut(d)
        {
            *a = at;
        }
        self.changed.notify_all();
    }

    /// Bytes downloaded so far by this process.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Makes sure a good copy of the blob is cached: reuses one (checking
    /// it), waits for another thread or process that is fetching it, or
    /// fetches it (continuing a partial file, also one that a process which
    /// stopped left). The bytes transferred are added to
    /// [`BlobCache::downloaded`].
    ///
    /// `download(offset)` starts a request for the bytes from `offset`. A
    /// body that breaks off is continued from where it stopped, up to
    /// `attempts` times in a row without progress.
    pub fn ensure(
        &self,
        d: &Digest,
        size: u64,
        what: &str,
        attempts: u32,
        mut download: impl FnMut(u64) -> Result<Download>,
        report: &Report,
    ) -> Result<()> {
        {
            let mut slots = self.inflight.lock().expect("not poisoned");
            loop {
                match slots.get(d) {
                    Some(Slot::Claimed | Slot::Downloading { .. }) => {
                        slots = self.changed.wait(slots).expect("not poisoned")
                    }
                    Some(Slot::Done(_)) => return Ok(()),
                    Some(Slot::Failed) => return Err(failed(what)),
                    None => {
                        slots.insert(d.clone(), Slot::Claimed);
                        break;
                    }
                }
            }
        }
        let want = Want {
            digest: d,
            size,
            what,
            report,
        };
        let result = self.obtain(&want, attempts, &mut download);
        let mut slots = self.inflight.lock().expect("not poisoned");
        let followed = matches!(slots.get(d), Some(Slot::Downloading { followed: true, .. }));
        let keep = !followed && self.held.load(Ordering::Relaxed) < HELD_MAX;
        let slot = match &result {
            Ok(file) if keep => {
                self.held.fetch_add(1, Ordering::Relaxed);
                Slot::Done(Some(file.clone()))
            }
            Ok(_) => Slot::Done(None),
            Err(_) => Slot::Failed,
        };
        slots.insert(d.clone(), slot);
        self.changed.notify_all();
        result.map(|_| ())
    }

    /// Finds the blob cached, or claims its partial file (waiting for a
    /// process that holds it) and downloads the rest.
    fn obtain(&self, want: &Want, attempts: u32, download: &mut Downloader) -> Result<Arc<File>> {
        let (d, size) = (want.digest, want.size);
        let mut shown = 0;
        loop {
            if let Some(file) = self.cached(d, size)? {
                (want.report.held)(size.saturating_sub(shown));
                return Ok(Arc::new(file));
            }
            let Some(claim) = Claim::take(self.partial(d), &self.root, want, &mut shown)? else {
                continue;
            };
            // Its last holder may have finished between the look and the lock.
            if let Some(file) = self.cached(d, size)? {
                claim.remove()?;
                (want.report.held)(size.saturating_sub(shown));
                return Ok(Arc::new(file));
            }
            return self.fetch(want, claim, shown, attempts, download);
        }
    }

    /// Downloads a blob into the partial file it holds the claim on,
    /// continuing from what that file holds, and moves it into `blobs/`
    /// once its digest matched. `shown` bytes were reported already.
    fn fetch(
        &self,
        want: &Want,
        claim: Claim,
        shown: u64,
        attempts: u32,
        download: &mut Downloader,
    ) -> Result<Arc<File>> {
        let (d, size, what) = (want.digest, want.size, want.what);
        let (mut hasher, mut offset) = resume_state(&claim, size)?;
        if claim.waited && offset > 0 {
            (want.report.note)(&format!(
                "blob {d}: the process that was downloading it stopped; continuing from its {offset} bytes"
            ));
        }
        (want.report.held)(offset.saturating_sub(shown));
        self.set_slot(
            d,
            Slot::Downloading {
                file: claim.file.clone(),
                at: offset,
                followed: false,
            },
        );
        let mut stalls = 0;
        while offset < size {
            let before = offset;
            let result = match download(offset).map(|got| skip_to(got, offset))? {
                Ok(body) => append(body, &claim, &mut hasher, &mut offset, size, &|n, at| {
                    (want.report.bytes)(n);
                    self.downloaded.fetch_add(n, Ordering::Relaxed);
                    self.advance(d, at);
                })?,
                Err(e) => Err(e),
            };
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
        let actual = Digest::from_hasher(hasher);
        if offset != size || &actual != d {
            claim.remove()?;
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
        // Under the lock, so a waiter finds the blob in `blobs/` or the
        // partial file still there, never neither. A file that another
        // program put in the partial file's place is not moved: this
        // process reads what it wrote through its descriptor anyway.
        if claim.at_path()? {
            std::fs::rename(&claim.path, &done)
                .map_err(|e| Error::io("move into cache", &done, e))?;
        }
        Ok(claim.file.clone())
    }
}

/// A body that starts at `offset`: a server that ignored Range sends the
/// whole blob, and what the partial file holds is skipped.
fn skip_to(mut got: Download, offset: u64) -> io::Result<Box<dyn Read + Send>> {
    if got.from_offset || offset == 0 {
        return Ok(got.body);
    }
    match io::copy(&mut (&mut got.body).take(offset), &mut io::sink())? {
        n if n == offset => Ok(got.body),
        _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
    }
}

/// Hashes what the claimed partial file holds (a previous run's, or a
/// stopped process's, download). A file longer than the blob is emptied.
fn resume_state(claim: &Claim, size: u64) -> Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let (file, path) = (&claim.file, &claim.path);
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if len > size {
        file.set_len(0)
            .map_err(|e| Error::io("truncate", path, e))?;
        return Ok((hasher, 0));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        let n = file
            .read_at(&mut buf[..want], at)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok((hasher, at))
}

/// Appends a body to the claimed partial file at `offset`, hashing what is
/// written, in writes of up to 1 MiB; `written(n, offset)` follows each.
/// Returns how the body ended (`Err` if it broke off: the bytes received so
/// far are written and counted, so the next request continues exactly after
/// them), or fails if the file cannot be written, which no retry mends.
fn append(
    mut body: Box<dyn Read + Send>,
    claim: &Claim,
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
            if let Err(e) = claim.file.write_all_at(&buf[..filled], *offset) {
                // Keep the file exactly what was hashed, for a later resume.
                let _ = claim.file.set_len(*offset);
                return Err(Error::io("write to the cache", &claim.path, e));
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

/// A blob whose download in this process failed; that failure is reported
/// on its own.
fn failed(what: &str) -> Error {
    Error::Unsupported {
        what: what.to_string(),
        reason: "its download failed (see the error about it)".into(),
    }
}
