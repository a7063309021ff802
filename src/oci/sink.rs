//! Writes an OCI image layout directory (`oci:DIR`).
//!
//! Blobs land through temporary files and are renamed into `blobs/sha256/`
//! only after their digest checked out; `index.json` is replaced atomically
//! at the end. An existing layout is added to: entries with the same ref name
//! are replaced, others kept, as skopeo does.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;

pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub struct OciDirSink {
    dir: PathBuf,
}

impl OciDirSink {
    pub fn new(dir: &Path) -> Result<OciDirSink> {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io("create directory", &blobs, e))?;
        Ok(OciDirSink {
            dir: dir.to_path_buf(),
        })
    }
}

/// The index.json entries for a plan's images: the full name goes in both
/// annotations (skopeo matches the first, containerd and docker the second).
pub(crate) fn index_entries(plan: &Plan) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    for image in &plan.images {
        let d = &image.descriptor;
        let mut entry =
            serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
        match &image.name {
            Some(name) => {
                entry["annotations"] = serde_json::json!({
                    ANNOTATION_REF_NAME: name.to_string(),
                    ANNOTATION_IMAGE_NAME: name.to_string(),
                });
            }
            // An unnamed image is listed once, by digest.
            None if out.contains(&entry) => continue,
            None => {}
        }
        out.push(entry);
    }
    out
}

impl Sink for OciDirSink {
    fn begin(&mut self, _plan: &Plan) -> Result<()> {
        let marker = self.dir.join("oci-layout");
        if !marker.exists() {
            AtomicFile::write(&marker, OCI_LAYOUT)?;
        }
        Ok(())
    }

    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()> {
        let path = self.dir.join(blob.descriptor.digest.layout_path());
        let mut file = AtomicFile::create(&path)?;
        io::copy(data, file.file()).map_err(|e| Error::io("write", &path, e))?;
        file.commit()
    }

    fn finish(self: Box<Self>, plan: &Plan) -> Result<()> {
        let index_path = self.dir.join("index.json");
        let mut index = match std::fs::read(&index_path) {
            Ok(bytes) => {
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| Error::BadJson {
                    what: index_path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                serde_json::json!({"schemaVersion": 2, "mediaType": crate::model::image::media::OCI_INDEX, "manifests": []})
            }
            Err(e) => return Err(Error::io("read", &index_path, e)),
        };
        let new = index_entries(plan);
        let ref_of = |v: &serde_json::Value| {
            v.pointer("/annotations/org.opencontainers.image.ref.name")
                .cloned()
        };
        let mut manifests: Vec<serde_json::Value> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|old| {
                ref_of(old).is_none_or(|r| !new.iter().any(|n| ref_of(n) == Some(r.clone())))
            })
            .filter(|old| !new.contains(old))
            .collect();
        manifests.extend(new);
        index["manifests"] = serde_json::Value::Array(manifests);
        let bytes = serde_json::to_vec_pretty(&index).expect("JSON values serialise");
        AtomicFile::write(&index_path, &bytes)
    }
}
