//! Reads a bundle once, in order, from a stream (standard input, a data
//! diode), for `verify -` and `import -`.
//!
//! The signed manifest is the first member, so it is checked before a
//! single blob is looked at; every later member must be the one it names,
//! with its size and digest. A [`StreamVisitor`] receives each blob as a
//! reader that fails at its end if the digest is wrong. At the end come the
//! end-of-archive frame, the seek table (checked against the frames read,
//! [`super::stream_frames`]) and nothing else; then the image graph.
//!
//! The tar members are read through the same ustar codec as the file reader
//! ([`super::tar`]) and must lie in frames as the file reader requires, so
//! a stream is accepted exactly when the file would be. Not for random
//! access (that is [`super::index`]) nor for frames ([`super::stream_frames`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::bundle::sign::TrustedKeys;

use super::format::*;
use super::sign::decode_envelope;
use super::source::root_of;
use super::stream_frames::{Next, StreamFrames, STREAM};
use super::tar::{is_zero, padding, parse_header};
use super::verify::check_index;
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

    /// The key ids the envelope claims, before [`StreamVisitor::start`]:
    /// unchecked unless a key was given (for `inspect -`).
    fn claimed_signers(&mut self, _key_ids: Vec<String>) {}
}

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

fn bad(problem: String) -> Error {
    Error::bad_bundle(STREAM, problem)
}

/// Names where in the archive a frame problem was found.
fn within(what: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::BadBundle { path, problem } => Error::BadBundle {
            path,
            problem: format!("{what}: {problem}"),
        },
        e => e,
    }
}

/// The tar members of a stream's frames, read through the one ustar codec
/// ([`super::tar`]) and laid out in frames as the file reader requires
/// (§5): each header alone in a frame of one block, each member's data and
/// zero padding ending with a frame, the end-of-archive blocks in a frame
/// of their own, then the seek table.
struct Members<R> {
    frames: StreamFrames<R>,
    /// Members read so far.
    position: usize,
    /// Data bytes of the current member not yet read.
    remaining: u64,
    /// Padding after the current member's data, not yet read.
    padding: u64,
    /// The current member's data and padding were read and checked.
    done: bool,
    name: String,
}

impl<R: Read> Members<R> {
    fn new(frames: StreamFrames<R>) -> Members<R> {
        Members {
            frames,
            position: 0,
            remaining: 0,
            padding: 0,
            done: true,
            name: String::new(),
        }
    }

    /// Reads and checks what is left of the current member: its data (when
    /// the caller left some) and its zero padding.
    fn finish_member(&mut self) -> Result<()> {
        std::io::copy(&mut MemberData { members: self }, &mut std::io::sink())
            .map_err(|e| broken(&self.name, e))?;
        Ok(())
    }

    /// The next frame, a tar header block alone; `None` when the archive's
    /// frames end (at the seek table or the stream's end).
    fn header_frame(&mut self, what: &str) -> Result<Option<[u8; BLOCK]>> {
        if self.frames.next_frame().map_err(within(what))? != Next::Data {
            return Ok(None);
        }
        let Ok(block) = <[u8; BLOCK]>::try_from(self.frames.available()) else {
            return Err(bad(format!(
                "the frame at byte {} should hold {what} but holds {} bytes (not written by airlock format v1, or damaged)",
                self.frames.frame_at(),
                self.frames.available().len()
            )));
        };
        self.frames.consume(BLOCK);
        Ok(Some(block))
    }

    /// The next member, which must be `name` (with `size`, when known).
    fn next(&mut self, name: &str, size: Option<u64>) -> Result<MemberData<'_, R>> {
        self.finish_member()?;
        let position = self.position;
        let what = format!("the tar header of member {position} ({name})");
        let block = match self.header_frame(&what)? {
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
        self.done = false;
        self.name = got;
        Ok(MemberData { members: self })
    }

    /// After the last member: the two zero blocks that end the archive, in
    /// a frame of their own, then the seek table and nothing after it.
    fn end(&mut self) -> Result<()> {
        self.finish_member()?;
        let what = "the end of the archive";
        if self.frames.next_frame().map_err(within(what))? != Next::Data {
            return Err(bad(
                "the stream ends without the end-of-archive blocks: it is truncated".into(),
            ));
        }
        let at = self.frames.frame_at();
        let frame = self.frames.available();
        if frame.len() == BLOCK {
            let name = parse_header(frame.try_into().expect("one block"))
                .map(|(n, _)| n)
                .unwrap_or_default();
            return Err(bad(format!(
                "member {name:?} (at byte {at}) follows the last blob the signed manifest names"
            )));
        }
        if frame.len() != END_FRAME {
            return Err(bad(format!(
                "the frame at byte {at} should end the archive but holds {} bytes",
                frame.len()
            )));
        }
        if !is_zero(frame) {
            return Err(bad(format!(
                "the frame at byte {at} should end the archive but is not zero"
            )));
        }
        self.frames.consume(END_FRAME);
        self.frames.finish().map_err(within("after the archive"))
    }
}

