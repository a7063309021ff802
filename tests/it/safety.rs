//! Safety under concurrency and hostile input: exports racing into one
//! layout, and attacker-controlled strings that must not reach a terminal
//! raw (issue #11, items 8 and 9).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::*;

/// Packs each group of `oci:LAYOUT:TAG` sources into its own bundle, all
/// signed by one key; returns the bundles and the public key.
fn bundles_of(dir: &Path, groups: &[&[&str]]) -> (Vec<PathBuf>, PathBuf) {
    let (key, public) = keys(dir, "signer");
    let mut out = Vec::new();
    for (i, tags) in groups.iter().enumerate() {
        let bundle = dir.join(format!("b{i}.airlock"));
        let sources: Vec<String> = tags
            .iter()
            .map(|t| format!("oci:{}:{t}", layout().display()))
            .collect();
        let mut args = vec![
            "pack",
            "-q",
            "-o",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        args.extend(sources.iter().map(String::as_str));
        airlock(&args, dir).ok();
        out.push(bundle);
    }
    (out, public)
}

#[test]
fn concurrent_exports_into_one_layout_keep_every_image() {
    let t = scratch();
    let groups: &[&[&str]] = &[&["app-1", "app-2"], &["arm-1", "base"], &["multi"]];
    let (bundles, public) = bundles_of(t.path(), groups);
    let rounds = 20;
    let mut lost = Vec::new();
    for round in 0..rounds {
        let out = t.path().join(format!("out{round}"));
        let target = format!("oci:{}", out.display());
        // All three at once, into a layout none of them has seen.
        let children: Vec<_> = bundles
            .iter()
            .map(|b| {
                Command::new(env!("CARGO_BIN_EXE_airlock"))
                    .args(["export", "-q", b.to_str().unwrap(), "--pub"])
                    .arg(&public)
                    .args(["--to", &target])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let done = child.wait_with_output().unwrap();
            assert!(
                done.status.success(),
                "round {round}: an export failed: {}",
                String::from_utf8_lossy(&done.stderr)
            );
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .collect();
        let missing: Vec<String> = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|tag| format!("localhost/layout:{tag}"))
            .filter(|n| !names.contains(&n.as_str()))
            .collect();
        if !missing.is_empty() {
            lost.push(format!("round {round}: lost {missing:?}"));
            continue;
        }
        // An independent reader finds each image, with the digest it had.
        for tag in groups.iter().flat_map(|g| g.iter()) {
            assert_eq!(
                skopeo_digest(
                    &format!("oci:{}:localhost/layout:{tag}", out.display()),
                    t.path()
                ),
                skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path()),
                "round {round}: {tag}"
            );
        }
        assert_eq!(names.len(), 5, "round {round}: {names:?}");
    }
    assert!(
        lost.is_empty(),
        "{} of {rounds} rounds lost an image:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

#[test]
fn export_refuses_an_index_json_that_is_not_an_index_without_panicking() {
    let t = scratch();
    let (bundles, public) = bundles_of(t.path(), &[&["app-1"]]);
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("index.json"), "[]").unwrap();
    let err = export(&bundles[0], &public, &format!("oci:{}", out.display()), &[]).fails();
    assert!(
        err.contains("index.json") && err.contains("not an image index"),
        "{err}"
    );
    // Left as it was, not overwritten.
    assert_eq!(std::fs::read(out.join("index.json")).unwrap(), b"[]");
}
