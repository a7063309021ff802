//! Delta bundles (issue #13, spec §16): `pack --against` a bundle or an
//! inventory carries only what the base lacks; `verify`, `verify --with`,
//! `inspect` and `export --with` read it; crafted deltas are refused by
//! the file and the stream reader.
//!
//! The images are built here with umoci: one base layer, and an app whose
//! second version changes its one layer of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{Config, Registry};
use crate::hostile::craft::{entries, write, Parts};
use crate::util::{airlock, keys, run, scratch, skopeo_digest, Run};

/// `DIR/v1/app` and `DIR/v2/app`: OCI layouts holding `base` (one layer)
/// and `app` (base's layer plus one of its own, different in v2; the v2
/// layout is a copy of v1 with `app` rebuilt, so `base` is the same).
fn versions(dir: &Path) -> (PathBuf, PathBuf) {
    let script = r#"
set -eu
work=$(mktemp -d)
derive() { # LAYOUT FROM TO ACTION
  rm -rf "$work/b"
  umoci unpack --rootless --image "$1:$2" "$work/b" >/dev/null
  (cd "$work/b/rootfs" && eval "$4")
  umoci repack --image "$1:$3" "$work/b" >/dev/null
}
rand() { (openssl enc -aes-256-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$2"; }
mkdir -p v1 v2
L=v1/app
umoci init --layout $L
umoci new --image $L:empty
derive $L empty base 'mkdir -p usr/lib && rand base 200000 > usr/lib/base.so'
umoci config --image $L:base --os linux --architecture amd64 --config.env PATH=/usr/bin
umoci rm --image $L:empty
cp -r $L v2/app
derive v1/app base app 'mkdir -p app && rand app-one 70000 > app/data'
umoci config --image v1/app:app --config.entrypoint /app/data
derive v2/app base app 'mkdir -p app && rand app-two 90000 > app/data'
umoci config --image v2/app:app --config.entrypoint /app/data
rm -rf "$work"
"#;
    run("sh", &["-c", script], dir).ok();
    (dir.join("v1/app"), dir.join("v2/app"))
}

/// A blob of an image in a layout, as umoci wrote it: (digest, size).
type Blob = (String, u64);

/// The manifest, config and layers of `tag` in `layout`, read straight
/// from umoci's files.
fn blobs_of(layout: &Path, tag: &str) -> (Blob, Blob, Vec<Blob>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let pair = |v: &Value| {
        (
            v["digest"].as_str().unwrap().to_string(),
            v["size"].as_u64().unwrap(),
        )
    };
    let hex = m["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let raw = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(pair)
        .collect();
    (pair(m), pair(&manifest["config"]), layers)
}

/// Every field of `v` (by path, `a[].b`) is a row of docs/json.md's
/// section `airlock COMMAND --json`.
fn documented(command: &str, v: &Value) {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md"))
        .unwrap();
    let head = format!("## `airlock {command} --json`");
    let section = doc
        .split(&head)
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let rows: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(p.clone());
                    walk(c, &p, out);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|c| walk(c, &format!("{path}[]"), out)),
            _ => {}
        }
    }
    let mut paths = Vec::new();
    walk(v, "", &mut paths);
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !rows.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{command}: not in docs/json.md: {missing:?}"
    );
    assert!(
        paths.iter().any(|p| p == "delta.expected_count"),
        "{paths:?}"
    );
}

fn json(r: Run) -> Value {
    serde_json::from_str(&r.stdout()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Where `scratch` puts its folders, as a pattern: `$TMPDIR` may be set.
fn scratch_paths() -> &'static str {
    static PATTERN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let tmp = std::env::temp_dir();
        format!(
            r"{}/airlock-test[^\s:,)]*/",
            regex::escape(tmp.to_str().unwrap().trim_end_matches('/'))
        )
    })
}

