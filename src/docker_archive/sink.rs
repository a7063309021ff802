//! Writes a tar that `docker load` accepts (`docker-archive:FILE`).
//!
//! The layout is what Engine 25+ `docker save` writes: an OCI image layout
//! plus the legacy `manifest.json`, so old and new engines (and skopeo) all
//! read it. Layers stay as they are stored (often gzip); `docker load`
//! decompresses them itself. Each image must be a single platform, because
//! `docker load` loads one. It does not choose that platform: the plan
//! does, from `--platform` or the host's.

use std::io::Read;
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::model::image::{Node, Parsed};
use crate::model::reference::{Reference, DEFAULT_REGISTRY};
use crate::oci::{index_entries, OCI_LAYOUT};
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;

pub struct DockerArchiveSink {
    tar: tar::Builder<AtomicFile>,
    mtime: u64,
}

impl DockerArchiveSink {
    pub fn new(path: &Path, mtime: u64) -> Result<DockerArchiveSink> {
        Ok(DockerArchiveSink {
            tar: tar::Builder::new(AtomicFile::create(path)?),
            mtime,
        })
    }

    fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        let target = self.tar.get_ref().target().to_path_buf();
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| Error::io("write", &target, e))
    }
}

/// docker's short form: `nginx:1.25`, `bitnami/redis:7`, `host:5000/a:b`.
fn familiar(r: &Reference) -> String {
    let repo = match r.registry.as_str() {
        DEFAULT_REGISTRY => r
            .repository
            .strip_prefix("library/")
            .unwrap_or(&r.repository)
            .to_string(),
        host => format!("{host}/{}", r.repository),
    };
    format!("{repo}:{}", r.tag.as_deref().unwrap_or("latest"))
}

impl Sink for DockerArchiveSink {
    fn begin(&mut self, plan: &Plan) -> Result<()> {
        for image in &plan.images {
            if !crate::model::image::media::is_manifest(&image.descriptor.media_type) {
                return Err(Error::Usage(format!(
                    "{} is a multi-platform image, and a docker-archive holds one platform per image; choose one with --platform",
                    image.label()
                )));
            }
        }
        Ok(())
    }

    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()> {
        self.append(
            &blob.descriptor.digest.layout_path(),
            blob.descriptor.size,
            data,
        )
    }

    fn finish(mut self: Box<Self>, plan: &Plan) -> Result<()> {
        let mut legacy = Vec::new();
        for image in &plan.images {
            let blob = plan
                .blobs
                .iter()
                .find(|b| b.descriptor.digest == image.descriptor.digest)
                .and_then(|b| b.inline.clone())
                .expect("a plan holds every image's manifest bytes");
            let node = Node::parse(image.descriptor.clone(), blob, &image.label())?;
            let Parsed::Manifest { config, layers } = node.parsed else {
                unreachable!("begin() refused indexes")
            };
            legacy.push(serde_json::json!({
                "Config": config.digest.layout_path(),
                "RepoTags": image.name.iter().map(familiar).collect::<Vec<_>>(),
                "Layers": layers.iter().map(|l| l.digest.layout_path()).collect::<Vec<_>>(),
            }));
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::model::image::media::OCI_INDEX,
            "manifests": index_entries(plan),
        });
        let manifest_json = serde_json::to_vec(&legacy).expect("JSON values serialise");
        let index_json = serde_json::to_vec(&index).expect("JSON values serialise");
        self.append("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
        self.append("index.json", index_json.len() as u64, &mut &index_json[..])?;
        self.append(
            "manifest.json",
            manifest_json.len() as u64,
            &mut &manifest_json[..],
        )?;
        let target = self.tar.get_ref().target().to_path_buf();
        let file = self
            .tar
            .into_inner()
            .map_err(|e| Error::io("write", &target, e))?;
        file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_match_docker() {
        let f = |s: &str| familiar(&Reference::parse(s).unwrap());
        assert_eq!(f("nginx"), "nginx:latest");
        assert_eq!(f("bitnami/redis:7"), "bitnami/redis:7");
        assert_eq!(f("localhost:5000/a/b:c"), "localhost:5000/a/b:c");
    }
}
