//! The damage report: what a damaged byte range takes away (which images,
//! which blobs), found through the signed manifest and the seek table,
//! whichever of them survive, and the [`Error::Damaged`] that carries it.
//!
//! Best effort by design: it reads what it can and never fails; nothing it
//! reads is trusted beyond naming things in a message. Not for detecting
//! damage (that is [`super::check`]) nor for repairing it.

use std::collections::BTreeSet;
use std::path::Path;

use super::format::*;
use super::index::BundleFile;
use super::sign::{decode_envelope, TrustedKeys};
use super::store::BundleBytes;
use crate::error::Error;
use crate::model::image::{self, Descriptor};

/// How deep the loss report follows indexes; deeper ones are not reported.
const LOSS_DEPTH: usize = 8;

pub(crate) fn damaged_error(
    path: &Path,
    problems: Vec<String>,
    lost: Vec<String>,
    hint: Option<String>,
) -> Error {
    Error::Damaged {
        path: path.to_path_buf(),
        problems,
        lost,
        hint: hint.unwrap_or_else(|| {
            "copy the volumes named again from the source media; bundles packed with --parity can be repaired (`airlock repair`)".into()
        }),
    }
}

/// Says what the damaged byte ranges take away: images and blobs, found
/// through the signed manifest and the seek table, whichever survive.
pub(crate) fn describe_loss(path: &Path, bytes: BundleBytes, ranges: &[(u64, u64)]) -> Vec<String> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let Ok((envelope_size, manifest, bytes)) = read_manifest(path, bytes, None) else {
        return vec![
            "the signed manifest at the start of the first volume, or the seek table at the end of the last, is lost, so no content can be identified".into(),
        ];
    };
    let members = manifest.members(envelope_size);
    let Ok(file) = BundleFile::from_sizes(path.to_path_buf(), bytes, &members) else {
        return vec!["the seek table does not match the signed manifest; which content is lost cannot be told".into()];
    };
    let (lost, images) = taken_by(&file, &manifest, ranges);
    if lost.is_empty() {
        return vec!["no image content: only bundle structure (labels, padding or the seek table) is damaged".into()];
    }
    let mut out = Vec::new();
    if !images.is_empty() {
        out.push(format!("images: {}", images.join(", ")));
    }
    let blobs: Vec<&str> = lost
        .iter()
        .map(|n| n.strip_prefix("blobs/sha256/").unwrap_or(n))
        .collect();
    let shown: Vec<String> = blobs
        .iter()
        .take(8)
        .map(|h| format!("sha256:{}", &h[..h.len().min(12)]))
        .collect();
    out.push(format!(
        "blobs: {}{}",
        shown.join(", "),
        if blobs.len() > 8 {
            format!(" and {} more", blobs.len() - 8)
        } else {
            String::new()
        }
    ));
    out
}

/// The members whose bytes (header included) meet any of `ranges`, by
/// name, and the names of the images that reach any of them.
pub(crate) fn taken_by(
    file: &BundleFile,
    manifest: &BundleManifest,
    ranges: &[(u64, u64)],
) -> (BTreeSet<String>, Vec<String>) {
    let hits = |(a, b): (u64, u64)| ranges.iter().any(|&(s, e)| s < b && a < e);
    let lost: BTreeSet<String> = file
        .members()
        .iter()
        .filter(|m| hits(file.member_range(m)))
        .map(|m| m.name.clone())
        .collect();
    if lost.is_empty() {
        return (lost, Vec::new());
    }
    // An image is lost when any blob it reaches is.
    let mut images = Vec::new();
    for record in &manifest.images {
        let root = Descriptor::new(
            record.media_type.clone(),
            record.digest.clone(),
            record.size,
        );
        if reaches_lost(file, &root, &lost, 0) {
            images.push(
                record
                    .name
                    .clone()
                    .unwrap_or_else(|| record.digest.to_string()),
            );
        }
    }
    (lost, images)
}

/// The envelope's size and the bundle manifest, if the first member and
/// the seek table can be read; the bytes come back either way. With `key`,
/// the signature over the raw payload is checked before it is parsed
/// (spec §10), and a payload that fails it is not read.
pub(crate) fn read_manifest(
    path: &Path,
    bytes: BundleBytes,
    key: Option<&TrustedKeys>,
) -> Result<(u64, BundleManifest, BundleBytes), BundleBytes> {
    let probe = BundleFile::from_sizes_or_back(path.to_path_buf(), bytes, &[])?;
    let size = probe.first_member_size();
    let bytes = probe.into_bytes();
    let Ok(size) = size else {
        return Err(bytes);
    };
    let file = BundleFile::from_sizes_or_back(
        path.to_path_buf(),
        bytes,
        &[(ENVELOPE_NAME.to_string(), size)],
    )?;
    let manifest = file
        .read_member(&file.members()[0], MAX_ENVELOPE)
        .ok()
        .and_then(|raw| decode_envelope(&raw).ok())
        .filter(|signed| key.is_none_or(|k| signed.verify(k).is_ok()))
        .and_then(|signed| BundleManifest::from_payload(path, signed.payload()).ok());
    let bytes = file.into_bytes();
    match manifest {
        Some(manifest) => Ok((size, manifest, bytes)),
        None => Err(bytes),
    }
}

fn reaches_lost(file: &BundleFile, d: &Descriptor, lost: &BTreeSet<String>, depth: usize) -> bool {
    let name = d.digest.layout_path();
    if lost.contains(&name) {
        return true;
    }
    if depth > LOSS_DEPTH
        || !(image::media::is_index(&d.media_type) || image::media::is_manifest(&d.media_type))
    {
        return false;
    }
    let Some(m) = file.member(&name) else {
        return false;
    };
    let Ok(raw) = file.read_member(m, MAX_MANIFEST) else {
        return true;
    };
    let Ok(node) = image::Node::parse(d.clone(), raw.into(), &name) else {
        return true;
    };
    node.children()
        .into_iter()
        .any(|c| reaches_lost(file, c, lost, depth + 1))
}
