//! Writes an OCI layout as a tar (`oci-archive:FILE`), as skopeo's
//! oci-archive transport and `podman load` read it: `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`, the blobs streamed in plan order
//! so nothing is staged on disk.
//!
//! The tar goes to a file that appears only once complete, or to standard
//! output (`oci-archive:-`), where a failed export leaves a tar without its
//! `index.json`, which readers refuse. Unlike a docker-archive, an image may
//! be multi-platform: the layout holds the index as it is.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{index_entries, OCI_LAYOUT};
use crate::atomic::{sweep_stale, AtomicFile, Swept};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;

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

pub struct OciArchiveSink {
    tar: tar::Builder<Out>,
    /// For messages: the file, or "standard output".
    target: PathBuf,
    mtime: u64,
}

fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

impl OciArchiveSink {
    /// A sink writing to `path`, or to standard output for `-`; every
    /// member gets `mtime` (the bundle's creation time), so the same bundle
    /// exports to the same bytes.
    pub fn new(path: &Path, mtime: u64) -> Result<OciArchiveSink> {
        let (out, target) = if is_stdout(path) {
            (Out::Stdout(io::stdout()), PathBuf::from("standard output"))
        } else {
            (Out::File(AtomicFile::create(path)?), path.to_path_buf())
        };
        Ok(OciArchiveSink {
            tar: tar::Builder::new(out),
            target,
            mtime,
        })
    }

    fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| Error::io("write", &self.target, e))
    }
}

/// Removes the partial files that killed or failed exports to the archive
/// `path` left, except one a live export is writing.
pub fn sweep_archive_partials(path: &Path) -> Swept {
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

impl Sink for OciArchiveSink {
    fn begin(&mut self, _plan: &Plan) -> Result<()> {
        // First, as `oci:DIR` writes it first: a reader may check it first.
        self.append("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])
    }

    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()> {
        self.append(
            &blob.descriptor.digest.layout_path(),
            blob.descriptor.size,
            data,
        )
    }

    fn finish(mut self: Box<Self>, plan: &Plan) -> Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::model::image::media::OCI_INDEX,
            "manifests": index_entries(plan),
        });
        let index_json = serde_json::to_vec(&index).expect("JSON values serialise");
        self.append("index.json", index_json.len() as u64, &mut &index_json[..])?;
        let target = self.target.clone();
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
