//! Any bytes, decoded as the DSSE envelope that starts a bundle, its
//! signature checked against a fixed key and its payload parsed as a
//! bundle manifest. No input may panic; none may pass the signature check.
#![no_main]

use std::path::Path;

use airlock::bundle::format::BundleManifest;
use airlock::bundle::sign::{decode_envelope, TrustedKeys};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = decode_envelope(data) else {
        return;
    };
    let keys = TrustedKeys::new(vec![SigningKey::from_bytes(&[7u8; 32]).verifying_key()]);
    assert!(signed.verify(&keys).is_err(), "a forged signature verified");
    let _ = signed.key_ids();
    let _ = BundleManifest::from_payload(Path::new("fuzz"), signed.payload());
});
