//! Reed-Solomon parity over a bundle's bytes.
//!
//! The bundle (all volumes, in order, as one byte range) is cut into shards
//! of `shard` bytes, the last one padded with zeros. Shard `i` belongs to
//! stripe `i mod stripes`: the stripes interleave, so a contiguous loss (a
//! lost volume, a bad run of sectors) costs every stripe about the same few
//! shards, and `recovery` shards per stripe repair a loss of about
//! `recovery / width` of the bundle, wherever it falls. A sha256 per shard
//! tells good shards from damaged ones; Reed-Solomon alone cannot.
//!
//! Parity files carry a header, an index (volume lengths and every shard's
//! hash) and recovery shards. Each parity file holds the whole index, so any
//! one of them tells which data shards are damaged.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use sha2::{Digest as _, Sha256};

use super::format::{
    PARITY_HEADER_LEN, PARITY_MAX_SHARD, PARITY_MAX_WIDTH, PARITY_MIN_SHARD, PARITY_TAG,
    PARITY_VERSION,
};
use super::store::BundleBytes;
use super::volume;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::model::Digest;

type Hash = [u8; 32];
/// Shards a stripe's repair rebuilt (index, bytes), and those it could not.
type StripeOutcome = (Vec<(u64, Vec<u8>)>, Vec<u64>);

fn sha(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// How a bundle of `data_len` bytes is cut into shards and stripes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub data_len: u64,
    pub shard: u64,
    pub stripes: u64,
    pub originals: u64,
    /// Recovery shards per stripe.
    pub recovery: u64,
}

impl Layout {
    /// Parity of `percent` % of the data. Shards grow with the bundle (about
    /// 8 k of them up to 512 MB, then 64 KiB each).
    pub fn new(data_len: u64, percent: u32) -> Layout {
        let shard = data_len
            .div_ceil(8192)
            .next_power_of_two()
            .clamp(PARITY_MIN_SHARD, PARITY_MAX_SHARD);
        let originals = data_len.div_ceil(shard).max(1);
        let stripes = originals.div_ceil(PARITY_MAX_WIDTH);
        let width = originals.div_ceil(stripes);
        let recovery = (width * percent as u64).div_ceil(100).max(1);
        Layout {
            data_len,
            shard,
            stripes,
            originals,
            recovery,
        }
    }

    /// Data shards in stripe `k`.
    pub fn width(&self, k: u64) -> u64 {
        (self.originals - k).div_ceil(self.stripes)
    }

    /// The data shard at position `j` of stripe `k`.
    pub fn shard_index(&self, k: u64, j: u64) -> u64 {
        k + j * self.stripes
    }

    /// Where recovery shard `r` of stripe `k` is stored. Interleaved like
    /// the data, so a lost parity volume costs every stripe a little.
    pub fn recovery_index(&self, k: u64, r: u64) -> u64 {
        r * self.stripes + k
    }

    pub fn recovery_total(&self) -> u64 {
        self.stripes * self.recovery
    }

    /// The bytes of data shard `i` (the last may be short).
    pub fn range(&self, i: u64) -> (u64, usize) {
        let start = i * self.shard;
        (start, (self.data_len - start).min(self.shard) as usize)
    }

    fn check(&self) -> std::result::Result<(), String> {
        // 1 PiB: keeps every size computed from a (hostile) header in range.
        let ok = self.data_len <= 1 << 50
            && self.shard >= 2
            && self.shard % 2 == 0
            && self.shard <= PARITY_MAX_SHARD
            && self.stripes > 0
            && self.originals == self.data_len.div_ceil(self.shard).max(1)
            && self.originals.div_ceil(self.stripes) <= PARITY_MAX_WIDTH
            && self.stripes <= self.originals
            && (1..=PARITY_MAX_WIDTH).contains(&self.recovery);
        if ok {
            Ok(())
        } else {
            Err("its shard layout is not one airlock writes".into())
        }
    }
}

/// Reads data shard `i`, padded to a whole shard; `None` if bytes are missing.
fn data_shard(bytes: &BundleBytes, layout: &Layout, i: u64) -> Option<Vec<u8>> {
    let (start, len) = layout.range(i);
    let got = bytes.read(start, len).ok()?;
    let mut shard = Vec::with_capacity(layout.shard as usize);
    shard.extend_from_slice(&got);
    shard.resize(layout.shard as usize, 0);
    Some(shard)
}

/// What a parity file's header says.
#[derive(Clone, Debug)]
struct Header {
    layout: Layout,
    bundle_id: Digest,
    number: u32,
    count: u32,
    /// Recovery shards per parity file (the last may hold fewer).
    per_file: u64,
    volumes: u32,
    index_hash: Hash,
}

impl Header {
    fn index_len(&self) -> u64 {
        self.volumes as u64 * 8 + (self.layout.originals + self.layout.recovery_total()) * 32
    }

    fn first_recovery(&self) -> u64 {
        (self.number as u64 - 1) * self.per_file
    }

    fn recovery_here(&self) -> u64 {
        self.per_file
            .min(self.layout.recovery_total() - self.first_recovery())
    }

