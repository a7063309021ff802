//! Offline verification of a whole bundle: every rule of the format spec,
//! every blob's digest, and the consistency of manifests, index and the
//! signed bundle manifest. Blobs are hashed in parallel on rayon.
//!
//! Not for the signature (checked before the manifest is even parsed, in
//! [`super::open`]) nor for streams ([`super::stream`] checks as it reads).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;

use rayon::prelude::*;
use serde::Serialize;

use super::format::*;
use super::index::BundleFile;
use super::source::BundleSource;
use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::Digest;
use crate::oci::ANNOTATION_REF_NAME;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::source::Source;

/// What `verify` checked; `verify --json` prints it (docs/json.md).
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    #[serde(rename = "image_count")]
    pub images: usize,
    #[serde(rename = "blob_count")]
    pub blobs: usize,
    pub bytes: u64,
    /// The key id that signed it, when one was checked. Shown as a list
    /// (empty: not checked), the signer's one shape in every report.
    #[serde(serialize_with = "as_list")]
    pub signed_by: Option<String>,
    /// What opening found and did: volumes repaired from parity, files
    /// named out of order, damaged parity.
    pub notices: Vec<String>,
    /// For a delta bundle: what it expects and from which bases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
}

/// What a delta bundle expects the far side to hold (spec §16).
#[derive(Clone, Debug, Serialize)]
pub struct DeltaReport {
    /// Blobs its images need that it does not carry.
    pub expected_count: usize,
    pub expected_bytes: u64,
    /// The bases it was packed against, in order.
    pub bases: Vec<BaseRecord>,
    /// With `verify --with`: the bases given, which supply every expected
    /// blob. Left out when none was given (the expectations unchecked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplied_by: Vec<String>,
    /// The expected blobs themselves, for `verify --with`; not printed.
    #[serde(skip)]
    pub expected: Vec<ExpectedBlob>,
}

impl DeltaReport {
    pub fn of(manifest: &BundleManifest) -> Option<DeltaReport> {
        manifest.delta.as_ref().map(DeltaReport::of_delta)
    }

    pub fn of_delta(d: &Delta) -> DeltaReport {
        DeltaReport {
            expected_count: d.expected.len(),
            expected_bytes: d.expected.iter().map(|e| e.size).sum(),
            bases: d.bases.clone(),
            supplied_by: Vec::new(),
            expected: d.expected.clone(),
        }
    }
}

fn as_list<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(value.iter())
}

/// Checks everything; all problems are reported together. Reached through
/// [`super::Bundle::verify`], which is where a bundle becomes `Verified`.
pub(crate) fn check_all(
    file: &BundleFile,
    manifest: &BundleManifest,
    progress: &Progress,
) -> Result<VerifyReport> {
    check_members(file, manifest)?;
    check_layout_and_index(file, manifest)?;
    let source = BundleSource::new(file, manifest);
    let (users, mut problems) = check_images(file.path(), &source, manifest)?;
    problems.extend(check_digests(file, manifest, &users, progress));
    Error::many(problems)?;
    Ok(VerifyReport {
        images: manifest.images.len(),
        blobs: manifest.blobs.len(),
        bytes: manifest.blobs.iter().map(|b| b.size).sum(),
        signed_by: None,
        notices: file.notices().to_vec(),
        delta: DeltaReport::of(manifest),
    })
}

