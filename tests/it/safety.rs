//! Safety under concurrency and hostile input: exports racing into one
//! layout, and attacker-controlled strings that must not reach a terminal
//! raw (issue #11, items 8 and 9).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use airlock::bundle::format::{ENVELOPE_NAME, MAX_FRAME_DATA, PAYLOAD_TYPE};
use airlock::bundle::sign::{key_id, load_private, load_public, Envelope};
use airlock::model::Digest;
use zeekstd::SeekTable;

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

/// A bundle's members in order, as (name, bytes).
fn members_of(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let tar = zstd::decode_all(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Writes members as the format spec lays them out: a header frame each,
/// data frames of at most MAX_FRAME_DATA, the end frame, the seek table.
fn write_bundle(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut out = Vec::new();
    let mut table = SeekTable::new();
    let mut frame = |out: &mut Vec<u8>, data: &[u8]| {
        let c = zstd::bulk::compress(data, 3).unwrap();
        out.extend_from_slice(&c);
        table.log_frame(c.len() as u32, data.len() as u32).unwrap();
    };
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        frame(&mut out, h.as_bytes());
        for chunk in data.chunks(MAX_FRAME_DATA) {
            let mut padded = chunk.to_vec();
            padded.resize(chunk.len().div_ceil(512) * 512, 0);
            frame(&mut out, &padded);
        }
    }
    frame(&mut out, &[0u8; 1024]);
    std::io::copy(&mut table.into_serializer(), &mut out).unwrap();
    std::fs::write(path, out).unwrap();
}

/// Rewrites a bundle's signed manifest with `tweak` (and its index.json with
/// `index`, keeping the manifest's record of it right), re-signs it with
/// `key`, and hands the envelope to `envelope` before writing it to `to`.
fn rewrite(
    bundle: &Path,
    to: &Path,
    key: &Path,
    tweak: impl Fn(&mut serde_json::Value),
    index: impl Fn(&mut serde_json::Value),
    envelope: impl Fn(&mut Envelope),
) {
    let mut members = members_of(bundle);
    assert_eq!(members[0].0, ENVELOPE_NAME);
    let old: Envelope = serde_json::from_slice(&members[0].1).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&old.payload_bytes().unwrap()).unwrap();
    let slot = members.iter().position(|m| m.0 == "index.json").unwrap();
    let mut index_json: serde_json::Value = serde_json::from_slice(&members[slot].1).unwrap();
    index(&mut index_json);
    members[slot].1 = serde_json::to_vec(&index_json).unwrap();
    manifest["index"]["digest"] = Digest::of(&members[slot].1).to_string().into();
    manifest["index"]["size"] = members[slot].1.len().into();
    tweak(&mut manifest);
    let payload = serde_json::to_vec(&manifest).unwrap();
    let mut env = Envelope::new(PAYLOAD_TYPE, &payload, Some(&load_private(key).unwrap()));
    envelope(&mut env);
    members[0].1 = serde_json::to_vec(&env).unwrap();
    write_bundle(to, &members);
}

/// What must never reach a terminal from input: C0 controls but the line
/// breaks we print ourselves, DEL, C1 controls and bidi overrides.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c < ' ' && c != '\n')
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect()
}

#[test]
fn a_hostile_key_id_cannot_forge_an_ok_line() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    // `packed` signs with the key pair `signer`: the attacker re-signs with
    // it and claims the trusted key's id, in a key id that breaks the line.
    let key = t.path().join("signer");
    let (_, trusted) = keys(t.path(), "trusted");
    let trusted_id = key_id(&load_public(&trusted).unwrap());
    let forged =
        format!("0000\nOK: 1 image(s), 3 blob(s), 1.00 KiB checked; signed by {trusted_id}");
    let hostile = t.path().join("hostile.airlock");
    rewrite(
        &bundle,
        &hostile,
        &key,
        |_| {},
        |_| {},
        |env| {
            env.signatures[0].keyid = forged.clone();
        },
    );

    let run = verify_signed(&hostile, &trusted);
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    let err = run.fails();
    for line in err.lines() {
        assert!(
            !line.trim_start().starts_with("OK"),
            "forged line {line:?} in:\n{err}"
        );
    }
    assert!(err.contains("not by the trusted key"), "{err}");
    assert!(
        err.contains("0000\\nOK: 1 image(s)"),
        "the key id is shown escaped: {err}"
    );
    assert!(raw_controls(&err).is_empty(), "{err:?}");

    // inspect shows the claim escaped, and still labelled as unchecked.
    let shown = airlock(&["inspect", hostile.to_str().unwrap()], t.path()).ok();
    let out = shown.stdout() + &shown.stderr();
    assert!(!out.lines().any(|l| l.starts_with("OK")), "{out}");
    let signer = out.lines().find(|l| l.starts_with("signer:")).unwrap();
    assert!(
        signer.contains("0000\\nOK") && signer.contains("(claimed;"),
        "{signer}"
    );
}

