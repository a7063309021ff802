//! Bad sources: each gets a clear error naming the thing, exit 1, no panic,
//! and no bundle (nor temporary file) left behind.

use std::path::Path;

use crate::util::*;

/// Packs `source` into `dir/out.airlock`, expects failure, and checks that
/// nothing new appeared in `dir`.
fn pack_fails(dir: &Path, source: &str) -> String {
    let before = entries(dir);
    let err = airlock(&["pack", "-q", source, "-o", "out.airlock"], dir).fails();
    assert_eq!(entries(dir), before, "pack left files behind after failing");
    err
}

fn blob_of(
    layout: &Path,
    tag: &str,
    pick: impl Fn(&serde_json::Value) -> String,
) -> std::path::PathBuf {
    let raw = skopeo(
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:{tag}", layout.display()),
        ],
        layout,
    )
    .ok()
    .out
    .stdout;
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let digest = pick(&manifest);
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn first_layer(m: &serde_json::Value) -> String {
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn missing_blob_names_the_blob_and_the_image() {
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    let layer = blob_of(&lay, "app-1", first_layer);
    std::fs::remove_file(&layer).unwrap();
    let err = pack_fails(t.path(), &format!("oci:{}:app-1", lay.display()));
    let name = layer.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(
        err.contains("is missing") || err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn corrupted_layer_is_a_digest_mismatch_and_no_bundle_appears() {
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    let layer = blob_of(&lay, "app-1", first_layer);
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&layer, bytes).unwrap();
    let err = pack_fails(t.path(), &format!("oci:{}:app-1", lay.display()));
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains("localhost/lay:app-1"), "{err}");
}

#[test]
fn corrupted_manifest_and_bad_json_are_refused() {
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    std::fs::write(lay.join("index.json"), "{ this is not json").unwrap();
    let err = pack_fails(t.path(), &format!("oci:{}", lay.display()));
    assert!(
        err.contains("index.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let lay2 = t.path().join("lay2");
    copy_dir(&layout(), &lay2);
    let manifest = blob_of(&lay2, "app-2", |_| {
        skopeo_digest(&format!("oci:{}:app-2", layout().display()), Path::new("."))
    });
    std::fs::write(&manifest, br#"{"schemaVersion":2,"config":{}}"#).unwrap();
    let err = pack_fails(t.path(), &format!("oci:{}:app-2", lay2.display()));
    assert!(err.contains("manifest") && err.contains("app-2"), "{err}");
}

#[test]
fn schema1_manifests_are_refused_with_a_way_out() {
    let t = scratch();
    let lay = t.path().join("lay");
    std::fs::create_dir_all(lay.join("blobs/sha256")).unwrap();
    std::fs::write(lay.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let m = br#"{"schemaVersion":1,"name":"old/app","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let hex = sha256_hex(m);
    std::fs::write(lay.join("blobs/sha256").join(&hex), m).unwrap();
    std::fs::write(
        lay.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","digest":"sha256:{hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"old"}}}}]}}"#,
            m.len()
        ),
    )
    .unwrap();
    let err = pack_fails(t.path(), &format!("oci:{}", lay.display()));
    assert!(err.contains("schema 1"), "{err}");
    assert!(err.contains("v2s2"), "{err}");
}

#[test]
fn truncated_and_garbage_archives_are_refused() {
    let t = scratch();
    let full = std::fs::read(fixtures().join("app1.oci.tar")).unwrap();
    std::fs::write(t.path().join("cut.tar"), &full[..full.len() / 2]).unwrap();
    let err = pack_fails(
        t.path(),
        &format!("oci-archive:{}", t.path().join("cut.tar").display()),
    );
    assert!(
        err.contains("cut.tar") && err.contains("truncated"),
        "{err}"
    );

    let docker = std::fs::read(fixtures().join("app2.docker.tar")).unwrap();
    std::fs::write(
        t.path().join("cut-docker.tar"),
        &docker[..docker.len() - 20_000],
    )
    .unwrap();
    let err = pack_fails(
        t.path(),
        &format!(
            "docker-archive:{}",
            t.path().join("cut-docker.tar").display()
        ),
    );
    assert!(err.contains("cut-docker.tar"), "{err}");

    let gz = std::fs::read(fixtures().join("app2.docker.tar.gz")).unwrap();
    std::fs::write(t.path().join("cut.tar.gz"), &gz[..gz.len() / 3]).unwrap();
    let err = pack_fails(
        t.path(),
        &format!("docker-archive:{}", t.path().join("cut.tar.gz").display()),
    );
    assert!(err.contains("cut.tar.gz"), "{err}");

    std::fs::write(t.path().join("noise.tar"), vec![0x5a; 10_000]).unwrap();
    let err = pack_fails(
        t.path(),
        &format!("oci-archive:{}", t.path().join("noise.tar").display()),
    );
    assert!(err.contains("noise.tar"), "{err}");
}

