//! Every constant and structure of the bundle format (version 1, and
//! version 2: a delta bundle, §16), and every limit the bundle readers
//! enforce, in one place.
//!
//! These serve as documentation of `docs/bundle-format.md`, which is
//! normative; a change here is a change there, in the same commit. Not for
//! code that reads or writes bytes: that is the rest of `bundle/`. The one
//! function here, [`BundleManifest::from_payload`], exists because the spec
//! orders it (the version is read before anything else is interpreted).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Digest;

/// The `formatVersion` of a whole bundle.
pub const FORMAT_VERSION: u64 = 1;
/// The `formatVersion` of a delta bundle (spec §16). A delta has its own
/// version so that a reader unaware of deltas refuses it by its version
/// instead of reading images whose blobs are elsewhere as damage.
pub const DELTA_FORMAT_VERSION: u64 = 2;

/// First tar member: the DSSE envelope around the bundle manifest.
pub const ENVELOPE_NAME: &str = "airlock-bundle.json";
/// DSSE `payloadType` of the bundle manifest.
pub const PAYLOAD_TYPE: &str = "application/vnd.airlock.bundle.manifest.v1+json";
/// Second and third tar members, as an OCI image layout requires.
pub const OCI_LAYOUT_NAME: &str = "oci-layout";
pub const INDEX_NAME: &str = "index.json";

/// Data frames hold at most this many decompressed bytes. Readers refuse
/// larger frames, which bounds the memory one frame can demand.
pub const MAX_FRAME_DATA: usize = 4 * 1024 * 1024;
/// A tar header frame is exactly one 512-byte block.
pub const BLOCK: usize = 512;
/// The end-of-archive frame: two zero blocks.
pub const END_FRAME: usize = 2 * BLOCK;

// Seek table (spec §2): zstd's seekable format.

/// Skippable frame header (8) plus seek table footer (9), with no entries.
pub const SEEK_TABLE_MIN: u64 = 17;

// Volume labels (spec §5).

/// Skippable-frame magic of a volume label (the seek table uses …5E).
pub const LABEL_MAGIC: u32 = 0x184D_2A5A;
/// Bytes of label content after the 8-byte skippable-frame header.
pub const LABEL_CONTENT: usize = 128;
/// A whole label frame.
pub const LABEL_LEN: usize = 8 + LABEL_CONTENT;
/// The first 8 bytes of a label's content.
pub const LABEL_TAG: &[u8; 8] = b"AIRLKVOL";
/// The label version this build writes and the only one it reads.
pub const LABEL_VERSION: u32 = 1;
/// The smallest `--split` size: frames are cut to an eighth of it, and a
/// frame must leave room for the label.
pub const MIN_VOLUME: u64 = 1_000_000;

// Parity files (spec §6).

/// The first 8 bytes of a parity file.
pub const PARITY_TAG: &[u8; 8] = b"AIRLKPAR";
/// The parity version this build writes and the only one it reads.
pub const PARITY_VERSION: u32 = 1;
/// A parity file's fixed header.
pub const PARITY_HEADER_LEN: u64 = 256;
/// At most this many data shards per stripe: bounds the memory one stripe
/// needs (`(width + recovery) × shard`) whatever the bundle's size.
pub const PARITY_MAX_WIDTH: u64 = 256;
/// Shard sizes the writer chooses between.
pub const PARITY_MIN_SHARD: u64 = 4 * 1024;
pub const PARITY_MAX_SHARD: u64 = 64 * 1024;
/// 1 PiB: keeps every size computed from a (hostile) parity header in range.
pub const PARITY_MAX_DATA: u64 = 1 << 50;

// Reader limits (spec "Reader limits"): what a reader refuses before it
// allocates for it.

/// The envelope is parsed in memory; this bounds it (about 200 k blobs).
/// The payload, the bundle manifest, is inside it and so bounded too.
pub const MAX_ENVELOPE: u64 = 64 * 1024 * 1024;
/// No bundle, and so no member and no sum of the blob sizes a manifest
/// states, is larger: sizes from the input stay far from `u64` overflow.
pub const MAX_BUNDLE: u64 = 1 << 50;
/// The `index.json` member, read whole to check it against the signed
/// image list: one entry per image record, so bounded like the manifest.
pub const MAX_INDEX: u64 = MAX_ENVELOPE;
/// The `oci-layout` member.
pub const MAX_OCI_LAYOUT: u64 = 4096;
/// An image manifest or index read from a bundle. The same bound as every
/// other source's (the plan enforces it for all of them), named here so
/// the spec's limit has one place in the bundle code.
pub const MAX_MANIFEST: u64 = crate::model::image::MAX_MANIFEST_SIZE;
/// An image config read to tell an image's platform (`inspect`); a larger
/// one is not read. The model's bound, shared with the other sources.
pub const MAX_CONFIG: u64 = crate::model::image::MAX_CONFIG_SIZE;
/// Indexes nest at most this deep (the plan's bound for every source).
pub const MAX_INDEX_DEPTH: usize = crate::plan::MAX_DEPTH;

