//! Keys and signatures as users and openssl see them.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_openssl_accepts() {
    let t = scratch();
    let made = airlock(&["keygen", "-o", "site"], t.path()).ok();
    let key_id = made.stdout().trim().to_string();
    let private = t.path().join("site");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // openssl derives the same public key, and the key id is the SHA-256 of
    // its DER SubjectPublicKeyInfo.
    let derived = run("openssl", &["pkey", "-in", "site", "-pubout"], t.path())
        .ok()
        .stdout();
    assert_eq!(
        derived,
        std::fs::read_to_string(t.path().join("site.pub")).unwrap()
    );
    let der = run(
        "openssl",
        &["pkey", "-pubin", "-in", "site.pub", "-outform", "DER"],
        t.path(),
    )
    .ok();
    assert_eq!(key_id, sha256_hex(&der.out.stdout));

    let err = airlock(&["keygen", "-o", "site"], t.path()).fails();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    airlock(&["keygen", "-o", "site", "--force"], t.path()).ok();
}

#[test]
fn keys_made_by_openssl_sign_and_verify() {
    let t = scratch();
    run(
        "openssl",
        &["genpkey", "-algorithm", "ed25519", "-out", "o.pem"],
        t.path(),
    )
    .ok();
    run(
        "openssl",
        &["pkey", "-in", "o.pem", "-pubout", "-out", "o.pub"],
        t.path(),
    )
    .ok();
    let bundle = t.path().join("b.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &format!("oci:{}:app-1", layout().display()),
            "--key",
            "o.pem",
            "-o",
            bundle.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    airlock(&["verify", "b.airlock", "--pub", "o.pub"], t.path()).ok();
}

#[test]
fn verify_refuses_wrong_keys_and_unsigned_bundles() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let (_, other) = keys(t.path(), "other");
    let err = verify_signed(&bundle, &other).fails();
    assert!(err.contains("not by the trusted key"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let unsigned = t.path().join("u.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &format!("oci:{}:app-1", layout().display()),
            "-o",
            unsigned.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let err = verify_signed(&unsigned, &other).fails();
    assert!(err.contains("not signed"), "{err}");
    let ok = airlock(
        &["verify", unsigned.to_str().unwrap(), "--allow-unsigned"],
        t.path(),
    )
    .ok();
    assert!(ok.stdout().contains("NOT checked"), "{}", ok.stdout());
    // Neither a key nor an explicit opt-out: refused by the argument parser.
    let run = airlock(&["verify", unsigned.to_str().unwrap()], t.path());
    assert_eq!(run.out.status.code(), Some(2));

    // A public key given where the private key belongs, and garbage keys.
    std::fs::write(t.path().join("junk.pem"), "not a key").unwrap();
    let err = airlock(
        &[
            "pack",
            &format!("oci:{}:app-1", layout().display()),
            "--key",
            other.to_str().unwrap(),
            "-o",
            "x",
        ],
        t.path(),
    )
    .fails();
    assert!(err.contains("this is a public key"), "{err}");
    let err = airlock(
        &["verify", bundle.to_str().unwrap(), "--pub", "junk.pem"],
        t.path(),
    )
    .fails();
    assert!(err.contains("junk.pem"), "{err}");
}
