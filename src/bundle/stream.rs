//! Reads a bundle once, in order, from a stream (standard input, a data
//! diode), for `verify -` and `import -`.
//!
//! The signed manifest is the first member, so it is checked before a
//! single blob is looked at; every later member must be the one it names,
//! with its size and digest. A [`StreamVisitor`] receives each blob as a
//! reader that fails at its end if the digest is wrong. Nothing here seeks:
//! the seek table, last in the stream, is never read.
//!
//! The tar members are read through the same ustar codec as the file reader
//! ([`super::tar`]), so a stream is accepted exactly when the file would be.
//! Not for random access (that is [`super::index`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use super::format::*;
use super::sign::decode_envelope;
use super::source::root_of;
use super::tar::{is_zero, padding, parse_header};
use crate::error::{into_io, Error, Result};
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

/// The tar members of a decompressed stream, read through the one ustar
/// codec ([`super::tar`]): each header parsed as the file reader parses it,
/// each member's padding checked, and the end-of-archive blocks.
struct Members<R> {
    input: R,
    /// Members read so far.
    position: usize,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Padding after the current member's data, not yet read.
    padding: u64,
    name: String,
}

impl<R: Read> Members<R> {
    fn new(input: R) -> Members<R> {
        Members {
            input,
            position: 0,
            remaining: 0,
            padding: 0,
            name: String::new(),
        }
    }

    /// Reads one 512-byte block; `None` at a clean end of the stream.
    fn block(&mut self, what: &str) -> Result<Option<[u8; BLOCK]>> {
        let mut block = [0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            match self.input.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Error::bad_bundle(
                        STREAM,
                        format!("the stream ends inside {what}: it is truncated"),
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::bad_bundle(
                        STREAM,
                        format!("{what}: the stream is damaged or cut short ({e})"),
                    ))
                }
            }
        }
        Ok(Some(block))
    }

    /// Reads and checks what is left of the current member: its data (when
    /// the caller left some) and its zero padding.
    fn finish_member(&mut self) -> Result<()> {
        std::io::copy(&mut MemberData { members: self }, &mut std::io::sink())
            .map_err(|e| broken(&self.name, e))?;
        Ok(())
    }

    /// The next member, which must be `name` (with `size`, when known).
    fn next(&mut self, name: &str, size: Option<u64>) -> Result<MemberData<'_, R>> {
        self.finish_member()?;
        let position = self.position;
        let bad = |p: String| Error::bad_bundle(STREAM, p);
        let what = format!("the tar header of member {position} ({name})");
        let block = match self.block(&what)? {
            Some(b) if !is_zero(&b) => b,
            _ => {
                return Err(bad(format!(
                    "the stream ends before member {position} ({name}): it is truncated"
                )))
            }
        };
        let (got, got_size) =
            parse_header(&block).map_err(|p| bad(format!("member {position}: {p}")))?;
        if got != name {
            return Err(bad(format!(
                "member {position} is {got:?}, but {name} belongs there"
            )));
        }
        if let Some(s) = size.filter(|s| *s != got_size) {
            return Err(bad(format!(
                "member {name} has {got_size} bytes, but the signed manifest says {s}"
            )));
        }
        self.position += 1;
        self.remaining = got_size;
        self.padding = padding(got_size);
        self.name = got;
        Ok(MemberData { members: self })
    }

    /// After the last member: the two zero blocks that end the archive.
    /// What follows them (the seek table) is not read.
    fn end(&mut self) -> Result<()> {
        self.finish_member()?;
        let bad = |p: String| Error::bad_bundle(STREAM, p);
        let what = "the end of the archive";
        let Some(first) = self.block(what)? else {
            return Err(bad(
                "the stream ends without the end-of-archive blocks: it is truncated".into(),
            ));
        };
        if !is_zero(&first) {
            let name = parse_header(&first).map(|(n, _)| n).unwrap_or_default();
            return Err(bad(format!(
                "member {name:?} follows the last blob the signed manifest names"
            )));
        }
        match self.block(what)? {
            Some(second) if is_zero(&second) => Ok(()),
            Some(_) => Err(bad(
                "the end of the archive is one zero block, not two".into()
            )),
            None => Err(bad(
                "the stream ends inside the end-of-archive blocks: it is truncated".into(),
            )),
        }
    }
}

/// The data of the current member; at its end, the padding is read and
/// must be zero.
struct MemberData<'a, R> {
    members: &'a mut Members<R>,
}

impl<R: Read> Read for MemberData<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let m = &mut *self.members;
        if m.remaining == 0 {
            if m.padding > 0 {
                let mut pad = [0u8; BLOCK];
                let pad = &mut pad[..m.padding as usize];
                m.input.read_exact(pad)?;
                m.padding = 0;
                if !is_zero(pad) {
                    return Err(into_io(Error::bad_bundle(
                        STREAM,
                        format!("member {}: the padding after its data is not zero", m.name),
                    )));
                }
            }
            return Ok(0);
        }
        let want = out
            .len()
            .min(usize::try_from(m.remaining).unwrap_or(usize::MAX));
        let n = m.input.read(&mut out[..want])?;
        if n == 0 && want > 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        m.remaining -= n as u64;
        Ok(n)
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
    let decoder = zstd::stream::read::Decoder::new(input)
        .map_err(|e| Error::bad_bundle(path, format!("not a zstd stream: {e}")))?;
    let mut members = Members::new(decoder);
    let (manifest, payload) = read_manifest(&mut members, key)?;
    read_layout_and_index(&mut members, &manifest)?;
    visitor.start(&manifest, &Digest::of(&payload))?;
    for record in &manifest.blobs {
        let name = record.digest.layout_path();
        let entry = members.next(&name, Some(record.size))?;
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
    members.end()?;
    Ok(manifest)
}

