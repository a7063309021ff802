//! `inspect`: describe what a bundle holds, from its manifest and the
//! manifests inside it.
//!
//! Not for trust: it does not check the signature (signers are only
//! *claimed*) nor hash the layers; that is `verify`'s job. Not for printing;
//! the caller renders the [`Inspection`].
//!
//! What it reads are unverified claims, from anyone: the work is capped per
//! bundle ([`MAX_DESCRIBED_IMAGES`], [`MAX_MANIFEST_BYTES`]), and the
//! inspection says where it stopped short.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

use crate::bundle::format::{BlobRecord, BundleManifest, ImageRecord};
use crate::bundle::{read_stream, Bundle, OpenOptions, Opened, Received, StreamVisitor};
use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::image::Descriptor;
use crate::model::image::{media, platform_of_config, Parsed};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::plan::{read_node, Plan};
use crate::source::{Root, Source};

/// Images `inspect` describes at most; the rest are counted, not walked.
pub const MAX_DESCRIBED_IMAGES: usize = 1_000;

/// Bytes of manifests, indexes and configs `inspect` reads at most, over
/// the whole bundle (one envelope's worth).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// What `inspect` found; `inspect --json` prints it (docs/json.md).
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub format_version: u64,
    pub tool: String,
    pub created: String,
    /// Key ids the bundle claims; `inspect` does not check the signature.
    pub signed_by: Vec<String>,
    pub images: Vec<ImageInfo>,
    #[serde(rename = "blob_count")]
    pub blobs: usize,
    /// Named `bytes` as in `pack` and `verify`: every blob once.
    #[serde(rename = "bytes")]
    pub total_bytes: u64,
    /// Bytes stored once but used by more than one image.
    pub shared_bytes: u64,
    /// Why some images are not described, when inspect stopped short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_short: Option<String>,
    /// For a delta bundle: what it expects and from which bases, as it
    /// claims (`blob_count` and `bytes` are what it carries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::bundle::DeltaReport>,
}

#[derive(Debug, Serialize)]
pub struct ImageInfo {
    pub name: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<String>,
    /// All bytes the image needs, shared or not.
    pub size: u64,
    /// The part of `size` that other images use too.
    pub shared_bytes: u64,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// Signatures, SBOMs and attestations that refer to this image: by
    /// `subject`, or by a cosign or referrers-fallback tag naming its digest.
    pub referrers: Vec<String>,
    /// For a referrer: the image it refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// Opens a bundle for [`inspect`]: labels and structure only, since hashing
/// every volume is verify's job. If that much fails, a full check names the
/// damage (and parity may repair it).
pub fn open(path: &Path) -> Result<Bundle<Opened>> {
    let quick = OpenOptions {
        check: false,
        repair: true,
        degraded: false,
    };
    match Bundle::<Opened>::open_with(path, quick) {
        Err(Error::BadBundle { .. }) => Bundle::<Opened>::open(path),
        other => other,
    }
}

/// Describes a bundle from its manifest and its manifests' contents.
pub fn inspect(bundle: &Bundle<Opened>) -> Result<Inspection> {
    let claims = bundle.read_claims()?;
    describe(
        claims.manifest(),
        &claims.unchecked_source(),
        bundle.signer_ids(),
    )
}

/// Describes a bundle stream (`inspect -`). The stream is read to its end,
/// every member checked against the manifest as `verify -` does, but the
/// signature is not: signers are claims, as for a file.
pub fn inspect_stream(input: impl Read) -> Result<Inspection> {
    let mut seen = Seen::default();
    let manifest = read_stream(input, None, &mut seen)?;
    describe(&manifest, &seen, seen.signers.clone())
}

/// What `inspect -` keeps of a stream: the claimed signers, the manifests
/// and the image configs (for platforms), as a source for [`describe`].
#[derive(Default)]
struct Seen {
    signers: Vec<String>,
    received: Option<Received>,
    configs: HashMap<Digest, std::sync::Arc<[u8]>>,
}

impl Source for Seen {
    fn name(&self) -> &str {
        "standard input"
    }

    fn roots(&self) -> Result<Vec<Root>> {
        self.received.as_ref().expect("start comes first").roots()
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        match self.configs.get(&blob.digest) {
            Some(raw) => Ok(Box::new(std::io::Cursor::new(raw.clone()))),
            None => self
                .received
                .as_ref()
                .expect("start comes first")
                .open_blob(blob),
        }
    }
}

impl StreamVisitor for Seen {
    fn claimed_signers(&mut self, key_ids: Vec<String>) {
        self.signers = key_ids;
    }