/// The data of the current member; at its end, the padding is read and
/// must be zero, and the member's last frame must end there.
struct MemberData<'a, R> {
    members: &'a mut Members<R>,
}

impl<R: Read> MemberData<'_, R> {
    /// Makes the current frame hold unread bytes of this member.
    fn refill(&mut self) -> Result<()> {
        let m = &mut *self.members;
        let what = format!("member {}", m.name);
        if m.frames.available().is_empty()
            && m.frames.next_frame().map_err(within(&what))? != Next::Data
        {
            return Err(bad(format!(
                "member {}: the stream ends inside it: it is truncated",
                m.name
            )));
        }
        Ok(())
    }

    /// Reads the padding, then checks the frame ends with it.
    fn close(&mut self) -> Result<()> {
        while self.members.padding > 0 {
            self.refill()?;
            let m = &mut *self.members;
            let n = m.frames.available().len().min(m.padding as usize);
            if !is_zero(&m.frames.available()[..n]) {
                return Err(bad(format!(
                    "member {}: the padding after its data is not zero",
                    m.name
                )));
            }
            m.frames.consume(n);
            m.padding -= n as u64;
        }
        let m = &mut *self.members;
        if !m.frames.available().is_empty() {
            return Err(bad(format!(
                "member {}: its last frame (at byte {}) holds {} bytes more than its data and padding: its size is wrong",
                m.name,
                m.frames.frame_at(),
                m.frames.available().len()
            )));
        }
        m.done = true;
        Ok(())
    }
}

impl<R: Read> Read for MemberData<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.members.done {
            return Ok(0);
        }
        if self.members.remaining == 0 {
            self.close().map_err(into_io)?;
            return Ok(0);
        }
        self.refill().map_err(into_io)?;
        let m = &mut *self.members;
        let available = m.frames.available();
        let n = out
            .len()
            .min(available.len())
            .min(usize::try_from(m.remaining).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&available[..n]);
        m.frames.consume(n);
        m.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads a whole bundle stream. `key` is the trusted signer, or `None` when
/// the user accepted unsigned bundles.
pub fn read_stream(
    input: impl Read,
    key: Option<&TrustedKeys>,
    visitor: &mut dyn StreamVisitor,
) -> Result<BundleManifest> {
    let mut members = Members::new(StreamFrames::new(input)?);
    let (manifest, payload, signers) = read_manifest(&mut members, key)?;
    visitor.claimed_signers(signers);
    let id = Digest::of(&payload);
    members.frames.set_bundle(&id)?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = manifest.blobs.iter().find(|b| !seen.insert(&b.digest)) {
        return Err(bad(format!(
            "the manifest lists blob {} twice: member {} may appear only once",
            dup.digest,
            dup.digest.layout_path()
        )));
    }
    read_layout_and_index(&mut members, &manifest)?;
    // Manifests are kept for the image graph check at the end, which both
    // `verify -` and `import -` must pass.
    let mut graph = Received::new(&manifest)?;
    visitor.start(&manifest, &id)?;
    for record in &manifest.blobs {
        let name = record.digest.layout_path();
        let entry = members.next(&name, Some(record.size))?;
        let mut data = VerifyingReader::new(
            entry,
            record.digest.clone(),
            record.size,
            format!("member {name}"),
        );
        let mut held;
        let reader: &mut dyn Read = match graph.hold(record, &mut data)? {
            Some(raw) => {
                held = std::io::Cursor::new(raw);
                &mut held
            }
            None => &mut data,
        };
        visitor.blob(record, reader).map_err(|e| match e {
            Error::Io { source, .. } => broken(&name, source),
            e => e,
        })?;
        std::io::copy(&mut data, &mut std::io::sink()).map_err(|e| broken(&name, e))?;
    }
    members.end()?;
    check_graph(&graph, &manifest)?;
    Ok(manifest)
}

