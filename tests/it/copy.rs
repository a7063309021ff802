//! `airlock copy` between real registries (distribution, one with TLS, one
//! with htpasswd), with a multi-platform index and a cosign-style referrer;
//! sync runs, a cut connection on each side, kill -9 and a re-run, and
//! every other pair of source and target. Results are read with skopeo.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout()))
}

/// `status target` of each image of a `--json` copy report, sorted.
fn statuses(report: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["status"].as_str().unwrap(),
                i["target"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

/// Lines of the copy journals under `state`.
fn journal_lines(state: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state) else {
        return vec![];
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn multi() -> String {
    format!("oci:{}:multi", layout().display())
}

#[test]
fn registry_to_registry_tls_source_htpasswd_target_index_and_referrer() {
    let t = scratch();
    let certs = Certs::make(&t.path().join("pki"));
    let src = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    let dst = Registry::start(Config {
        basic: Some(("bob", "pw-for-bob")),
        ..Default::default()
    });
    src.push(&multi(), "layout:multi");
    let want = skopeo_digest(&multi(), t.path());
    // A cosign-style signature: an image tagged after its subject's digest.
    let sig_tag = format!("sha256-{}.sig", want.strip_prefix("sha256:").unwrap());
    src.push(
        &format!("oci:{}:base", layout().display()),
        &format!("layout:{sig_tag}"),
    );
    let cache = t.path().join("cache");
    let run_copy = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["copy", "--json"])
            .arg(format!("docker://{}/layout:multi", src.host))
            .arg(format!("docker://{}/mirror", dst.host))
            .arg("--ca-cert")
            .arg(&certs.ca)
            .args([
                &format!("--plain-http={}", dst.host),
                "--username",
                "bob",
                "--password-stdin",
            ])
            .arg("--state")
            .arg(t.path().join("state"))
            .arg("--cache")
            .arg(&cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // The child may refuse before it reads: its output says so, not a
        // broken pipe here.
        let _ = child.stdin.take().unwrap().write_all(b"pw-for-bob\n");
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run_copy();
    let creds = ["--tls-verify=false", "--creds", "bob:pw-for-bob"];
    assert_eq!(dst.digest("mirror/layout:multi", &creds), want);
    // Every platform's manifest arrived by digest.
    for arch in ["amd64", "arm64", "ppc64le"] {
        let d = skopeo(
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "bob:pw-for-bob",
                "--override-arch",
                arch,
                &format!("docker://{}/mirror/layout:multi", dst.host),
            ],
            t.path(),
        )
        .ok();
        assert!(!d.stdout().is_empty(), "{arch}");
    }
    let src_sig = src.digest(&format!("layout:{sig_tag}"), &["--tls-verify=false"]);
    assert_eq!(
        dst.digest(&format!("mirror/layout:{sig_tag}"), &creds),
        src_sig,
        "the referrer travelled with its subject"
    );
    assert_eq!(first["bytes_pushed"], first["bytes_total"], "{first}");
    // Streamed: nothing went through the blob cache.
    let cached = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(cached, 0, "a registry-to-registry copy kept blobs on disk");

    let second = run_copy();
    assert_eq!(second["bytes_pushed"], 0, "{second}");
    assert_eq!(
        statuses(&second),
        vec![
            format!("exists {}/mirror/layout:multi", dst.host),
            format!("exists {}/mirror/layout:{sig_tag}", dst.host),
        ]
    );
}

#[test]
fn all_tags_sync_sends_what_changed_and_leaves_the_rest() {
    let t = scratch();
    let src = Registry::start(Config::default());
    let dst = Registry::start(Config::default());
    let l = layout();
    src.push(&format!("oci:{}:app-1", l.display()), "team/app:1");
    src.push(&format!("oci:{}:app-2", l.display()), "team/app:2");
    let state = t.path().join("state");
    let (plain_src, plain_dst) = (
        format!("--plain-http={}", src.host),
        format!("--plain-http={}", dst.host),
    );
    let sync = |extra: &[&str]| {
        let mut args = vec![
            "copy",
            "--json",
            "--no-referrers",
            &plain_src,
            &plain_dst,
            "--state",
            state.to_str().unwrap(),
        ];
        let all = format!("{}/team/app", src.host);
        let to = format!("docker://{}", dst.host);
        args.extend_from_slice(extra);
        args.extend(["--all-tags", &all, &to]);
        json(airlock(&args, t.path()).ok())
    };
    let first = sync(&[]);
    let h = &dst.host;
    assert_eq!(
        statuses(&first),
        vec![
            format!("pushed {h}/team/app:1"),
            format!("pushed {h}/team/app:2")
        ]
    );
    let second = sync(&[]);
    assert_eq!(second["bytes_pushed"], 0, "{second}");
    assert_eq!(
        statuses(&second),
        vec![
            format!("exists {h}/team/app:1"),
            format!("exists {h}/team/app:2")
        ]
    );

    // The tag 2 moves to app-1's image on the source.
    src.push(&format!("oci:{}:app-1", l.display()), "team/app:2");
    let app1 = skopeo_digest(&format!("oci:{}:app-1", l.display()), t.path());
    let dry = sync(&["--dry-run"]);
    assert_eq!(
        statuses(&dry),
        vec![
            format!("exists {h}/team/app:1"),
            format!("would push {h}/team/app:2")
        ]
    );
    assert_eq!(dry["bytes_pushed"], 0, "app-1's blobs are there: {dry}");
    assert_ne!(dst.digest("team/app:2", &["--tls-verify=false"]), app1);
    let third = sync(&[]);
    assert_eq!(
        statuses(&third),
        vec![
            format!("exists {h}/team/app:1"),
            format!("pushed {h}/team/app:2")
        ]
    );
    assert_eq!(dst.digest("team/app:2", &["--tls-verify=false"]), app1);

    // The text report, whole.
    let args = [
        "copy",
        "--no-referrers",
        &format!("--plain-http={}", src.host),
        &format!("--plain-http={}", dst.host),
        "--state",
        state.to_str().unwrap(),
        "--all-tags",
        &format!("{}/team/app", src.host),
        &format!("docker://{}", dst.host),
    ];
    // The registry lists tags in no set order: the image lines are sorted.
    let out = airlock(&args, t.path()).ok().stdout();
    let mut lines: Vec<&str> = out.lines().collect();
    let summary = lines.pop().unwrap();
    lines.sort_unstable();
    let out = format!("{}\n{summary}", lines.join("\n"));
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[REG]"), (r"of [\d.]+ [KM]i?B", "of [SIZE]")]}, {
        insta::assert_snapshot!(out, @r"
        exists     [REG]/team/app:1 -> [REG]/team/app:1
        exists     [REG]/team/app:2 -> [REG]/team/app:2
        copy: 0 blob(s) pushed, 0 mounted, 3 already there; 0 B of [SIZE] sent
        ");
    });
}

#[test]
fn cut_connections_on_both_sides_are_taken_up_again() {
    let t = scratch();
    let src = Registry::start(Config::default());
    let dst = Registry::start(Config {
        secret: true,
        ..Default::default()
    });
    let large = format!("oci:{}:large", fixtures().join("large").display());
    src.push(&large, "big:1");
    let size: u64 = std::fs::read_dir(fixtures().join("large/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // Each of the source's first ten connections is cut 2 MiB into what
    // it sends: the 6 MiB layer comes in pieces. The target loses the
    // connection carrying the third PATCH.
    let src_proxy = FaultProxy::start(
        src.port,
        Faults {
            cut_after: 2 << 20,
            cuts: 10,
            ..Default::default()
        },
    );
    let dst_proxy = FaultProxy::start(
        dst.port,
        Faults {
            drop_patch: 3,
            ..Default::default()
        },
    );
    let (s, d) = (
        format!("127.0.0.1:{}", src_proxy.port),
        format!("127.0.0.1:{}", dst_proxy.port),
    );
    let report = json(
        airlock(
            &[
                "copy",
                "--json",
                "-j",
                "1",
                "--chunk-size",
                "1M",
                &format!("--plain-http={}", s),
                &format!("--plain-http={}", d),
                "--state",
                t.path().join("state").to_str().unwrap(),
                &format!("docker://{s}/big:1"),
                &format!("docker://{d}"),
            ],
            t.path(),
        )
        .ok(),
    );
    assert_eq!(statuses(&report), vec![format!("pushed {d}/big:1")]);
    assert_eq!(
        dst.digest("big:1", &["--tls-verify=false"]),
        skopeo_digest(&large, t.path())
    );
    let down = src_proxy.bytes_down.load(Ordering::SeqCst);
    // Every connection breaks after 2 MiB, so the layer only arrives when
    // each break is taken up with Range where it broke. The target's lost
    // PATCH reads the blob again from the source (the bytes the target
    // holds are hashed here, not sent), which costs less than a second
    // whole download.
    assert!(
        down > size && down < 2 * size,
        "{down} bytes downloaded for {size} bytes of image"
    );
    let up = dst_proxy.bytes_up.load(Ordering::SeqCst);
    assert!(up > 2 << 20, "the target's cut did not happen: {up}");
}

#[test]
fn kill_nine_mid_copy_then_a_rerun_completes_and_sends_less() {
    let t = scratch();
    let src = Registry::start(Config::default());
    let dst = Registry::start(Config {
        secret: true,
        ..Default::default()
    });
    let large = format!("oci:{}:large", fixtures().join("large").display());
    src.push(&large, "big:1");
    src.push(&multi(), "layout:multi");
    // Every answer of the target is 40 ms late: the copy takes seconds.
    let proxy = FaultProxy::start(
        dst.port,
        Faults {
            throttle: Some(Duration::from_millis(40)),
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", proxy.port);
    let state = t.path().join("state");
    let args = |json: bool| {
        let mut a: Vec<String> = vec!["copy".into(), "-q".into()];
        if json {
            a.push("--json".into());
        }
        a.extend(
            [
                "--chunk-size",
                "1M",
                "-j",
                "1",
                &format!("--plain-http={}", src.host),
                &format!("--plain-http={}", p),
                "--state",
                state.to_str().unwrap(),
                &format!("docker://{}/big:1", src.host),
                &format!("docker://{}/layout:multi", src.host),
                &format!("docker://{p}"),
            ]
            .map(String::from),
        );
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args(false))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as the journal shows the 6 MiB layer in (it goes
    // first, the largest; with -j 1 the small blobs, each answer 40 ms late,
    // take a second more). Killed in the middle of a chunked upload, that
    // blob was mostly started again by the re-run here (distribution 2.8
    // refuses a session whose PATCH broke off), so the saving this test can
    // count on is the finished blob.
    let (layer_size, layer) = largest_blob(&fixtures().join("large"));
    let layer = format!("sha256:{}", layer.file_name().unwrap().to_string_lossy());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !journal_lines(&state)
        .iter()
        .any(|l| l.contains("\"fact\":\"blob\"") && l.contains(&layer))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before its kill"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the copy finished before its kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let sent_before = proxy.bytes_up.load(Ordering::SeqCst);

    let a = args(true);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let rerun = json(airlock(&a, t.path()).ok());
    let sent = rerun["bytes_pushed"].as_u64().unwrap();
    let total = rerun["bytes_total"].as_u64().unwrap();
    eprintln!("{sent_before} bytes up before the kill; the re-run sent {sent} of {total}");
    assert!(sent_before >= layer_size, "{sent_before}");
    assert!(
        sent + layer_size <= total,
        "the re-run sent {sent} of {total} bytes"
    );
    assert_eq!(
        dst.digest("big:1", &["--tls-verify=false"]),
        skopeo_digest(&large, t.path())
    );
    assert_eq!(
        dst.digest("layout:multi", &["--tls-verify=false"]),
        skopeo_digest(&multi(), t.path())
    );
}

#[test]
fn every_other_pair_of_source_and_target() {
    let t = scratch();
    let reg = Registry::start(Config::default());
    let h = reg.host.as_str();
    let plain_flag = format!("--plain-http={h}");
    let plain = [plain_flag.as_str()];
    let copy = |args: &[&str]| {
        let mut all = vec!["copy", "-q", "--state", "state"];
        all.extend_from_slice(&plain);
        all.extend_from_slice(args);
        airlock(&all, t.path()).ok()
    };
    let want = skopeo_digest(&multi(), t.path());
    let app1 = format!("oci:{}:app-1", layout().display());

    // oci → registry
    copy(&[&multi(), &format!("docker://{h}/pairs")]);
    assert_eq!(
        reg.digest("pairs/layout:multi", &["--tls-verify=false"]),
        want
    );

    // registry → oci
    let dir = t.path().join("out-oci");
    copy(&[
        &format!("docker://{h}/pairs/layout:multi"),
        &format!("oci:{}", dir.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, vec![want.as_str()]);
    skopeo(&["inspect", &format!("oci:{}", dir.display())], t.path());

    // registry → docker-archive: the config is the source's.
    copy(&[&app1, &format!("docker://{h}/pairs")]);
    let archive = t.path().join("app.tar");
    copy(&[
        &format!("docker://{h}/pairs/layout:app-1"),
        &format!("docker-archive:{}", archive.display()),
    ]);
    let config = |image: &str| {
        sha256_hex(
            &skopeo(&["inspect", "--config", "--raw", image], t.path())
                .ok()
                .out
                .stdout,
        )
    };
    assert_eq!(
        config(&format!("docker-archive:{}", archive.display())),
        config(&app1)
    );

    // registry → bundle and oci → bundle: pack's bundles.
    for (i, source) in [format!("docker://{h}/pairs/layout:multi"), multi()]
        .iter()
        .enumerate()
    {
        let bundle = t.path().join(format!("b{i}.airlock"));
        copy(&[source, &format!("bundle:{}", bundle.display())]);
        let inspected =
            json(airlock(&["inspect", "--json", bundle.to_str().unwrap()], t.path()).ok());
        let digests: Vec<&str> = inspected["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["digest"].as_str().unwrap())
            .collect();
        assert_eq!(digests, vec![want.as_str()], "{source}");
        airlock(
            &["verify", "-q", "--allow-unsigned", bundle.to_str().unwrap()],
            t.path(),
        )
        .ok();
    }

    // bundle → registry, signature checked.
    let (bundle, public) = packed(t.path(), &[&multi()]);
    let out = airlock(
        &[
            "copy",
            &format!("--plain-http={h}"),
            &format!("bundle:{}", bundle.display()),
            &format!("docker://{h}/from-bundle"),
        ],
        t.path(),
    )
    .fails_usage();
    insta::with_settings!({filters => vec![(r"bundle:\S+", "bundle:[B]")]}, {
        insta::assert_snapshot!(out, @"airlock: error: bundle:[B] needs --pub KEY (the signer's public key), or --allow-unsigned");
    });
    copy(&[
        "--pub",
        public.to_str().unwrap(),
        &format!("bundle:{}", bundle.display()),
        &format!("docker://{h}/from-bundle"),
    ]);
    assert_eq!(
        reg.digest("from-bundle/layout:multi", &["--tls-verify=false"]),
        want
    );

    // bundle:- (a stream, as `import -` reads it) → registry.
    let bin = env!("CARGO_BIN_EXE_airlock");
    let piped = format!(
        "{bin} pack -q -o - {m} | {bin} copy -q --plain-http={h} --state state \
         --allow-unsigned bundle:- docker://{h}/from-stream",
        m = multi()
    );
    run("sh", &["-c", &piped], t.path()).ok();
    assert_eq!(
        reg.digest("from-stream/layout:multi", &["--tls-verify=false"]),
        want
    );
}

#[test]
fn catalog_copy_lists_with_dry_run_then_copies_every_repository() {
    let t = scratch();
    let src = Registry::start(Config::default());
    let dst = Registry::start(Config::default());
    let l = layout();
    src.push(&format!("oci:{}:app-1", l.display()), "team/app:1");
    src.push(&format!("oci:{}:arm-1", l.display()), "other/arm:1");
    let (plain_src, plain_dst) = (
        format!("--plain-http={}", src.host),
        format!("--plain-http={}", dst.host),
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "copy",
            "--json",
            &plain_src,
            &plain_dst,
            "--state",
            "state",
            "--catalog",
            &src.host,
        ];
        args.extend_from_slice(extra);
        let to = format!("docker://{}/backup", dst.host);
        args.push(&to);
        json(airlock(&args, t.path()).ok())
    };
    let h = &dst.host;
    let dry = run(&["--dry-run"]);
    assert_eq!(
        statuses(&dry),
        vec![
            format!("would push {h}/backup/other/arm:1"),
            format!("would push {h}/backup/team/app:1"),
        ]
    );
    assert_eq!(dry["bytes_pushed"], dry["bytes_total"], "{dry}");
    assert_eq!(dst.catalog().trim(), r#"{"repositories":[]}"#);
    run(&[]);
    for (repo, image) in [("other/arm:1", "arm-1"), ("team/app:1", "app-1")] {
        assert_eq!(
            dst.digest(&format!("backup/{repo}"), &["--tls-verify=false"]),
            skopeo_digest(&format!("oci:{}:{image}", l.display()), t.path())
        );
    }
    let again = run(&[]);
    assert_eq!(again["bytes_pushed"], 0, "{again}");
}

#[test]
fn usage_mistakes_are_named_before_anything_is_opened() {
    let t = scratch();
    let cases: [&[&str]; 5] = [
        &["copy", "oci:x"],
        &["copy", "oci:x", "docker://reg.local/Mirror"],
        &["copy", "oci:x", "reg.local:5000/mirror"],
        &["copy", "bundle:a.airlock", "oci:x", "docker://reg.local"],
        &["copy", "--dry-run", "oci:x", "oci:y"],
    ];
    let out: Vec<String> = cases
        .iter()
        .map(|args| airlock(args, t.path()).fails_usage().trim().to_string())
        .collect();
    insta::assert_snapshot!(out.join("\n"), @r#"
    airlock: error: name at least one source and a target: airlock copy SOURCE… TARGET
    airlock: error: docker://reg.local/Mirror is not docker://REGISTRY[/PREFIX] (e.g. docker://registry.local:5000/mirror; repository paths are lowercase)
    airlock: error: "reg.local:5000/mirror" is not a copy target: write docker://REGISTRY[/PREFIX], oci:DIR, docker-archive:FILE or bundle:FILE
    airlock: error: a bundle:FILE source is copied alone; copy other sources in a command of their own
    airlock: error: --dry-run, --prefix, --map and --keep-registry are for a docker:// target, not oci:y
    "#);
}
