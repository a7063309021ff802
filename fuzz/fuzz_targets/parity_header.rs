//! Any bytes, read as a parity file beside a bundle: header, index, file
//! numbering, recovery shard hashes, then the damage a bundle of the length
//! it claims (all of it missing) would show. Parity is untrusted input:
//! every outcome but a clean refusal or success is a bug (panic, hang,
//! unbounded allocation).
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;

use airlock::bundle::parity::Parity;
use airlock::bundle::store::{BundleBytes, Part};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
