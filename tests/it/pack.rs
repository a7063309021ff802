//! Packing from every local source format, and reading the result back with
//! tools that are not airlock.

use std::process::Command;

use crate::util::*;

fn inspect_json(bundle: &std::path::Path) -> serde_json::Value {
    let run = airlock(
        &["inspect", "--json", bundle.to_str().unwrap()],
        bundle.parent().unwrap(),
    )
    .ok();
    serde_json::from_str(&run.stdout()).unwrap()
}

fn image<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no image {name} in {report:#}"))
}

/// Unpacks a bundle with plain zstd and tar, as a receiver without airlock would.
fn untar(bundle: &std::path::Path, into: &std::path::Path) {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -x -C '{}'",
            bundle.display(),
            into.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "zstd | tar failed");
}

#[test]
fn packs_every_source_format_and_skopeo_reads_the_result() {
    let fx = fixtures();
    let t = scratch();
    let whole_layout = format!("oci:{}", layout().display());
    let oci_archive = format!("oci-archive:{}", fx.join("app1.oci.tar").display());
    let docker_archive = format!("docker-archive:{}", fx.join("app2.docker.tar.gz").display());
    let (bundle, public) = packed(t.path(), &[&whole_layout, &oci_archive, &docker_archive]);

    verify_signed(&bundle, &public).ok();
    let report = inspect_json(&bundle);
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["images"].as_array().unwrap().len(), 7);
    assert_eq!(
        image(&report, "localhost/layout:multi")["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64", "linux/ppc64le"])
    );
    assert_eq!(
        image(&report, "localhost/layout:arm-1")["platforms"],
        serde_json::json!(["linux/arm64"])
    );

    let x = t.path().join("x");
    untar(&bundle, &x);
    for (name, tag) in [
        ("localhost/layout:app-1", "app-1"),
        ("localhost/layout:multi", "multi"),
        ("localhost/layout:arm-1", "arm-1"),
    ] {
        let ours = skopeo_digest(&format!("oci:{}:{name}", x.display()), t.path());
        let theirs = skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path());
        assert_eq!(ours, theirs, "{name} changed digest on the way");
        assert_eq!(image(&report, name)["digest"], theirs);
    }
    // The docker-archive image arrives with the name docker save gave it.
    let d = image(&report, "example.com/team/app2:2");
    assert_eq!(d["platforms"], serde_json::json!(["linux/amd64"]));
    skopeo(
        &[
            "copy",
            "--all",
            &format!("oci:{}:localhost/layout:multi", x.display()),
            &format!("oci:{}:m", t.path().join("copy").display()),
        ],
        t.path(),
    )
    .ok();
    skopeo(
        &[
            "copy",
            &format!("oci:{}:example.com/team/app2:2", x.display()),
            &format!("oci:{}:a", t.path().join("copy").display()),
        ],
        t.path(),
    )
    .ok();
}

#[test]
fn stores_each_blob_once_however_many_images_share_it() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -t", bundle.display()))
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names[0], "airlock-bundle.json");
    assert_eq!(names[1], "oci-layout");
    assert_eq!(names[2], "index.json");
    let mut blobs: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/"))
        .collect();
    let before = blobs.len();
    blobs.sort();
    blobs.dedup();
    assert_eq!(before, blobs.len(), "a blob is stored twice");
    let report = inspect_json(&bundle);
    // base, app-1, app-2, arm-1 and multi all share base's layer.
    assert!(
        report["shared_bytes"].as_u64().unwrap() > 100_000,
        "{report:#}"
    );
    assert_eq!(report["blob_count"].as_u64().unwrap() as usize, blobs.len());
}