/// The signed manifest, checked before anything else is used: the
/// signature over the raw payload first, then the payload parsed.
fn read_manifest<R: Read>(
    members: &mut Members<R>,
    key: Option<&VerifyingKey>,
) -> Result<(BundleManifest, Vec<u8>)> {
    let path = Path::new(STREAM);
    let bad = |p: String| Error::bad_bundle(path, p);
    let mut raw = Vec::new();
    let entry = members.next(ENVELOPE_NAME, None)?;
    if entry.members.remaining > MAX_ENVELOPE {
        return Err(bad(format!(
            "member {ENVELOPE_NAME} has {} bytes, more than the {MAX_ENVELOPE} allowed",
            entry.members.remaining
        )));
    }
    let mut entry = entry;
    entry
        .read_to_end(&mut raw)
        .map_err(|e| broken(ENVELOPE_NAME, e))?;
    let signed = decode_envelope(&raw).map_err(bad)?;
    if let Some(k) = key {
        signed.verify(k).map_err(|problem| Error::Signature {
            path: path.to_path_buf(),
            problem,
        })?;
    }
    let manifest = BundleManifest::from_payload(path, signed.payload())?;
    Ok((manifest, signed.payload().to_vec()))
}

/// oci-layout, then index.json checked against the signed manifest.
fn read_layout_and_index<R: Read>(
    members: &mut Members<R>,
    manifest: &BundleManifest,
) -> Result<()> {
    let mut layout = Vec::new();
    members
        .next(OCI_LAYOUT_NAME, Some(crate::oci::OCI_LAYOUT.len() as u64))?
        .read_to_end(&mut layout)
        .map_err(|e| broken(OCI_LAYOUT_NAME, e))?;
    if layout != crate::oci::OCI_LAYOUT {
        return Err(Error::bad_bundle(
            STREAM,
            "member oci-layout does not hold the expected layout version",
        ));
    }
    let entry = members.next(INDEX_NAME, Some(manifest.index.size))?;
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
    Ok(())
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
        data.take(MAX_MANIFEST + 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::sign::Envelope;
    use crate::bundle::tar::build_header;

    /// A tar member: header, data, padding (zero unless `pad` says).
    fn member(out: &mut Vec<u8>, name: &str, data: &[u8], pad: u8) {
        out.extend_from_slice(&build_header(name, data.len() as u64, 0));
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64) as usize, pad);
    }

    /// An unsigned bundle stream of no images; `tweak` alters its tar.
    fn stream(tweak: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#.to_vec();
        let manifest = BundleManifest {
            format_version: FORMAT_VERSION,
            tool: "test".into(),
            created: "2024-01-01T00:00:00Z".into(),
            index: BlobRecord {
                digest: Digest::of(&index),
                size: index.len() as u64,
                media_type: String::new(),
            },
            images: vec![],
            blobs: vec![],
        };
        let env = Envelope::new(PAYLOAD_TYPE, &serde_json::to_vec(&manifest).unwrap(), None);
        let mut tar = Vec::new();
        member(
            &mut tar,
            ENVELOPE_NAME,
            &serde_json::to_vec(&env).unwrap(),
            0,
        );
        member(&mut tar, OCI_LAYOUT_NAME, crate::oci::OCI_LAYOUT, 0);
        member(&mut tar, INDEX_NAME, &index, 0);
        tar.extend_from_slice(&[0u8; END_FRAME]);
        tweak(&mut tar);
        zstd::encode_all(&tar[..], 3).unwrap()
    }

    fn read(bytes: &[u8]) -> Result<BundleManifest> {
        struct Nothing;
        impl StreamVisitor for Nothing {
            fn start(&mut self, _: &BundleManifest, _: &Digest) -> Result<()> {
                Ok(())
            }
            fn blob(&mut self, _: &BlobRecord, _: &mut dyn Read) -> Result<()> {
                Ok(())
            }
        }
        read_stream(bytes, None, &mut Nothing)
    }

    #[test]
    fn reads_a_well_formed_stream() {
        read(&stream(|_| {})).unwrap();
    }

    #[test]
    fn refuses_what_the_file_reader_refuses() {
        // Non-zero padding after index.json (the last data before the end).
        let err = read(&stream(|t| {
            let end = t.len() - END_FRAME - 1;
            t[end] = 1;
        }))
        .unwrap_err();
        assert!(err.to_string().contains("padding"), "{err}");
        // No end-of-archive blocks.
        let err = read(&stream(|t| t.truncate(t.len() - END_FRAME))).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // A pax header where the envelope belongs.
        let err = read(&stream(|t| {
            let mut h = tar::Header::new_ustar();
            h.set_path(ENVELOPE_NAME).unwrap();
            h.set_size(0);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_cksum();
            t.splice(0..0, h.as_bytes().iter().copied());
        }))
        .unwrap_err();
        assert!(err.to_string().contains("member 0"), "{err}");
    }
}