    fn start(&mut self, manifest: &BundleManifest, _id: &Digest) -> Result<()> {
        self.received = Some(Received::new(manifest)?);
        Ok(())
    }

    fn blob(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<()> {
        let received = self.received.as_mut().expect("start comes first");
        if received.keep(record, data)? {
            return Ok(());
        }
        // Configs are small and bounded; layers are only read past.
        let is_config =
            record.media_type == media::OCI_CONFIG || record.media_type.contains("container.image");
        if is_config && record.size <= crate::model::image::MAX_CONFIG_SIZE {
            let mut raw = Vec::with_capacity(record.size as usize);
            data.read_to_end(&mut raw)
                .map_err(|e| Error::io("read", "standard input", e))?;
            self.configs.insert(record.digest.clone(), raw.into());
        }
        Ok(())
    }
}

/// Describes a bundle manifest, reading image manifests and configs from
/// `source`.
fn describe(m: &BundleManifest, source: &dyn Source, signed_by: Vec<String>) -> Result<Inspection> {
    let expected: HashSet<&Digest> = m.expected().iter().map(|e| &e.digest).collect();
    let (per_image, stopped_short) = describe_images(source, &m.images, &expected)?;
    let shared = shared_blobs(&per_image);
    let mut images: Vec<ImageInfo> = per_image
        .into_iter()
        .map(|(mut info, blobs)| {
            info.shared_bytes = blobs
                .iter()
                .filter(|(d, _)| shared.contains(d))
                .map(|b| b.1)
                .sum();
            info
        })
        .collect();
    link_referrers(&mut images);
    Ok(Inspection {
        format_version: m.format_version,
        tool: m.tool.clone(),
        created: m.created.clone(),
        signed_by,
        images,
        blobs: m.blobs.len(),
        total_bytes: m.blobs.iter().map(|b| b.size).sum(),
        shared_bytes: m
            .blobs
            .iter()
            .filter(|b| shared.contains(&b.digest))
            .map(|b| b.size)
            .sum(),
        stopped_short,
        delta: crate::bundle::DeltaReport::of(m),
    })
}

/// An image and the blobs (digest, size) it needs.
type Described = (ImageInfo, Vec<(Digest, u64)>);

/// Each image as the manifest records it, with the blobs (digest, size) it
/// needs; `shared_bytes` and `referrers` are filled in later. Stops short
/// (and says why) at [`MAX_DESCRIBED_IMAGES`] or [`MAX_MANIFEST_BYTES`].
fn describe_images(
    inner: &dyn Source,
    records: &[ImageRecord],
    expected: &HashSet<&Digest>,
) -> Result<(Vec<Described>, Option<String>)> {
    let source = Budgeted {
        inner,
        left: AtomicU64::new(MAX_MANIFEST_BYTES),
        exhausted: AtomicBool::new(false),
    };
    let mut per_image = Vec::new();
    for (root, record) in inner.roots()?.into_iter().zip(records) {
        if per_image.len() == MAX_DESCRIBED_IMAGES {
            let why = format!(
                "described the first {MAX_DESCRIBED_IMAGES} of {} images, the most inspect describes",
                records.len()
            );
            return Ok((per_image, Some(why)));
        }
        let label = record
            .name
            .clone()
            .unwrap_or_else(|| record.digest.to_string());
        let mut plan = Plan::default();
        let walked = plan
            .add_root(0, &source, root.clone(), &[])
            .and_then(|()| platforms_of(&source, &root, &label, expected));
        let platforms = match walked {
            Ok(p) => p,
            Err(_) if source.exhausted.load(Ordering::Relaxed) => {
                let why = format!(
                    "described {} of {} images: their manifests and configs exceed the {} MiB inspect reads",
                    per_image.len(),
                    records.len(),
                    MAX_MANIFEST_BYTES >> 20
                );
                return Ok((per_image, Some(why)));
            }
            Err(e) => return Err(e),
        };
        let blobs: Vec<(Digest, u64)> = plan
            .blobs
            .iter()
            .map(|b| (b.descriptor.digest.clone(), b.descriptor.size))
            .collect();
        per_image.push((
            ImageInfo {
                name: record.name.clone(),
                digest: record.digest.clone(),
                media_type: record.media_type.clone(),
                platforms,
                // Sizes here come from unchecked image manifests.
                size: blobs.iter().fold(0u64, |sum, b| sum.saturating_add(b.1)),
                shared_bytes: 0,
                source: record.source.clone(),
                source_digest: record.source_digest.clone(),
                referrers: Vec::new(),
                subject: record.subject.clone(),
            },
            blobs,
        ));
    }
    Ok((per_image, None))
}

/// A source that reads at most a budget of bytes, for claims from anyone.
struct Budgeted<'a> {
    inner: &'a dyn Source,
    left: AtomicU64,
    exhausted: AtomicBool,
}

impl Source for Budgeted<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn roots(&self) -> Result<Vec<Root>> {
        self.inner.roots()
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let took = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(blob.size)
            });
        if took.is_err() {
            self.exhausted.store(true, Ordering::Relaxed);
            return Err(Error::Unsupported {
                what: format!("{}: blob {}", self.inner.name(), blob.digest),
                reason: format!(
                    "inspect reads at most {} MiB of manifests",
                    MAX_MANIFEST_BYTES >> 20
                ),
            });
        }
        self.inner.open_blob(blob)
    }
}

