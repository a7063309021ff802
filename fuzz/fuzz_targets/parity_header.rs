//! Any bytes, read as a parity file beside a bundle: header, index, file
//! numbering, recovery shard hashes, then the damage a bundle of the length
//! it claims (all of it missing) would show. Parity is untrusted input:
//! every outcome but a clean refusal or success is a bug (panic, hang,
//! unbounded allocation).
//!
//! Each input is tried twice: as it is, and with its index and header
//! hashes made to match, so mutations reach the fields past the checksums.
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;

use airlock::bundle::parity::Parity;
use airlock::bundle::store::{BundleBytes, Part};
use airlock::model::Digest;
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 256;

/// Rewrites the index hash (over the index the header's fields describe,
/// when the input holds it) and then the header's own hash.
fn with_matching_hashes(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < HEADER {
        return None;
    }
    let mut d = data.to_vec();
    let u32_at = |at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as u64;
    let u64_at = |at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap());
    let recovery = u64_at(32).checked_mul(u64_at(40))?;
    let index_len = u32_at(20)
        .checked_mul(8)?
        .checked_add(u64_at(56).checked_add(recovery)?.checked_mul(32)?)?;
    let end = (HEADER as u64).checked_add(index_len)?;
    if end <= d.len() as u64 {
        let sum = Digest::of(&d[HEADER..end as usize]).raw_bytes();
        d[104..136].copy_from_slice(&sum);
    }
    let own = Digest::of(&d[..224]).raw_bytes();
    d[224..256].copy_from_slice(&own);
    Some(d)
}

fn try_parity(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write input");
    let paths = BTreeMap::from([(0, file.path().to_path_buf())]);
    let Ok(Some(parity)) = Parity::load(&paths) else { return };
    let _ = parity.damaged_recovery();
    let _ = parity.split();
    // The bundle it describes, with none of its bytes present: every
    // shard is damaged, and none can be rebuilt from nothing.
    let missing = Part::missing(file.path(), 0, 0, parity.layout.data_len);
    let mut bytes = BundleBytes::new(vec![missing]);
    let damaged = parity.damaged_shards(&bytes);
    assert_eq!(damaged.len() as u64, parity.layout.originals);
    let lost = parity.repair(&mut bytes, &damaged);
    assert!(lost.len() <= damaged.len());
}

fuzz_target!(|data: &[u8]| {
    try_parity(data);
    if let Some(fixed) = with_matching_hashes(data) {
        try_parity(&fixed);
    }
});