#[test]
fn platform_filter_keeps_the_chosen_platforms() {
    let t = scratch();
    let multi = format!("oci:{}:multi", layout().display());
    let arm_digest = skopeo_digest(&format!("oci:{}:arm-1", layout().display()), t.path());
    let multi_digest = skopeo_digest(&multi, t.path());

    // One platform: the image becomes that platform's manifest, digest intact.
    let one = t.path().join("one.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &multi,
            "--platform",
            "linux/arm64",
            "-o",
            one.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let report = inspect_json(&one);
    let img = image(&report, "localhost/layout:multi");
    assert_eq!(img["digest"], arm_digest);
    assert_eq!(img["source_digest"], multi_digest);
    assert_eq!(img["platforms"], serde_json::json!(["linux/arm64"]));

    // Several: a new index holding exactly those, with a new digest.
    let two = t.path().join("two.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &multi,
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            "-o",
            two.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let report = inspect_json(&two);
    let img = image(&report, "localhost/layout:multi");
    assert_eq!(
        img["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_ne!(img["digest"], multi_digest);
    assert_eq!(img["source_digest"], multi_digest);
    airlock(
        &["verify", "--allow-unsigned", two.to_str().unwrap()],
        t.path(),
    )
    .ok();

    // All of them: the source's index itself, digest intact.
    let all = t.path().join("all.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &multi,
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/ppc64le",
            "-o",
            all.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let report = inspect_json(&all);
    let img = image(&report, "localhost/layout:multi");
    assert_eq!(img["digest"], multi_digest);
    assert!(img.get("source_digest").is_none());

    // None: a clear error that lists what there is; no bundle appears.
    let none = t.path().join("none.airlock");
    let err = airlock(
        &[
            "pack",
            &multi,
            "--platform",
            "linux/s390x",
            "-o",
            none.to_str().unwrap(),
        ],
        t.path(),
    )
    .fails();
    assert!(err.contains("no platform matches linux/s390x"), "{err}");
    assert!(
        err.contains("linux/amd64, linux/arm64, linux/ppc64le"),
        "{err}"
    );
    assert!(!none.exists());
    let err = airlock(
        &[
            "pack",
            &multi,
            "--platform",
            "linux",
            "-o",
            none.to_str().unwrap(),
        ],
        t.path(),
    )
    .fails_usage();
    assert!(err.contains("os/arch"), "{err}");
}

#[test]
fn same_input_and_time_give_the_same_bundle_bytes() {
    let t = scratch();
    let (key, _) = keys(t.path(), "k");
    let src = format!("oci:{}", layout().display());
    let mut digests = Vec::new();
    for (i, jobs) in ["1", "2"].iter().enumerate() {
        let out = t.path().join(format!("r{i}.airlock"));
        airlock(
            &[
                "pack",
                "-q",
                &src,
                "-j",
                jobs,
                "--key",
                key.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            t.path(),
        )
        .ok();
        digests.push(sha256_hex(&std::fs::read(&out).unwrap()));
    }
    assert_eq!(
        digests[0], digests[1],
        "pack is not deterministic across thread counts"
    );
}

#[test]
fn reads_sources_from_a_list_file() {
    let t = scratch();
    let list = t.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# images for site B\n\noci:{}:app-1\n  oci:{}:app-2   # second app\n",
            layout().display(),
            layout().display()
        ),
    )
    .unwrap();
    let out = t.path().join("l.airlock");
    airlock(
        &[
            "pack",
            "-q",
            "-f",
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        t.path(),
    )
    .ok();
    let report = inspect_json(&out);
    let names: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["localhost/layout:app-1", "localhost/layout:app-2"]);
}

#[test]
fn the_bundle_is_a_valid_zstd_seekable_file() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let list = run("zstd", &["-l", bundle.to_str().unwrap()], t.path())
        .ok()
        .stdout();
    // Header and data frames, plus the seek table as one skippable frame.
    let row = list.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(cols[0].parse::<u32>().unwrap() >= 6, "{list}");
    assert_eq!(
        cols[1], "1",
        "expected one skippable frame (the seek table): {list}"
    );
    run("zstd", &["-t", bundle.to_str().unwrap()], t.path()).ok();
}

#[test]
fn packs_to_standard_output_with_the_same_bytes_as_a_file() {
    let t = scratch();
    let src = format!("oci:{}:multi", layout().display());
    airlock(&["pack", "-q", &src, "-o", "file.airlock"], t.path()).ok();
    let streamed = airlock(&["pack", "-q", &src, "-o", "-"], t.path()).ok();
    assert_eq!(
        streamed.out.stdout,
        std::fs::read(t.path().join("file.airlock")).unwrap()
    );
    let err = airlock(&["pack", &src, "-o", "-", "--json"], t.path()).fails_usage();
    assert!(err.contains("--json"), "{err}");
}

#[test]
fn a_pack_killed_midway_leaves_nothing_that_looks_complete() {
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    // Replace app-1's layer by a FIFO nobody writes: pack blocks reading it,
    // with its temporary output open, and is killed there.
    let raw = skopeo(
        &["inspect", "--raw", &format!("oci:{}:app-1", lay.display())],
        t.path(),
    )
    .ok()
    .out
    .stdout;
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layer_digest = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer = lay
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));
    std::fs::remove_file(&layer).unwrap();
    run("mkfifo", &[layer.to_str().unwrap()], t.path()).ok();
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["pack", "-q", &format!("oci:{}:app-1", lay.display()), "-o"])
        .arg(out.join("b.airlock"))
        .spawn()
        .unwrap();
    // Wait until the temporary file exists, then kill -9.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while entries(&out).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "pack never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = entries(&out);
    assert!(
        !out.join("b.airlock").exists(),
        "a killed pack left {left:?}"
    );
    assert!(
        left.iter()
            .all(|n| n.starts_with('.') && n.ends_with(".partial")),
        "{left:?}"
    );
}
