//! Reads a bundle file at random through its seek table.
//!
//! Opening indexes every tar member by decompressing only the 512-byte header
//! frames; member data is decompressed frame by frame on demand, so reading
//! any blob costs that blob plus at most one frame. Every structural rule of
//! the format spec is checked here, before any content is trusted: a member
//! that breaks one is refused with its name and position.
//!
//! The seek table is not signed. It is used only to find frames; everything
//! read through it is then checked (header checksums, frame sizes, zstd
//! checksums, blob digests), so a forged table can only cause a refusal.

use std::collections::HashSet;
use std::io::{self, BufRead, Read};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use zeekstd::SeekTable;

use super::format::*;
use super::sign::Envelope;
use super::store::BundleBytes;
use super::volume::{Label, LABEL_LEN};
use crate::error::{into_io, Error, Result};
use crate::model::image::Descriptor;
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::source::{Root, Source};

#[derive(Clone, Copy, Debug)]
struct Frame {
    c_offset: u64,
    c_size: u32,
    d_size: u32,
}

/// One tar member, located by frame numbers.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub size: u64,
    /// Position in the archive, counting from 0.
    pub position: usize,
    first_frame: usize,
    end_frame: usize,
}

pub struct BundleFile {
    path: PathBuf,
    /// The bundle's bytes: one mapped file, or volumes, plus anything
    /// rebuilt from parity. Frames decompress straight from the page cache.
    bytes: BundleBytes,
    frames: Vec<Frame>,
    members: Vec<Member>,
    /// What opening found and did (volumes repaired, out of order…).
    notices: Vec<String>,
    /// The bundle id that volume labels and parity claim; the signed
    /// manifest must have it.
    claimed_id: Option<Digest>,
}

/// How hard opening looks at the bytes before reading them.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Hash every volume (or every parity shard) first, so damage is found
    /// and named by volume before anything is read. `inspect` skips this.
    pub check: bool,
    /// Rebuild damage from parity in memory instead of failing.
    pub repair: bool,
}

impl OpenOptions {
    pub const FULL: OpenOptions = OpenOptions {
        check: true,
        repair: true,
    };
}

impl BundleFile {
    /// Opens a bundle file, a volume set (by any volume, its `NAME`, or its
    /// directory), with parity found beside it, checking it all first.
    pub fn open(path: &Path) -> Result<BundleFile> {
        BundleFile::open_with(path, OpenOptions::FULL)
    }

    pub fn open_with(path: &Path, options: OpenOptions) -> Result<BundleFile> {
        let opened = super::damage::open_bytes(path, options)?;
        let mut file = BundleFile::from_bytes(opened.path, opened.bytes)?;
        file.notices = opened.notices;
        file.claimed_id = opened.claimed_id;
        Ok(file)
    }

    /// Indexes a bundle whose bytes are assembled.
    pub(crate) fn from_bytes(path: PathBuf, bytes: BundleBytes) -> Result<BundleFile> {
        let (frames, labels) = read_seek_table(&path, &bytes)?;
        let mut bundle = BundleFile {
            path,
            bytes,
            frames,
            members: Vec::new(),
            notices: Vec::new(),
            claimed_id: None,
        };
        bundle.check_labels(&labels)?;
        bundle.members = bundle.index_members()?;
        Ok(bundle)
    }

    /// Locates members from their sizes alone, without reading headers, for
    /// describing damage when headers may be unreadable.
    pub(crate) fn from_sizes(
        path: PathBuf,
        bytes: BundleBytes,
        names_and_sizes: &[(String, u64)],
    ) -> Result<BundleFile> {
        let (frames, _) = read_seek_table(&path, &bytes)?;
        let mut members = Vec::new();
        let mut i = 0;
        for (position, (name, size)) in names_and_sizes.iter().enumerate() {
            let first_frame = i + 1;
            let mut covered = 0;
            let mut j = first_frame;
            while covered < padded(*size) {
                let f = frames.get(j).ok_or_else(|| {
                    Error::bad_bundle(&path, "the seek table does not match the signed manifest")
                })?;
                covered += f.d_size as u64;
                j += 1;
            }
            members.push(Member {
                name: name.clone(),
                size: *size,
                position,
                first_frame,
                end_frame: j,
            });
            i = j;
        }
        Ok(BundleFile {
            path,
            bytes,
            frames,
            members,
            notices: Vec::new(),
            claimed_id: None,
        })
    }

