//! Walks the images of one or more sources into a [`Plan`]: the images to
//! carry and every blob they need, each once, in push order.
//!
//! This is the one place that reads manifests, checks their digests, applies
//! `--platform` and removes duplicates; sources and sinks stay simple. It
//! reads only manifests and indexes here; configs and layers are streamed
//! later, when a sink asks for them. Not for moving bytes ([`crate::sink::copy`]
//! does) nor for knowing any format: it sees sources only through
//! [`crate::source::Source`].

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::image::{
    platform_of_config, Descriptor, Node, Parsed, Platform, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE,
};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::source::{Root, Source};

/// Nesting deeper than index → index → manifest is refused; it also stops
/// hostile documents from recursing without end.
pub const MAX_DEPTH: usize = 4;

const ATTESTATION_TYPE: &str = "vnd.docker.reference.type";
const ATTESTATION_DIGEST: &str = "vnd.docker.reference.digest";

#[derive(Clone, Debug)]
pub struct PlannedImage {
    pub name: Option<Reference>,
    /// The source as the user wrote it.
    pub source: String,
    /// The root as it will be stored: the source's own, or a filtered one.
    pub descriptor: Descriptor,
    /// The source's root digest when `--platform` replaced it.
    pub source_digest: Option<Digest>,
    /// For a referrer: the manifest it refers to.
    pub subject: Option<Digest>,
}

