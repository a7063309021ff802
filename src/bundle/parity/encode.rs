//! Writing parity files: every stripe encoded on rayon, each recovery shard
//! written where it belongs, then the index and headers. Not for reading
//! parity (that is `read.rs`).

use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;
use reed_solomon_simd::ReedSolomonEncoder;

use super::{data_shard, sha, Hash, Header, Layout};
use crate::atomic::AtomicFile;
use crate::bundle::format::PARITY_HEADER_LEN;
use crate::bundle::store::BundleBytes;
use crate::bundle::volume;
use crate::error::{Error, Result};
use crate::model::Digest;

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
    let files = create_files(&header, fixed, target, split)?;

    // Every stripe on rayon; each writes its recovery shards where they go.
    let results: Vec<Result<(Hashes, Hashes)>> = (0..layout.stripes)
        .into_par_iter()
        .map(|k| encode_stripe(bytes, &header, fixed, &files, k))
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

/// Shard hashes by shard index.
type Hashes = Vec<(u64, Hash)>;

/// The parity files, created at their final sizes.
fn create_files(
    header: &Header,
    fixed: u64,
    target: &Path,
    split: Option<u64>,
) -> Result<Vec<AtomicFile>> {
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
            .set_len(fixed + here * header.layout.shard)
            .map_err(|e| Error::io("size", &path, e))?;
        files.push(file);
    }
    Ok(files)
}

/// Encodes stripe `k`, writes its recovery shards into their files, and
/// returns the hashes of its data and recovery shards.
fn encode_stripe(
    bytes: &BundleBytes,
    header: &Header,
    fixed: u64,
    files: &[AtomicFile],
    k: u64,
) -> Result<(Hashes, Hashes)> {
    let layout = &header.layout;
    let width = layout.width(k);
    let mut encoder = ReedSolomonEncoder::new(
        width as usize,
        layout.recovery as usize,
        layout.shard as usize,
    )
    .map_err(|e| Error::Failed(format!("parity: {e}")))?;
    let mut hashes = Vec::with_capacity(width as usize);
    for j in 0..width {
        let i = layout.shard_index(k, j);
        let shard = data_shard(bytes, layout, i).ok_or_else(|| {
            Error::Failed(format!("parity: shard {i} of the bundle is unreadable"))
        })?;
        hashes.push((i, sha(&shard)));
        encoder
            .add_original_shard(&shard)
            .map_err(|e| Error::Failed(format!("parity: {e}")))?;
    }
    let result = encoder
        .encode()
        .map_err(|e| Error::Failed(format!("parity: {e}")))?;
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
}