/// The signed statement of what a bundle holds (the DSSE payload).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleManifest {
    pub format_version: u64,
    /// `airlock <version>` of the writer.
    pub tool: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Digest and size of the `index.json` member.
    pub index: BlobRecord,
    pub images: Vec<ImageRecord>,
    /// Every blob, in the order of the tar members that hold them.
    pub blobs: Vec<BlobRecord>,
    /// Present exactly in a delta bundle (`formatVersion` 2): the blobs its
    /// images need that it does not carry, and the bases said to hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// What a delta bundle expects the far side to hold already (spec §16).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    /// The bundles and inventories the delta was packed against, in the
    /// order given to `pack --against`.
    pub bases: Vec<BaseRecord>,
    /// Every blob an image of the delta refers to that the delta does not
    /// carry. Never a manifest or an index: a delta carries all of those.
    pub expected: Vec<ExpectedBlob>,
}

/// One base of a delta: a bundle, by its id, or an inventory, by the
/// SHA-256 of the inventory file's bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BaseRecord {
    pub kind: BaseKind,
    pub digest: Digest,
    /// How the base was named when the delta was packed (a file name, an
    /// inventory's source), for messages only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl BaseRecord {
    /// How messages name the base: its name and short digest.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            BaseKind::Bundle => "bundle",
            BaseKind::Inventory => "inventory",
        };
        match self.name.is_empty() {
            true => format!("{kind} {}", self.digest),
            false => format!("{kind} {} ({})", self.name, self.digest.short()),
        }
    }
}

impl Delta {
    /// The label of the base an expected blob names (in range: checked
    /// when the manifest was parsed).
    pub fn base_of(&self, blob: &ExpectedBlob) -> String {
        self.bases
            .get(blob.base)
            .map_or_else(|| format!("#{}", blob.base), BaseRecord::label)
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BaseKind {
    Bundle,
    Inventory,
}

/// A blob a delta needs but does not carry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedBlob {
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The position in `bases` of the first base that holds it.
    pub base: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// Full normalised reference; absent for an untagged image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The source argument the image was packed from.
    pub source: String,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The source's own digest, when `--platform` made a new index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// For a referrer (signature, SBOM, attestation): the manifest it refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
}

impl BundleManifest {
    /// Parses a DSSE payload as a bundle manifest. The format version is
    /// read and checked before anything else in it is interpreted. Checks
    /// no signature: callers decide whether the payload is trusted.
    pub fn from_payload(path: &Path, payload: &[u8]) -> Result<BundleManifest> {
        let bad = |p: String| Error::bad_bundle(path, p);
        if payload.len() as u64 > MAX_ENVELOPE {
            return Err(bad(format!(
                "the bundle manifest has {} bytes, more than the {MAX_ENVELOPE} allowed",
                payload.len()
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| bad(format!("the bundle manifest is not JSON: {e}")))?;
        let version = value
            .get("formatVersion")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("the bundle manifest has no formatVersion".into()))?;
        if version != FORMAT_VERSION && version != DELTA_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: DELTA_FORMAT_VERSION,
            });
        }
        let manifest: BundleManifest = serde_json::from_value(value)
            .map_err(|e| bad(format!("the bundle manifest is malformed: {e}")))?;
        let expected = manifest.expected();
        let total = manifest
            .blobs
            .iter()
            .map(|b| b.size)
            .chain(expected.iter().map(|e| e.size))
            .try_fold(manifest.index.size, |sum, s| sum.checked_add(s))
            .filter(|&t| t <= MAX_BUNDLE);
        if total.is_none() {
            return Err(bad(format!(
                "the bundle manifest states sizes that add up to more than the {MAX_BUNDLE} bytes a bundle may hold"
            )));
        }
        check_delta(&manifest).map_err(bad)?;
        Ok(manifest)
    }

    /// The blobs a delta expects the far side to hold; none for a whole
    /// bundle.
    pub fn expected(&self) -> &[ExpectedBlob] {
        self.delta.as_ref().map_or(&[], |d| &d.expected)
    }

    pub fn is_delta(&self) -> bool {
        self.delta.is_some()
    }