/// Digests and paths vary between runs; messages are compared without them.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"sha256:[0-9a-f]{64}", "[DIGEST]"),
        (r"sha256:[0-9a-f]{12}", "[SHORT]"),
        (r"\b[0-9a-f]{64}\b", "[KEY]"),
        (scratch_paths(), "[DIR]/"),
        (r"\d+(\.\d+)? [KM]iB", "[SIZE]"),
        (r"\b\d+ bytes", "[N] bytes"),
        (r"but \d+ were", "but [N] were"),
    ]
}

/// The two layouts, v1's whole bundle (`base`) and v2's delta against it,
/// both signed by `key`.
struct Packed {
    t: tempfile::TempDir,
    v1: PathBuf,
    v2: PathBuf,
    base: PathBuf,
    delta: PathBuf,
    public: PathBuf,
    key: PathBuf,
}

/// Packs v1 (base and app) signed, then v2 against it.
fn pack_both() -> Packed {
    let t = scratch();
    let (v1, v2) = versions(t.path());
    let (key, public) = keys(t.path(), "site");
    let base = t.path().join("v1.airlock");
    let src = |l: &Path, tag: &str| format!("oci:{}:{tag}", l.display());
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&base),
            "--key",
            s(&key),
            &src(&v1, "base"),
            &src(&v1, "app"),
        ],
        t.path(),
    )
    .ok();
    let delta = t.path().join("v2.airlock");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&delta),
            "--key",
            s(&key),
            "--against",
            s(&base),
            "--pub",
            s(&public),
            &src(&v2, "base"),
            &src(&v2, "app"),
        ],
        t.path(),
    )
    .ok();
    Packed {
        t,
        v1,
        v2,
        base,
        delta,
        public,
        key,
    }
}

