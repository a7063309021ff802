//! Reads a bundle once, in order, from a stream (standard input, a data
//! diode), for `verify -` and `import -`.
//!
//! The signed manifest is the first member, so it is checked before a
//! single blob is looked at; every later member must be the one it names,
//! with its size and digest. A [`StreamVisitor`] receives each blob as a
//! reader that fails at its end if the digest is wrong. Nothing here seeks:
//! the seek table, last in the stream, is skipped like any skippable frame.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use super::format::*;
use super::reader::{parse_manifest, root_of};
use super::sign::Envelope;
use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::image::{media, Descriptor};
use crate::model::Digest;
use crate::plan::Plan;
use crate::source::{Root, Source};

pub trait StreamVisitor {
    /// The signed manifest arrived and checked out; no blob was read yet.
    /// `id` is the digest of the signed manifest bytes.
    fn start(&mut self, manifest: &BundleManifest, id: &Digest) -> Result<()>;

    /// One blob, in manifest order. `data` yields its bytes and fails at the
    /// end if size or digest are wrong; what the visitor leaves unread is
    /// read (and checked) after it returns.
    fn blob(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<()>;
}

const STREAM: &str = "standard input";

/// A read error inside member `name`: digest and size problems pass
/// through as they are; anything else means the stream broke.
fn broken(name: &str, e: std::io::Error) -> Error {
    match Error::io("read", STREAM, e) {
        Error::Io { source, .. } => Error::bad_bundle(
            STREAM,
            format!("member {name}: the stream is damaged or cut short ({source})"),
        ),
        other => other,
    }
}

/// Reads a whole bundle stream. `key` is the trusted signer, or `None` when
/// the user accepted unsigned bundles.
pub fn read_stream(
    input: impl Read,
    key: Option<&VerifyingKey>,
    visitor: &mut dyn StreamVisitor,
) -> Result<BundleManifest> {
    let path = Path::new(STREAM);
    let bad = |p: String| Error::bad_bundle(path, p);
    let decoder = zstd::stream::read::Decoder::new(input)
        .map_err(|e| bad(format!("not a zstd stream: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    let mut position = 0usize;
    let mut next_member = |name: &str, size: Option<u64>| -> Result<tar::Entry<'_, _>> {
        let entry = entries
            .next()
            .ok_or_else(|| {
                bad(format!(
                    "the stream ends before member {position} ({name}): it is truncated"
                ))
            })?
            .map_err(|e| bad(format!("member {position}: {e}")))?;
        let got = entry
            .path()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        if !entry.header().entry_type().is_file() || got != name {
            return Err(bad(format!(
                "member {position} is {got:?}, but {name} belongs there"
            )));
        }
        if let Some(s) = size.filter(|s| *s != entry.size()) {
            return Err(bad(format!(
                "member {name} has {} bytes, but the signed manifest says {s}",
                entry.size()
            )));
        }
        position += 1;
        Ok(entry)
    };

    // The signed manifest, checked before anything else is used.
    let mut raw = Vec::new();
    next_member(ENVELOPE_NAME, None)?
        .take(MAX_ENVELOPE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| bad(e.to_string()))?;
    let envelope: Envelope = serde_json::from_slice(&raw)
        .map_err(|e| bad(format!("{ENVELOPE_NAME} is not a DSSE envelope: {e}")))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(bad(format!(
            "{ENVELOPE_NAME} does not carry an airlock bundle manifest"
        )));
    }
    if let Some(k) = key {
        envelope.verify(k).map_err(|problem| Error::Signature {
            path: path.to_path_buf(),
            problem,
        })?;
    }
    let payload = envelope.payload_bytes().map_err(bad)?;
    let manifest = parse_manifest(path, &payload)?;

    let mut layout = Vec::new();
    next_member(OCI_LAYOUT_NAME, Some(crate::oci::OCI_LAYOUT.len() as u64))?
        .read_to_end(&mut layout)
        .map_err(|e| bad(e.to_string()))?;
    if layout != crate::oci::OCI_LAYOUT {
        return Err(bad(
            "member oci-layout does not hold the expected layout version".into(),
        ));
    }
    let entry = next_member(INDEX_NAME, Some(manifest.index.size))?;
    std::io::copy(
        &mut VerifyingReader::new(
            entry,
            manifest.index.digest.clone(),
            manifest.index.size,
            "member index.json",
        ),
        &mut std::io::sink(),
    )
    .map_err(|e| broken(INDEX_NAME, e))?;

    visitor.start(&manifest, &Digest::of(&payload))?;
    for record in &manifest.blobs {
        let name = record.digest.layout_path();
        let entry = next_member(&name, Some(record.size))?;
        let mut data = VerifyingReader::new(
            entry,
            record.digest.clone(),
            record.size,
            format!("member {name}"),
        );
        visitor.blob(record, &mut data).map_err(|e| match e {
            Error::Io { source, .. } => broken(&name, source),
            e => e,
        })?;
        std::io::copy(&mut data, &mut std::io::sink()).map_err(|e| broken(&name, e))?;
    }
    if let Some(extra) = entries.next() {
        let name = extra
            .ok()
            .and_then(|e| e.path().ok().map(|p| p.to_string_lossy().to_string()))
            .unwrap_or_default();
        return Err(bad(format!(
            "member {name:?} follows the last blob the signed manifest names"
        )));
    }
    Ok(manifest)
}

/// Manifests kept from a stream, as a [`Source`] for planning.
pub struct Received {
    roots: Vec<Root>,
    manifests: HashMap<Digest, Arc<[u8]>>,
}

impl Received {
    pub fn new(manifest: &BundleManifest) -> Result<Received> {
        Ok(Received {
            roots: manifest.images.iter().map(root_of).collect::<Result<_>>()?,
            manifests: HashMap::new(),
        })
    }

    /// Keeps a manifest or index blob; other blobs are not kept.
    pub fn keep(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<bool> {
        if !(media::is_manifest(&record.media_type) || media::is_index(&record.media_type)) {
            return Ok(false);
        }
        let mut raw = Vec::with_capacity(record.size as usize);
        data.take(crate::model::image::MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut raw)
            .map_err(|e| Error::io("read", STREAM, e))?;
        self.manifests.insert(record.digest.clone(), raw.into());
        Ok(true)
    }
}

impl Source for Received {
    fn name(&self) -> &str {
        STREAM
    }

    fn roots(&self) -> Result<Vec<Root>> {
        Ok(self.roots.clone())
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        match self.manifests.get(&blob.digest) {
            Some(raw) => Ok(Box::new(std::io::Cursor::new(raw.clone()))),
            None => Err(Error::MissingBlob {
                source_name: STREAM.into(),
                digest: blob.digest.clone(),
                image: None,
            }),
        }
    }
}

/// `verify -`: reads every member, then checks that each image finds all
/// its blobs and that no blob is left unused.
pub fn verify_stream(input: impl Read, key: Option<&VerifyingKey>) -> Result<super::VerifyReport> {
    struct Check {
        received: Option<Received>,
    }
    impl StreamVisitor for Check {
        fn start(&mut self, manifest: &BundleManifest, _: &Digest) -> Result<()> {
            self.received = Some(Received::new(manifest)?);
            Ok(())
        }
        fn blob(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<()> {
            self.received
                .as_mut()
                .expect("start comes first")
                .keep(record, data)?;
            Ok(())
        }
    }
    let mut check = Check { received: None };
    let manifest = read_stream(input, key, &mut check)?;
    let received = check.received.expect("start comes first");
    let mut used = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for root in received.roots()? {
        let mut plan = Plan::default();
        match plan.add_root(0, &received, root, &[]) {
            Ok(()) => used.extend(plan.blobs.into_iter().map(|b| b.descriptor.digest)),
            Err(e) => problems.push(e),
        }
    }
    for b in &manifest.blobs {
        if !used.contains(&b.digest) {
            problems.push(Error::bad_bundle(
                STREAM,
                format!("blob {} is in the bundle but no image uses it", b.digest),
            ));
        }
    }
    for d in &used {
        if !manifest.blobs.iter().any(|b| &b.digest == d) {
            problems.push(Error::bad_bundle(
                STREAM,
                format!("an image needs blob {d}, which the bundle does not hold"),
            ));
        }
    }
    Error::many(problems)?;
    Ok(super::VerifyReport {
        images: manifest.images.len(),
        blobs: manifest.blobs.len(),
        bytes: manifest.blobs.iter().map(|b| b.size).sum(),
        signed_by: None,
        notices: Vec::new(),
    })
}