impl PlannedImage {
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => format!("{}@{}", self.source, self.descriptor.digest.short()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlannedBlob {
    pub descriptor: Descriptor,
    /// Index of the source that holds it.
    pub origin: usize,
    /// Bytes already read and verified (manifests, indexes), or made here.
    pub inline: Option<Arc<[u8]>>,
    /// The first image that needs it, for messages.
    pub needed_by: String,
}

impl PlannedBlob {
    pub fn label(&self) -> String {
        format!("blob {} of {}", self.descriptor.digest, self.needed_by)
    }
}

/// Every image and blob to carry. Blobs are in push order: each appears after
/// every blob it refers to, so a registry accepts them in this order.
#[derive(Default, Debug)]
pub struct Plan {
    pub images: Vec<PlannedImage>,
    pub blobs: Vec<PlannedBlob>,
    seen: HashMap<Digest, usize>,
    /// Images by name, and unnamed roots by digest: the duplicate checks
    /// are lookups, not scans of every image so far.
    named: HashMap<Reference, usize>,
    unnamed: HashSet<Digest>,
    /// The platforms given are a default (export's host platform for a
    /// docker-archive), not the user's filter: they choose among an
    /// index's entries, but a single-platform image passes as it is.
    pub platforms_are_default: bool,
}

impl Plan {
    /// Adds every root `source` offers, filtered to `platforms` when not empty.
    pub fn add_source(
        &mut self,
        origin: usize,
        source: &dyn Source,
        platforms: &[Platform],
    ) -> Result<()> {
        for root in source.roots()? {
            self.add_root(origin, source, root, platforms)?;
        }
        Ok(())
    }

    /// Takes the blobs `leave` selects out of the plan (a delta expects
    /// them instead of carrying them), returning them in plan order. The
    /// images stay: they are still described whole.
    pub fn take_blobs(&mut self, leave: impl Fn(&PlannedBlob) -> bool) -> Vec<PlannedBlob> {
        let (taken, kept) = std::mem::take(&mut self.blobs)
            .into_iter()
            .partition(|b| leave(b));
        self.blobs = kept;
        self.seen = self
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.descriptor.digest.clone(), i))
            .collect();
        taken
    }

    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.descriptor.size).sum()
    }

    /// Adds one root of `source`, filtered to `platforms` when not empty.
    pub fn add_root(
        &mut self,
        origin: usize,
        source: &dyn Source,
        root: Root,
        platforms: &[Platform],
    ) -> Result<()> {
        let label = match &root.name {
            Some(n) => n.to_string(),
            None => format!("{}@{}", source.name(), root.descriptor.digest.short()),
        };
        if let Some(name) = &root.name {
            if let Some(other) = self.named.get(name).map(|&i| &self.images[i]) {
                if other.descriptor.digest != root.descriptor.digest
                    || other.source != source.name()
                {
                    return Err(Error::Usage(format!(
                        "image {name} is given twice, by {} and by {}; name each image once",
                        other.source,
                        source.name()
                    )));
                }
                return Ok(());
            }
        }
        if root.name.is_none() && self.unnamed.contains(&root.descriptor.digest) {
            // The same unnamed image (a referrer found twice) is carried once.
            return Ok(());
        }
        let node = read_node(source, &root.descriptor, &label)?;
        let source_digest = root.descriptor.digest.clone();
        let node = match (&node.parsed, platforms.is_empty()) {
            (Parsed::Index { manifests }, false) => {
                match filter_index(&node, manifests, platforms, &label)? {
                    Filtered::One(child) => read_node(source, &child, &label)?,
                    Filtered::Many(index) => *index,
                }
            }
            (Parsed::Manifest { config, .. }, false)
                if root.subject.is_none() && !self.platforms_are_default =>
            {
                check_platform(source, config, platforms, &label)?;
                node
            }
            _ => node,
        };
        let descriptor = Descriptor {
            annotations: Default::default(),
            platform: None,
            ..node.descriptor.clone()
        };
        self.add_node(origin, source, node, &label, 0)?;
        match &root.name {
            Some(name) => {
                self.named.insert(name.clone(), self.images.len());
            }
            None => {
                self.unnamed.insert(root.descriptor.digest.clone());
            }
        }
        self.images.push(PlannedImage {
            name: root.name,
            source: source.name().to_string(),
            source_digest: (descriptor.digest != source_digest).then_some(source_digest),
            subject: root.subject,
            descriptor,
        });
        Ok(())
    }

    fn add_node(
        &mut self,
        origin: usize,
        source: &dyn Source,
        node: Node,
        label: &str,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Unsupported {
                what: format!("{label}: manifest {}", node.descriptor.digest),
                reason: format!("indexes nest more than {MAX_DEPTH} levels deep"),
            });
        }
        if self.already_has(&node.descriptor, label)? {
            return Ok(());
        }
        // An index's entries are manifests to read and walk; a manifest's
        // are config and layers, streamed later.
        let is_index = matches!(node.parsed, Parsed::Index { .. });
        for child in node.children() {
            if self.already_has(child, label)? {
                continue;
            }
            if is_index {
                let child_node = read_node(source, child, label)?;
                self.add_node(origin, source, child_node, label, depth + 1)?;
            } else {
                self.push(child.clone(), origin, None, label);
            }
        }
        let raw = node.raw.clone();
        self.push(node.descriptor, origin, Some(raw), label);
        Ok(())
    }

    /// True when the blob is planned already; a second descriptor for the same
    /// digest with another size means one of them lies.
    fn already_has(&self, d: &Descriptor, label: &str) -> Result<bool> {
        match self.seen.get(&d.digest) {
            Some(&i) if self.blobs[i].descriptor.size != d.size => Err(Error::SizeMismatch {
                what: format!("{label}: blob {}", d.digest),
                expected: self.blobs[i].descriptor.size,
                actual: d.size,
            }),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn push(
        &mut self,
        descriptor: Descriptor,
        origin: usize,
        inline: Option<Arc<[u8]>>,
        label: &str,
    ) {
        let descriptor = Descriptor {
            platform: None,
            annotations: Default::default(),
            artifact_type: None,
            ..descriptor
        };
        self.seen
            .insert(descriptor.digest.clone(), self.blobs.len());
        self.blobs.push(PlannedBlob {
            descriptor,
            origin,
            inline,
            needed_by: label.to_string(),
        });
    }
}

/// Reads a manifest or index, bounded in size, and checks its digest.
pub fn read_node(source: &dyn Source, d: &Descriptor, label: &str) -> Result<Node> {
    let what = format!("{label}: manifest {}", d.digest);
    if d.size > MAX_MANIFEST_SIZE {
        return Err(Error::Unsupported {
            what,
            reason: format!(
                "declared size {} is larger than the {MAX_MANIFEST_SIZE} bytes allowed for a manifest",
                d.size
            ),
        });
    }
    let reader = source.open_blob(d).map_err(|e| e.needed_by(label))?;
    let mut raw = Vec::with_capacity(d.size as usize);
    VerifyingReader::new(reader, d.digest.clone(), d.size, what.clone())
        .read_to_end(&mut raw)
        .map_err(|e| Error::io("read", source.name(), e))?;
    Node::parse(d.clone(), raw.into(), &what)
}

/// A single-platform image passes `--platform` only if its config names a
/// selected platform, as an index must hold one; an artifact whose config
/// names no platform passes. Referrers are not filtered: they follow their
/// subject.
fn check_platform(
    source: &dyn Source,
    config: &Descriptor,
    platforms: &[Platform],
    label: &str,
) -> Result<()> {
    let what = format!("{label}: config {}", config.digest);
    if config.size > MAX_CONFIG_SIZE {
        return Err(Error::Unsupported {
            what,
            reason: format!(
                "declared size {} is larger than the {MAX_CONFIG_SIZE} bytes allowed for a config",
                config.size
            ),
        });
    }
    let reader = source.open_blob(config).map_err(|e| e.needed_by(label))?;
    let mut raw = Vec::with_capacity(config.size as usize);
    VerifyingReader::new(reader, config.digest.clone(), config.size, what)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io("read", source.name(), e))?;
    match platform_of_config(&raw) {
        Some(p) if !platforms.iter().any(|w| w.selects(&p)) => Err(Error::NoMatchingPlatform {
            image: label.to_string(),
            wanted: platforms.iter().map(|p| p.to_string()).collect(),
            available: vec![p.to_string()],
        }),
        _ => Ok(()),
    }
}

