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
//!
//! This file holds the layout and the header (the format); `encode.rs`
//! writes parity files, `read.rs` loads them, finds damaged shards and
//! rebuilds them in memory. Not for writing repaired volumes to disk: that
//! is `airlock repair` (`bundle::repair`, `ops::repair`).

use sha2::{Digest as _, Sha256};

use super::format::{
    PARITY_HEADER_LEN, PARITY_MAX_DATA, PARITY_MAX_SHARD, PARITY_MAX_WIDTH, PARITY_MIN_SHARD,
    PARITY_TAG, PARITY_VERSION,
};
use super::store::BundleBytes;
use crate::model::Digest;

mod encode;
pub(crate) mod guard;
mod read;

pub use encode::encode;
pub use read::Parity;

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
        let ok = self.data_len <= PARITY_MAX_DATA
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::store::Part;
    use crate::bundle::volume;
    use std::collections::BTreeMap;

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
