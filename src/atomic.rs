//! Output files that appear complete or not at all.
//!
//! Data goes to a hidden temporary file beside the target; `commit` syncs it
//! and renames it into place. Dropping an uncommitted file removes it, so an
//! interrupted or failed run leaves nothing that looks finished.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
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