/// Puts a blob into the layout at `dir`; returns its descriptor.
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = Digest::of(bytes);
    std::fs::write(dir.join(digest.layout_path()), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

/// An OCI layout holding one image, tagged `hostile`, whose config names a
/// platform made of control characters and a bidi override.
fn hostile_layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = put_blob(dir, "application/vnd.oci.image.layer.v1.tar", &[0u8; 1024]);
    let config = serde_json::json!({
        "os": "linux\r\nsignature VERIFIED",
        "architecture": "amd64\u{1b}[2K\u{7f}",
        "variant": "v8\u{202e}\u{85}",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    });
    let config = put_blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let mut entry = put_blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "hostile"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Asserts `out` carries no raw control character and no line that starts
/// with `forged`.
fn assert_safe(out: &str, forged: &str) {
    assert!(
        raw_controls(out).is_empty(),
        "raw controls {:?} in {out:?}",
        raw_controls(out)
    );
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with(forged)),
        "forged line in:\n{out}"
    );
}

#[test]
fn inspect_shows_hostile_manifest_fields_escaped_and_forges_no_line() {
    let t = scratch();
    let lay = t.path().join("lay");
    hostile_layout(&lay);
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:hostile", lay.display())]);
    // The signer itself is hostile here (or its packing host was): every
    // field below is signed, so only the display can defend the reader.
    let hostile = t.path().join("hostile.airlock");
    rewrite(
        &bundle,
        &hostile,
        &t.path().join("signer"),
        |m| {
            m["tool"] = "airlock\u{1b}[1A\u{1b}[2K\u{202e}".into();
            m["created"] = "2024-01-01T00:00:00Z\r\nsignature VERIFIED\u{9b}0m".into();
            m["images"][0]["source"] = "oci:x\u{1b}]0;title\u{7}\u{2066}".into();
        },
        |_| {},
        |_| {},
    );
    // Still a bundle that verifies: the strings are all the attacker changed.
    verify_signed(&hostile, &public).ok();

    let shown = airlock(&["inspect", hostile.to_str().unwrap()], t.path()).ok();
    let out = shown.stdout() + &shown.stderr();
    assert_safe(&out, "signature VERIFIED");
    for escaped in [
        "created 2024-01-01T00:00:00Z\\r\\nsignature VERIFIED\\u{9b}0m",
        "(airlock\\u{1b}[1A\\u{1b}[2K\\u{202e})",
        "oci:x\\u{1b}]0;title\\u{7}\\u{2066}",
        "linux\\r\\nsignature VERIFIED/amd64\\u{1b}[2K\\u{7f}/v8\\u{202e}\\u{85}",
    ] {
        assert!(out.contains(escaped), "{escaped} not in:\n{out}");
    }

    // An image name that breaks the line: refused or shown, it is escaped,
    // and so is every error that lists the bundle's images.
    let name = "localhost/lay:hostile\r\nsignature VERIFIED by the trusted key";
    let named = t.path().join("named.airlock");
    rewrite(
        &bundle,
        &named,
        &t.path().join("signer"),
        |m| m["images"][0]["name"] = name.into(),
        |index| {
            index["manifests"][0]["annotations"] = serde_json::json!({
                "org.opencontainers.image.ref.name": name,
                "io.containerd.image.name": name,
            });
        },
        |_| {},
    );
    for args in [
        vec!["inspect", named.to_str().unwrap()],
        vec![
            "verify",
            named.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
        ],
        vec![
            "export",
            named.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
            "--to",
            "oci:out",
            "nosuch:1",
        ],
    ] {
        let run = airlock(&args, t.path());
        let out = run.stdout() + &run.stderr();
        assert_safe(&out, "signature VERIFIED");
        assert!(
            out.contains("hostile\\r\\nsignature VERIFIED"),
            "{args:?}: {out}"
        );
    }
}

#[test]
fn errors_that_list_a_sources_images_escape_their_names() {
    let t = scratch();
    let lay = t.path().join("lay");
    hostile_layout(&lay);
    let index_path = lay.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
        "v1\r\nOK: packed 1 image(s)\u{1b}[0m".into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = airlock(
        &[
            "pack",
            &format!("oci:{}:nosuch", lay.display()),
            "-o",
            "x.airlock",
        ],
        t.path(),
    )
    .fails();
    assert_safe(&err, "OK");
    assert!(
        err.contains("v1\\r\\nOK: packed 1 image(s)\\u{1b}[0m"),
        "{err}"
    );
}

#[test]
fn file_names_from_an_archive_are_shown_escaped() {
    let t = scratch();
    let manifest = serde_json::json!([{
        "Config": "c\u{1b}[2K\r\nOK: packed.json",
        "RepoTags": ["x:1"],
        "Layers": [],
    }]);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "manifest.json", &bytes[..])
        .unwrap();
    let archive = t.path().join("evil.tar");
    std::fs::write(&archive, tar.into_inner().unwrap()).unwrap();
    let err = airlock(
        &[
            "pack",
            &format!("docker-archive:{}", archive.display()),
            "-o",
            "x.airlock",
        ],
        t.path(),
    )
    .fails();
    assert_safe(&err, "OK");
    assert!(err.contains("c\\u{1b}[2K\\r\\nOK: packed.json"), "{err}");
}
