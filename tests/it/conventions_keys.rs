//! Issue #15, items 6 to 8: the blob cache managed (`cache du|ls|prune`),
//! keys as operators use them (several `--pub`, encrypted keys, `key id`),
//! and more targets and inputs (`export --to oci-archive:`, `inspect -`,
//! `import --no-overwrite`). Checked with openssl, skopeo and a real
//! registry.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use airlock::model::Digest;

use crate::harness::*;
use crate::util::*;

const DAY: Duration = Duration::from_secs(86_400);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_airlock")
}

/// `sh -c SCRIPT` in `dir`, with `$AIRLOCK` naming the binary.
fn sh(script: &str, dir: &Path) -> Run {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("AIRLOCK", bin())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    Run {
        cmd: format!("sh -c {script:?}"),
        out,
    }
}

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

fn app1() -> String {
    format!("oci:{}:app-1", layout().display())
}

// ---------------------------------------------------------------- cache

/// A complete entry in the cache at `cache`, last used `age` ago.
fn cache_blob(cache: &Path, bytes: &[u8], age: Duration, partial: bool) -> Digest {
    let d = Digest::of(bytes);
    let dir = cache.join(if partial {
        "partial/sha256"
    } else {
        "blobs/sha256"
    });
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(d.hex());
    std::fs::write(&path, bytes).unwrap();
    set_age(&path, age);
    d
}

fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// The names (hex digests) of the files under `cache/SUB`.
fn names(cache: &Path, sub: &str) -> BTreeSet<String> {
    match std::fs::read_dir(cache.join(sub)) {
        Ok(list) => list
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|l| l.map(|e| e.unwrap().metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

#[test]
fn cache_du_and_ls_match_the_files_and_prune_max_size_removes_least_recently_used_first() {
    let t = scratch();
    let cache = t.path().join("cache");
    let c = cache.to_str().unwrap();
    let oldest = cache_blob(&cache, &[1u8; 3000], 3 * DAY, false);
    let older = cache_blob(&cache, &[2u8; 1000], 2 * DAY, false);
    let recent = cache_blob(&cache, &[3u8; 2000], Duration::from_secs(3600), false);
    let partial = cache_blob(&cache, &[4u8; 500], Duration::ZERO, true);

    let du = json(airlock(&["cache", "du", "--cache", c, "--json"], t.path()).ok());
    let blobs = dir_bytes(&cache.join("blobs/sha256"));
    let partials = dir_bytes(&cache.join("partial/sha256"));
    assert_eq!(
        du,
        serde_json::json!({
            "version": 1,
            "cache": c,
            "bytes": blobs + partials,
            "entry_count": names(&cache, "blobs/sha256").len(),
            "entry_bytes": blobs,
            "partial_count": names(&cache, "partial/sha256").len(),
            "partial_bytes": partials,
        })
    );
    assert_eq!((blobs, partials), (6000, 500));

    let ls = json(airlock(&["cache", "ls", "--cache", c, "--json"], t.path()).ok());
    assert_eq!(ls["version"], 1);
    let listed: Vec<(String, u64, bool)> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["digest"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
                e["partial"].as_bool().unwrap(),
            )
        })
        .collect();
    // Least recently used first, each with the size of its file.
    let expect: Vec<(String, u64, bool)> = [
        (&oldest, 3000, false),
        (&older, 1000, false),
        (&recent, 2000, false),
        (&partial, 500, true),
    ]
    .into_iter()
    .map(|(d, n, p)| (d.to_string(), n, p))
    .collect();
    assert_eq!(listed, expect);

    // 6500 bytes, at most 3000 wanted: the two least recently used go, and
    // the recent blob and the partial download (2500 bytes) stay.
    let pruned = json(
        airlock(
            &[
                "cache",
                "prune",
                "--cache",
                c,
                "--max-size",
                "3000",
                "--json",
            ],
            t.path(),
        )
        .ok(),
    );
    assert_eq!(pruned["removed_count"], 2, "{pruned:#}");
    assert_eq!(
        names(&cache, "blobs/sha256"),
        BTreeSet::from([recent.hex().to_string()])
    );
    assert_eq!(
        names(&cache, "partial/sha256"),
        BTreeSet::from([partial.hex().to_string()])
    );
    let left = dir_bytes(&cache.join("blobs/sha256")) + dir_bytes(&cache.join("partial/sha256"));
    assert!(left <= 3000, "{left} bytes left");
    assert_eq!(pruned["left_bytes"], left);

    // By age: the blob last used an hour ago goes, the fresh partial stays.
    airlock(
        &["cache", "prune", "--cache", c, "--older-than", "30m"],
        t.path(),
    )
    .ok();
    assert!(names(&cache, "blobs/sha256").is_empty());
    assert_eq!(names(&cache, "partial/sha256").len(), 1);

    let err = airlock(&["cache", "prune", "--cache", c], t.path()).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: say what to prune: --older-than DURATION (e.g. 7d) and/or --max-size SIZE (e.g. 10G; 0 empties the cache)");
}

/// The config and layer digests of `image` on `reg` (what a pack caches).
fn cached_blobs_of(reg: &Registry, image: &str) -> BTreeSet<String> {
    let raw = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{image}", reg.host),
        ],
        Path::new("/"),
    )
    .ok()
    .out
    .stdout;
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut out = BTreeSet::from([m["config"]["digest"].as_str().unwrap()[7..].to_string()]);
    for l in m["layers"].as_array().unwrap() {
        out.insert(l["digest"].as_str().unwrap()[7..].to_string());
    }
    out
}

