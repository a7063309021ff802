//! Any bytes, parsed as an OCI manifest or index under each media type the
//! plan code dispatches on.
#![no_main]

use airlock::model::image::{media, parse_manifest, platform_of_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mt in [media::OCI_MANIFEST, media::OCI_INDEX, media::DOCKER_LIST, ""] {
        let _ = parse_manifest(mt, data, "fuzz");
    }
    let _ = platform_of_config(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = airlock::model::Reference::parse(s);
    }
});