/// A blob counts as shared when images with different roots use it.
fn shared_blobs(per_image: &[Described]) -> HashSet<Digest> {
    let mut roots_using: HashMap<&Digest, HashSet<&Digest>> = HashMap::new();
    for (info, blobs) in per_image {
        for (d, _) in blobs {
            roots_using.entry(d).or_default().insert(&info.digest);
        }
    }
    roots_using
        .iter()
        .filter(|(_, users)| users.len() > 1)
        .map(|(d, _)| (*d).clone())
        .collect()
}

/// Names, for each image, the images that refer to it: by `subject`, or by
/// a cosign or referrers-fallback tag (`sha256-HEX`, `sha256-HEX.sig`).
/// One pass to index the referrers by the digest they name, one to look
/// each image up: linear in the images.
fn link_referrers(images: &mut [ImageInfo]) {
    let mut by_hex: HashMap<String, Vec<String>> = HashMap::new();
    for i in images.iter() {
        let label = i.name.clone().unwrap_or_else(|| i.digest.to_string());
        let tag = i
            .name
            .as_deref()
            .and_then(|n| Reference::parse(n).ok())
            .and_then(|r| r.tag);
        let named = tag
            .as_deref()
            .and_then(|t| t.strip_prefix("sha256-"))
            .map(|rest| {
                rest.split_once('.')
                    .map_or(rest, |(hex, _)| hex)
                    .to_string()
            });
        let subject = i.subject.as_ref().map(|d| d.hex().to_string());
        let mut targets: Vec<String> = named.into_iter().chain(subject).collect();
        targets.dedup();
        for hex in targets {
            by_hex.entry(hex).or_default().push(label.clone());
        }
    }
    for image in images.iter_mut() {
        image.referrers = by_hex.get(image.digest.hex()).cloned().unwrap_or_default();
    }
}

/// An index's platforms (attestation entries left out), or the platform in
/// a single image's config.
/// A delta's expected config is not there to read: no platform is shown.
fn platforms_of(
    source: &dyn Source,
    root: &Root,
    label: &str,
    expected: &HashSet<&Digest>,
) -> Result<Vec<String>> {
    let node = read_node(source, &root.descriptor, label)?;
    Ok(match node.parsed {
        Parsed::Manifest { config, .. } if expected.contains(&config.digest) => Vec::new(),
        Parsed::Index { manifests } => manifests
            .iter()
            .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"))
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect(),
        Parsed::Manifest { config, .. } if config.size <= crate::model::image::MAX_CONFIG_SIZE => {
            let mut raw = Vec::new();
            let r = source.open_blob(&config)?;
            std::io::Read::read_to_end(
                &mut VerifyingReader::new(
                    r,
                    config.digest.clone(),
                    config.size,
                    format!("{label}: config"),
                ),
                &mut raw,
            )
            .map_err(|e| Error::io("read", source.name(), e))?;
            let is_image = config.media_type == media::OCI_CONFIG
                || config.media_type.contains("container.image");
            platform_of_config(&raw)
                .filter(|_| is_image)
                .map(|p| vec![p.to_string()])
                .unwrap_or_default()
        }
        Parsed::Manifest { .. } => Vec::new(),
    })
}
