//! Constants and structures of bundle format v1.
//!
//! These serve as documentation of `docs/bundle-format.md`, which is
//! normative; a change here is a change there, in the same commit.

use serde::{Deserialize, Serialize};

use crate::model::Digest;

/// The `formatVersion` this build writes and the only one it reads.
pub const FORMAT_VERSION: u64 = 1;

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
/// The envelope is parsed in memory; this bounds it (about 200 k blobs).
pub const MAX_ENVELOPE: u64 = 64 * 1024 * 1024;

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

/// Rounds a member size up to whole tar blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}
