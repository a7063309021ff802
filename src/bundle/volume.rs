//! Volumes: a bundle cut into files no larger than a medium.
//!
//! Volume `n` of a bundle written to `NAME` is `NAME.00n`. Each starts with
//! a *label*, a zstd skippable frame naming the bundle, the volume's number,
//! the count, its length and a checksum of the rest of the volume. A label
//! is a frame like any other to the seek table (zero decompressed bytes), so
//! the volumes concatenated in order are a valid one-file bundle, and zstd
//! and tar read through the labels without noticing them.
//!
//! Volumes end on frame boundaries; the seek table ends the last one.
//!
//! This file holds the label codec, the volume file names, and the writer's
//! output that cuts volumes. Not for placing volumes when reading (that is
//! `assemble.rs`); the label's constants are in [`super::format`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use zeekstd::SeekTable;

use super::format::{LABEL_CONTENT, LABEL_LEN, LABEL_MAGIC, LABEL_TAG, LABEL_VERSION, MIN_VOLUME};
use super::frames::FrameSink;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::model::Digest;

/// What a volume says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub bundle_id: Digest,
    /// Counting from 1.
    pub number: u32,
    pub count: u32,
    /// Bytes of the whole volume file, label included.
    pub length: u64,
    /// sha256 of the volume's bytes after the label.
    pub checksum: [u8; 32],
}

impl Label {
    pub fn encode(&self) -> [u8; LABEL_LEN] {
        let mut out = [0u8; LABEL_LEN];
        out[0..4].copy_from_slice(&LABEL_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(LABEL_CONTENT as u32).to_le_bytes());
        let c = &mut out[8..];
        c[0..8].copy_from_slice(LABEL_TAG);
        c[8..12].copy_from_slice(&LABEL_VERSION.to_le_bytes());
        c[12..16].copy_from_slice(&self.number.to_le_bytes());
        c[16..20].copy_from_slice(&self.count.to_le_bytes());
        c[24..32].copy_from_slice(&self.length.to_le_bytes());
        c[32..64].copy_from_slice(&self.bundle_id.raw_bytes());
        c[64..96].copy_from_slice(&self.checksum);
        let own: [u8; 32] = Sha256::digest(&c[..96]).into();
        c[96..128].copy_from_slice(&own);
        out
    }

    /// Parses a label frame; `Err` says why it is not a good one.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Label, String> {
        if bytes.len() < LABEL_LEN {
            return Err("it is shorter than a volume label".into());
        }
        let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
        if le32(bytes, 0) != LABEL_MAGIC || le32(bytes, 4) as usize != LABEL_CONTENT {
            return Err("it does not start with an airlock volume label".into());
        }
        let c = &bytes[8..LABEL_LEN];
        if &c[0..8] != LABEL_TAG {
            return Err("it does not start with an airlock volume label".into());
        }
        let own: [u8; 32] = Sha256::digest(&c[..96]).into();
        if own[..] != c[96..128] {
            return Err("its volume label is damaged".into());
        }
        if le32(c, 8) != LABEL_VERSION {
            return Err(format!(
                "its volume label has version {}, this airlock reads {LABEL_VERSION}",
                le32(c, 8)
            ));
        }
        if le32(c, 20) != 0 {
            return Err("its volume label's reserved field is not zero".into());
        }
        Ok(Label {
            number: le32(c, 12),
            count: le32(c, 16),
            length: u64::from_le_bytes(c[24..32].try_into().expect("8")),
            bundle_id: Digest::from_raw(c[32..64].try_into().expect("32")),
            checksum: c[64..96].try_into().expect("32"),
        })
    }
}

/// `NAME.001`, `NAME.002`, … (more digits past 999).
pub fn volume_path(target: &Path, number: u32) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(format!(".{number:03}"));
    PathBuf::from(s)
}

/// Where a bundle's parity lives: `NAME.parity`, or `NAME.parity.001`, …
/// when it is split into volumes too.
pub fn parity_path(target: &Path, number: Option<u32>) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".parity");
    match number {
        Some(n) => volume_path(Path::new(&s), n),
        None => PathBuf::from(s),
    }
}

/// Splits `NAME.NNN` into `NAME` and `NNN`.
fn numbered(path: &Path) -> Option<(PathBuf, u32)> {
    let name = path.file_name()?.to_str()?;
    let (stem, digits) = name.rsplit_once('.')?;
    if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) || stem.is_empty() {
        return None;
    }
    Some((path.with_file_name(stem), digits.parse().ok()?))
}

/// The files that make up a bundle on disk.
#[derive(Debug)]
pub struct Located {
    /// `NAME` for volumes (`NAME.001`…), else the bundle file itself.
    pub target: PathBuf,
    /// Volume files by the number in their name; empty for one file.
    pub volumes: BTreeMap<u32, PathBuf>,
    /// Parity files found beside it, by number (0 for an unsplit one).
    pub parity: BTreeMap<u32, PathBuf>,
}