#[test]
fn a_delta_carries_what_its_base_bundle_lacks_and_exports_whole_with_it() {
    let p = pack_both();
    let dir = p.t.path();
    let (base_m, base_c, base_l) = blobs_of(&p.v2, "base");
    let (app_m, app_c, app_l) = blobs_of(&p.v2, "app");
    assert_eq!(base_l.len(), 1);
    assert_eq!(app_l.len(), 2);
    assert_eq!(app_l[0], base_l[0], "the app is built on base's layer");
    // The v1 app's own layer and config are not v2's.
    let (_, v1_app_c, v1_app_l) = blobs_of(&p.v1, "app");
    assert_ne!(v1_app_l[1], app_l[1]);
    assert_ne!(v1_app_c, app_c);

    // Carried: both manifests (always), and v2's changed config and layer.
    let parts = Parts::of(&p.delta);
    let carried: BTreeSet<Blob> = parts.manifest["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<Blob> = [
        base_m.clone(),
        app_m.clone(),
        app_c.clone(),
        app_l[1].clone(),
    ]
    .into();
    assert_eq!(carried, want);
    assert_eq!(parts.manifest["formatVersion"], 2);
    let expected: BTreeSet<Blob> = parts.manifest["delta"]["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(expected, [base_c.clone(), base_l[0].clone()].into());
    let bases = &parts.manifest["delta"]["bases"];
    assert_eq!(bases.as_array().unwrap().len(), 1);
    assert_eq!(bases[0]["kind"], "bundle");
    let v1_id = Parts::of(&p.base).id().to_string();
    assert_eq!(bases[0]["digest"], v1_id.as_str());

    // inspect --json: what it carries and what it expects, in bytes.
    let i = json(airlock(&["inspect", "--json", s(&p.delta)], dir).ok());
    assert_eq!(i["format_version"], 2);
    documented("inspect", &i);
    assert_eq!(i["blob_count"], 4);
    assert_eq!(i["bytes"], want.iter().map(|b| b.1).sum::<u64>());
    assert_eq!(i["delta"]["expected_count"], 2);
    assert_eq!(i["delta"]["expected_bytes"], base_c.1 + base_l[0].1);
    let names: Vec<&str> = i["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "the unchanged base is still listed: {names:?}"
    );

    // verify: file and stream; the report says what it expects.
    let pubk = s(&p.public);
    let v = json(airlock(&["verify", "--json", "--pub", pubk, s(&p.delta)], dir).ok());
    assert_eq!(v["blob_count"], 4);
    assert_eq!(v["delta"]["expected_count"], 2);
    assert_eq!(v["delta"]["bases"][0]["digest"], v1_id.as_str());
    assert!(v["delta"].get("supplied_by").is_none());
    let bin = env!("CARGO_BIN_EXE_airlock");
    let text = run(
        "sh",
        &[
            "-c",
            &format!("{bin} verify --pub {pubk} - < {}", s(&p.delta)),
        ],
        dir,
    )
    .ok()
    .stdout();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(text, @r"
        OK: 2 image(s), 4 blob(s), [SIZE] checked; signed by [KEY]
        delta: expects 2 blob(s), [SIZE] from bundle [DIR]/v1.airlock ([SHORT]); not checked against the bases (--with BASE checks)
        ");
    });

    // verify --with the base: every expected blob is there.
    let v = json(
        airlock(
            &[
                "verify",
                "--json",
                "--pub",
                pubk,
                s(&p.delta),
                "--with",
                s(&p.base),
            ],
            dir,
        )
        .ok(),
    );
    assert_eq!(v["delta"]["supplied_by"].as_array().unwrap().len(), 1);
    documented("verify", &v);
    // … and through a stream.
    run(
        "sh",
        &[
            "-c",
            &format!(
                "{bin} verify --pub {pubk} --with {} - < {}",
                s(&p.base),
                s(&p.delta)
            ),
        ],
        dir,
    )
    .ok();

    // verify --with an unrelated bundle: fails naming each missing blob,
    // its size and the base the delta said holds it.
    let other = dir.join("other.airlock");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&other),
            "--key",
            s(&p.key),
            &format!("oci:{}:app", p.v2.display()),
        ],
        dir,
    )
    .ok();
    // v2's app carries base's layer but not base's config.
    let err = airlock(
        &[
            "verify",
            "-q",
            "--pub",
            pubk,
            s(&p.delta),
            "--with",
            s(&other),
        ],
        dir,
    )
    .fails();
    assert!(
        err.contains(&format!("{} ({} bytes)", base_c.0, base_c.1)),
        "{err}"
    );
    assert!(!err.contains(&base_l[0].0), "{err}");
    let err = err.replace(&base_c.0, "[BASE CONFIG]");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: [DIR]/v2.airlock: blob [BASE CONFIG] ([N] bytes) is not carried by this delta bundle; its base bundle [DIR]/v1.airlock ([SHORT]) should hold it
          hint: give the base bundle with --with BASE, or import into a registry that holds the base
        ");
    });

    // export without --with: refused, naming what it lacks.
    let out = dir.join("out");
    let err = airlock(
        &[
            "export",
            "-q",
            "--pub",
            pubk,
            "--to",
            &format!("oci:{}", out.display()),
            s(&p.delta),
        ],
        dir,
    )
    .fails();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: [DIR]/v2.airlock: it is a delta bundle: it does not carry 2 blob(s) ([N] bytes) its images need, which it expects from bundle [DIR]/v1.airlock ([SHORT])
          hint: give the base bundles with --with BASE
        ");
    });
    assert!(!out.exists());

    // export --with v1: skopeo reads v2's images at their source digests.
    airlock(
        &[
            "export",
            "-q",
            "--pub",
            pubk,
            "--with",
            s(&p.base),
            "--to",
            &format!("oci:{}", out.display()),
            s(&p.delta),
        ],
        dir,
    )
    .ok();
    let layout_name = |tag: &str| {
        // The bundle's names are the export's tags.
        i["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .find(|n| n.ends_with(&format!(":{tag}")))
            .unwrap()
    };
    for tag in ["base", "app"] {
        let exported = skopeo_digest(&format!("oci:{}:{}", out.display(), layout_name(tag)), dir);
        let source = skopeo_digest(&format!("oci:{}:{tag}", p.v2.display()), dir);
        assert_eq!(exported, source, "{tag}");
    }
    let copied = dir.join("copied");
    crate::util::skopeo(
        &[
            "copy",
            "-q",
            &format!("oci:{}:{}", out.display(), layout_name("app")),
            &format!("oci:{}:x", copied.display()),
        ],
        dir,
    )
    .ok();
}

