//! `docker save` tars (`docker-archive:FILE[:REF]`) as a [`Source`].
//!
//! Two forms exist. Engine 25 and later write an OCI layout plus
//! `manifest.json`; that form is read as a layout. Older engines write only
//! `manifest.json` (config path, tags, layer paths) with uncompressed layer
//! tars: there the layer digests are computed here, and airlock synthesises
//! an OCI manifest for each image. That manifest is ours, so its digest is
//! ours too; it is deterministic, so packing the same archive twice gives the
//! same digest.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::fs::TarFs;
use crate::integrity::hash_reader;
use crate::model::image::{media, Descriptor};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::oci::{describe_root, Layout};
use crate::source::{Root, Source};

const MAX_MANIFEST_JSON: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

enum Blob {
    Member(String),
    Inline(Arc<[u8]>),
}

pub struct DockerArchive {
    name: String,
    fs: TarFs,
    roots: Vec<Root>,
    blobs: HashMap<Digest, Blob>,
}

impl DockerArchive {
    pub fn open(name: &str, path: &Path, reference: Option<String>) -> Result<Box<dyn Source>> {
        let fs = TarFs::open(path)?;
        if fs.open("oci-layout")?.is_some() && fs.open("index.json")?.is_some() {
            return Ok(Box::new(Layout::open(name, fs, reference, String::new())?));
        }
        let bad_json = |reason: String| Error::BadJson {
            what: format!("{}: manifest.json", path.display()),
            reason,
        };
        let raw = fs
            .read_small("manifest.json", MAX_MANIFEST_JSON)?
            .ok_or_else(|| Error::BadArchive {
                path: path.to_path_buf(),
                reason: "no manifest.json: this is not a docker save archive".into(),
            })?;
        let entries: Vec<LegacyEntry> =
            serde_json::from_slice(&raw).map_err(|e| bad_json(e.to_string()))?;
        let mut archive = DockerArchive {
            name: name.to_string(),
            fs,
            roots: Vec::new(),
            blobs: HashMap::new(),
        };
        let mut all = Vec::new();
        for entry in &entries {
            let descriptor = archive.synthesise(entry)?;
            let tags = entry.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                all.push(Root {
                    name: None,
                    descriptor: descriptor.clone(),
                    subject: None,
                });
            }
            for tag in tags {
                all.push(Root {
                    name: Some(Reference::parse(&tag)?),
                    descriptor: descriptor.clone(),
                    subject: None,
                });
            }
        }
        archive.roots = match reference {
            None => all,
            Some(wanted) => select_legacy(name, all, &wanted)?,
        };
        Ok(Box::new(archive))
    }

    /// Builds the OCI manifest for one legacy entry and records its blobs.
    fn synthesise(&mut self, entry: &LegacyEntry) -> Result<Descriptor> {
        let config = self
            .fs
            .read_small(&entry.config, crate::model::image::MAX_CONFIG_SIZE)?
            .ok_or_else(|| self.missing(&entry.config))?;
        let config_desc =
            Descriptor::new(media::OCI_CONFIG, Digest::of(&config), config.len() as u64);
        let layers: Vec<Descriptor> = entry
            .layers
            .par_iter()
            .map(|path| self.describe_layer(path))
            .collect::<Result<_>>()?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": plain(&config_desc),
            "layers": layers.iter().map(plain).collect::<Vec<_>>(),
        });
        let bytes: Arc<[u8]> = serde_json::to_vec(&manifest)
            .expect("JSON values serialise")
            .into();
        let desc = Descriptor::new(media::OCI_MANIFEST, Digest::of(&bytes), bytes.len() as u64);
        self.blobs
            .insert(config_desc.digest.clone(), Blob::Inline(config.into()));
        for (layer, path) in layers.iter().zip(&entry.layers) {
            self.blobs
                .insert(layer.digest.clone(), Blob::Member(path.clone()));
        }
        self.blobs.insert(desc.digest.clone(), Blob::Inline(bytes));
        Ok(desc)
    }

    fn describe_layer(&self, path: &str) -> Result<Descriptor> {
        let (mut r, _) = self.fs.open(path)?.ok_or_else(|| self.missing(path))?;
        let mut magic = [0u8; 4];
        let n = r
            .read(&mut magic)
            .map_err(|e| Error::io("read", self.fs.location().join(path), e))?;
        let media_type = match &magic[..n] {
            [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => media::OCI_LAYER_ZSTD,
            _ => media::OCI_LAYER,
        };
        let (r, _) = self.fs.open(path)?.ok_or_else(|| self.missing(path))?;
        let (digest, size) =
            hash_reader(r).map_err(|e| Error::io("read", self.fs.location().join(path), e))?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    fn missing(&self, member: &str) -> Error {
        Error::BadArchive {
            path: self.fs.location().to_path_buf(),
            reason: format!("manifest.json names {member}, which the archive does not contain"),
        }
    }
}

fn plain(d: &Descriptor) -> serde_json::Value {
    serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size})
}

/// `REF` is a tag (`nginx:latest`) or `@N`, the N-th image in manifest.json.
fn select_legacy(source: &str, all: Vec<Root>, wanted: &str) -> Result<Vec<Root>> {
    let available: Vec<String> = all.iter().map(describe_root).collect();
    let not_found = || Error::ImageNotFound {
        source_name: source.to_string(),
        wanted: wanted.to_string(),
        available: available.clone(),
    };
    if let Some(n) = wanted.strip_prefix('@') {
        let n: usize = n.parse().map_err(|_| not_found())?;
        let mut unique: Vec<Root> = Vec::new();
        for r in all {
            if !unique
                .iter()
                .any(|u| u.descriptor.digest == r.descriptor.digest)
            {
                unique.push(r);
            }
        }
        return unique
            .into_iter()
            .nth(n)
            .map(|r| vec![r])
            .ok_or_else(not_found);
    }
    let wanted_ref = Reference::parse(wanted)?;
    let chosen: Vec<Root> = all
        .into_iter()
        .filter(|r| r.name.as_ref() == Some(&wanted_ref))
        .collect();
    if chosen.is_empty() {
        return Err(not_found());
    }
    Ok(chosen)
}

impl Source for DockerArchive {
    fn name(&self) -> &str {
        &self.name
    }

    fn roots(&self) -> Result<Vec<Root>> {
        Ok(self.roots.clone())
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = &blob.digest;
        let missing = || Error::missing_blob(&self.name, digest);
        match self.blobs.get(digest) {
            Some(Blob::Inline(b)) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            Some(Blob::Member(path)) => Ok(self.fs.open(path)?.ok_or_else(missing)?.0),
            None => Err(missing()),
        }
    }
}
