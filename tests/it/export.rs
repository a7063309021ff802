//! `export` to an OCI layout and to a docker-archive, checked with skopeo.

use crate::util::*;

#[test]
fn exports_an_oci_layout_that_skopeo_reads_with_equal_digests() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let out = t.path().join("out");
    export(&bundle, &public, &format!("oci:{}", out.display()), &[]).ok();
    for tag in ["app-1", "app-2", "arm-1", "multi"] {
        let ours = skopeo_digest(
            &format!("oci:{}:localhost/layout:{tag}", out.display()),
            t.path(),
        );
        let theirs = skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path());
        assert_eq!(ours, theirs, "{tag}");
    }
    skopeo(
        &[
            "copy",
            "--all",
            &format!("oci:{}:localhost/layout:multi", out.display()),
            &format!("oci:{}:m", t.path().join("again").display()),
        ],
        t.path(),
    )
    .ok();

    // Exporting again into the same layout replaces entries, not duplicates them.
    export(
        &bundle,
        &public,
        &format!("oci:{}", out.display()),
        &["localhost/layout:app-1"],
    )
    .ok();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "localhost/layout:app-1")
            .count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn exports_a_docker_archive_that_skopeo_loads() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let tar = t.path().join("images.tar");
    export(
        &bundle,
        &public,
        &format!("docker-archive:{}", tar.display()),
        &["localhost/layout:multi", "localhost/layout:app-2"],
    )
    .ok();
    // The multi-platform image became its host-platform (amd64) image: the
    // config skopeo finds is app-1's, byte for byte.
    let config_of = |image: &str| {
        let raw = skopeo(&["inspect", "--config", "--raw", image], t.path())
            .ok()
            .out
            .stdout;
        sha256_hex(&raw)
    };
    assert_eq!(
        config_of(&format!(
            "docker-archive:{}:localhost/layout:multi",
            tar.display()
        )),
        config_of(&format!("oci:{}:app-1", layout().display()))
    );
    assert_eq!(
        config_of(&format!(
            "docker-archive:{}:localhost/layout:app-2",
            tar.display()
        )),
        config_of(&format!("oci:{}:app-2", layout().display()))
    );
    // Load it the way docker load would be used: copy every layer out.
    skopeo(
        &[
            "copy",
            &format!("docker-archive:{}:localhost/layout:app-2", tar.display()),
            &format!("oci:{}:x", t.path().join("o").display()),
        ],
        t.path(),
    )
    .ok();
    let manifest: serde_json::Value = serde_json::from_str(
        &run(
            "tar",
            &["-xOf", tar.to_str().unwrap(), "manifest.json"],
            t.path(),
        )
        .ok()
        .stdout(),
    )
    .unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2);
    assert_eq!(manifest[0]["RepoTags"][0], "localhost/layout:multi");

    // An explicit platform picks that one; several do not fit a docker-archive.
    let arm = t.path().join("arm.tar");
    export(
        &bundle,
        &public,
        &format!("docker-archive:{}", arm.display()),
        &["--platform", "linux/arm64", "localhost/layout:multi"],
    )
    .ok();
    assert_eq!(
        config_of(&format!("docker-archive:{}", arm.display())),
        config_of(&format!("oci:{}:arm-1", layout().display()))
    );
    let err = airlock(
        &[
            "export",
            bundle.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
            "--to",
            "docker-archive:two.tar",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            "localhost/layout:multi",
        ],
        t.path(),
    )
    .fails_usage();
    assert!(err.contains("one platform per image"), "{err}");
    assert!(!t.path().join("two.tar").exists());
}

#[test]
fn export_refuses_unknown_images_and_targets() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let b = bundle.to_str().unwrap();
    let p = public.to_str().unwrap();
    let err = airlock(
        &["export", b, "--pub", p, "--to", "oci:o", "nginx"],
        t.path(),
    )
    .fails();
    assert!(
        err.contains("docker.io/library/nginx") || err.contains("nginx"),
        "{err}"
    );
    assert!(
        err.contains("localhost/layout:app-1"),
        "lists what there is: {err}"
    );
    let err = airlock(&["export", b, "--pub", p, "--to", "tarball:x"], t.path()).fails_usage();
    assert!(
        err.contains("oci:DIR, oci-archive:FILE or docker-archive:FILE"),
        "{err}"
    );
}