#[test]
fn a_delta_against_an_inventory_expects_what_the_inventory_lists() {
    let t = scratch();
    let dir = t.path();
    let (_, v2) = versions(dir);
    let (base_m, base_c, base_l) = blobs_of(&v2, "base");
    let (_, app_c, app_l) = blobs_of(&v2, "app");
    // What the far side's registry holds: base, whole.
    // As docs/inventory.md has them: sorted by digest.
    let blobs = |list: &[&Blob]| -> Value {
        let mut list = list.to_vec();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list.iter()
            .map(|(d, s)| serde_json::json!({"digest": d, "size": s}))
            .collect()
    };
    let inv = serde_json::json!({
        "kind": "airlock-inventory",
        "version": 1,
        "created": "2026-01-01T00:00:00Z",
        "source": {"type": "registry", "registry": "far.example", "prefix": ""},
        "images": [{"name": "app:base", "digest": base_m.0}],
        "blobs": blobs(&[&base_m, &base_c, &base_l[0]]),
    });
    let inv_path = dir.join("far.json");
    let raw = serde_json::to_vec_pretty(&inv).unwrap();
    std::fs::write(&inv_path, &raw).unwrap();
    let delta = dir.join("d.airlock");
    let summary = json(
        airlock(
            &[
                "pack",
                "--json",
                "-o",
                s(&delta),
                "--against",
                s(&inv_path),
                &format!("oci:{}:app", v2.display()),
            ],
            dir,
        )
        .ok(),
    );
    // Carried: the app's manifest, config and own layer.
    documented("pack", &summary);
    assert_eq!(summary["blob_count"], 3);
    assert_eq!(summary["delta"]["expected_count"], 1);
    assert_eq!(summary["delta"]["expected_bytes"], base_l[0].1);
    assert_eq!(summary["delta"]["bases"][0]["kind"], "inventory");
    let digest = format!("sha256:{}", crate::util::sha256_hex(&raw));
    assert_eq!(summary["delta"]["bases"][0]["digest"], digest.as_str());
    assert!(app_c.1 > 0 && app_l[1].1 > 0);

    // verify --with the inventory: the expected blob is listed at its size.
    airlock(
        &[
            "verify",
            "--allow-unsigned",
            s(&delta),
            "--with",
            s(&inv_path),
        ],
        dir,
    )
    .ok();
    // An inventory that lies about the size is caught.
    let mut lying = inv.clone();
    let listed = lying["blobs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["digest"] == base_l[0].0.as_str())
        .unwrap();
    listed["size"] = serde_json::json!(base_l[0].1 + 1);
    let lie = dir.join("lie.json");
    std::fs::write(&lie, serde_json::to_vec(&lying).unwrap()).unwrap();
    let err = airlock(
        &["verify", "--allow-unsigned", s(&delta), "--with", s(&lie)],
        dir,
    )
    .fails();
    assert!(err.contains(&base_l[0].0), "{err}");
    // … and so is packing against it.
    let err = airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&dir.join("x.airlock")),
            "--against",
            s(&lie),
            &format!("oci:{}:app", v2.display()),
        ],
        dir,
    )
    .fails();
    let sizes = format!(
        "size is {} bytes, but {} were",
        base_l[0].1 + 1,
        base_l[0].1
    );
    assert!(err.contains(&base_l[0].0) && err.contains(&sizes), "{err}");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: blob [DIGEST] of localhost/app:app, as base inventory [DIR]/lie.json ([SHORT]) lists it: size is [N] bytes, but [N] were declared
          hint: the content is corrupt or was altered; fetch or copy it again from a good copy
        ");
    });
    assert!(!dir.join("x.airlock").exists());

    // An inventory holds no bytes: export refuses it as a base.
    let err = airlock(
        &[
            "export",
            "-q",
            "--allow-unsigned",
            "--with",
            s(&inv_path),
            "--to",
            &format!("oci:{}", dir.join("out").display()),
            s(&delta),
        ],
        dir,
    )
    .fails();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: [DIR]/far.json: an inventory lists blobs but holds none of their bytes
          hint: give the base bundles themselves with --with (those the delta was packed against, or any that carry its expected blobs)
        ");
    });
}

