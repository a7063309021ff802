//! `airlock inventory` of a real registry (a catalog of several pages, a
//! multi-platform index, a prefix, htpasswd auth) and of bundles (one
//! split into volumes), checked against what skopeo reads; `airlock diff`
//! between bundles and between an inventory and a bundle; inventory files
//! that are refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::harness::*;
use crate::util::*;

fn json_of(run: Run) -> Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn fixture(tag: &str) -> String {
    format!("oci:{}:{tag}", layout().display())
}

/// `name digest` of each image of an inventory (they are sorted there).
fn images(inv: &Value) -> Vec<String> {
    inv["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["name"].as_str().unwrap(),
                i["digest"].as_str().unwrap()
            )
        })
        .collect()
}

/// `(digest, size)` of each blob of an inventory, in its order.
fn blobs(inv: &Value) -> Vec<(String, u64)> {
    inv["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every blob an image reaches, as skopeo reads the registry: the
/// manifest or index itself, each manifest of an index, configs, layers.
fn skopeo_blobs(reg: &Registry, repo: &str, reference: &str, out: &mut BTreeSet<(String, u64)>) {
    let sep = if reference.starts_with("sha256:") {
        "@"
    } else {
        ":"
    };
    let image = format!("docker://{}/{repo}{sep}{reference}", reg.host);
    let raw = skopeo(
        &["inspect", "--raw", "--tls-verify=false", &image],
        Path::new("/"),
    )
    .ok()
    .out
    .stdout;
    out.insert((format!("sha256:{}", sha256_hex(&raw)), raw.len() as u64));
    let doc: Value = serde_json::from_slice(&raw).unwrap();
    if let Some(children) = doc["manifests"].as_array() {
        assert!(!children.is_empty());
        for c in children {
            skopeo_blobs(reg, repo, c["digest"].as_str().unwrap(), out);
        }
        return;
    }
    let layers = doc["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for d in layers.iter().chain([&doc["config"]]) {
        out.insert((
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap(),
        ));
    }
}

/// A registry whose catalog comes in pages of two, holding five
/// repositories: four under `mirror/` (one a multi-platform index, one
/// with three tags), one elsewhere.
fn paged_registry() -> Registry {
    let reg = Registry::start(Config {
        catalog_max: Some(2),
        ..Default::default()
    });
    reg.push(&fixture("multi"), "mirror/multi:1");
    reg.push(&fixture("multi"), "mirror/multi:latest");
    reg.push(&fixture("app-1"), "mirror/team/app:1");
    reg.push(&fixture("app-2"), "mirror/team/app:2");
    reg.push(&fixture("app-2"), "mirror/team/app:latest");
    reg.push(&fixture("arm-1"), "mirror/arm:1");
    reg.push(&fixture("base"), "mirror/base:1");
    reg.push(&fixture("base"), "other/base:1");
    // A cosign-style signature tag: an ordinary tag to an inventory.
    reg.push(&fixture("arm-1"), &cosign_tag());
    reg
}

/// `mirror/team/app:sha256-<hex of app-1>.sig`.
fn cosign_tag() -> String {
    let app1 = skopeo_digest(&fixture("app-1"), Path::new("/"));
    format!("mirror/team/app:sha256-{}.sig", &app1["sha256:".len()..])
}

/// Every tag of `paged_registry` under `mirror/`.
fn mirror_tags() -> Vec<String> {
    let mut v: Vec<String> = MIRROR_TAGS.iter().map(|t| t.to_string()).collect();
    v.push(cosign_tag());
    v
}

/// The images a registry holds, as `name digest` lines under `prefix`,
/// read with skopeo.
fn expected_images(reg: &Registry, tags: &[&str], prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = tags
        .iter()
        .map(|t| {
            let name = t.strip_prefix(prefix).unwrap();
            format!("{name} {}", reg.digest(t, &["--tls-verify=false"]))
        })
        .collect();
    v.sort();
    v
}

const MIRROR_TAGS: [&str; 7] = [
    "mirror/multi:1",
    "mirror/multi:latest",
    "mirror/team/app:1",
    "mirror/team/app:2",
    "mirror/team/app:latest",
    "mirror/arm:1",
    "mirror/base:1",
];

#[test]
fn a_registry_inventory_reads_every_catalog_page_and_every_blob_skopeo_sees() {
    let reg = paged_registry();
    // The registry really pages its catalog: the first page is two of five.
    let first: Value = serde_json::from_str(&reg.catalog()).unwrap();
    assert_eq!(
        first["repositories"].as_array().unwrap().len(),
        2,
        "{first}"
    );

    let t = scratch();
    let mut args = vec!["inventory".to_string(), format!("docker://{}", reg.host)];
    args.extend(reg.plain_flags());
    args.extend(["-o".into(), "all.json".into(), "-j".into(), "3".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = airlock(&args, t.path()).ok().stderr();
    assert!(err.contains("inventory: 9 image(s)"), "{err}");
    let inv = read_json(&t.path().join("all.json"));
    assert_eq!(inv["version"], 1);
    assert_eq!(inv["kind"], "airlock-inventory");
    assert_eq!(inv["source"]["type"], "registry");
    assert_eq!(inv["source"]["registry"], reg.host.as_str());
    assert_eq!(inv["source"]["prefix"], "");
    let mut all_tags = mirror_tags();
    all_tags.push("other/base:1".into());
    let all_tags: Vec<&str> = all_tags.iter().map(String::as_str).collect();
    assert_eq!(images(&inv), expected_images(&reg, &all_tags, ""));

    // Blobs: what skopeo reaches from every tag, sorted by digest, each once.
    let mut expected = BTreeSet::new();
    for t in &all_tags {
        let (repo, tag) = t.rsplit_once(':').unwrap();
        skopeo_blobs(&reg, repo, tag, &mut expected);
    }
    let listed = blobs(&inv);
    assert_eq!(listed, expected.into_iter().collect::<Vec<_>>());
    // The index's three manifests are there, and the layers, not only roots.
    assert!(listed.len() > 12, "{listed:?}");

    // Manifests only: no layer was fetched.
    let ours: Vec<String> = reg
        .log()
        .lines()
        .filter(|l| l.contains("\"airlock/") && l.starts_with("127.0.0.1"))
        .map(String::from)
        .collect();
    assert!(ours.iter().any(|l| l.contains("/manifests/")), "{ours:#?}");
    assert!(
        !ours.iter().any(|l| l.contains("/blobs/")),
        "a blob was read: {ours:#?}"
    );
}

#[test]
fn a_prefix_selects_its_repositories_and_names_them_under_it() {
    let reg = paged_registry();
    let t = scratch();
    let mut args = vec![
        "inventory".to_string(),
        format!("docker://{}/mirror/", reg.host),
    ];
    args.extend(reg.plain_flags());
    args.extend([
        "-o".into(),
        "-".into(),
        "-q".into(),
        "-j".into(),
        "1".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = airlock(&args, t.path()).ok();
    assert_eq!(run.stderr(), "", "-q prints nothing");
    // The index's three manifests are read once, not once per tag of it.
    let children = reg
        .log()
        .lines()
        .filter(|l| l.starts_with("127.0.0.1") && l.contains("\"airlock/"))
        .filter(|l| l.contains("GET /v2/mirror/multi/manifests/sha256:"))
        .count();
    assert_eq!(children, 3);
    let inv = json_of(run);
    assert_eq!(inv["source"]["prefix"], "mirror");
    let tags = mirror_tags();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    assert_eq!(images(&inv), expected_images(&reg, &tags, "mirror/"));
    assert!(tags.iter().any(|t| t.ends_with(".sig")), "{tags:?}");
    // other/base shares every blob with mirror/base: the blob list is the
    // same as for the mirror tags alone.
    let mut expected = BTreeSet::new();
    for t in &tags {
        let (repo, tag) = t.rsplit_once(':').unwrap();
        skopeo_blobs(&reg, repo, tag, &mut expected);
    }
    assert_eq!(blobs(&inv), expected.into_iter().collect::<Vec<_>>());
}

#[test]
fn a_registry_behind_htpasswd_is_listed_with_an_auth_file_and_a_wrong_password_fails() {
    use base64::Engine as _;
    let reg = Registry::start(Config {
        basic: Some(("alice", "s3cret-pass")),
        catalog_max: Some(1),
        ..Default::default()
    });
    reg.push(&fixture("app-1"), "team/app:1");
    reg.push(&fixture("base"), "team/base:1");
    let t = scratch();
    let auth = |password: &str| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
        format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, reg.host)
    };
    std::fs::write(t.path().join("good.json"), auth("s3cret-pass")).unwrap();
    std::fs::write(t.path().join("bad.json"), auth("old-pass")).unwrap();
    let run = |file: &str, out: &str| {
        let mut args = vec![
            "inventory".to_string(),
            format!("docker://{}", reg.host),
            "--authfile".into(),
            file.into(),
            "-o".into(),
            out.into(),
        ];
        args.extend(reg.plain_flags());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        airlock(&args, t.path())
    };
    run("good.json", "inv.json").ok();
    let inv = read_json(&t.path().join("inv.json"));
    let creds = ["--creds", "alice:s3cret-pass", "--tls-verify=false"];
    let want: Vec<String> = ["team/app:1", "team/base:1"]
        .iter()
        .map(|i| format!("{i} {}", reg.digest(i, &creds)))
        .collect();
    assert_eq!(images(&inv), want);

    let err = run("bad.json", "wrong.json").fails();
    assert!(!t.path().join("wrong.json").exists());
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[REG]")]}, {
        insta::assert_snapshot!(err, @r#"
            airlock: error: the registry refused the credentials for alice from bad.json (GET http://[REG]/v2/_catalog: HTTP 401); UNAUTHORIZED: authentication required
              hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
            "#);
    });
}

#[test]
fn a_bundle_and_a_split_bundle_are_listed_from_their_signed_manifests() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let key = t.path().join("signer");
    let large = format!("oci:{}:large", fixtures().join("large").display());
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "split.airlock",
            "--key",
            key.to_str().unwrap(),
            "--split",
            "1M",
            &large,
        ],
        t.path(),
    )
    .ok();
    assert!(
        t.path().join("split.airlock.003").exists(),
        "{:?}",
        entries(t.path())
    );
    let public = public.to_str().unwrap();
    airlock(
        &[
            "inventory",
            "--pub",
            public,
            bundle.to_str().unwrap(),
            "split.airlock.001",
            "-o",
            "sent.json",
        ],
        t.path(),
    )
    .ok();
    let inv = read_json(&t.path().join("sent.json"));
    assert_eq!(inv["source"]["type"], "bundles");
    let listed = inv["source"]["bundles"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["file"], "split.airlock.001");
    assert_eq!(listed[0]["delta"], false);

    // What inspect reads from each bundle, names without their source's
    // registry (as import gives them), blobs each once.
    let mut want_images = Vec::new();
    let mut want_bytes = 0;
    let mut want_blobs = 0;
    for b in [bundle.to_str().unwrap(), "split.airlock.001"] {
        let seen = json_of(airlock(&["inspect", "--json", b], t.path()).ok());
        for i in seen["images"].as_array().unwrap() {
            let name = i["name"].as_str().unwrap();
            let (_, path) = name.split_once('/').unwrap_or(("", name));
            want_images.push(format!("{path} {}", i["digest"].as_str().unwrap()));
        }
        want_bytes += seen["bytes"].as_u64().unwrap();
        want_blobs += seen["blob_count"].as_u64().unwrap();
    }
    want_images.sort();
    assert_eq!(images(&inv), want_images);
    assert!(
        want_images.iter().any(|i| i.starts_with("large:large ")),
        "{want_images:?}"
    );
    // The two bundles share no blob, so the sums agree.
    let listed = blobs(&inv);
    assert_eq!(listed.len() as u64, want_blobs);
    assert_eq!(listed.iter().map(|b| b.1).sum::<u64>(), want_bytes);
    let ids: Vec<&str> = inv["source"]["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("sha256:")) && ids[0] != ids[1]);

    // The file is not replaced without --force; with it, it is.
    let again = [
        "inventory",
        "--pub",
        public,
        "split.airlock.001",
        "-o",
        "sent.json",
    ];
    let err = airlock(&again, t.path()).fails();
    let dir = t.path().display().to_string().replace('.', r"\.");
    insta::with_settings!({filters => vec![(dir.as_str(), "[DIR]")]}, {
        insta::assert_snapshot!(err, @r#"
            airlock: error: sent.json: exists
              hint: pass --force to replace it, or choose another name
            "#);
    });
    let mut forced = again.to_vec();
    forced.push("--force");
    airlock(&forced, t.path()).ok();
    assert_eq!(images(&read_json(&t.path().join("sent.json"))).len(), 1);

    // Bundles need a key, or --allow-unsigned; another key is refused.
    let err = airlock(
        &["inventory", "split.airlock.001", "-o", "x.json"],
        t.path(),
    )
    .fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: inventory of bundles needs --pub KEY (the signer's public key), or --allow-unsigned");
    let (_, other) = keys(t.path(), "other");
    let err = airlock(
        &[
            "inventory",
            "--pub",
            other.to_str().unwrap(),
            "split.airlock.001",
            "-o",
            "x.json",
        ],
        t.path(),
    )
    .fails();
    assert!(err.contains("signed by key"), "{err}");
    assert!(!t.path().join("x.json").exists());
}

/// Packs `images` (tags of team/app in `reg`) into `name`, signed by `key`.
fn pack_tags(reg: &Registry, dir: &Path, name: &str, key: &Path, tags: &[&str]) {
    let mut args = vec!["pack".to_string(), "-q".into(), "-o".into(), name.into()];
    args.extend(["--key".into(), key.display().to_string()]);
    args.extend(reg.plain_flags());
    args.extend(tags.iter().map(|t| format!("{}/team/app:{t}", reg.host)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    airlock(&args, dir).ok();
}

/// `(digest, size)` of a fixture's manifest, config and top layer.
fn own_blobs(tag: &str) -> Vec<(String, u64)> {
    let raw = skopeo(&["inspect", "--raw", &fixture(tag)], Path::new("/"))
        .ok()
        .out
        .stdout;
    let doc: Value = serde_json::from_slice(&raw).unwrap();
    let d = |v: &Value| {
        (
            v["digest"].as_str().unwrap().to_string(),
            v["size"].as_u64().unwrap(),
        )
    };
    let layers = doc["layers"].as_array().unwrap();
    vec![
        (format!("sha256:{}", sha256_hex(&raw)), raw.len() as u64),
        d(&doc["config"]),
        d(layers.last().unwrap()),
    ]
}

#[test]
fn diff_between_bundles_and_between_an_inventory_and_a_bundle() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (key, public) = keys(t.path(), "signer");
    let public = public.to_str().unwrap();
    reg.push(&fixture("app-1"), "team/app:1");
    reg.push(&fixture("app-1"), "team/app:latest");
    reg.push(&fixture("base"), "team/app:old");
    pack_tags(
        &reg,
        t.path(),
        "week1.airlock",
        &key,
        &["1", "latest", "old"],
    );
    // What the far side holds after week 1, listed from its registry.
    let mut args = vec!["inventory".to_string(), format!("docker://{}", reg.host)];
    args.extend(reg.plain_flags());
    args.extend(["-q".into(), "-o".into(), "held.json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    airlock(&args, t.path()).ok();
    // Week 2: latest moves to app-2, app:2 is new, old is gone.
    reg.push(&fixture("app-2"), "team/app:latest");
    reg.push(&fixture("app-2"), "team/app:2");
    pack_tags(&reg, t.path(), "week2.airlock", &key, &["1", "latest", "2"]);

    let app1 = skopeo_digest(&fixture("app-1"), t.path());
    let app2 = skopeo_digest(&fixture("app-2"), t.path());
    let base = skopeo_digest(&fixture("base"), t.path());
    // Both bundles together: a tag in both ends at its digest in the last.
    airlock(
        &[
            "inventory",
            "--pub",
            public,
            "week1.airlock",
            "week2.airlock",
            "-q",
            "-o",
            "sent.json",
        ],
        t.path(),
    )
    .ok();
    assert_eq!(
        images(&read_json(&t.path().join("sent.json"))),
        [
            format!("team/app:1 {app1}"),
            format!("team/app:2 {app2}"),
            format!("team/app:latest {app2}"),
            format!("team/app:old {base}"),
        ]
    );
    let report = json_of(
        airlock(
            &[
                "diff",
                "--pub",
                public,
                "week1.airlock",
                "week2.airlock",
                "--json",
            ],
            t.path(),
        )
        .ok(),
    );
    assert_eq!(report["version"], 1);
    assert_eq!(report["a"], "week1.airlock");
    assert_eq!(
        report["added"],
        serde_json::json!([{"name": "team/app:2", "digest": app2}])
    );
    assert_eq!(
        report["removed"],
        serde_json::json!([{"name": "team/app:old", "digest": base}])
    );
    assert_eq!(
        report["changed"],
        serde_json::json!([{"name": "team/app:latest", "from": app1, "to": app2}])
    );
    assert_eq!(report["unchanged_count"], 1);
    // A delta carries app-2's manifest, config and own layer: its base
    // layer is app-1's too.
    let new = own_blobs("app-2");
    assert_eq!(report["delta_blob_count"], 3);
    assert_eq!(report["delta_bytes"], new.iter().map(|b| b.1).sum::<u64>());
    documented(&report);

    // The far side's inventory against the next bundle says the same.
    let from_inventory = json_of(
        airlock(
            &[
                "diff",
                "held.json",
                "--pub",
                public,
                "week2.airlock",
                "--json",
            ],
            t.path(),
        )
        .ok(),
    );
    for field in [
        "added",
        "removed",
        "changed",
        "unchanged_count",
        "delta_blob_count",
        "delta_bytes",
    ] {
        assert_eq!(from_inventory[field], report[field], "{field}");
    }

    // The text form, grouped; nothing changed is exit 0 too.
    let text = airlock(
        &["diff", "--pub", public, "week1.airlock", "week2.airlock"],
        t.path(),
    )
    .ok();
    insta::with_settings!({filters => vec![(app1.as_str(), "[APP1]"), (app2.as_str(), "[APP2]"), (base.as_str(), "[BASE]"), (r"[\d.]+ KiB \(\d+ bytes\)", "[SIZE]")]}, {
        insta::assert_snapshot!(text.stdout(), @r#"
            --- A: week1.airlock
            +++ B: week2.airlock
            added (1):
              + team/app:2  [APP2]
            removed (1):
              - team/app:old  [BASE]
            changed (1):
              ~ team/app:latest  [APP1] -> [APP2]
            unchanged: 1 image(s)
            B holds 3 blob(s), [SIZE], that A lacks: what a delta from A to B carries, with every manifest of B
            "#);
    });
    let err = airlock(&["diff", "held.json", "week2.airlock"], t.path()).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: diff of a bundle needs --pub KEY (the signer's public key), or --allow-unsigned");
    let same = airlock(&["diff", "held.json", "held.json"], t.path())
        .ok()
        .stdout();
    assert!(same.contains("unchanged: 3 image(s)"), "{same}");
    assert!(same.contains("B holds 0 blob(s)"), "{same}");
    assert!(
        !same.contains("added (") && !same.contains("changed ("),
        "{same}"
    );
}

/// Every field of a `diff --json` report is in docs/json.md's section.
fn documented(report: &Value) {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let section = doc
        .split("## `airlock diff --json`")
        .nth(1)
        .expect("docs/json.md has a diff section")
        .split("\n## ")
        .next()
        .unwrap();
    let fields: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let mut seen = Vec::new();
    for (k, v) in report.as_object().unwrap() {
        seen.push(k.clone());
        for item in v.as_array().into_iter().flatten() {
            seen.extend(
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|c| format!("{k}[].{c}")),
            );
        }
    }
    for f in &seen {
        assert!(
            fields.contains(f.as_str()),
            "{f} is not in docs/json.md: {fields:?}"
        );
    }
    assert!(seen.len() > 10, "{seen:?}");
}

#[test]
fn inventory_files_that_are_malformed_or_of_another_version_are_refused() {
    let t = scratch();
    let good = serde_json::json!({
        "version": 1, "kind": "airlock-inventory", "created": "2026-12-01T00:00:00Z",
        "source": {"type": "registry", "registry": "reg.local", "prefix": ""},
        "images": [{"name": "app:1", "digest": format!("sha256:{}", "a".repeat(64))}],
        "blobs": [{"digest": format!("sha256:{}", "a".repeat(64)), "size": 10}],
    });
    std::fs::write(t.path().join("good.json"), good.to_string()).unwrap();
    let refused = |name: &str, text: String| {
        std::fs::write(t.path().join(name), text).unwrap();
        airlock(&["diff", "good.json", name], t.path()).fails()
    };
    let mut v = good.clone();
    v["version"] = 7.into();
    insta::assert_snapshot!(refused("v7.json", v.to_string()), @r#"
        airlock: error: inventory v7.json: version 7 is not supported (this airlock reads version 1)
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
        "#);
    let mut v = good.clone();
    v["blobs"][0]["size"] = "ten".into();
    insta::assert_snapshot!(refused("size.json", v.to_string()), @r#"
        airlock: error: inventory size.json: it is malformed: invalid type: string "ten", expected u64
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
        "#);
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("images");
    insta::assert_snapshot!(refused("noimages.json", v.to_string()), @r#"
        airlock: error: inventory noimages.json: it is malformed: missing field `images`
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
        "#);
    insta::assert_snapshot!(refused("cut.json", good.to_string()[..40].to_string()), @r#"
        airlock: error: inventory cut.json: it is not JSON: EOF while parsing a string at line 1 column 40
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
        "#);
    insta::assert_snapshot!(refused("report.json", r#"{"version": 1, "image_count": 2}"#.into()), @r#"
        airlock: error: inventory report.json: it is not an airlock inventory (no "kind": "airlock-inventory")
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
        "#);
    // A good one against itself: no difference, exit 0.
    airlock(&["diff", "good.json", "good.json"], t.path()).ok();
}
