//! Writes a tar that `docker load` accepts (`docker-archive:FILE`).
//!
//! The layout is what Engine 25+ `docker save` writes: an OCI image layout
//! plus the legacy `manifest.json`, so old and new engines (and skopeo) all
//! read it. Layers stay as they are stored (often gzip); `docker load`
//! decompresses them itself. Each image must be a single platform, because
//! `docker load` loads one. It does not choose that platform: the plan
//! does, from `--platform` or the host's.
//!
//! The tar goes to a file that appears only once complete, or to standard
//! output (`docker-archive:-`), where a failed export leaves a tar without
//! its `manifest.json`, which `docker load` refuses.

use std::io::Read;
use std::path::Path;

use crate::atomic::Swept;
use crate::error::{Error, Result};
use crate::model::image::{Descriptor, Node, Parsed};
use crate::model::reference::{Reference, DEFAULT_REGISTRY};
use crate::oci::{index_entries, OCI_LAYOUT};
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;
use crate::tar_out::TarOut;

pub struct DockerArchiveSink {
    tar: TarOut,
}

impl DockerArchiveSink {
    /// A sink writing to `path`, or to standard output for `-`.
    pub fn new(path: &Path, mtime: u64) -> Result<DockerArchiveSink> {
        Ok(DockerArchiveSink {
            tar: TarOut::create(path, mtime)?,
        })
    }

    fn append(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        self.tar.append(name, size, data)
    }
}

/// Removes the partial files that killed or failed exports to the archive
/// `path` left, except one a live export is writing.
pub fn sweep_partials(path: &Path) -> Swept {
    crate::tar_out::sweep_partials(path)
}

/// The config and layers of an image's manifest. A bundle whose image
/// record says "manifest" over a blob that is an index contradicts itself:
/// refused, naming the image and the blob.
fn manifest_of(
    plan: &Plan,
    image: &crate::plan::PlannedImage,
) -> Result<(Descriptor, Vec<Descriptor>)> {
    let d = &image.descriptor;
    let blob = plan
        .blobs
        .iter()
        .find(|b| b.descriptor.digest == d.digest)
        .and_then(|b| b.inline.clone())
        .ok_or_else(|| Error::Unsupported {
            what: image.label(),
            reason: format!("the plan holds no bytes of its manifest {}", d.digest),
        })?;
    match Node::parse(d.clone(), blob, &image.label())?.parsed {
        Parsed::Manifest { config, layers } => Ok((config, layers)),
        Parsed::Index { .. } => Err(Error::Unsupported {
            what: image.label(),
            reason: format!(
                "its record says {} but its blob {} is an image index; the bundle contradicts itself: pack it again from the source",
                d.media_type,
                // The digest the source (the bundle) knows it by, before
                // the plan filtered its platforms.
                image.source_digest.as_ref().unwrap_or(&d.digest)
            ),
        }),
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
            // Refused before anything is written, not when the tar is done.
            manifest_of(plan, image)?;
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
            let (config, layers) = manifest_of(plan, image)?;
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
        self.tar.finish()
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