enum Filtered {
    One(Descriptor),
    Many(Box<Node>),
}

/// Keeps the index entries whose platform one of `platforms` selects, plus
/// buildx attestation manifests that point at a kept entry.
///
/// One kept image manifest replaces the index (its digest, and any signature
/// made over it, survive). Several make a new index holding the original
/// entries verbatim; the new index has a new digest, recorded beside the
/// source digest in the bundle manifest.
fn filter_index(
    node: &Node,
    manifests: &[Descriptor],
    platforms: &[Platform],
    label: &str,
) -> Result<Filtered> {
    let is_attestation = |d: &Descriptor| d.annotations.contains_key(ATTESTATION_TYPE);
    let keep: Vec<bool> = manifests
        .iter()
        .map(|d| {
            !is_attestation(d)
                && d.platform
                    .as_ref()
                    .is_some_and(|p| platforms.iter().any(|w| w.selects(p)))
        })
        .collect();
    let kept_images: Vec<&Descriptor> = manifests
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(d, _)| d)
        .collect();
    if kept_images.is_empty() {
        let mut available: Vec<String> = manifests
            .iter()
            .filter(|d| !is_attestation(d))
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect();
        available.dedup();
        return Err(Error::NoMatchingPlatform {
            image: label.to_string(),
            wanted: platforms.iter().map(|p| p.to_string()).collect(),
            available,
        });
    }
    if kept_images.len() == 1 {
        return Ok(Filtered::One(kept_images[0].clone()));
    }
    if keep
        .iter()
        .zip(manifests)
        .all(|(k, d)| *k || is_attestation(d))
    {
        // Nothing filtered out: the source's own index, digest intact.
        return Ok(Filtered::Many(Box::new(node.clone())));
    }
    let kept_digests: HashSet<String> = kept_images.iter().map(|d| d.digest.to_string()).collect();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&node.raw).map_err(|e| Error::BadJson {
            what: label.to_string(),
            reason: e.to_string(),
        })?;
    let entries = doc
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let filtered: Vec<serde_json::Value> = entries
        .into_iter()
        .zip(manifests)
        .zip(&keep)
        .filter(|((_, d), k)| {
            **k || (is_attestation(d)
                && d.annotations
                    .get(ATTESTATION_DIGEST)
                    .is_some_and(|t| kept_digests.contains(t.as_str())))
        })
        .map(|((v, _), _)| v)
        .collect();
    doc["manifests"] = serde_json::Value::Array(filtered);
    let raw: Arc<[u8]> = serde_json::to_vec(&doc)
        .expect("JSON values serialise")
        .into();
    let descriptor = Descriptor::new(
        node.descriptor.media_type.clone(),
        Digest::of(&raw),
        raw.len() as u64,
    );
    Ok(Filtered::Many(Box::new(Node::parse(
        descriptor, raw, label,
    )?)))
}