/// 1. The members are exactly the ones the signed manifest names, in order.
fn check_members(file: &BundleFile, manifest: &BundleManifest) -> Result<()> {
    let bad = |p: String| Error::bad_bundle(file.path(), p);
    let expected = manifest.members(file.members()[0].size);
    for (i, (name, size)) in expected.iter().enumerate() {
        let Some(m) = file.members().get(i) else {
            return Err(bad(format!(
                "member {i} should be {name}, but the archive has only {i} members"
            )));
        };
        if &m.name != name {
            return Err(bad(format!(
                "member {i} is {}, but the signed manifest expects {name} there",
                m.name
            )));
        }
        if m.size != *size {
            return Err(bad(format!(
                "member {name} has {} bytes, but the signed manifest says {size}",
                m.size
            )));
        }
    }
    if let Some(extra) = file.members().get(expected.len()) {
        return Err(bad(format!(
            "member {} is not in the signed manifest",
            extra.name
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = manifest.blobs.iter().find(|b| !seen.insert(&b.digest)) {
        return Err(bad(format!("the manifest lists blob {} twice", dup.digest)));
    }
    Ok(())
}

/// 2. oci-layout and index.json.
fn check_layout_and_index(file: &BundleFile, manifest: &BundleManifest) -> Result<()> {
    let bad = |p: String| Error::bad_bundle(file.path(), p);
    let layout = file.read_member(&file.members()[1], MAX_OCI_LAYOUT)?;
    if layout != crate::oci::OCI_LAYOUT {
        return Err(bad(
            "member oci-layout does not hold the expected layout version".into(),
        ));
    }
    let index = file.read_member(&file.members()[2], MAX_INDEX)?;
    crate::integrity::verify_bytes(
        &index,
        &manifest.index.digest,
        manifest.index.size,
        "member index.json",
    )?;
    check_index(&index, manifest).map_err(|p| bad(format!("member index.json: {p}")))
}

/// Which images use each blob.
type Users = HashMap<Digest, Vec<String>>;

/// 3. Which blobs each image needs, reading (and checking) its manifests.
fn check_images(
    path: &std::path::Path,
    source: &BundleSource<'_>,
    manifest: &BundleManifest,
) -> Result<(Users, Vec<Error>)> {
    let bad = |p: String| Error::bad_bundle(path, p);
    let mut users: Users = HashMap::new();
    let mut problems = Vec::new();
    let listed: HashMap<&Digest, &BlobRecord> =
        manifest.blobs.iter().map(|r| (&r.digest, r)).collect();
    // A delta's image graph may end in an expected blob instead (§16).
    let expected: HashMap<&Digest, u64> = manifest
        .expected()
        .iter()
        .map(|e| (&e.digest, e.size))
        .collect();
    for root in source.roots()? {
        let label = root
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| root.descriptor.digest.to_string());
        let mut plan = Plan::default();
        if let Err(e) = plan.add_root(0, source, root, &[]) {
            problems.push(e);
            continue;
        }
        for b in &plan.blobs {
            users
                .entry(b.descriptor.digest.clone())
                .or_default()
                .push(label.clone());
            let size = listed
                .get(&b.descriptor.digest)
                .map(|r| r.size)
                .or_else(|| expected.get(&b.descriptor.digest).copied());
            match size {
                None => problems.push(bad(format!(
                    "{label} needs blob {}, which the bundle does not hold",
                    b.descriptor.digest
                ))),
                Some(size) if size != b.descriptor.size => problems.push(bad(format!(
                    "{label} declares blob {} as {} bytes, the bundle manifest as {size}",
                    b.descriptor.digest, b.descriptor.size
                ))),
                Some(_) => {}
            }
        }
    }
    for b in &manifest.blobs {
        if !users.contains_key(&b.digest) {
            problems.push(bad(format!(
                "blob {} is in the bundle but no image uses it",
                b.digest
            )));
        }
    }
    for e in manifest.expected() {
        if !users.contains_key(&e.digest) {
            problems.push(bad(format!(
                "the delta expects blob {}, but no image uses it",
                e.digest
            )));
        }
    }
    Ok((users, problems))
}

/// 4. Every blob's digest, in parallel, largest first for balance.
fn check_digests(
    file: &BundleFile,
    manifest: &BundleManifest,
    users: &Users,
    progress: &Progress,
) -> Vec<Error> {
    let path = file.path();
    let mut order: Vec<&BlobRecord> = manifest.blobs.iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.size));
    order
        .par_iter()
        .with_max_len(1)
        .filter_map(|b| {
            let member = file.member(&b.digest.layout_path())?;
            let what = match users.get(&b.digest) {
                Some(u) => format!("member {} (used by {})", member.name, u.join(", ")),
                None => format!("member {}", member.name),
            };
            let check = || -> Result<()> {
                let r = file.open_member(member)?;
                let mut v = VerifyingReader::new(r, b.digest.clone(), b.size, what.clone());
                // Hash straight out of the decompressed frame: no copy.
                loop {
                    let n = v.fill_buf().map_err(|e| Error::io("read", path, e))?.len();
                    if n == 0 {
                        return Ok(());
                    }
                    v.consume(n);
                    progress.inc(n as u64);
                }
            };
            check().err().map(|e| annotate(e, &what))
        })
        .collect()
}

/// Damage found while decompressing names the frame; add the images.
fn annotate(e: Error, what: &str) -> Error {
    match e {
        Error::BadBundle { path, problem } if !problem.contains("used by") => Error::BadBundle {
            path,
            problem: format!("{problem}; {what}"),
        },
        e => e,
    }
}

/// index.json must list exactly the manifest's images, by digest, type, size
/// and name.
pub(super) fn check_index(
    raw: &[u8],
    manifest: &BundleManifest,
) -> std::result::Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: Digest,
        size: u64,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Entry>,
    }
    let index: Index = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    let got: BTreeSet<(String, Digest, u64, Option<String>)> = index
        .manifests
        .into_iter()
        .map(|e| {
            (
                e.media_type,
                e.digest,
                e.size,
                e.annotations.get(ANNOTATION_REF_NAME).cloned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, Digest, u64, Option<String>)> = manifest
        .images
        .iter()
        .map(|i| {
            (
                i.media_type.clone(),
                i.digest.clone(),
                i.size,
                i.name.clone(),
            )
        })
        .collect();
    if got != want {
        let missing: Vec<String> = want
            .difference(&got)
            .map(|w| format!("{} {}", w.3.as_deref().unwrap_or("-"), w.1))
            .collect();
        let extra: Vec<String> = got
            .difference(&want)
            .map(|w| format!("{} {}", w.3.as_deref().unwrap_or("-"), w.1))
            .collect();
        return Err(format!(
            "does not match the signed image list (missing: {}; unexpected: {})",
            if missing.is_empty() {
                "none".into()
            } else {
                missing.join(", ")
            },
            if extra.is_empty() {
                "none".into()
            } else {
                extra.join(", ")
            }
        ));
    }
    Ok(())
}
