//! Any bytes, decoded as a volume label (spec §13). A label that decodes
//! must encode back to exactly its bytes: no field is left unchecked.
#![no_main]

use airlock::bundle::format::LABEL_LEN;
use airlock::bundle::volume::Label;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(label) = Label::decode(data) {
        assert_eq!(label.encode()[..], data[..LABEL_LEN], "{label:?}");
    }
});
