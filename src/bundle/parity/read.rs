//! Loading parity files found beside a bundle, telling good data shards from
//! damaged ones by their hashes, and rebuilding damaged ones in memory. Not
//! for writing parity (that is `encode.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;

use rayon::prelude::*;
use reed_solomon_simd::ReedSolomonDecoder;

use super::{data_shard, sha, Hash, Header, Layout, StripeOutcome};
use crate::bundle::format::PARITY_HEADER_LEN;
use crate::bundle::store::BundleBytes;
use crate::model::Digest;

/// A parity file, mapped.
struct ParityFile {
    path: PathBuf,
    header: Header,
    map: memmap2::Mmap,
}

/// The parity found beside a bundle, once one file's header and index check out.
pub struct Parity {
    pub layout: Layout,
    pub bundle_id: Digest,
    /// Each volume's length; empty for an unsplit bundle.
    pub volume_lengths: Vec<u64>,
    originals: Vec<Hash>,
    recovery: Vec<Hash>,
    files: BTreeMap<u32, ParityFile>,
    per_file: u64,
    /// Written as `NAME.parity.001`, … rather than one `NAME.parity`.
    numbered: bool,
    /// Parity files that could not be used, and why.
    pub problems: Vec<String>,
}

impl Parity {
    /// Loads the parity files given; `None` when none of them is usable
    /// (their problems are then returned as the error).
    pub fn load(
        paths: &BTreeMap<u32, PathBuf>,
    ) -> std::result::Result<Option<Parity>, Vec<String>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let mut usable: Vec<ParityFile> = Vec::new();
        for path in paths.values() {
            let opened = File::open(path)
                .map_err(|e| e.to_string())
                // SAFETY: read-only and private (see `store::Part`).
                .and_then(|f| unsafe { memmap2::Mmap::map(&f) }.map_err(|e| e.to_string()))
                .and_then(|map| {
                    let header = Header::decode(&map)?;
                    Ok(ParityFile {
                        path: path.clone(),
                        header,
                        map,
                    })
                });
            match opened {
                Ok(f) => usable.push(f),
                Err(why) => problems.push(format!("parity file {}: {why}", path.display())),
            }
        }
        // The index: from the first file whose copy checks out.
        let mut found = None;
        for f in &usable {
            let start = PARITY_HEADER_LEN as usize;
            let end = start + f.header.index_len() as usize;
            match f.map.get(start..end) {
                Some(index) if sha(index) == f.header.index_hash => {
                    found = Some((f.header.clone(), index.to_vec()));
                    break;
                }
                _ => problems.push(format!(
                    "parity file {}: its index is damaged",
                    f.path.display()
                )),
            }
        }
        let Some((header, index)) = found else {
            return Err(problems);
        };
        let mut files = BTreeMap::new();
        for f in usable {
            let same = f.header.bundle_id == header.bundle_id
                && f.header.layout == header.layout
                && f.header.index_hash == header.index_hash;
            if !same {
                problems.push(format!(
                    "parity file {} belongs to another bundle ({})",
                    f.path.display(),
                    f.header.bundle_id.short()
                ));
            } else {
                match files.entry(f.header.number) {
                    std::collections::btree_map::Entry::Occupied(_) => problems.push(format!(
                        "parity file {} repeats parity file number {}",
                        f.path.display(),
                        f.header.number
                    )),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(f);
                    }
                }
            }
        }
        let volumes = header.volumes as usize;
        let originals_at = volumes * 8;
        let recovery_at = originals_at + header.layout.originals as usize * 32;
        let hashes = |range: &[u8]| -> Vec<Hash> {
            range
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32"))
                .collect()
        };
        for n in 1..=header.count {
            if !files.contains_key(&n) {
                problems.push(format!("parity file {n} of {} is missing", header.count));
            }
        }
        Ok(Some(Parity {
            volume_lengths: index[..originals_at]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
            originals: hashes(&index[originals_at..recovery_at]),
            recovery: hashes(&index[recovery_at..]),
            layout: header.layout.clone(),
            bundle_id: header.bundle_id.clone(),
            per_file: header.per_file,
            numbered: paths.keys().any(|&n| n > 0),
            files,
            problems,
        }))
    }

    /// Recovery shard `g`, if its file is here and its hash checks out.
    fn recovery_shard(&self, g: u64) -> Option<&[u8]> {
        let n = (g / self.per_file) as u32 + 1;
        let f = self.files.get(&n)?;
        let at = (PARITY_HEADER_LEN
            + f.header.index_len()
            + (g % self.per_file) * self.layout.shard) as usize;
        let shard = f.map.get(at..at + self.layout.shard as usize)?;
        (sha(shard) == self.recovery[g as usize]).then_some(shard)
    }

    /// Data shards whose bytes are missing or do not match their hash.
    /// Hashes in file order, on rayon, releasing pages as it goes.
    pub fn damaged_shards(&self, bytes: &BundleBytes) -> Vec<u64> {
        let layout = &self.layout;
        (0..layout.originals as usize)
            .into_par_iter()
            .with_min_len(16)
            .map(|i| i as u64)
            .filter(|&i| {
                let good = data_shard(bytes, layout, i)
                    .is_some_and(|s| sha(&s) == self.originals[i as usize]);
                let (start, len) = layout.range(i);
                bytes.release(start, len);
                !good
            })
            .collect()
    }

    /// How many recovery shards are damaged or missing.
    pub fn damaged_recovery(&self) -> u64 {
        (0..self.layout.recovery_total())
            .into_par_iter()
            .filter(|&g| self.recovery_shard(g).is_none())
            .count() as u64
    }

    /// Rebuilds the damaged data shards into `bytes`; returns the shards it
    /// could not rebuild (too much damage in their stripe). Unguarded: the
    /// bundle's readers go through [`super::guard`] instead.
    pub fn repair(&self, bytes: &mut BundleBytes, damaged: &[u64]) -> Vec<u64> {
        let (patches, lost) = self.rebuild(bytes, damaged);
        for (at, piece) in patches {
            bytes.patch(at, piece);
        }
        lost
    }

    /// Rebuilds the damaged data shards: the pieces (offset, bytes, each
    /// matching its hash), and the shards it could not rebuild.
    pub fn rebuild(&self, bytes: &BundleBytes, damaged: &[u64]) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
        let layout = &self.layout;
        let mut by_stripe: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for &i in damaged {
            by_stripe
                .entry(i % layout.stripes)
                .or_default()
                .insert(i / layout.stripes);
        }
        let outcomes: Vec<StripeOutcome> = by_stripe
            .par_iter()
            .map(|(&k, bad)| self.repair_stripe(bytes, k, bad))
            .collect();
        let mut patches = Vec::new();
        let mut lost = Vec::new();
        for (restored, unrepaired) in outcomes {
            for (i, mut shard) in restored {
                let (start, len) = layout.range(i);
                shard.truncate(len);
                patches.push((start, shard));
            }
            lost.extend(unrepaired);
        }
        lost.sort_unstable();
        (patches, lost)
    }

    fn repair_stripe(&self, bytes: &BundleBytes, k: u64, bad: &BTreeSet<u64>) -> StripeOutcome {
        let layout = &self.layout;
        let width = layout.width(k);
        let lost = || {
            (
                Vec::new(),
                bad.iter().map(|&j| layout.shard_index(k, j)).collect(),
            )
        };
        let recovery: Vec<(u64, &[u8])> = (0..layout.recovery)
            .filter_map(|r| {
                self.recovery_shard(layout.recovery_index(k, r))
                    .map(|s| (r, s))
            })
            .take(bad.len())
            .collect();
        if recovery.len() < bad.len() {
            return lost();
        }
        let Ok(mut decoder) = ReedSolomonDecoder::new(
            width as usize,
            layout.recovery as usize,
            layout.shard as usize,
        ) else {
            return lost();
        };
        for j in (0..width).filter(|j| !bad.contains(j)) {
            let Some(shard) = data_shard(bytes, layout, layout.shard_index(k, j)) else {
                return lost();
            };
            if decoder.add_original_shard(j as usize, &shard).is_err() {
                return lost();
            }
        }
        for (r, shard) in recovery {
            if decoder.add_recovery_shard(r as usize, shard).is_err() {
                return lost();
            }
        }
        let Ok(result) = decoder.decode() else {
            return lost();
        };
        let mut restored = Vec::new();
        for &j in bad {
            let i = layout.shard_index(k, j);
            match result.restored_original(j as usize) {
                // A rebuilt shard must match its hash like any other.
                Some(s) if sha(s) == self.originals[i as usize] => restored.push((i, s.to_vec())),
                _ => return lost(),
            }
        }
        (restored, Vec::new())
    }

    /// The limit parity volumes were cut to, for rewriting them alike.
    pub fn split(&self) -> Option<u64> {
        self.numbered
            .then(|| PARITY_HEADER_LEN + self.index_len() + self.per_file * self.layout.shard)
    }

    fn index_len(&self) -> u64 {
        self.volume_lengths.len() as u64 * 8
            + (self.layout.originals + self.layout.recovery_total()) * 32
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.values().map(|f| f.path.clone()).collect()
    }
}