fn pack_from(reg: &Registry, cache: &Path, image: &str, out: &Path) -> Run {
    let plain = format!("--plain-http={}", reg.host);
    let source = format!("{}/{image}", reg.host);
    let args = [
        "pack",
        "-q",
        "--cache",
        cache.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        &plain,
        &source,
    ];
    airlock(&args, cache.parent().unwrap())
}

#[test]
fn a_pack_records_the_use_of_cached_blobs_so_prune_keeps_what_it_read() {
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "app:1");
    reg.push(&format!("oci:{}:app-2", layout().display()), "app:2");
    let t = scratch();
    let cache = t.path().join("cache");
    pack_from(&reg, &cache, "app:1", &t.path().join("a.airlock")).ok();
    pack_from(&reg, &cache, "app:2", &t.path().join("b.airlock")).ok();
    let app1 = cached_blobs_of(&reg, "app:1");
    let app2 = cached_blobs_of(&reg, "app:2");
    assert!(!app2.is_subset(&app1), "the fixtures share everything");
    assert_eq!(names(&cache, "blobs/sha256"), &app1 | &app2);
    // Both packs long ago; then app:1 packed again, from the cache.
    for hex in names(&cache, "blobs/sha256") {
        set_age(&cache.join("blobs/sha256").join(hex), 2 * DAY);
    }
    pack_from(&reg, &cache, "app:1", &t.path().join("c.airlock")).ok();
    airlock(
        &[
            "cache",
            "prune",
            "--cache",
            cache.to_str().unwrap(),
            "--older-than",
            "1d",
        ],
        t.path(),
    )
    .ok();
    assert_eq!(names(&cache, "blobs/sha256"), app1);
}

#[test]
fn prune_is_refused_while_a_pack_holds_the_cache() {
    // A "registry" that accepts connections and never answers: the pack
    // holds its cache open while it waits for the first reply.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let _ = tx.send(());
            held.push(conn);
        }
    });
    let t = scratch();
    let cache = t.path().join("cache");
    let mut pack = Command::new(bin())
        .args(["pack", "-q", "--cache", cache.to_str().unwrap(), "-o"])
        .arg(t.path().join("x.airlock"))
        .arg(format!("--plain-http={host}"))
        .arg(format!("{host}/app:1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the pack never reached the registry");
    let run = airlock(
        &[
            "cache",
            "prune",
            "--cache",
            cache.to_str().unwrap(),
            "--max-size",
            "0",
        ],
        t.path(),
    );
    let err = run.fails();
    let c = cache.display().to_string();
    insta::with_settings!({filters => vec![(c.as_str(), "[CACHE]")]}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: cache [CACHE]: an airlock pack is using it (it holds [CACHE]/lock); pruning now could remove a blob it is about to read
          hint: run the prune again once the pack has finished
        ");
    });
    pack.kill().unwrap();
    pack.wait().unwrap();
    airlock(
        &["cache", "prune", "--cache", &c, "--max-size", "0"],
        t.path(),
    )
    .ok();
}

