//! The bytes of a bundle as one logical range, whatever holds them: one
//! file, a set of volumes, and pieces rebuilt from parity in memory.
//!
//! Readers ask for a range; they get a slice of a mapped file when one file
//! holds it, or a copy assembled from several places otherwise. A range that
//! nothing holds (a missing or truncated volume) is a [`Gap`].
//!
//! Not for finding the files (`assemble.rs`) nor for checking what
//! they hold (`check.rs`): bytes here are neither parsed nor trusted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One file's share of the bundle.
pub struct Part {
    pub path: PathBuf,
    /// Volume number, from 1; 0 for an unsplit bundle.
    pub number: u32,
    /// Offset of its first byte in the bundle.
    pub start: u64,
    /// The bytes it should hold.
    pub len: u64,
    /// The file, mapped; `None` when it is missing. It may hold fewer bytes
    /// than `len` (truncated) or more (appended to).
    map: Option<memmap2::Mmap>,
}

impl Part {
    pub fn open(path: &Path, number: u32, start: u64, len: Option<u64>) -> Result<Part> {
        let map = match File::open(path) {
            Ok(file) => {
                // SAFETY: read-only and private; like any mmap reader this
                // assumes nobody truncates the file while airlock reads it.
                let map =
                    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("map", path, e))?;
                Some(map)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let len = len.unwrap_or_else(|| map.as_ref().map_or(0, |m| m.len() as u64));
        Ok(Part {
            path: path.to_path_buf(),
            number,
            start,
            len,
            map,
        })
    }

    pub fn missing(path: &Path, number: u32, start: u64, len: u64) -> Part {
        Part {
            path: path.to_path_buf(),
            number,
            start,
            len,
            map: None,
        }
    }

    /// Bytes of the file, which may differ from `len`.
    pub fn file_len(&self) -> Option<u64> {
        self.map.as_ref().map(|m| m.len() as u64)
    }

    /// Bytes it holds that belong to the bundle.
    fn available(&self) -> u64 {
        self.file_len().unwrap_or(0).min(self.len)
    }

    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// How to name it in messages.
    pub fn describe(&self) -> String {
        if self.number == 0 {
            self.path.display().to_string()
        } else {
            format!("volume {} ({})", self.number, self.path.display())
        }
    }
}

/// Bytes nothing holds, at `offset`, in the part at index `part`.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    pub offset: u64,
    pub part: usize,
}

pub struct BundleBytes {
    parts: Vec<Part>,
    len: u64,
    /// Pieces rebuilt from parity, by offset; they never overlap.
    patches: BTreeMap<u64, Vec<u8>>,
}

impl BundleBytes {
    /// Parts must be in order and contiguous.
    pub fn new(parts: Vec<Part>) -> BundleBytes {
        let len = parts.last().map_or(0, |p| p.end());
        debug_assert!(parts.windows(2).all(|w| w[0].end() == w[1].start));
        BundleBytes {
            parts,
            len,
            patches: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn part_at(&self, offset: u64) -> usize {
        self.parts
            .partition_point(|p| p.end() <= offset)
            .min(self.parts.len().saturating_sub(1))
    }

    pub fn patch(&mut self, offset: u64, bytes: Vec<u8>) {
        self.patches.insert(offset, bytes);
    }

    /// Bytes of `part` that parity rebuilt differently from what its file
    /// holds (or lacks): zero for a part that was whole.
    pub fn rebuilt_bytes(&self, part: &Part) -> u64 {
        let from = self
            .patch_at(part.start)
            .map_or(part.start, |(start, _)| start);
        let on_disk = part.map.as_deref().unwrap_or(&[]);
        self.patches
            .range(from..part.end())
            .map(|(&s, b)| {
                let lo = s.max(part.start);
                let hi = (s + b.len() as u64).min(part.end());
                let new = &b[(lo - s) as usize..(hi - s) as usize];
                let old = on_disk
                    .get((lo - part.start) as usize..(hi - part.start) as usize)
                    .unwrap_or(&[]);
                if new == old {
                    0
                } else {
                    hi - lo
                }
            })
            .sum()
    }

    /// Whether `part` holds all of its bytes in `start..end`.
    pub fn holds(&self, part: usize, start: u64, end: u64) -> bool {
        let p = &self.parts[part];
        let end = end.min(p.end());
        end <= p.start + p.available() || start >= end
    }

    /// The patch covering `offset`, if any.
    fn patch_at(&self, offset: u64) -> Option<(u64, &[u8])> {
        let (&start, bytes) = self.patches.range(..=offset).next_back()?;
        (offset < start + bytes.len() as u64).then_some((start, &bytes[..]))
    }

    /// `len` bytes from `offset`, which the caller keeps within the bundle.
    pub fn read(&self, offset: u64, len: usize) -> std::result::Result<Cow<'_, [u8]>, Gap> {
        let end = offset + len as u64;
        let part_index = self.part_at(offset);
        let part = &self.parts[part_index];
        let untouched = self.patches.is_empty()
            || (self.patch_at(offset).is_none()
                && self.patches.range(offset..end).next().is_none());
        if untouched && end <= part.start + part.available() {
            let map = part.map.as_ref().expect("available bytes are mapped");
            let at = (offset - part.start) as usize;
            return Ok(Cow::Borrowed(&map[at..at + len]));
        }
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        while pos < end {
            if let Some((start, bytes)) = self.patch_at(pos) {
                let from = (pos - start) as usize;
                let take = (bytes.len() - from).min((end - pos) as usize);
                out.extend_from_slice(&bytes[from..from + take]);
                pos += take as u64;
                continue;
            }
            let index = self.part_at(pos);
            let part = &self.parts[index];
            let held = part.start + part.available();
            if pos >= held {
                return Err(Gap {
                    offset: pos,
                    part: index,
                });
            }
            let next_patch = self.patches.range(pos..).next().map_or(end, |(&s, _)| s);
            let stop = end.min(held).min(next_patch);
            let map = part.map.as_ref().expect("available bytes are mapped");
            out.extend_from_slice(&map[(pos - part.start) as usize..(stop - part.start) as usize]);
            pos = stop;
        }
        Ok(Cow::Owned(out))
    }

    /// Drops a range's pages from this process's resident set, so memory
    /// stays bounded by what is in flight, not by the bundle's size. The
    /// maps are read-only and file-backed, so a later touch reloads them.
    pub fn release(&self, offset: u64, len: usize) {
        let end = offset + len as u64;
        let mut index = self.part_at(offset);
        while let Some(part) = self.parts.get(index).filter(|p| p.start < end) {
            if let Some(map) = &part.map {
                let from = offset.saturating_sub(part.start).min(map.len() as u64) as usize;
                let to = (end - part.start).min(map.len() as u64) as usize;
                if to > from {
                    // SAFETY: see above; no data can be lost from a read-only map.
                    let _ = unsafe {
                        map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            from,
                            to - from,
                        )
                    };
                }
            }
            index += 1;
        }
    }

    /// Describes a gap for an error message.
    pub fn describe_gap(&self, gap: Gap) -> String {
        let part = &self.parts[gap.part];
        match part.file_len() {
            None => format!("{} is missing", part.describe()),
            Some(n) => format!(
                "{} is truncated: it has {n} of its {} bytes",
                part.describe(),
                part.len
            ),
        }
    }
}
