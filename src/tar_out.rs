//! A tar written as it goes, for the archive sinks (`docker-archive:` and
//! `oci-archive:`): to a file that appears only once complete (through
//! [`AtomicFile`]), or to standard output for `-`, where a failed export
//! leaves a tar that lacks its final index and is refused by readers.
//! Every member is a regular file with the same mtime (the bundle's
//! creation time), so the same bundle exports to the same bytes.
//!
//! Not for reading tars (`bundle/tar.rs` is the ustar codec of bundles),
//! nor for what goes into an archive (the sinks decide).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::atomic::{sweep_stale, AtomicFile, Swept};
use crate::error::{Error, Result};

/// Where the tar goes.
enum Out {
    File(AtomicFile),
    Stdout(io::Stdout),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::File(f) => f.write(buf),
            Out::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::File(f) => f.flush(),
            Out::Stdout(s) => s.flush(),
        }
    }
}

pub struct TarOut {
    tar: tar::Builder<Out>,
    /// For messages: the file, or "standard output".
    target: PathBuf,
    mtime: u64,
}

/// `-` as an archive's path: standard output.
pub fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

impl TarOut {
    /// A tar at `path`, or on standard output for `-`, whose members get
    /// `mtime`.
    pub fn create(path: &Path, mtime: u64) -> Result<TarOut> {
        let (out, target) = if is_stdout(path) {
            (Out::Stdout(io::stdout()), PathBuf::from("standard output"))
        } else {
            (Out::File(AtomicFile::create(path)?), path.to_path_buf())
        };
        Ok(TarOut {
            tar: tar::Builder::new(out),
            target,
            mtime,
        })
    }

    /// Appends a regular file of `size` bytes read from `data`.
    pub fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| Error::io("write", &self.target, e))
    }

    /// Ends the tar; the file appears only now.
    pub fn finish(self) -> Result<()> {
        let target = self.target;
        match self
            .tar
            .into_inner()
            .map_err(|e| Error::io("write", &target, e))?
        {
            Out::File(file) => file.commit(),
            Out::Stdout(mut out) => out.flush().map_err(|e| Error::io("write", &target, e)),
        }
    }
}

/// Removes the partial files that killed or failed exports to the archive
/// `path` left, except one a live export is writing.
pub fn sweep_partials(path: &Path) -> Swept {
    if is_stdout(path) {
        return Swept::default();
    }
    let (Some(name), dir) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Swept::default();
    };
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sweep_stale(dir, |t| t == name)
}