// ---------------------------------------------------------------- keys

fn key_id_of(dir: &Path, file: &str, extra: &[&str]) -> String {
    let mut args = vec!["key", "id", file];
    args.extend_from_slice(extra);
    airlock(&args, dir).ok().stdout().trim().to_string()
}

#[test]
fn a_bundle_signed_by_the_old_key_verifies_with_both_keys_and_says_which_signed() {
    let t = scratch();
    let old_id = airlock(&["keygen", "-o", "old"], t.path()).ok().stdout();
    let old_id = old_id.trim();
    let new_id = airlock(&["keygen", "-o", "new"], t.path()).ok().stdout();
    let new_id = new_id.trim();
    let other_id = airlock(&["keygen", "-o", "other"], t.path()).ok().stdout();
    let other_id = other_id.trim();
    airlock(
        &["pack", "-q", "--key", "old", "-o", "b.airlock", &app1()],
        t.path(),
    )
    .ok();

    let ok = airlock(
        &[
            "verify",
            "b.airlock",
            "--pub",
            "new.pub",
            "--pub",
            "old.pub",
            "--json",
        ],
        t.path(),
    )
    .ok();
    assert_eq!(json(ok)["signed_by"], serde_json::json!([old_id]));
    let text = airlock(
        &[
            "verify",
            "b.airlock",
            "--pub",
            "new.pub",
            "--pub",
            "old.pub",
        ],
        t.path(),
    )
    .ok()
    .stdout();
    assert!(
        text.trim_end().ends_with(&format!("; signed by {old_id}")),
        "{text}"
    );
    // A stream says the same.
    let streamed = sh(
        &format!(
            "\"$AIRLOCK\" pack -q --key old -o - {} | \"$AIRLOCK\" verify - --pub new.pub --pub old.pub --json",
            app1()
        ),
        t.path(),
    )
    .ok();
    assert_eq!(json(streamed)["signed_by"], serde_json::json!([old_id]));
    // export and import take several keys too.
    export(
        &t.path().join("b.airlock"),
        &t.path().join("new.pub"),
        "oci:out",
        &["--pub", "old.pub"],
    )
    .ok();

    let filters = vec![(old_id, "[OLD]"), (new_id, "[NEW]"), (other_id, "[OTHER]")];
    let err = airlock(&["verify", "b.airlock", "--pub", "other.pub"], t.path()).fails();
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: bundle b.airlock: signed by key [OLD], not by the trusted key [OTHER]
          hint: pass the public key that belongs to the signer with --pub
        ");
    });
    let err = airlock(
        &[
            "verify",
            "b.airlock",
            "--pub",
            "other.pub",
            "--pub",
            "new.pub",
        ],
        t.path(),
    )
    .fails();
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: bundle b.airlock: signed by key [OLD], not by the trusted key [OTHER] or [NEW]
          hint: pass the public key that belongs to the signer with --pub
        ");
    });
}

#[test]
fn keygen_encrypt_round_trips_through_openssl_and_key_id_matches() {
    let t = scratch();
    std::fs::write(t.path().join("pp"), "correct horse\n").unwrap();
    let made = airlock(
        &[
            "keygen",
            "--encrypt",
            "--passphrase-file",
            "pp",
            "-o",
            "site",
        ],
        t.path(),
    )
    .ok();
    let id = made.stdout().trim().to_string();
    let pem = std::fs::read_to_string(t.path().join("site")).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
        "{pem}"
    );
    // openssl decrypts it and derives the same public key.
    let derived = run(
        "openssl",
        &["pkey", "-in", "site", "-passin", "file:pp", "-pubout"],
        t.path(),
    )
    .ok()
    .stdout();
    assert_eq!(
        derived,
        std::fs::read_to_string(t.path().join("site.pub")).unwrap()
    );
    // `key id` of either file is keygen's id.
    assert_eq!(key_id_of(t.path(), "site.pub", &[]), id);
    assert_eq!(
        key_id_of(t.path(), "site", &["--passphrase-file", "pp"]),
        id
    );
    // It signs a pack, and the bundle names it.
    airlock(
        &[
            "pack",
            "-q",
            "--key",
            "site",
            "--passphrase-file",
            "pp",
            "-o",
            "b.airlock",
            &app1(),
        ],
        t.path(),
    )
    .ok();
    let v = json(
        airlock(
            &["verify", "b.airlock", "--pub", "site.pub", "--json"],
            t.path(),
        )
        .ok(),
    );
    assert_eq!(v["signed_by"], serde_json::json!([id]));
}