/// The signed manifest, checked before anything else is used: the
/// signature over the raw payload first, then the payload parsed.
fn read_manifest<R: Read>(
    members: &mut Members<R>,
    key: Option<&TrustedKeys>,
) -> Result<(BundleManifest, Vec<u8>, Vec<String>)> {
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
    Ok((manifest, signed.payload().to_vec(), signed.key_ids()))
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
    if manifest.index.size > MAX_INDEX {
        return Err(bad(format!(
            "member {INDEX_NAME} has {} bytes, more than the {MAX_INDEX} allowed",
            manifest.index.size
        )));
    }
    let mut index = Vec::with_capacity(manifest.index.size as usize);
    let entry = members.next(INDEX_NAME, Some(manifest.index.size))?;
    VerifyingReader::new(
        entry,
        manifest.index.digest.clone(),
        manifest.index.size,
        "member index.json",
    )
    .read_to_end(&mut index)
    .map_err(|e| broken(INDEX_NAME, e))?;
    check_index(&index, manifest).map_err(|p| bad(format!("member index.json: {p}")))
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
        Ok(self.hold(record, data)?.is_some())
    }

    /// Keeps a manifest or index blob, read whole (and so checked, when
    /// `data` checks its digest), and returns its bytes.
    fn hold(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<Option<Arc<[u8]>>> {
        if !(media::is_manifest(&record.media_type) || media::is_index(&record.media_type)) {
            return Ok(None);
        }
        // The size is the manifest's claim: bound it before allocating.
        if record.size > MAX_MANIFEST {
            return Err(bad(format!(
                "blob {} is a manifest of {} bytes, more than the {MAX_MANIFEST} allowed",
                record.digest, record.size
            )));
        }
        let mut raw = Vec::with_capacity(record.size as usize);
        data.take(MAX_MANIFEST + 1)
            .read_to_end(&mut raw)
            .map_err(|e| Error::io("read", STREAM, e))?;
        let raw: Arc<[u8]> = raw.into();
        self.manifests.insert(record.digest.clone(), raw.clone());
        Ok(Some(raw))
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
            None => Err(Error::missing_blob(STREAM, &blob.digest)),
        }
    }
}

/// Every image finds all its blobs, and no blob is left unused.
fn check_graph(received: &Received, manifest: &BundleManifest) -> Result<()> {
    let mut used: HashMap<Digest, u64> = HashMap::new();
    let mut problems = Vec::new();
    for root in received.roots()? {
        let mut plan = Plan::default();
        match plan.add_root(0, received, root, &[]) {
            Ok(()) => used.extend(
                plan.blobs
                    .into_iter()
                    .map(|b| (b.descriptor.digest, b.descriptor.size)),
            ),
            Err(e) => problems.push(e),
        }
    }
    for b in &manifest.blobs {
        if !used.contains_key(&b.digest) {
            problems.push(bad(format!(
                "blob {} is in the bundle but no image uses it",
                b.digest
            )));
        }
    }
    // A set built once: a scan per used digest was quadratic (60,000 blobs).
    let held: std::collections::HashSet<&Digest> =
        manifest.blobs.iter().map(|b| &b.digest).collect();
    // A delta's image graph may end in an expected blob instead (§16).
    let expected: HashMap<&Digest, u64> = manifest
        .expected()
        .iter()
        .map(|e| (&e.digest, e.size))
        .collect();
    for (d, size) in &used {
        match expected.get(d) {
            _ if held.contains(d) => {}
            Some(s) if s != size => problems.push(bad(format!(
                "an image declares blob {d} as {size} bytes, the delta expects {s}"
            ))),
            Some(_) => {}
            None => problems.push(bad(format!(
                "an image needs blob {d}, which the bundle does not hold"
            ))),
        }
    }
    for e in manifest.expected() {
        if !used.contains_key(&e.digest) {
            problems.push(bad(format!(
                "the delta expects blob {}, but no image uses it",
                e.digest
            )));
        }
    }
    Error::many(problems)
}

/// `verify -`: reads every member, checking each as it arrives, then the
/// image graph (every image finds all its blobs, no blob is unused).
pub fn verify_stream(input: impl Read, key: Option<&TrustedKeys>) -> Result<super::VerifyReport> {
    struct Nothing;
    impl StreamVisitor for Nothing {
        fn start(&mut self, _: &BundleManifest, _: &Digest) -> Result<()> {
            Ok(())
        }
        fn blob(&mut self, _: &BlobRecord, _: &mut dyn Read) -> Result<()> {
            Ok(())
        }
    }
    let manifest = read_stream(input, key, &mut Nothing)?;
    Ok(super::VerifyReport {
        images: manifest.images.len(),
        blobs: manifest.blobs.len(),
        bytes: manifest.blobs.iter().map(|b| b.size).sum(),
        signed_by: None,
        notices: Vec::new(),
        delta: super::verify::DeltaReport::of(&manifest),
    })
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
