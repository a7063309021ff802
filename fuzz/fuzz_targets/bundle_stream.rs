//! Any bytes, read as a bundle stream (`verify -`, `import -`): frames,
//! labels, the seek table, tar headers, envelope, manifest, index, blobs
//! and the image graph. Every outcome but a clean error or success is a
//! bug (panic, hang, an allocation beyond the spec's limits).
#![no_main]

use std::io::Read;

use airlock::bundle::format::{BlobRecord, BundleManifest};
use airlock::bundle::{read_stream, verify_stream, StreamVisitor};
use airlock::error::Result;
use airlock::model::Digest;
use libfuzzer_sys::fuzz_target;

/// Reads a few bytes of each blob and leaves the rest, as a visitor may:
/// the reader must still check what is left.
struct Sip;

impl StreamVisitor for Sip {
    fn start(&mut self, _: &BundleManifest, _: &Digest) -> Result<()> {
        Ok(())
    }
    fn blob(&mut self, _: &BlobRecord, data: &mut dyn Read) -> Result<()> {
        let mut buf = [0u8; 7];
        let _ = data.read(&mut buf);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = verify_stream(data, None);
    let _ = read_stream(data, None, &mut Sip);
});
