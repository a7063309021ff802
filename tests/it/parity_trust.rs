//! Parity is untrusted input (issue #11): a forged `BUNDLE.parity` must
//! never change bytes that check out against the signed manifest, and
//! whatever it rebuilds must pass the signature and every digest before
//! `repair` writes it. A forged parity file is named as the thing at fault.

use std::path::{Path, PathBuf};

use airlock::bundle::parity::{self, Layout};
use airlock::bundle::store::{BundleBytes, Part};
use airlock::model::Digest;
use rand::{RngCore, SeedableRng};

use crate::util::*;

const LAYER: usize = 2 << 20;

/// An OCI layout of one image whose 2 MiB random layer fills the middle of
/// any bundle made from it (incompressible, so stored as it is).
fn big_layer_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut data = vec![0u8; LAYER];
    rand::rngs::StdRng::seed_from_u64(11).fill_bytes(&mut data);
    let layer = blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &data);
    let config = blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    }))
    .unwrap();
    let mut m = blob(dir, "application/vnd.oci.image.manifest.v1+json", &manifest);
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "big"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A signed bundle with 5% parity beside it; returns (bundle, public key).
fn packed_with_parity(dir: &Path) -> (PathBuf, PathBuf) {
    big_layer_layout(&dir.join("layout"));
    let (key, public) = keys(dir, "signer");
    let bundle = dir.join("b.airlock");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            "--key",
            key.to_str().unwrap(),
            "--parity",
            "5",
            "oci:layout",
        ],
        dir,
    )
    .ok();
    assert!(dir.join("b.airlock.parity").exists());
    (bundle, public)
}

/// Replaces `BUNDLE.parity` with parity computed over other bytes: the
/// bundle with `forge` applied. Header and index are valid, and the
/// shard hashes are consistent with the forged data.
fn forge_parity(bundle: &Path, forge: impl Fn(&mut [u8])) {
    let parity_path = airlock::bundle::volume::parity_path(bundle, None);
    let genuine = std::fs::read(&parity_path).unwrap();
    let id = Digest::from_raw(genuine[72..104].try_into().unwrap());
    let mut bytes = std::fs::read(bundle).unwrap();
    forge(&mut bytes);
    let forged = bundle.with_extension("forged");
    std::fs::write(&forged, &bytes).unwrap();
    let view = BundleBytes::new(vec![Part::open(&forged, 0, 0, None).unwrap()]);
    let layout = Layout::new(bytes.len() as u64, 5);
    for f in parity::encode(&view, &layout, &id, &[], bundle, None).unwrap() {
        f.commit().unwrap();
    }
    std::fs::remove_file(&forged).unwrap();
}

/// Overwrites the recovery shards of `BUNDLE.parity` with noise, leaving
/// its header and index valid.
fn scramble_recovery(bundle: &Path) {
    let path = airlock::bundle::volume::parity_path(bundle, None);
    let mut raw = std::fs::read(&path).unwrap();
    let shard = u64::from_le_bytes(raw[24..32].try_into().unwrap()) as usize;
    let per_file = u64::from_le_bytes(raw[64..72].try_into().unwrap()) as usize;
    let from = raw.len() - shard * per_file;
    rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut raw[from..]);
    std::fs::write(&path, raw).unwrap();
}

fn sha_of(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// `airlock repair BUNDLE`, with `--pub KEY` when given.
fn repair(bundle: &Path, public: Option<&Path>) -> Run {
    let mut args = vec!["repair", bundle.to_str().unwrap()];
    if let Some(p) = public {
        args.extend(["--pub", p.to_str().unwrap()]);
    }
    airlock(&args, bundle.parent().unwrap())
}

/// A flip in the middle of the big layer: the bytes of one member.
fn flip_middle(bytes: &mut [u8]) {
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
}

/// Different bytes in the same member as `flip_middle`.
fn forge_middle(bytes: &mut [u8]) {
    let at = bytes.len() / 2;
    for b in &mut bytes[at - 64..at + 64] {
        *b = b.wrapping_add(1);
    }
}

fn assert_names_parity(err: &str, bundle: &Path) {
    let name = format!("{}.parity", bundle.display());
    assert!(
        err.contains(&name) && err.contains("forged"),
        "the parity file is not named as bad:\n{err}"
    );
}

#[test]
fn forged_parity_beside_a_good_bundle_changes_nothing() {
    for scrambled in [false, true] {
        let t = scratch();
        let (bundle, public) = packed_with_parity(t.path());
        forge_parity(&bundle, forge_middle);
        if scrambled {
            // Wrong shard data: recovery shards that match no hash.
            scramble_recovery(&bundle);
        }
        let before = sha_of(&bundle);
        let run = repair(&bundle, None);
        assert_eq!(sha_of(&bundle), before, "repair changed a good bundle");
        let err = run.fails();
        assert_names_parity(&err, &bundle);
        let v = verify_signed(&bundle, &public).ok();
        assert_names_parity(&v.stderr(), &bundle);
        assert_eq!(sha_of(&bundle), before);
    }
}

#[test]
fn forged_parity_beside_a_damaged_bundle_is_refused_by_name() {
    let t = scratch();
    let (bundle, public) = packed_with_parity(t.path());
    forge_parity(&bundle, forge_middle);
    let mut bytes = std::fs::read(&bundle).unwrap();
    flip_middle(&mut bytes);
    std::fs::write(&bundle, &bytes).unwrap();
    let damaged = sha_of(&bundle);
    let err = repair(&bundle, None).fails();
    assert_names_parity(&err, &bundle);
    assert_eq!(sha_of(&bundle), damaged, "repair wrote a bundle that fails");
    // In memory too: the forged data is not used, and the damage is named.
    let run = verify_signed(&bundle, &public);
    let err = run.fails();
    assert_names_parity(&err, &bundle);
    export(&bundle, &public, "oci:out", &[]).fails();
    assert!(!t.path().join("out/index.json").exists());
}

#[test]
fn genuine_parity_still_repairs_a_damaged_bundle() {
    let t = scratch();
    let (bundle, public) = packed_with_parity(t.path());
    let good = sha_of(&bundle);
    let mut bytes = std::fs::read(&bundle).unwrap();
    flip_middle(&mut bytes);
    std::fs::write(&bundle, &bytes).unwrap();
    verify_signed(&bundle, &public).ok();
    repair(&bundle, Some(&public)).ok();
    assert_eq!(sha_of(&bundle), good);
    airlock(
        &[
            "verify",
            "--no-repair",
            "--pub",
            public.to_str().unwrap(),
            "b.airlock",
        ],
        t.path(),
    )
    .ok();
}