#[test]
fn unknown_images_paths_and_transports_are_named() {
    let t = scratch();
    let err = pack_fails(t.path(), &format!("oci:{}:nope", layout().display()));
    assert!(err.contains("no image matches \"nope\""), "{err}");
    assert!(err.contains("localhost/layout:app-1"), "{err}");
    let err = pack_fails(t.path(), "oci:/does/not/exist");
    assert!(err.contains("/does/not/exist"), "{err}");
    let err = airlock(&["pack", "-q", "dir:/tmp/x", "-o", "out.airlock"], t.path()).fails_usage();
    assert!(err.contains("dir: transport is not supported"), "{err}");
    let err = airlock(
        &["pack", "-q", "Not/A:Valid:Ref", "-o", "out.airlock"],
        t.path(),
    )
    .fails_usage();
    assert!(err.contains("invalid image reference"), "{err}");
    let err = pack_fails(
        t.path(),
        &format!(
            "docker-archive:{}:example.com/other:1",
            fixtures().join("app2.docker.tar").display()
        ),
    );
    assert!(
        err.contains("example.com/team/app2:2"),
        "lists what there is: {err}"
    );
}

#[test]
fn every_bad_source_is_reported_before_anything_is_written() {
    let t = scratch();
    let before = entries(t.path());
    let err = airlock(
        &[
            "pack",
            "oci:/nope/one",
            &format!("oci:{}:app-1", layout().display()),
            "oci:/nope/two",
            "-o",
            "o.airlock",
        ],
        t.path(),
    )
    .fails();
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("/nope/one") && err.contains("/nope/two"),
        "{err}"
    );
    assert_eq!(entries(t.path()), before);
}

#[test]
fn docker_archive_selects_by_tag_and_by_position() {
    let t = scratch();
    let archive = fixtures().join("app2.docker.tar");
    for spec in [
        format!(
            "docker-archive:{}:example.com/team/app2:2",
            archive.display()
        ),
        format!("docker-archive:{}:@0", archive.display()),
    ] {
        let out = t.path().join("d.airlock");
        airlock(
            &["pack", "-q", "--force", &spec, "-o", out.to_str().unwrap()],
            t.path(),
        )
        .ok();
        airlock(
            &["verify", "--allow-unsigned", out.to_str().unwrap()],
            t.path(),
        )
        .ok();
    }
    // The synthesised manifest is deterministic: plain and gzip give one digest.
    let a = t.path().join("a.airlock");
    let b = t.path().join("b.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &format!("docker-archive:{}", archive.display()),
            "-o",
            a.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    airlock(
        &[
            "pack",
            "-q",
            &format!("docker-archive:{}.gz", archive.display()),
            "-o",
            b.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let digest = |p: &Path| {
        let r = airlock(&["inspect", "--json", p.to_str().unwrap()], t.path()).ok();
        let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
        v["images"][0]["digest"].clone()
    };
    assert_eq!(digest(&a), digest(&b));
}

#[test]
fn docker_archive_in_the_engine_25_layout_is_read_as_oci() {
    // Engine 25+ `docker save` writes an OCI layout whose index names the
    // image in io.containerd.image.name, plus the legacy manifest.json.
    let t = scratch();
    let root = t.path().join("save");
    skopeo(
        &[
            "copy",
            &format!("oci:{}:app-1", layout().display()),
            &format!("oci:{}:x", root.display()),
        ],
        t.path(),
    )
    .ok();
    let index_path = root.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"] = serde_json::json!({
        "io.containerd.image.name": "docker.io/library/app:1",
        "org.opencontainers.image.ref.name": "1",
    });
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(
        root.join("manifest.json"),
        r#"[{"Config":"x","RepoTags":["app:1"],"Layers":[]}]"#,
    )
    .unwrap();
    run("tar", &["-cf", "save.tar", "-C", "save", "."], t.path()).ok();

    airlock(
        &[
            "pack",
            "-q",
            "docker-archive:save.tar:app:1",
            "-o",
            "s.airlock",
        ],
        t.path(),
    )
    .ok();
    let report = airlock(&["inspect", "--json", "s.airlock"], t.path()).ok();
    let v: serde_json::Value = serde_json::from_str(&report.stdout()).unwrap();
    assert_eq!(v["images"][0]["name"], "docker.io/library/app:1");
    assert_eq!(
        v["images"][0]["digest"],
        skopeo_digest(&format!("oci:{}:app-1", layout().display()), t.path())
    );
}