impl Located {
    pub fn is_split(&self) -> bool {
        !self.volumes.is_empty()
    }
}

/// Finds the bundle `path` names: a bundle file, any volume of a set, the
/// set's `NAME` without a number, or a directory holding one set.
pub fn locate(path: &Path) -> Result<Located> {
    let target = if path.is_dir() {
        let mut stems: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io("read directory", path, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| numbered(&e.path()))
            .map(|(stem, _)| stem)
            .filter(|stem| !stem.to_string_lossy().ends_with(".parity"))
            .collect();
        if path == Path::new(".") {
            // `.` named the set: its files read best as plain names.
            stems = stems
                .into_iter()
                .filter_map(|s| s.file_name().map(PathBuf::from))
                .collect();
        }
        stems.sort();
        stems.dedup();
        match stems.len() {
            1 => stems.pop().expect("one"),
            0 => {
                return Err(Error::bad_bundle(
                    path,
                    "the directory holds no bundle volumes (NAME.001, NAME.002, …)",
                ))
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{} holds volumes of several bundles ({}): name the first volume of one",
                    path.display(),
                    stems
                        .iter()
                        .map(|s| s.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    } else if let Some((stem, _)) = numbered(path).filter(|_| path.exists()) {
        stem
    } else {
        // A bundle file, or `NAME` of a set (whose volumes are found below).
        path.to_path_buf()
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut volumes = BTreeMap::new();
    let mut parity = BTreeMap::new();
    let single_parity = parity_path(&target, None);
    if single_parity.is_file() {
        parity.insert(0, single_parity.clone());
    }
    if !target.is_file() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read directory", &dir, e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            // Spelled like the target, so names compare and read alike.
            let p = target.with_file_name(entry.file_name());
            if let Some((stem, n)) = numbered(&p) {
                if stem.file_name() == target.file_name() {
                    volumes.insert(n, p);
                } else if stem.file_name() == single_parity.file_name() {
                    parity.insert(n, p);
                }
            }
        }
    }
    Ok(Located {
        target,
        volumes,
        parity,
    })
}

/// One volume being written.
struct Open {
    file: AtomicFile,
    hash: Sha256,
    written: u64,
}

/// A finished volume, waiting for its label.
struct Closed {
    file: AtomicFile,
    checksum: [u8; 32],
    length: u64,
}

/// Writes frames into volumes of at most `limit` bytes.
pub struct SplitOutput {
    target: PathBuf,
    limit: u64,
    closed: Vec<Closed>,
    open: Option<Open>,
}

impl SplitOutput {
    pub fn new(target: &Path, limit: u64) -> Result<SplitOutput> {
        if limit < MIN_VOLUME {
            return Err(Error::Usage(format!(
                "--split {limit}: volumes must hold at least {MIN_VOLUME} bytes (1M)"
            )));
        }
        Ok(SplitOutput {
            target: target.to_path_buf(),
            limit,
            closed: Vec::new(),
            open: None,
        })
    }

    /// The largest decompressed frame a volume of `limit` bytes takes: an
    /// eighth of it, so volumes are at least 7/8 full.
    pub fn frame_data(limit: u64) -> usize {
        let eighth = (limit / 8) as usize / super::format::BLOCK * super::format::BLOCK;
        eighth.clamp(super::format::BLOCK, super::format::MAX_FRAME_DATA)
    }

    fn next_volume(&mut self, table: &mut SeekTable) -> io::Result<()> {
        if let Some(done) = self.open.take() {
            self.closed.push(Closed {
                file: done.file,
                checksum: done.hash.finalize().into(),
                length: done.written,
            });
        }
        let number = self.closed.len() as u32 + 1;
        let path = volume_path(&self.target, number);
        let mut file = AtomicFile::create(&path).map_err(io::Error::other)?;
        // A placeholder: the real label is written once the count is known.
        file.write_all(&[0u8; LABEL_LEN])?;
        table
            .log_frame(LABEL_LEN as u32, 0)
            .map_err(|e| io::Error::other(format!("seek table: {e}")))?;
        self.open = Some(Open {
            file,
            hash: Sha256::new(),
            written: LABEL_LEN as u64,
        });
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], table: &mut SeekTable) -> io::Result<()> {
        let limit = self.limit;
        let fits = |o: &Open| o.written + bytes.len() as u64 <= limit;
        if self.open.as_ref().is_none_or(|o| !fits(o)) {
            self.next_volume(table)?;
            if !fits(self.open.as_ref().expect("opened")) {
                return Err(io::Error::other(format!(
                    "{} bytes do not fit in a volume of {} bytes: use a larger --split",
                    bytes.len(),
                    self.limit
                )));
            }
        }
        self.append(bytes)
    }

    /// Adds bytes to the open volume, counting and hashing them.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let open = self.open.as_mut().expect("opened");
        open.file.write_all(bytes)?;
        open.hash.update(bytes);
        open.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes each volume's label, then hands the files over for commit.
    /// Returns the files in volume order.
    pub fn finish_labels(mut self, bundle_id: &Digest) -> Result<Vec<AtomicFile>> {
        if let Some(done) = self.open.take() {
            self.closed.push(Closed {
                file: done.file,
                checksum: done.hash.finalize().into(),
                length: done.written,
            });
        }
        let count = self.closed.len() as u32;
        let mut files = Vec::new();
        for (i, mut v) in self.closed.into_iter().enumerate() {
            let label = Label {
                bundle_id: bundle_id.clone(),
                number: i as u32 + 1,
                count,
                length: v.length,
                checksum: v.checksum,
            };
            use std::os::unix::fs::FileExt;
            let target = v.file.target().to_path_buf();
            v.file
                .file()
                .write_all_at(&label.encode(), 0)
                .map_err(|e| Error::io("write the label of", &target, e))?;
            files.push(v.file);
        }
        Ok(files)
    }
}

impl FrameSink for SplitOutput {
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()> {
        self.write(frame, table)?;
        table
            .log_frame(frame.len() as u32, d_size)
            .map_err(|e| io::Error::other(format!("seek table: {e}")))
    }

    fn end(&mut self, mut table: SeekTable) -> io::Result<()> {
        // One more entry (8 bytes) in case the table needs a volume of its own.
        let needed = table.clone().into_serializer().encoded_len() as u64 + 8;
        if self
            .open
            .as_ref()
            .is_none_or(|o| o.written + needed > self.limit)
        {
            self.next_volume(&mut table)?;
        }
        let mut bytes = Vec::new();
        io::copy(&mut table.into_serializer(), &mut bytes)?;
        let open = self.open.as_ref().expect("opened");
        if open.written + bytes.len() as u64 > self.limit {
            return Err(io::Error::other(format!(
                "the seek table ({} bytes) does not fit in a volume: use a larger --split",
                bytes.len()
            )));
        }
        self.append(&bytes)
    }
}

/// Removes volumes and parity files of an earlier bundle at `target` that
/// this one did not overwrite, so no stale file looks like part of it.
pub fn remove_stale(target: &Path, volumes: u32, parity: &[PathBuf]) {
    if let Ok(found) = locate(target) {
        for (n, p) in found.volumes {
            if n > volumes {
                let _ = std::fs::remove_file(p);
            }
        }
        for p in found.parity.values() {
            if !parity.iter().any(|kept| kept.file_name() == p.file_name()) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    if volumes > 0 && target.is_file() {
        // An unsplit bundle of the same name would shadow the volumes.
        let _ = std::fs::remove_file(target);
    }
}

/// Reads the label at the start of a volume file.
pub fn read_label(path: &Path) -> std::result::Result<Label, String> {
    use std::io::Read;
    let mut buf = [0u8; LABEL_LEN];
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    f.read_exact(&mut buf)
        .map_err(|_| "it is shorter than a volume label".to_string())?;
    Label::decode(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> Label {
        Label {
            bundle_id: Digest::of(b"bundle"),
            number: 2,
            count: 5,
            length: 4_000_000_000,
            checksum: [7; 32],
        }
    }

    #[test]
    fn a_label_round_trips_and_any_flipped_bit_is_caught() {
        let bytes = label().encode();
        assert_eq!(Label::decode(&bytes).unwrap(), label());
        for i in 8..LABEL_LEN {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(Label::decode(&damaged).is_err(), "byte {i}");
        }
        assert!(Label::decode(&bytes[..100]).is_err());
    }

    #[test]
    fn names_follow_the_volume_convention() {
        let t = Path::new("dir/b.airlock");
        assert_eq!(volume_path(t, 1), Path::new("dir/b.airlock.001"));
        assert_eq!(volume_path(t, 1234), Path::new("dir/b.airlock.1234"));
        assert_eq!(parity_path(t, None), Path::new("dir/b.airlock.parity"));
        assert_eq!(
            parity_path(t, Some(2)),
            Path::new("dir/b.airlock.parity.002")
        );
        assert_eq!(
            numbered(Path::new("dir/b.airlock.012")),
            Some((PathBuf::from("dir/b.airlock"), 12))
        );
        assert_eq!(numbered(Path::new("dir/b.airlock.12")), None);
        assert_eq!(numbered(Path::new("dir/b.airlock")), None);
    }

    #[test]
    fn frames_are_cut_to_an_eighth_of_a_volume() {
        assert_eq!(SplitOutput::frame_data(1_000_000), 124_928);
        assert_eq!(
            SplitOutput::frame_data(4_000_000_000),
            super::super::format::MAX_FRAME_DATA
        );
    }
}
