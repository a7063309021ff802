//! Any bytes, read as a bundle file: seek table, header frames, envelope,
//! manifest, index, members. Every outcome but a clean error or success is
//! a bug (panic, hang, unbounded allocation).
#![no_main]

use std::io::Write;

use airlock::bundle::Bundle;
use airlock::progress::Progress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write input");
    let Ok(bundle) = Bundle::open(file.path()) else { return };
    let _ = airlock::ops::inspect(&bundle);
    let Ok(bundle) = bundle.without_signature_check() else { return };
    let _ = bundle.verify(&Progress::hidden());
});