#[test]
fn a_delta_from_a_registry_downloads_only_what_it_carries() {
    let t = scratch();
    let dir = t.path();
    let (v1, v2) = versions(dir);
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:base", v2.display()), "team/base:1");
    reg.push(&format!("oci:{}:app", v2.display()), "team/app:2");
    let base = dir.join("v1.airlock");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&base),
            &format!("oci:{}:base", v1.display()),
            &format!("oci:{}:app", v1.display()),
        ],
        dir,
    )
    .ok();
    let (_, app_c, app_l) = blobs_of(&v2, "app");
    let h = &reg.host;
    let delta = dir.join("d.airlock");
    let cache = dir.join("cache");
    let mut args = vec![
        "pack".to_string(),
        "--json".into(),
        "-o".into(),
        s(&delta).into(),
        "--cache".into(),
        s(&cache).into(),
        "--against".into(),
        s(&base).into(),
        "--allow-unsigned".into(),
        format!("{h}/team/base:1"),
        format!("{h}/team/app:2"),
    ];
    args.extend(reg.plain_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = json(airlock(&args, dir).ok());
    // Only the app's new config and layer came down; base's layer and
    // config are expected, never pulled.
    assert_eq!(summary["downloaded"], app_c.1 + app_l[1].1);
    assert_eq!(summary["delta"]["expected_count"], 2);
    // Split into volumes with parity, a delta verifies like any bundle.
    let split = dir.join("split.airlock");
    let mut args2: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let o = args2.iter().position(|a| a == "-o").unwrap();
    args2[o + 1] = s(&split).into();
    args2.extend([
        "--split".into(),
        "1M".into(),
        "--parity".into(),
        "20".into(),
    ]);
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    airlock(&args2, dir).ok();
    let v = json(
        airlock(
            &[
                "verify",
                "--json",
                "--allow-unsigned",
                s(&split),
                "--with",
                s(&base),
            ],
            dir,
        )
        .ok(),
    );
    assert_eq!(v["delta"]["expected_count"], 2);
    // A base may be a volume set too, named by its directory.
    let vols = dir.join("vols");
    std::fs::create_dir(&vols).unwrap();
    let mut pack_v1 = vec!["pack", "-q", "--split", "1M", "-o"];
    let v1_split = vols.join("v1.airlock");
    pack_v1.push(s(&v1_split));
    let v1_sources = [
        format!("oci:{}:base", v1.display()),
        format!("oci:{}:app", v1.display()),
    ];
    pack_v1.extend(v1_sources.iter().map(String::as_str));
    airlock(&pack_v1, dir).ok();
    assert!(vols.join("v1.airlock.001").exists());
    let v = json(
        airlock(
            &[
                "verify",
                "--json",
                "--allow-unsigned",
                s(&delta),
                "--with",
                s(&vols),
            ],
            dir,
        )
        .ok(),
    );
    assert_eq!(v["delta"]["supplied_by"].as_array().unwrap().len(), 1);
}

/// The delta's parts, altered by `change` and laid out again unsigned.
fn crafted(parts: &Parts, change: impl Fn(&mut Value)) -> Vec<u8> {
    let mut p = parts.clone();
    change(&mut p.manifest);
    p.unsign();
    write(&entries(&p.frames()))
}

