//! Output files that appear complete or not at all.
//!
//! Data goes to a hidden temporary file beside the target, `.NAME.XXXXXX.partial`;
//! `commit` syncs it and renames it into place. Dropping an uncommitted file
//! removes it, so a failed run leaves nothing that looks finished.
//!
//! A killed run cannot remove its partial file. Its writer holds an
//! exclusive `flock` on the partial file for as long as it lives (the kernel
//! drops it however the process ends), so [`sweep_stale`] tells a partial
//! file of a live writer (locked: never touched) from one whose owner is
//! gone (free: removed).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lock::{lock, try_lock};

/// Random characters between the target's name and `.partial`.
const RAND_LEN: usize = 6;
const SUFFIX: &str = ".partial";

pub struct AtomicFile {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    /// Bytes written through `Write`, and how many of them were handed to
    /// writeback already.
    written: u64,
    queued: u64,
}

/// Dirty data is handed to the disk in steps of this size while it is
/// written, so the sync in `commit` waits for the last step only, not for
/// the whole file.
const WRITEBACK_STEP: u64 = 32 << 20;

impl AtomicFile {
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let temp = locked_temp(dir, &name)?;
        // Temporary files are created 0600; finished output is ordinary.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = temp
                .as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644));
        }
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            written: 0,
            queued: 0,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The file being written, for positioned writes from several threads.
    pub fn temp_file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the data is until `commit`.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the data and renames it over the target.
    pub fn commit(mut self) -> Result<()> {
        self.temp
            .as_file_mut()
            .sync_all()
            .map_err(|e| Error::io("sync", &self.target, e))?;
        let target = self.target;
        self.temp
            .persist(&target)
            .map_err(|e| Error::io("rename into place", &target, e.error))?;
        if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; not every filesystem allows it.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Writes `bytes` to `target` atomically.
    pub fn write(target: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = AtomicFile::create(target)?;
        f.write_all(bytes)
            .map_err(|e| Error::io("write", target, e))?;
        f.commit()
    }
}

/// A new partial file for `name` in `dir`, locked. A sweep may remove the
/// file between its creation and the lock (it was free then); a file that is
/// no longer at its path once locked is given up and another made. On a
/// file system without `flock` the file stays unlocked: a sweep there cannot
/// lock it either, so it never removes it.
fn locked_temp(dir: &Path, name: &str) -> Result<tempfile::NamedTempFile> {
    loop {
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .rand_bytes(RAND_LEN)
            .suffix(SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        if lock(temp.as_file()).is_err() || same_file(temp.as_file(), temp.path()) {
            return Ok(temp);
        }
    }
}

/// True if `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Stale partial files a run removed before writing its output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
}

impl Swept {
    pub fn add(&mut self, other: Swept) {
        self.files += other.files;
        self.bytes += other.bytes;
    }

    /// The one line a run prints about it; `None` when nothing was removed.
    pub fn note(&self) -> Option<String> {
        (self.files > 0).then(|| {
            format!(
                "removed {} stale partial file(s) ({}) that killed or failed runs left",
                self.files,
                indicatif::BinaryBytes(self.bytes)
            )
        })
    }
}

/// The target name of a partial file: `NAME` of `.NAME.XXXXXX.partial`.
pub fn partial_target(file_name: &str) -> Option<&str> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    let (name, rand) = inner.split_at_checked(inner.len().checked_sub(RAND_LEN + 1)?)?;
    let rand = rand.strip_prefix('.')?;
    (!name.is_empty() && rand.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(name)
}

/// Removes the partial files in `dir` whose target name `owns` accepts and
/// whose writer is gone (nobody holds their lock). A partial file of a live
/// writer is never touched. Best effort: what cannot be read or removed is
/// left, and a missing `dir` holds nothing.
pub fn sweep_stale(dir: &Path, owns: impl Fn(&str) -> bool) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return swept;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(target) = name.to_str().and_then(partial_target) else {
            continue;
        };
        if !owns(target) {
            continue;
        }
        if let Some(bytes) = remove_if_free(&entry.path(), |_| true) {
            swept.files += 1;
            swept.bytes += bytes;
        }
    }
    swept
}

/// Removes the file at `path` if no other open file holds its lock and
/// `wanted(its length)` agrees; its length when it did. The lock is held
/// while removing, so a writer that locks the file after is told by the
/// path no longer naming it.
pub fn remove_if_free(path: &Path, wanted: impl FnOnce(u64) -> bool) -> Option<u64> {
    let file = File::options().read(true).write(true).open(path).ok()?;
    if !try_lock(&file).ok()? || !same_file(&file, path) {
        return None;
    }
    let bytes = file.metadata().ok()?.len();
    if !wanted(bytes) {
        return None;
    }
    std::fs::remove_file(path).ok()?;
    Some(bytes)
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.write(buf)?;
        self.written += n as u64;
        if self.written - self.queued >= WRITEBACK_STEP {
            start_writeback(self.temp.as_file(), self.queued, self.written - self.queued);
            self.queued = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Starts writing a range of the file to disk without waiting for it. Only a
/// hint: errors surface, if at all, in the final sync.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor this process owns; it
    // reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_give_their_target() {
        assert_eq!(
            partial_target(".b.airlock.a1B2c3.partial"),
            Some("b.airlock")
        );
        assert_eq!(partial_target(".b.001.a1B2c3.partial"), Some("b.001"));
        assert_eq!(partial_target(".b.a1B2c.partial"), None);
        assert_eq!(partial_target(".b.a1-2c3.partial"), None);
        assert_eq!(partial_target("b.a1B2c3.partial"), None);
        assert_eq!(partial_target("..a1B2c3.partial"), None);
        assert_eq!(partial_target(".a1B2c3.partial"), None);
    }

    #[test]
    fn a_sweep_removes_free_partial_files_and_keeps_a_live_writers() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let live = AtomicFile::create(&target).unwrap();
        let stale = dir.path().join(".out.zzzzzz.partial");
        std::fs::write(&stale, b"12345").unwrap();
        let other = dir.path().join(".else.zzzzzz.partial");
        std::fs::write(&other, b"1").unwrap();
        let swept = sweep_stale(dir.path(), |t| t == "out");
        assert_eq!(swept, Swept { files: 1, bytes: 5 });
        assert!(!stale.exists());
        assert!(other.exists());
        assert!(live.temp_path().exists());
        live.commit().unwrap();
        assert!(target.exists());
    }
}