#[test]
fn a_key_encrypted_by_openssl_signs_a_pack_and_a_wrong_passphrase_is_named() {
    let t = scratch();
    std::fs::write(t.path().join("pp"), "s3cret\n").unwrap();
    std::fs::write(t.path().join("wrong"), "guess\n").unwrap();
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
    run(
        "openssl",
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "o.pem",
            "-out",
            "enc.pem",
            "-passout",
            "file:pp",
        ],
        t.path(),
    )
    .ok();
    airlock(
        &[
            "pack",
            "-q",
            "--key",
            "enc.pem",
            "--passphrase-file",
            "pp",
            "-o",
            "b.airlock",
            &app1(),
        ],
        t.path(),
    )
    .ok();
    let v = json(
        airlock(
            &["verify", "b.airlock", "--pub", "o.pub", "--json"],
            t.path(),
        )
        .ok(),
    );
    assert_eq!(
        v["signed_by"],
        serde_json::json!([key_id_of(t.path(), "o.pub", &[])])
    );

    let err = airlock(
        &[
            "pack",
            "-q",
            "--key",
            "enc.pem",
            "--passphrase-file",
            "wrong",
            "-o",
            "c.airlock",
            &app1(),
        ],
        t.path(),
    )
    .fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: key enc.pem: the passphrase does not decrypt it
      hint: give the passphrase the key was encrypted with (typed, or --passphrase-file FILE); if it is the right one, the key file is damaged
    ");
    assert!(!t.path().join("c.airlock").exists());
    // No terminal to ask on, and no file: said, not hung.
    let out = Command::new("setsid")
        .args(["-w", bin(), "key", "id", "enc.pem"])
        .current_dir(t.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    insta::assert_snapshot!(err, @"airlock: error: cannot ask for the passphrase of enc.pem (No such device or address (os error 6)): there is no terminal; pass --passphrase-file FILE");
}

// ---------------------------------------------------------------- targets and inputs

#[test]
fn export_to_oci_archive_is_read_back_by_skopeo() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&app1()]);
    export(&bundle, &public, "oci-archive:app.tar", &[]).ok();
    let want = skopeo_digest(&app1(), t.path());
    assert_eq!(skopeo_digest("oci-archive:app.tar", t.path()), want);
    // To standard output, through a pipe.
    sh(
        &format!(
            "\"$AIRLOCK\" export -q {} --pub {} --to oci-archive:- > piped.tar",
            bundle.display(),
            public.display()
        ),
        t.path(),
    )
    .ok();
    assert_eq!(skopeo_digest("oci-archive:piped.tar", t.path()), want);
    // Not onto a terminal and not beside --json.
    let err = export(&bundle, &public, "oci-archive:-", &["--json"]).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: --json prints to standard output, which oci-archive:- already uses for the archive");
}

#[test]
fn inspect_reads_a_bundle_stream_from_standard_input() {
    let t = scratch();
    let (key, _) = keys(t.path(), "k");
    let src = format!("oci:{}", layout().display());
    airlock(
        &[
            "pack",
            "-q",
            "--key",
            key.to_str().unwrap(),
            "-o",
            "b.airlock",
            &src,
        ],
        t.path(),
    )
    .ok();
    let from_file = json(airlock(&["inspect", "--json", "b.airlock"], t.path()).ok());
    let from_stream = json(
        sh(
            &format!(
                "\"$AIRLOCK\" pack -q --key {} -o - {src} | \"$AIRLOCK\" inspect - --json",
                key.display()
            ),
            t.path(),
        )
        .ok(),
    );
    assert_eq!(from_stream, from_file);
    assert!(from_stream["images"].as_array().unwrap().len() >= 2);
}