#[test]
fn crafted_deltas_are_refused_by_the_file_and_the_stream_reader() {
    let p = pack_both();
    let dir = p.t.path();
    let parts = Parts::of(&p.delta);
    let bin = env!("CARGO_BIN_EXE_airlock");
    let both = |bytes: &[u8], trust: &str| -> (String, String) {
        let f = dir.join("hostile.airlock");
        std::fs::write(&f, bytes).unwrap();
        let file = run(
            "sh",
            &["-c", &format!("{bin} verify {trust} {}", f.display())],
            dir,
        )
        .fails();
        let stream = run(
            "sh",
            &["-c", &format!("{bin} verify {trust} - < {}", f.display())],
            dir,
        )
        .fails();
        (file, stream)
    };

    // The signed expected list altered (one expectation dropped), not
    // re-signed: the signature no longer matches.
    let mut tampered = parts.clone();
    tampered.manifest["delta"]["expected"]
        .as_array_mut()
        .unwrap()
        .pop();
    let env: Value = serde_json::from_slice(&parts.members[0].1).unwrap();
    let mut env = env;
    env["payload"] = Value::String(base64_of(&serde_json::to_vec(&tampered.manifest).unwrap()));
    tampered.members[0].1 = serde_json::to_vec(&env).unwrap();
    let (file, stream) = both(
        &write(&entries(&tampered.frames())),
        &format!("--pub {}", s(&p.public)),
    );
    for e in [&file, &stream] {
        assert!(e.contains("the manifest was altered"), "{e}");
    }

    let carried = parts.manifest["blobs"][0].clone();
    let first = parts.manifest["delta"]["expected"][0].clone();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "expected and carried",
            crafted(&parts, |m| {
                let mut e = first.clone();
                e["digest"] = carried["digest"].clone();
                m["delta"]["expected"].as_array_mut().unwrap().push(e);
            }),
            "is both carried and listed as expected",
        ),
        (
            "listed twice",
            crafted(&parts, |m| {
                m["delta"]["expected"]
                    .as_array_mut()
                    .unwrap()
                    .push(first.clone());
            }),
            "lists expected blob",
        ),
        (
            "base out of range",
            crafted(&parts, |m| m["delta"]["expected"][0]["base"] = 7.into()),
            "names base 7, but the delta has 1 base(s)",
        ),
        (
            "an expected manifest",
            crafted(&parts, |m| {
                m["delta"]["expected"][0]["mediaType"] =
                    "application/vnd.oci.image.manifest.v1+json".into()
            }),
            "a delta must carry those",
        ),
        (
            "version 2 without delta",
            crafted(&parts, |m| {
                m.as_object_mut().unwrap().remove("delta");
            }),
            "formatVersion 2 is a delta bundle, but the manifest has no delta",
        ),
        (
            "version 1 with a delta",
            crafted(&parts, |m| m["formatVersion"] = 1.into()),
            "the manifest has a delta, but formatVersion 1 is a whole bundle",
        ),
        (
            "expectation dropped",
            crafted(&parts, |m| {
                m["delta"]["expected"].as_array_mut().unwrap().pop();
            }),
            "which the bundle does not hold",
        ),
        (
            "expected at another size",
            crafted(&parts, |m| {
                let size = m["delta"]["expected"][0]["size"].as_u64().unwrap();
                m["delta"]["expected"][0]["size"] = (size + 1).into();
            }),
            "bytes",
        ),
    ];
    let mut failures = Vec::new();
    for (label, bytes, want) in cases {
        let (file, stream) = both(&bytes, "--allow-unsigned");
        for (what, e) in [("file", &file), ("stream", &stream)] {
            if !e.contains(want) {
                failures.push(format!("{label}: verify {what}: wanted {want:?}, got {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn a_delta_as_a_base_holds_what_it_carries_and_what_it_expects() {
    let p = pack_both();
    let dir = p.t.path();
    let pubk = s(&p.public);
    let src = |tag: &str| format!("oci:{}:{tag}", p.v2.display());
    // Against a bundle, pack needs to know whom to trust for it.
    let again = dir.join("again.airlock");
    let err = airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&again),
            "--against",
            s(&p.delta),
            &src("base"),
            &src("app"),
        ],
        dir,
    )
    .fails_usage();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(err, @"airlock: error: base bundle [DIR]/v2.airlock must be checked: pass --pub KEY (its signer's public key), or --allow-unsigned");
    });
    // … and checks the base's signature with the keys it is given.
    let (_, stranger) = keys(dir, "stranger");
    let err = airlock(
        &[
            "pack",
            "-q",
            "-o",
            s(&again),
            "--against",
            s(&p.delta),
            "--pub",
            s(&stranger),
            &src("base"),
            &src("app"),
        ],
        dir,
    )
    .fails();
    assert!(err.contains("not by the trusted key"), "{err}");
    assert!(!again.exists());
    // v2 again, against the v2 delta alone: every config and layer is
    // expected, those it carried and those it expected itself.
    let summary = json(
        airlock(
            &[
                "pack",
                "--json",
                "-o",
                s(&again),
                "--against",
                s(&p.delta),
                "--pub",
                pubk,
                &src("base"),
                &src("app"),
            ],
            dir,
        )
        .ok(),
    );
    assert_eq!(summary["blob_count"], 2, "only the two manifests");
    assert_eq!(summary["delta"]["expected_count"], 4);
    airlock(
        &[
            "verify",
            "-q",
            "--allow-unsigned",
            s(&again),
            "--with",
            s(&p.delta),
        ],
        dir,
    )
    .ok();
    // Exporting needs bytes: the v2 delta does not carry base's layer,
    // so it alone does not do; with v1 as well it does.
    let (_, base_c, base_l) = blobs_of(&p.v2, "base");
    let out = dir.join("out");
    let target = format!("oci:{}", out.display());
    let err = airlock(
        &[
            "export",
            "-q",
            "--allow-unsigned",
            "--with",
            s(&p.delta),
            "--to",
            &target,
            s(&again),
        ],
        dir,
    )
    .fails();
    for blob in [&base_c, &base_l[0]] {
        assert!(
            err.contains(&format!("{} ({} bytes)", blob.0, blob.1)),
            "{err}"
        );
    }
    assert!(err.contains("its base bundle"), "{err}");
    assert!(!out.exists(), "nothing written before every blob is found");
    airlock(
        &[
            "export",
            "-q",
            "--allow-unsigned",
            "--with",
            s(&p.delta),
            "--with",
            s(&p.base),
            "--to",
            &target,
            s(&again),
        ],
        dir,
    )
    .ok();
    let names = crate::util::entries(&out.join("blobs/sha256"));
    assert!(names.contains(&base_l[0].0.strip_prefix("sha256:").unwrap().to_string()));
}

#[test]
fn a_base_that_is_neither_a_bundle_nor_an_inventory_is_named() {
    let t = scratch();
    let dir = t.path();
    let (_, v2) = versions(dir);
    let app = format!("oci:{}:app", v2.display());
    let pack = |base: &Path| {
        airlock(
            &[
                "pack",
                "-q",
                "-o",
                s(&dir.join("d.airlock")),
                "--against",
                s(base),
                &app,
            ],
            dir,
        )
        .fails()
    };
    let newer = dir.join("newer.json");
    std::fs::write(
        &newer,
        r#"{"kind": "airlock-inventory", "version": 9, "images": [], "blobs": []}"#,
    )
    .unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "not json").unwrap();
    let out = format!("{}\n{}", pack(&newer), pack(&notes));
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(out, @r"
        airlock: error: inventory [DIR]/newer.json: version 9 is not supported (this airlock reads version 1)
          hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)

        airlock: error: [DIR]/notes.txt: it is neither a bundle (no zstd frame at its start) nor an inventory (expected ident at line 1 column 2)
          hint: give a bundle sent before (a file, a volume or the directory of its volumes) or an inventory written by `airlock inventory`
        ");
    });
    assert!(!dir.join("d.airlock").exists());
}