    /// The size the first member's header declares.
    pub(crate) fn first_member_size(&self) -> Result<u64> {
        let mut buf = Vec::new();
        self.read_frame(0, &mut decompressor()?, &mut buf)?;
        parse_header(&buf)
            .map(|(_, size)| size)
            .map_err(|p| Error::bad_bundle(&self.path, p))
    }

    pub(crate) fn into_bytes(self) -> BundleBytes {
        self.bytes
    }

    /// The byte range a member's frames (header included) occupy.
    pub(crate) fn member_range(&self, m: &Member) -> (u64, u64) {
        let first = self.frames[m.first_frame - 1];
        let last = self.frames[m.end_frame - 1];
        (first.c_offset, last.c_offset + last.c_size as u64)
    }

    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    pub(crate) fn claimed_id(&self) -> Option<&Digest> {
        self.claimed_id.as_ref()
    }

    /// Labels inside the bundle must be well formed and agree on the bundle.
    fn check_labels(&mut self, labels: &[u64]) -> Result<()> {
        for &at in labels {
            let raw = self
                .bytes
                .read(at, LABEL_LEN)
                .map_err(|gap| Error::bad_bundle(&self.path, self.bytes.describe_gap(gap)))?;
            let label = Label::decode(&raw).map_err(|why| {
                Error::bad_bundle(&self.path, format!("the volume label at byte {at}: {why}"))
            })?;
            match &self.claimed_id {
                Some(id) if *id != label.bundle_id => {
                    return Err(Error::bad_bundle(
                        &self.path,
                        format!(
                            "volume {} belongs to bundle {}, the others to {}",
                            label.number,
                            label.bundle_id.short(),
                            id.short()
                        ),
                    ))
                }
                _ => self.claimed_id = Some(label.bundle_id),
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Decompresses frame `i` into `out`, which ends up exactly the size the
    /// seek table declares; a frame that would produce more is refused before
    /// it can use more memory.
    fn read_frame(&self, i: usize, dctx: &mut Dctx, out: &mut Vec<u8>) -> Result<()> {
        let f = self.frames[i];
        let what = || match self
            .members
            .iter()
            .find(|m| (m.first_frame - 1..m.end_frame).contains(&i))
        {
            Some(m) => format!("frame {i} (member {})", m.name),
            None => format!("frame {i}"),
        };
        let compressed = self
            .bytes
            .read(f.c_offset, f.c_size as usize)
            .map_err(|gap| {
                Error::bad_bundle(
                    &self.path,
                    format!(
                        "{} cannot be read: {}",
                        what(),
                        self.bytes.describe_gap(gap)
                    ),
                )
            })?;
        out.resize(f.d_size as usize, 0);
        let n = dctx
            .zstd
            .decompress_to_buffer(&compressed[..], &mut out[..])
            .map_err(|e| Error::bad_bundle(&self.path, format!("{} is damaged: {e}", what())))?;
        drop(compressed);
        // Done with these pages: see `BundleBytes::release`.
        self.bytes.release(f.c_offset, f.c_size as usize);
        if n != f.d_size as usize {
            return Err(Error::bad_bundle(
                &self.path,
                format!(
                    "{} holds {n} bytes, the seek table says {}",
                    what(),
                    f.d_size
                ),
            ));
        }
        Ok(())
    }

    /// Walks the frames: header frame, data frames, next header… end frame.
    fn index_members(&self) -> Result<Vec<Member>> {
        let bad = |p: String| Error::bad_bundle(&self.path, p);
        let mut dctx = decompressor()?;
        let mut buf = Vec::new();
        let mut members: Vec<Member> = Vec::new();
        let mut names = HashSet::new();
        let mut i = 0;
        loop {
            let Some(f) = self.frames.get(i) else {
                return Err(bad(format!(
                    "the archive stops after {} members without an end marker: it is truncated",
                    members.len()
                )));
            };
            let position = members.len();
            if f.d_size as usize == END_FRAME {
                self.read_frame(i, &mut dctx, &mut buf)?;
                if buf.iter().any(|&b| b != 0) {
                    return Err(bad(format!(
                        "frame {i} should end the archive but is not zero"
                    )));
                }
                if i + 1 != self.frames.len() {
                    return Err(bad(format!(
                        "{} frames follow the end of the archive",
                        self.frames.len() - i - 1
                    )));
                }
                return Ok(members);
            }
            if f.d_size as usize != BLOCK {
                return Err(bad(format!(
                    "frame {i} should hold the tar header of member {position} but holds {} bytes (not written by airlock format v1, or damaged)",
                    f.d_size
                )));
            }
            let after = members
                .last()
                .map_or("the start".to_string(), |m| m.name.clone());
            self.read_frame(i, &mut dctx, &mut buf)
                .map_err(|e| match e {
                    Error::BadBundle { problem, .. } => bad(format!(
                        "the tar header of member {position} (after {after}): {problem}"
                    )),
                    e => e,
                })?;
            let (name, size) =
                parse_header(&buf).map_err(|p| bad(format!("member {position}: {p}")))?;
            if !names.insert(name.clone()) {
                return Err(bad(format!("member {name} appears twice")));
            }
            let first_frame = i + 1;
            let mut covered = 0u64;
            let mut j = first_frame;
            while covered < padded(size) {
                let Some(df) = self.frames.get(j) else {
                    return Err(bad(format!(
                        "member {name} is cut short: the file is truncated"
                    )));
                };
                covered += df.d_size as u64;
                j += 1;
            }
            if covered != padded(size) {
                return Err(bad(format!(
                    "member {name} declares {size} bytes but its frames hold {covered}: its size is wrong"
                )));
            }
            members.push(Member {
                name,
                size,
                position,
                first_frame,
                end_frame: j,
            });
            i = j;
        }
    }

    /// Streams a member's data. Damage surfaces as a read error naming it.
    pub fn open_member(&self, m: &Member) -> Result<MemberReader<'_>> {
        Ok(MemberReader {
            bundle: self,
            member: m.clone(),
            next_frame: m.first_frame,
            buf: Vec::new(),
            pos: 0,
            remaining: m.size,
            dctx: decompressor()?,
        })
    }

    /// Reads a small member whole.
    pub fn read_member(&self, m: &Member, limit: u64) -> Result<Vec<u8>> {
        if m.size > limit {
            return Err(Error::bad_bundle(
                &self.path,
                format!(
                    "member {} has {} bytes, more than the {limit} allowed",
                    m.name, m.size
                ),
            ));
        }
        let mut out = Vec::with_capacity(m.size as usize);
        self.open_member(m)?
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(out)
    }
}

/// A zstd decompression context, reused across frames.
struct Dctx {
    zstd: zstd::bulk::Decompressor<'static>,
}

/// Reads the seek table at the end of the bundle: data frames, and the
/// offsets of volume labels (entries with no decompressed bytes).
fn read_seek_table(path: &Path, bytes: &BundleBytes) -> Result<(Vec<Frame>, Vec<u64>)> {
    let bad = |p: String| Error::bad_bundle(path, p);
    let no_table = |why: &str| {
        bad(format!(
            "no valid seek table at the end of the file ({why}): it is truncated, damaged, or not an airlock bundle"
        ))
    };
    let len = bytes.len();
    let (table, table_len) = seek_table_at_end(bytes).map_err(|why| no_table(&why))?;
    if table.size_comp() + table_len != len {
        return Err(bad(format!(
            "the seek table accounts for {} bytes but the file has {len}: it is truncated or has data appended",
            table.size_comp() + table_len
        )));
    }
    let mut frames = Vec::new();
    let mut labels = Vec::new();
    for i in 0..table.num_frames() {
        let c_size = table.frame_size_comp(i).map_err(|e| bad(e.to_string()))?;
        let d_size = table.frame_size_decomp(i).map_err(|e| bad(e.to_string()))?;
        let c_offset = table.frame_start_comp(i).map_err(|e| bad(e.to_string()))?;
        if d_size == 0 {
            if c_size as usize != LABEL_LEN {
                return Err(bad(format!(
                    "frame {i} at byte {c_offset} is empty but is not a volume label"
                )));
            }
            labels.push(c_offset);
            continue;
        }
        frames.push(Frame {
            c_offset,
            c_size: c_size as u32,
            d_size: d_size as u32,
        });
    }
    let max_c = zstd::zstd_safe::compress_bound(MAX_FRAME_DATA) as u32;
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.d_size as usize > MAX_FRAME_DATA || f.c_size > max_c)
    {
        return Err(bad(format!(
            "the seek table gives frame {i} {} bytes ({} compressed), more than the format allows",
            f.d_size, f.c_size
        )));
    }
    Ok((frames, labels))
}

/// Parses the seek table that ends `bytes`; returns it and its length
/// (skippable frame included). `Err` says why there is no valid one. Does
/// not check that the table accounts for every byte: a lone last volume
/// holds only the end of what its table describes.
pub(crate) fn seek_table_at_end(
    bytes: &BundleBytes,
) -> std::result::Result<(SeekTable, u64), String> {
    let len = bytes.len();
    if len < SEEK_TABLE_MIN {
        return Err("the file is too short".into());
    }
    let footer = bytes
        .read(len - 9, 9)
        .map_err(|gap| bytes.describe_gap(gap))?;
    let (table_len, frames) = seek_table_len(&footer)?;
    if table_len > len {
        return Err(format!(
            "it claims {frames} frames, more than the file can hold"
        ));
    }
    let tail = bytes
        .read(len - table_len, table_len as usize)
        .map_err(|gap| bytes.describe_gap(gap))?;
    check_seek_table_footer(&tail)?;
    let table = SeekTable::from_seekable(&mut zeekstd::BytesWrapper::new(&tail))
        .map_err(|e| e.to_string())?;
    Ok((table, table_len))
}

/// The seek table's length (skippable frame included) and frame count, from
/// its 9-byte footer. Checked against the file before any parser trusts the
/// count: zeekstd allocates room for that many entries up front, so a forged
/// count could demand gigabytes.
fn seek_table_len(footer: &[u8]) -> std::result::Result<(u64, u64), String> {
    let le32 = |at: usize| u32::from_le_bytes(footer[at..at + 4].try_into().expect("4 bytes"));
    if le32(5) != zeekstd::SEEKABLE_MAGIC_NUMBER {
        return Err("the seekable-format magic number is missing".into());
    }
    let entry = if footer[4] & 0x80 != 0 { 12 } else { 8 };
    let frames = le32(0) as u64;
    Ok((SEEK_TABLE_MIN + frames * entry, frames))
}

/// Skippable frame header (8) plus seek table footer (9), with no entries.
const SEEK_TABLE_MIN: u64 = 17;

/// Checks that `table` (exactly the length its footer declares, see
/// `seek_table_len`) is one skippable frame, before zeekstd parses it.
fn check_seek_table_footer(table: &[u8]) -> std::result::Result<(), String> {
    let le32 = |at: usize| u32::from_le_bytes(table[at..at + 4].try_into().expect("4 bytes"));
    if le32(0) != 0x184D_2A5E || le32(4) as usize != table.len() - 8 {
        return Err("the skippable frame holding it does not match its length".into());
    }
    Ok(())
}

fn decompressor() -> Result<Dctx> {
    Ok(Dctx {
        zstd: zstd::bulk::Decompressor::new()
            .map_err(|e| Error::Usage(format!("cannot start zstd: {e}")))?,
    })
}

/// Checks a ustar header as the spec requires and returns name and size.
fn parse_header(block: &[u8]) -> std::result::Result<(String, u64), String> {
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(block);
    let stored = h
        .cksum()
        .map_err(|_| "the header checksum field is not a number".to_string())?;
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    if stored != computed {
        return Err("the tar header is damaged (checksum mismatch)".into());
    }
    if h.as_ustar().is_none() {
        return Err("the tar header is not ustar".into());
    }
    let kind = h.entry_type();
    if !matches!(kind, tar::EntryType::Regular) {
        return Err(format!(
            "it is a {kind:?} entry; bundles hold only regular files (links, devices and extensions are refused)"
        ));
    }
    let name = String::from_utf8(h.path_bytes().to_vec())
        .map_err(|_| "its name is not UTF-8".to_string())?;
    if name.starts_with('/') {
        return Err(format!("{name}: absolute paths are refused"));
    }
    if name
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Err(format!(
            "{name}: paths with '..', '.' or empty parts are refused"
        ));
    }
    let size = h
        .size()
        .map_err(|_| format!("{name}: the size field is not a number"))?;
    Ok((name, size))
}

