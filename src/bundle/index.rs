//! The file reader's index: from the seek table to frames to tar members.
//!
//! Indexing decompresses only the 512-byte header frames; member data is
//! decompressed frame by frame on demand, so reading any blob costs that
//! blob plus at most one frame. Every structural rule of the format spec is
//! checked here, before any content is trusted: a member that breaks one is
//! refused with its name and position.
//!
//! The volume labels the seek table lists are checked here too, for a set
//! of files and a one-file bundle alike, and each volume's checksum when
//! opening did not hash it already ([`Checksums`]).
//!
//! Not for finding or checking the bytes (volumes, parity: [`super::check`]),
//! nor for the signed manifest ([`super::open`]). Indexing checks structure
//! only; whether the members are the ones the manifest names is
//! [`super::verify`]'s job.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::format::*;
use super::seek::{read_seek_table, Frame};
use super::store::BundleBytes;
use super::tar::{is_zero, parse_header};
use super::volume::Label;
use super::zframe::check_entry;
use crate::error::{Error, Result};
use crate::model::Digest;

/// Whether indexing hashes each volume against its label's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checksums {
    /// Not asked (`inspect`'s quick open): labels are checked for
    /// structure only.
    Skip,
    /// Hash every volume here.
    Check,
    /// Opening hashed each volume file against the label at its start
    /// ([`super::check`]); only labels elsewhere are hashed here.
    Checked,
}

/// One tar member, located by frame numbers.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub size: u64,
    /// Position in the archive, counting from 0.
    pub position: usize,
    pub(super) first_frame: usize,
    pub(super) end_frame: usize,
}

pub struct BundleFile {
    pub(super) path: PathBuf,
    /// The bundle's bytes: one mapped file, or volumes, plus anything
    /// rebuilt from parity. Frames decompress straight from the page cache.
    pub(super) bytes: BundleBytes,
    pub(super) frames: Vec<Frame>,
    members: Vec<Member>,
    /// Member positions by name: one lookup per blob, not a scan.
    by_name: HashMap<String, usize>,
    /// What opening found and did (volumes repaired, out of order…).
    pub(super) notices: Vec<String>,
    /// The bundle id that volume labels and parity claim; the signed
    /// manifest must have it.
    pub(super) claimed_id: Option<Digest>,
}

impl BundleFile {
    /// Indexes a bundle whose bytes are assembled, checking its labels'
    /// structure but not the volumes' checksums.
    pub(crate) fn from_bytes(path: PathBuf, bytes: BundleBytes) -> Result<BundleFile> {
        BundleFile::from_checked(path, bytes, Checksums::Skip)
    }

    /// Indexes a bundle whose bytes are assembled, hashing the volumes
    /// against their labels as `checksums` says.
    pub(crate) fn from_checked(
        path: PathBuf,
        bytes: BundleBytes,
        checksums: Checksums,
    ) -> Result<BundleFile> {
        let (frames, labels) = read_seek_table(&path, &bytes)?;
        let mut bundle = BundleFile {
            path,
            bytes,
            frames,
            members: Vec::new(),
            by_name: HashMap::new(),
            notices: Vec::new(),
            claimed_id: None,
        };
        bundle.check_labels(&labels, checksums)?;
        bundle.members = bundle.index_members()?;
        bundle.by_name = names_of(&bundle.members);
        Ok(bundle)
    }

    /// Locates members from their sizes alone, without reading headers, for
    /// describing damage when headers may be unreadable.
    pub(crate) fn from_sizes(
        path: PathBuf,
        bytes: BundleBytes,
        names_and_sizes: &[(String, u64)],
    ) -> Result<BundleFile> {
        let (frames, members) = locate_sizes(&path, &bytes, names_and_sizes)?;
        Ok(BundleFile::located(path, bytes, frames, members))
    }

    /// [`BundleFile::from_sizes`] that hands the bytes back when the seek
    /// table cannot be read or does not fit the sizes (serve's degraded
    /// open, which then fails with the damage report).
    pub(crate) fn from_sizes_or_back(
        path: PathBuf,
        bytes: BundleBytes,
        names_and_sizes: &[(String, u64)],
    ) -> std::result::Result<BundleFile, BundleBytes> {
        match locate_sizes(&path, &bytes, names_and_sizes) {
            Ok((frames, members)) => Ok(BundleFile::located(path, bytes, frames, members)),
            Err(_) => Err(bytes),
        }
    }

    fn located(
        path: PathBuf,
        bytes: BundleBytes,
        frames: Vec<Frame>,
        members: Vec<Member>,
    ) -> BundleFile {
        BundleFile {
            path,
            bytes,
            frames,
            by_name: names_of(&members),
            members,
            notices: Vec::new(),
            claimed_id: None,
        }
    }