/// A copy of the fixture layout in which tag `app-1` names app-2's image.
fn moved_layout(dir: &Path) -> PathBuf {
    let copy = dir.join("v2").join("layout");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    copy_dir(&layout(), &copy);
    let path = copy.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ref_name = "org.opencontainers.image.ref.name";
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"][ref_name] != "app-1");
    for m in manifests.iter_mut() {
        if m["annotations"][ref_name] == "app-2" {
            m["annotations"][ref_name] = "app-1".into();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    copy
}

#[test]
fn import_no_overwrite_refuses_a_moved_tag_and_the_default_moves_it_and_says_so() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let h = reg.host.as_str();
    let (key, public) = keys(t.path(), "k");
    let k = key.to_str().unwrap();
    let moved = moved_layout(t.path());
    airlock(
        &["pack", "-q", "--key", k, "-o", "one.airlock", &app1()],
        t.path(),
    )
    .ok();
    airlock(
        &[
            "pack",
            "-q",
            "--key",
            k,
            "-o",
            "two.airlock",
            &format!("oci:{}:app-1", moved.display()),
        ],
        t.path(),
    )
    .ok();
    let first = skopeo_digest(&app1(), t.path());
    let second = skopeo_digest(&format!("oci:{}:app-1", moved.display()), t.path());
    assert_ne!(first, second);
    let import = |bundle: &str, extra: &[&str]| {
        let mut args = vec![
            "import",
            bundle,
            "--pub",
            public.to_str().unwrap(),
            "--to",
            h,
            "--state",
            "state",
        ];
        let plain = format!("--plain-http={h}");
        args.push(&plain);
        args.extend_from_slice(extra);
        airlock(&args, t.path())
    };
    import("one.airlock", &[]).ok();
    let tag = "layout:app-1";
    assert_eq!(reg.digest(tag, &["--tls-verify=false"]), first);

    let refused = import("two.airlock", &["--no-overwrite"]);
    let out = refused.stdout();
    let err = refused.fails();
    assert_eq!(
        reg.digest(tag, &["--tls-verify=false"]),
        first,
        "the tag moved"
    );
    // Nothing of the refused image went in, not even its manifest by digest.
    let by_digest = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/layout@{second}"),
        ],
        t.path(),
    );
    assert!(
        !by_digest.out.status.success() && by_digest.stderr().contains("manifest unknown"),
        "{}",
        by_digest.stderr()
    );
    let filters = vec![
        (r"127\.0\.0\.1:\d+", "[REG]"),
        (first.as_str(), "[FIRST]"),
        (second.as_str(), "[SECOND]"),
    ];
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!(out.lines().next().unwrap(), @"failed     localhost/layout:app-1 -> [REG]/layout:app-1: tag [REG]/layout:app-1: it names [FIRST] on the registry, and this image is [SECOND]; --no-overwrite leaves it there");
        // Progress lines aside: the failure and its hint.
        let err: Vec<&str> = err.lines().filter(|l| !l.contains("MiB")).collect();
        insta::assert_snapshot!(err.join("\n"), @r"
        airlock: error: 1 image(s) failed (listed above)
          hint: each image's reason says what to change before it can go in
        ");
    });

    // A dry run with --no-overwrite says the same, and moves nothing.
    let dry = import("two.airlock", &["--no-overwrite", "--dry-run"]);
    let out = dry.stdout();
    dry.fails();
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!(out.lines().next().unwrap(), @"failed     localhost/layout:app-1 -> [REG]/layout:app-1: tag [REG]/layout:app-1: it names [FIRST] on the registry, and this image is [SECOND]; --no-overwrite leaves it there");
    });
    assert_eq!(
        reg.digest(tag, &["--tls-verify=false"]),
        first,
        "the tag moved"
    );

    let moved = import("two.airlock", &[]).ok().stdout();
    assert_eq!(reg.digest(tag, &["--tls-verify=false"]), second);
    let line = moved
        .lines()
        .find(|l| l.starts_with("moved tag"))
        .unwrap_or_else(|| panic!("no moved-tag line in:\n{moved}"));
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!(line, @"moved tag [REG]/layout:app-1 from [FIRST] to [SECOND]");
    });
    // Nothing to move on a re-run: no such line.
    let again = import("two.airlock", &[]).ok().stdout();
    assert!(!again.contains("moved tag"), "{again}");
}