    /// The tar members this manifest calls for, in order, with their sizes
    /// (§3); the envelope's own size is known only from its header.
    pub fn members(&self, envelope_size: u64) -> Vec<(String, u64)> {
        let mut members = vec![
            (ENVELOPE_NAME.to_string(), envelope_size),
            (
                OCI_LAYOUT_NAME.to_string(),
                crate::oci::OCI_LAYOUT.len() as u64,
            ),
            (INDEX_NAME.to_string(), self.index.size),
        ];
        members.extend(self.blobs.iter().map(|b| (b.digest.layout_path(), b.size)));
        members
    }
}

/// The rules of §16 that the manifest alone decides: `delta` present
/// exactly at version 2, each expected blob listed once, not carried too,
/// never a manifest or an index, and its `base` one of `bases`.
fn check_delta(m: &BundleManifest) -> std::result::Result<(), String> {
    let delta = match (&m.delta, m.format_version) {
        (None, DELTA_FORMAT_VERSION) => {
            return Err(format!(
                "formatVersion {DELTA_FORMAT_VERSION} is a delta bundle, but the manifest has no delta"
            ))
        }
        (Some(_), v) if v != DELTA_FORMAT_VERSION => {
            return Err(format!(
                "the manifest has a delta, but formatVersion {v} is a whole bundle (a delta is {DELTA_FORMAT_VERSION})"
            ))
        }
        (None, _) => return Ok(()),
        (Some(d), _) => d,
    };
    if delta.bases.is_empty() {
        return Err("the delta names no base".into());
    }
    let carried: std::collections::HashSet<&Digest> = m.blobs.iter().map(|b| &b.digest).collect();
    let mut seen = std::collections::HashSet::new();
    for e in &delta.expected {
        if !seen.insert(&e.digest) {
            return Err(format!("the delta lists expected blob {} twice", e.digest));
        }
        if carried.contains(&e.digest) {
            return Err(format!(
                "blob {} is both carried and listed as expected",
                e.digest
            ));
        }
        if e.base >= delta.bases.len() {
            return Err(format!(
                "expected blob {} names base {}, but the delta has {} base(s)",
                e.digest,
                e.base,
                delta.bases.len()
            ));
        }
        if crate::model::image::media::is_manifest(&e.media_type)
            || crate::model::image::media::is_index(&e.media_type)
        {
            return Err(format!(
                "expected blob {} is a manifest or index ({}); a delta must carry those",
                e.digest, e.media_type
            ));
        }
    }
    Ok(())
}

/// Rounds a member size up to whole tar blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::image::media;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    /// A delta manifest carrying blob 1 and expecting blob 2 from one base.
    fn delta() -> serde_json::Value {
        serde_json::json!({
            "formatVersion": 2, "tool": "t", "created": "c",
            "index": {"digest": digest(0), "size": 1},
            "images": [],
            "blobs": [{"digest": digest(1), "size": 1}],
            "delta": {
                "bases": [{"kind": "bundle", "digest": digest(9)}],
                "expected": [{"digest": digest(2), "size": 5, "base": 0}],
            },
        })
    }

    fn parse(v: &serde_json::Value) -> std::result::Result<BundleManifest, String> {
        BundleManifest::from_payload(Path::new("b"), &serde_json::to_vec(v).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_delta_manifest_is_refused_unless_its_records_agree() {
        let m = parse(&delta()).unwrap();
        assert_eq!(m.expected().len(), 1);
        assert_eq!(
            m.delta.as_ref().unwrap().base_of(&m.expected()[0]),
            format!("bundle {}", digest(9))
        );
        type Change = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "has no delta",
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("delta"))),
            ),
            (
                "formatVersion 1 is a whole bundle",
                Box::new(|v| v["formatVersion"] = 1.into()),
            ),
            (
                "names no base",
                Box::new(|v| v["delta"]["bases"] = serde_json::json!([])),
            ),
            (
                "names base 1",
                Box::new(|v| v["delta"]["expected"][0]["base"] = 1.into()),
            ),
            (
                "both carried and listed",
                Box::new(|v| v["delta"]["expected"][0]["digest"] = serde_json::json!(digest(1))),
            ),
            (
                "twice",
                Box::new(|v| {
                    let e = v["delta"]["expected"][0].clone();
                    v["delta"]["expected"].as_array_mut().unwrap().push(e);
                }),
            ),
            (
                "a delta must carry those",
                Box::new(|v| v["delta"]["expected"][0]["mediaType"] = media::OCI_INDEX.into()),
            ),
            (
                "add up to more than",
                Box::new(|v| v["delta"]["expected"][0]["size"] = MAX_BUNDLE.into()),
            ),
        ];
        for (want, change) in cases {
            let mut v = delta();
            change(&mut v);
            let err = parse(&v).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