pub struct MemberReader<'a> {
    bundle: &'a BundleFile,
    member: Member,
    next_frame: usize,
    buf: Vec<u8>,
    pos: usize,
    remaining: u64,
    dctx: Dctx,
}

impl MemberReader<'_> {
    /// Makes sure the frame buffer holds unread data, unless the member ended.
    fn refill(&mut self) -> Result<()> {
        if self.remaining == 0 || self.pos < self.buf.len() {
            return Ok(());
        }
        self.bundle
            .read_frame(self.next_frame, &mut self.dctx, &mut self.buf)?;
        self.next_frame += 1;
        self.pos = 0;
        if self.next_frame == self.member.end_frame {
            let data = self.remaining as usize;
            if self.buf[data.min(self.buf.len())..].iter().any(|&b| b != 0) {
                return Err(Error::bad_bundle(
                    &self.bundle.path,
                    format!(
                        "member {}: the padding after its data is not zero",
                        self.member.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl BufRead for MemberReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill().map_err(into_io)?;
        let n =
            (self.buf.len() - self.pos).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        Ok(&self.buf[self.pos..self.pos + n])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.remaining -= n as u64;
    }
}

impl Read for MemberReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Marks a bundle whose signature has not been checked.
pub struct Unverified;
/// Marks a bundle whose signature checked out, or whose user explicitly
/// accepted it unsigned. Only these can be exported or imported.
pub struct Verified;

pub struct Bundle<S> {
    file: BundleFile,
    envelope: Envelope,
    manifest: BundleManifest,
    /// Digest of the signed manifest bytes: names this bundle.
    id: Digest,
    _state: PhantomData<S>,
}

impl Bundle<Unverified> {
    /// Opens a bundle and reads its manifest. The format version is checked
    /// before anything else in the manifest is interpreted.
    pub fn open(path: &Path) -> Result<Bundle<Unverified>> {
        Bundle::open_with(path, OpenOptions::FULL)
    }

    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Bundle<Unverified>> {
        let file = BundleFile::open_with(path, options)?;
        let path = file.path.clone();
        let path = &path;
        let bad = |p: String| Error::bad_bundle(path, p);
        let first = file
            .members
            .first()
            .filter(|m| m.name == ENVELOPE_NAME)
            .ok_or_else(|| bad(format!("the first member must be {ENVELOPE_NAME}")))?;
        let raw = file.read_member(first, MAX_ENVELOPE)?;
        let envelope: Envelope = serde_json::from_slice(&raw)
            .map_err(|e| bad(format!("{ENVELOPE_NAME} is not a DSSE envelope: {e}")))?;
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(bad(format!(
                "{ENVELOPE_NAME} carries {:?}, not an airlock bundle manifest",
                envelope.payload_type
            )));
        }
        let payload = envelope.payload_bytes().map_err(bad)?;
        let manifest = parse_manifest(path, &payload)?;
        let id = Digest::of(&payload);
        if let Some(claimed) = file.claimed_id().filter(|&c| *c != id) {
            return Err(bad(format!(
                "its volume labels or parity name bundle {}, but its signed manifest is {}: the files come from different bundles",
                claimed.short(),
                id.short()
            )));
        }
        Ok(Bundle {
            file,
            envelope,
            manifest,
            id,
            _state: PhantomData,
        })
    }

    /// Checks the signature against a trusted public key.
    pub fn check_signature(self, key: &VerifyingKey) -> Result<Bundle<Verified>> {
        self.envelope
            .verify(key)
            .map_err(|problem| Error::Signature {
                path: self.file.path.clone(),
                problem,
            })?;
        Ok(self.trusted())
    }

    /// Accepts the bundle without a signature check (`--allow-unsigned`).
    pub fn without_signature_check(self) -> Bundle<Verified> {
        self.trusted()
    }

    fn trusted(self) -> Bundle<Verified> {
        Bundle {
            file: self.file,
            envelope: self.envelope,
            manifest: self.manifest,
            id: self.id,
            _state: PhantomData,
        }
    }
}

/// The image a bundle manifest record names, as a source root.
pub(crate) fn root_of(record: &ImageRecord) -> Result<Root> {
    Ok(Root {
        name: record.name.as_deref().map(Reference::parse).transpose()?,
        descriptor: Descriptor::new(
            record.media_type.clone(),
            record.digest.clone(),
            record.size,
        ),
        subject: record.subject.clone(),
    })
}

pub(crate) fn parse_manifest(path: &Path, payload: &[u8]) -> Result<BundleManifest> {
    let bad = |p: String| Error::bad_bundle(path, p);
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| bad(format!("the bundle manifest is not JSON: {e}")))?;
    let version = value
        .get("formatVersion")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad("the bundle manifest has no formatVersion".into()))?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| bad(format!("the bundle manifest is malformed: {e}")))
}