    /// The size the first member's header declares.
    pub(crate) fn first_member_size(&self) -> Result<u64> {
        if self.frames.is_empty() {
            return Err(Error::bad_bundle(
                &self.path,
                "the seek table names no frames",
            ));
        }
        let mut buf = Vec::new();
        self.read_frame(0, &mut decompressor()?, &mut buf)?;
        let block: &[u8; BLOCK] = buf[..]
            .try_into()
            .map_err(|_| Error::bad_bundle(&self.path, "the first frame is not a tar header"))?;
        parse_header(block)
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

    /// The labels the seek table lists, held to the stream reader's rules
    /// (format §13): volume 1's at byte 0, then volumes 1..=count in order,
    /// each as long as its label says, all of one bundle; then, if asked,
    /// each volume's bytes against its label's checksum.
    fn check_labels(&mut self, labels: &[u64], checksums: Checksums) -> Result<()> {
        let bad = |p: String| Error::bad_bundle(&self.path, p);
        let mut volumes = Vec::with_capacity(labels.len());
        for (i, &at) in labels.iter().enumerate() {
            let what = |p: String| bad(format!("the volume label at byte {at}: {p}"));
            let raw = self
                .bytes
                .read(at, LABEL_LEN)
                .map_err(|gap| bad(self.bytes.describe_gap(gap)))?;
            let label = Label::decode(&raw).map_err(what)?;
            let number = i as u64 + 1;
            if (at == 0) != (number == 1) {
                return Err(what("volume 1's label must start the bundle".into()));
            }
            if u64::from(label.number) != number || label.count as usize != labels.len() {
                return Err(what(format!(
                    "it says volume {} of {}, but volume {number} of {} belongs here",
                    label.number,
                    label.count,
                    labels.len()
                )));
            }
            let end = labels.get(i + 1).copied().unwrap_or(self.bytes.len());
            if end - at != label.length {
                return Err(what(format!(
                    "volume {number} has {} bytes here (to the next label or the end), its label says {}",
                    end - at,
                    label.length
                )));
            }
            match &self.claimed_id {
                Some(id) if *id != label.bundle_id => {
                    return Err(bad(format!(
                        "volume {} belongs to bundle {}, the others to {}",
                        label.number,
                        label.bundle_id.short(),
                        id.short()
                    )))
                }
                _ => self.claimed_id = Some(label.bundle_id.clone()),
            }
            volumes.push((at, label));
        }
        let forged = match checksums {
            Checksums::Skip => return Ok(()),
            Checksums::Check => checksum_failures(&self.bytes, &volumes, false),
            Checksums::Checked => checksum_failures(&self.bytes, &volumes, true),
        };
        match forged.first() {
            None => Ok(()),
            Some((at, label)) => Err(bad(format!(
                "volume {} (bytes {at} to {}) does not match its label's checksum: it is damaged or forged",
                label.number,
                at + label.length
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.by_name.get(name).map(|&i| &self.members[i])
    }

    /// Decompresses frame `i` into `out`, which ends up exactly the size the
    /// seek table declares; a frame that would produce more is refused before
    /// it can use more memory.
    pub(super) fn read_frame(&self, i: usize, dctx: &mut Dctx, out: &mut Vec<u8>) -> Result<()> {
        let f = self.frames[i];
        // Members are in frame order: find the one holding frame i by bisection.
        let what = || match self
            .members
            .get(self.members.partition_point(|m| m.end_frame <= i))
            .filter(|m| m.first_frame - 1 <= i)
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
        // Exactly one data frame, declaring its size: no bytes ride along.
        check_entry(&compressed, f.d_size).map_err(|p| {
            Error::bad_bundle(
                &self.path,
                format!("{} at byte {}: {p}", what(), f.c_offset),
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
                if !is_zero(&buf) {
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
            let block: &[u8; BLOCK] = buf[..].try_into().expect("checked: one block");
            let (name, size) =
                parse_header(block).map_err(|p| bad(format!("member {position}: {p}")))?;
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
}

/// The frames, and members placed over them by their sizes alone: each
/// member's header frame, then data frames until its padded size is covered.
fn locate_sizes(
    path: &Path,
    bytes: &BundleBytes,
    names_and_sizes: &[(String, u64)],
) -> Result<(Vec<Frame>, Vec<Member>)> {
    let (frames, _) = read_seek_table(path, bytes)?;
    let mut members = Vec::new();
    let mut i = 0;
    for (position, (name, size)) in names_and_sizes.iter().enumerate() {
        let first_frame = i + 1;
        let mut covered = 0;
        let mut j = first_frame;
        while covered < padded(*size) {
            let f = frames.get(j).ok_or_else(|| {
                Error::bad_bundle(path, "the seek table does not match the signed manifest")
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
    Ok((frames, members))
}

/// The volumes whose bytes after the label do not hash to its checksum.
/// With `checked`, a volume that is exactly one part of `bytes` was hashed
/// when opening and is not hashed again.
fn checksum_failures(
    bytes: &BundleBytes,
    volumes: &[(u64, Label)],
    checked: bool,
) -> Vec<(u64, Label)> {
    use rayon::prelude::*;
    use sha2::{Digest as _, Sha256};
    let hashed =
        |at: u64, len: u64| checked && bytes.parts().iter().any(|p| p.start == at && p.len == len);
    volumes
        .par_iter()
        .filter(|(at, label)| {
            if hashed(*at, label.length) {
                return false;
            }
            let end = at + label.length;
            let mut hash = Sha256::new();
            let mut pos = at + LABEL_LEN as u64;
            while pos < end {
                let n = (end - pos).min(4 << 20) as usize;
                match bytes.read(pos, n) {
                    Ok(chunk) => hash.update(&chunk),
                    Err(_) => return true,
                }
                bytes.release(pos, n);
                pos += n as u64;
            }
            hash.finalize()[..] != label.checksum
        })
        .cloned()
        .collect()
}

/// Member positions by name; the first wins (indexing refuses repeats).
fn names_of(members: &[Member]) -> HashMap<String, usize> {
    let mut by_name = HashMap::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        by_name.entry(m.name.clone()).or_insert(i);
    }
    by_name
}

/// A zstd decompression context, reused across frames.
pub(super) struct Dctx {
    zstd: zstd::bulk::Decompressor<'static>,
}

pub(super) fn decompressor() -> Result<Dctx> {
    Ok(Dctx {
        zstd: zstd::bulk::Decompressor::new()
            .map_err(|e| Error::Failed(format!("cannot start zstd: {e}")))?,
    })
}
