//! Writes an OCI layout as a tar (`oci-archive:FILE`), as skopeo's
//! oci-archive transport and `podman load` read it: `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`, the blobs streamed in plan order
//! so nothing is staged on disk.
//!
//! The tar goes to a file that appears only once complete, or to standard
//! output (`oci-archive:-`), where a failed export leaves a tar without its
//! `index.json`, which readers refuse. Unlike a docker-archive, an image may
//! be multi-platform: the layout holds the index as it is.

use std::io::Read;
use std::path::Path;

use super::{index_entries, OCI_LAYOUT};
use crate::atomic::Swept;
use crate::error::Result;
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;
use crate::tar_out::TarOut;

pub struct OciArchiveSink {
    tar: TarOut,
}

impl OciArchiveSink {
    /// A sink writing to `path`, or to standard output for `-`; every
    /// member gets `mtime` (the bundle's creation time), so the same bundle
    /// exports to the same bytes.
    pub fn new(path: &Path, mtime: u64) -> Result<OciArchiveSink> {
        Ok(OciArchiveSink {
            tar: TarOut::create(path, mtime)?,
        })
    }

    fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        self.tar.append(name, size, data)
    }
}

/// Removes the partial files that killed or failed exports to the archive
/// `path` left, except one a live export is writing.
pub fn sweep_archive_partials(path: &Path) -> Swept {
    crate::tar_out::sweep_partials(path)
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
        self.tar.finish()
    }
}