    fn encode(&self) -> [u8; PARITY_HEADER_LEN as usize] {
        let mut h = [0u8; PARITY_HEADER_LEN as usize];
        let l = &self.layout;
        h[0..8].copy_from_slice(PARITY_TAG);
        h[8..12].copy_from_slice(&PARITY_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.number.to_le_bytes());
        h[16..20].copy_from_slice(&self.count.to_le_bytes());
        h[20..24].copy_from_slice(&self.volumes.to_le_bytes());
        for (at, v) in [
            (24, l.shard),
            (32, l.stripes),
            (40, l.recovery),
            (48, l.data_len),
            (56, l.originals),
            (64, self.per_file),
        ] {
            h[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        h[72..104].copy_from_slice(&self.bundle_id.raw_bytes());
        h[104..136].copy_from_slice(&self.index_hash);
        let own = sha(&h[..224]);
        h[224..256].copy_from_slice(&own);
        h
    }

    fn decode(h: &[u8]) -> std::result::Result<Header, String> {
        if h.len() < PARITY_HEADER_LEN as usize || &h[0..8] != PARITY_TAG {
            return Err("it is not an airlock parity file".into());
        }
        if sha(&h[..224])[..] != h[224..256] {
            return Err("its header is damaged".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8"));
        if u32_at(8) != PARITY_VERSION {
            return Err(format!(
                "it has version {}, this airlock reads {PARITY_VERSION}",
                u32_at(8)
            ));
        }
        let header = Header {
            number: u32_at(12),
            count: u32_at(16),
            volumes: u32_at(20),
            layout: Layout {
                shard: u64_at(24),
                stripes: u64_at(32),
                recovery: u64_at(40),
                data_len: u64_at(48),
                originals: u64_at(56),
            },
            per_file: u64_at(64),
            bundle_id: Digest::from_raw(h[72..104].try_into().expect("32")),
            index_hash: h[104..136].try_into().expect("32"),
        };
        header.layout.check()?;
        let total = header.layout.recovery_total();
        if header.per_file == 0
            || header.count as u64 != total.div_ceil(header.per_file)
            || header.number == 0
            || header.number > header.count
        {
            return Err("its file numbering is inconsistent".into());
        }
        Ok(header)
    }
}

/// Writes parity for the bundle in `bytes`: one file at `target.parity`, or
/// parity volumes of at most `split` bytes. Returns uncommitted files.
pub fn encode(
    bytes: &BundleBytes,
    layout: &Layout,
    bundle_id: &Digest,
    volume_lengths: &[u64],
    target: &Path,
    split: Option<u64>,
) -> Result<Vec<AtomicFile>> {
    let total = layout.recovery_total();
    let mut header = Header {
        layout: layout.clone(),
        bundle_id: bundle_id.clone(),
        number: 1,
        count: 1,
        per_file: total,
        volumes: volume_lengths.len() as u32,
        index_hash: [0; 32],
    };
    let fixed = PARITY_HEADER_LEN + header.index_len();
    if let Some(limit) = split {
        let room = limit.saturating_sub(fixed) / layout.shard;
        if room == 0 {
            return Err(Error::Usage(format!(
                "parity volumes need more than {limit} bytes: the parity index alone is {fixed}; use a larger --split"
            )));
        }
        header.per_file = room.min(total);
        header.count = total.div_ceil(header.per_file) as u32;
    }
    let mut files = Vec::new();
    for n in 1..=header.count {
        let path = volume::parity_path(target, split.map(|_| n));
        let mut file = AtomicFile::create(&path)?;
        let here = Header {
            number: n,
            ..header.clone()
        }
        .recovery_here();
        file.file()
            .set_len(fixed + here * layout.shard)
            .map_err(|e| Error::io("size", &path, e))?;
        files.push(file);
    }

    // Every stripe on rayon; each writes its recovery shards where they go.
    type Hashes = Vec<(u64, Hash)>;
    let results: Vec<Result<(Hashes, Hashes)>> = (0..layout.stripes)
        .into_par_iter()
        .map(|k| {
            let width = layout.width(k);
            let mut encoder = ReedSolomonEncoder::new(
                width as usize,
                layout.recovery as usize,
                layout.shard as usize,
            )
            .map_err(|e| Error::Usage(format!("parity: {e}")))?;
            let mut hashes = Vec::with_capacity(width as usize);
            for j in 0..width {
                let i = layout.shard_index(k, j);
                let shard = data_shard(bytes, layout, i).ok_or_else(|| {
                    Error::Usage(format!("parity: shard {i} of the bundle is unreadable"))
                })?;
                hashes.push((i, sha(&shard)));
                encoder
                    .add_original_shard(&shard)
                    .map_err(|e| Error::Usage(format!("parity: {e}")))?;
            }
            let result = encoder
                .encode()
                .map_err(|e| Error::Usage(format!("parity: {e}")))?;
            let mut recovery = Vec::with_capacity(layout.recovery as usize);
            for (r, shard) in result.recovery_iter().enumerate() {
                let g = layout.recovery_index(k, r as u64);
                let n = (g / header.per_file) as usize;
                let at = fixed + (g % header.per_file) * layout.shard;
                let file = &files[n];
                file.temp_file()
                    .write_all_at(shard, at)
                    .map_err(|e| Error::io("write", file.target(), e))?;
                recovery.push((g, sha(shard)));
            }
            Ok((hashes, recovery))
        })
        .collect();
    let mut originals = vec![[0u8; 32]; layout.originals as usize];
    let mut recovery = vec![[0u8; 32]; total as usize];
    for r in results {
        let (hashes, rec) = r?;
        for (i, h) in hashes {
            originals[i as usize] = h;
        }
        for (g, h) in rec {
            recovery[g as usize] = h;
        }
    }
    let mut index = Vec::with_capacity(header.index_len() as usize);
    for len in volume_lengths {
        index.extend_from_slice(&len.to_le_bytes());
    }
    for h in originals.iter().chain(&recovery) {
        index.extend_from_slice(h);
    }
    header.index_hash = sha(&index);
    for (n, file) in files.iter().enumerate() {
        let h = Header {
            number: n as u32 + 1,
            ..header.clone()
        };
        let f = file.temp_file();
        f.write_all_at(&h.encode(), 0)
            .and_then(|_| f.write_all_at(&index, PARITY_HEADER_LEN))
            .map_err(|e| Error::io("write", file.target(), e))?;
    }
    Ok(files)
}

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
    /// could not rebuild (too much damage in their stripe).
    pub fn repair(&self, bytes: &mut BundleBytes, damaged: &[u64]) -> Vec<u64> {
        let layout = &self.layout;
        let mut by_stripe: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for &i in damaged {
            by_stripe
                .entry(i % layout.stripes)
                .or_default()
                .insert(i / layout.stripes);
        }
        let view: &BundleBytes = bytes;
        let outcomes: Vec<StripeOutcome> = by_stripe
            .par_iter()
            .map(|(&k, bad)| self.repair_stripe(view, k, bad))
            .collect();
        let mut lost = Vec::new();
        for (restored, unrepaired) in outcomes {
            for (i, shard) in restored {
                let (start, len) = layout.range(i);
                let mut shard = shard;
                shard.truncate(len);
                bytes.patch(start, shard);
            }
            lost.extend(unrepaired);
        }
        lost.sort_unstable();
        lost
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::store::Part;

    #[test]
    fn layouts_interleave_stripes_of_bounded_width() {
        for (len, pct) in [
            (1u64, 5u32),
            (5_000, 1),
            (10_000_000, 5),
            (100 << 30, 5),
            (3 << 20, 100),
        ] {
            let l = Layout::new(len, pct);
            l.check().unwrap();
            assert!(l.originals * l.shard >= len);
            let widths: u64 = (0..l.stripes).map(|k| l.width(k)).sum();
            assert_eq!(widths, l.originals, "{len}");
            assert!(l.width(0) <= PARITY_MAX_WIDTH);
            assert!(l.recovery * 100 >= l.width(0) * pct as u64, "{len} {pct}");
        }
        // 100 GiB: 64 KiB shards, so the index stays about 50 MB.
        assert_eq!(Layout::new(100 << 30, 5).shard, PARITY_MAX_SHARD);
    }

    #[test]
    fn encodes_checks_and_rebuilds_a_lost_run_of_bytes() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_001u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        let path = t.path().join("b");
        std::fs::write(&path, &data).unwrap();
        let bytes = BundleBytes::new(vec![Part::open(&path, 0, 0, None).unwrap()]);
        let layout = Layout::new(data.len() as u64, 10);
        let id = Digest::of(b"x");
        for f in encode(&bytes, &layout, &id, &[], &path, None).unwrap() {
            f.commit().unwrap();
        }
        let paths = BTreeMap::from([(0, volume::parity_path(&path, None))]);
        let parity = Parity::load(&paths).unwrap().unwrap();
        assert!(parity.damaged_shards(&bytes).is_empty());
        assert_eq!(parity.damaged_recovery(), 0);
        drop(bytes);

        // A contiguous 8% of the file lost: within 10%.
        let mut damaged = data.clone();
        damaged[1_000_000..1_240_000].fill(0);
        std::fs::write(&path, &damaged).unwrap();
        let mut bytes = BundleBytes::new(vec![Part::open(&path, 0, 0, None).unwrap()]);
        let bad = parity.damaged_shards(&bytes);
        assert!(!bad.is_empty());
        assert!(parity.repair(&mut bytes, &bad).is_empty());
        assert_eq!(&bytes.read(0, data.len()).unwrap()[..], &data[..]);
        drop(bytes);

        // 30% lost: beyond it, and every lost shard is reported.
        damaged[..900_000].fill(1);
        std::fs::write(&path, &damaged).unwrap();
        let mut bytes = BundleBytes::new(vec![Part::open(&path, 0, 0, None).unwrap()]);
        let bad = parity.damaged_shards(&bytes);
        let lost = parity.repair(&mut bytes, &bad);
        assert!(!lost.is_empty());
        assert!(lost.iter().all(|i| bad.contains(i)));
    }
}
