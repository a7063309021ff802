//! Writes an OCI image layout directory (`oci:DIR`).
//!
//! Blobs land through temporary files and are renamed into `blobs/sha256/`
//! only after their digest checked out, so concurrent writers of one blob
//! each rename a complete copy of the same bytes. `index.json` is read,
//! changed and replaced atomically at the end while holding the layout's
//! lock ([`super::lock`]), so concurrent exports into one layout all land.
//! An existing layout is added to: entries with the same ref name are
//! replaced, others kept, as skopeo does.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::LOCK_FILE;
use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::atomic::{sweep_stale, AtomicFile, Swept};
use crate::error::{Error, Result};
use crate::lock::FileLock;
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

/// Removes the partial files that killed or failed exports into the layout
/// at `dir` left (blobs, `index.json`, `oci-layout`), except those a live
/// export is writing.
pub fn sweep_partials(dir: &Path) -> Swept {
    let mut swept = sweep_stale(dir, |t| t == "index.json" || t == "oci-layout");
    swept.add(sweep_stale(&dir.join("blobs/sha256"), |_| true));
    swept
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
        // Read-modify-write under the lock: without it, two exports read the
        // same old index and the later rename drops the other's images.
        let _lock = FileLock::acquire(&self.dir.join(LOCK_FILE))?;
        let index_path = self.dir.join("index.json");
        let old = match std::fs::read(&index_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("read", &index_path, e)),
        };
        let bytes =
            merged_index(old.as_deref(), index_entries(plan)).map_err(|reason| Error::BadJson {
                what: index_path.display().to_string(),
                reason,
            })?;
        AtomicFile::write(&index_path, &bytes)
    }
}

/// The layout's index.json with `new` added: old entries with one of the new
/// ref names, or equal to a new entry, give way. An index that is not a JSON
/// object with a `manifests` array is refused rather than overwritten.
fn merged_index(
    old: Option<&[u8]>,
    new: Vec<serde_json::Value>,
) -> std::result::Result<Vec<u8>, String> {
    let mut index = match old {
        Some(bytes) => {
            serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| e.to_string())?
        }
        None => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::model::image::media::OCI_INDEX,
            "manifests": [],
        }),
    };
    let Some(manifests) = index
        .get_mut("manifests")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Err("not an image index: no \"manifests\" array".into());
    };
    let ref_of = |v: &serde_json::Value| {
        v.pointer("/annotations/org.opencontainers.image.ref.name")
            .cloned()
    };
    manifests.retain(|old| {
        ref_of(old).is_none_or(|r| !new.iter().any(|n| ref_of(n).as_ref() == Some(&r)))
            && !new.contains(old)
    });
    manifests.extend(new);
    Ok(serde_json::to_vec_pretty(&index).expect("JSON values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &str, name: Option<&str>) -> serde_json::Value {
        let mut e = serde_json::json!({"digest": digest});
        if let Some(n) = name {
            e["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: n});
        }
        e
    }

    #[test]
    fn merging_replaces_same_names_and_keeps_the_rest() {
        let old = serde_json::json!({"schemaVersion": 2, "manifests": [
            entry("sha256:a", Some("x:1")), entry("sha256:b", Some("y:1")), entry("sha256:c", None),
        ]});
        let out = merged_index(
            Some(&serde_json::to_vec(&old).unwrap()),
            vec![entry("sha256:d", Some("x:1")), entry("sha256:c", None)],
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let digests: Vec<&str> = out["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(digests, ["sha256:b", "sha256:d", "sha256:c"]);
    }

    #[test]
    fn an_index_that_is_not_an_index_is_refused_not_overwritten() {
        for bad in [&b"[]"[..], b"\"x\"", b"{\"manifests\": 3}", b"{not json"] {
            assert!(merged_index(Some(bad), vec![]).is_err(), "{bad:?}");
        }
    }
}