impl<S> Bundle<S> {
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The digest of the signed bundle manifest: two bundles with the same
    /// id hold the same images and blobs.
    pub fn id(&self) -> &Digest {
        &self.id
    }

    pub fn file(&self) -> &BundleFile {
        &self.file
    }

    /// Key ids the envelope names; trustworthy only on a `Bundle<Verified>`.
    pub fn signer_ids(&self) -> Vec<String> {
        self.envelope.key_ids()
    }

    /// The bundle's images and blobs as a [`Source`], for `export` and
    /// `verify`. Reading through it is unverified like any source; callers
    /// verify as they read (the plan and copy code does).
    pub fn source(&self) -> BundleSource<'_> {
        BundleSource {
            file: &self.file,
            manifest: &self.manifest,
            name: self.file.path.display().to_string(),
        }
    }
}

pub struct BundleSource<'a> {
    file: &'a BundleFile,
    manifest: &'a BundleManifest,
    name: String,
}

impl Source for BundleSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn roots(&self) -> Result<Vec<Root>> {
        self.manifest.images.iter().map(root_of).collect()
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = &blob.digest;
        let m = self
            .file
            .member(&digest.layout_path())
            .ok_or_else(|| Error::MissingBlob {
                source_name: self.name.clone(),
                digest: digest.clone(),
                image: None,
            })?;
        Ok(Box::new(self.file.open_member(m)?))
    }
}
