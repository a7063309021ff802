//! `import` into real registries: results read back with skopeo, trust and
//! tampering, mapping and dry runs, cut connections, registry restarts, and
//! kill -9 at random points.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::harness::*;
use crate::util::*;

fn inspect_images(bundle: &Path) -> Vec<serde_json::Value> {
    let r = airlock(
        &["inspect", "--json", bundle.to_str().unwrap()],
        bundle.parent().unwrap(),
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    v["images"].as_array().unwrap().clone()
}

/// `airlock import BUNDLE --pub PUB --to TARGET --state DIR/state --json ARGS…`.
fn import(dir: &Path, bundle: &Path, public: &Path, target: &str, args: &[&str]) -> Run {
    import_with_state(dir, &dir.join("state"), bundle, public, target, args)
}

fn import_with_state(
    dir: &Path,
    state: &Path,
    bundle: &Path,
    public: &Path,
    target: &str,
    args: &[&str],
) -> Run {
    let mut all = vec![
        "import",
        bundle.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
        "--to",
        target,
        "--state",
        state.to_str().unwrap(),
        "--json",
    ];
    all.extend_from_slice(args);
    airlock(&all, dir)
}

/// `repo@digest` of the uploads a journal in `state` shows open: a session
/// recorded (after a 202), and the blob not yet recorded done.
fn open_uploads(state: &Path) -> Vec<String> {
    let mut open = std::collections::BTreeSet::new();
    for facts in journal_lines(state) {
        let Ok(fact) = serde_json::from_str::<serde_json::Value>(&facts) else {
            continue; // a line torn by a kill
        };
        let key = fact["key"].as_str().unwrap_or_default().to_string();
        match fact["fact"].as_str() {
            Some("upload") => {
                open.insert(key);
            }
            Some("blob" | "forget") => {
                open.remove(&key);
            }
            _ => {}
        }
    }
    open.into_iter().collect()
}

/// The lines of the import journal(s) in `state`.
fn journal_lines(state: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(state) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for entry in dir {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            lines.extend(text.lines().map(String::from));
        }
    }
    lines
}

fn report(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.ok().stdout()).unwrap()
}

/// A signed bundle of the whole fixture layout plus the docker archive.
fn fixture_bundle(dir: &Path) -> (PathBuf, PathBuf) {
    packed(
        dir,
        &[
            &format!("oci:{}", layout().display()),
            &format!(
                "docker-archive:{}",
                fixtures().join("app2.docker.tar").display()
            ),
        ],
    )
}

#[test]
fn imports_every_image_with_its_digest_and_a_rerun_sends_nothing() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = fixture_bundle(t.path());
    let h = reg.host.as_str();
    let r = report(import(
        t.path(),
        &bundle,
        &public,
        &format!("{h}/mirror"),
        &[&*format!("--plain-http={h}")],
    ));
    assert_eq!(r["images"].as_array().unwrap().len(), 6);
    assert!(
        r["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "pushed"),
        "{r:#}"
    );
    // Shared layers went up once and were mounted into the other repository.
    assert!(r["blob_counts"]["mounted"].as_u64().unwrap() >= 1, "{r:#}");
    for image in inspect_images(&bundle) {
        let name = image["name"].as_str().unwrap();
        let repo_tag = name.split_once('/').unwrap().1;
        let got = reg.digest(&format!("mirror/{repo_tag}"), &["--tls-verify=false"]);
        assert_eq!(got, image["digest"].as_str().unwrap(), "{name}");
    }
    // The multi-platform index arrived whole: skopeo copies every platform.
    skopeo(
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{h}/mirror/layout:multi"),
            &format!("oci:{}:m", t.path().join("back").display()),
        ],
        t.path(),
    )
    .ok();
    let again = report(import(
        t.path(),
        &bundle,
        &public,
        &format!("{h}/mirror"),
        &[&*format!("--plain-http={h}")],
    ));
    assert_eq!(again["bytes_pushed"], 0, "{again:#}");
}

#[test]
fn refuses_untrusted_or_tampered_bundles_before_pushing_anything() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = fixture_bundle(t.path());
    let h = reg.host.as_str();
    let target = format!("{h}/x");
    let (_, other) = keys(t.path(), "other");
    let err = import(
        t.path(),
        &bundle,
        &other,
        &target,
        &[&*format!("--plain-http={h}")],
    )
    .fails();
    assert!(err.contains("not by the trusted key"), "{err}");

    // A flipped byte inside a layer's frame.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    let bad = t.path().join("bad.airlock");
    std::fs::write(&bad, bytes).unwrap();
    let err = import(
        t.path(),
        &bad,
        &public,
        &target,
        &[&*format!("--plain-http={h}")],
    )
    .fails();
    assert!(err.contains("damaged") || err.contains("digest"), "{err}");

    // Nothing reached the registry.
    let catalog = reg.catalog();
    assert!(catalog.contains(r#""repositories":[]"#), "{catalog}");
}

#[test]
fn dry_run_shows_the_mapping_and_pushes_nothing() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = fixture_bundle(t.path());
    let h = reg.host.as_str();
    let r = report(import(
        t.path(),
        &bundle,
        &public,
        &format!("{h}/mirror"),
        &[
            &*format!("--plain-http={h}"),
            "--dry-run",
            "--map",
            "example.com/team=teams/a",
            "--keep-registry",
        ],
    ));
    let targets: Vec<&str> = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&format!("{h}/mirror/teams/a/app2:2").as_str()),
        "{targets:?}"
    );
    assert!(
        targets.contains(&format!("{h}/mirror/localhost/layout:multi").as_str()),
        "{targets:?}"
    );
    assert!(r["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "would push"));
    assert!(r["bytes_pushed"].as_u64().unwrap() > 0);
    let code = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{h}/mirror/teams/a/app2:2"),
        ])
        .output()
        .unwrap();
    assert!(!code.status.success(), "a dry run pushed something");
}

#[test]
fn imports_over_tls_with_htpasswd() {
    let t = scratch();
    let certs = Certs::make(&t.path().join("pki"));
    let reg = Registry::start(Config {
        tls: Some(&certs),
        basic: Some(("bob", "pw-for-bob")),
        ..Default::default()
    });
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:multi", layout().display())]);
    let h = reg.host.as_str();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "import",
            "-q",
            bundle.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
            "--to",
            h,
        ])
        .args([
            "--ca-cert",
            certs.ca.to_str().unwrap(),
            "--username",
            "bob",
            "--password-stdin",
            "--state",
        ])
        .arg(t.path().join("state"))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        // The child may refuse before it reads: its output says so, not a
        // broken pipe here.
        let _ = child.stdin.take().unwrap().write_all(b"pw-for-bob\n");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo's --cert-dir takes any *.key for a client key: give it the CA alone.
    let ca_only = t.path().join("ca-only");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(&certs.ca, ca_only.join("ca.crt")).unwrap();
    let got = reg.digest(
        "layout:multi",
        &[
            "--cert-dir",
            ca_only.to_str().unwrap(),
            "--creds",
            "bob:pw-for-bob",
        ],
    );
    assert_eq!(
        got,
        skopeo_digest(&format!("oci:{}:multi", layout().display()), t.path())
    );
}

#[test]
fn continues_after_cut_uploads_and_registry_restarts() {
    let t = scratch();
    let (bundle, public) = packed(
        t.path(),
        &[&format!("oci:{}:large", fixtures().join("large").display())],
    );
    let mut reg = Registry::start(Config {
        secret: true,
        ..Default::default()
    });
    // Cut the first three client connections 300 KiB into what they send:
    // mid-PATCH with 256 KiB chunks.
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            cut_up_after: 300 * 1024,
            cuts_up: 3,
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", proxy.port);
    let r = report(import(
        t.path(),
        &bundle,
        &public,
        &p,
        &[
            &*format!("--plain-http={p}"),
            "--chunk-size",
            "1M",
            "-j",
            "1",
        ],
    ));
    assert_eq!(r["images"][0]["status"], "pushed", "{r:#}");
    let want = skopeo_digest(
        &format!("oci:{}:large", fixtures().join("large").display()),
        t.path(),
    );
    assert_eq!(reg.digest("large:large", &["--tls-verify=false"]), want);

    // Small blobs go up in one PUT each: cut the first connections 40 KiB in.
    std::fs::create_dir_all(t.path().join("small")).unwrap();
    let (small, small_pub) = fixture_bundle(&t.path().join("small"));
    let cutter = FaultProxy::start(
        reg.port,
        Faults {
            cut_up_after: 40 * 1024,
            cuts_up: 4,
            ..Default::default()
        },
    );
    let c = format!("127.0.0.1:{}", cutter.port);
    let r = report(import(
        t.path(),
        &small,
        &small_pub,
        &format!("{c}/small"),
        &[&*format!("--plain-http={c}")],
    ));
    assert!(
        r["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "pushed"),
        "{r:#}"
    );
    assert_eq!(
        reg.digest("small/layout:multi", &["--tls-verify=false"]),
        skopeo_digest(&format!("oci:{}:multi", layout().display()), t.path())
    );

    // Restart the registry in the middle of an import, with and without
    // http.secret (which upload sessions need to survive a restart).
    for secret in [true, false] {
        reg.stop();
        let mut fresh = Registry::start(Config {
            secret,
            ..Default::default()
        });
        // The second chunk of the layer is held, so the upload session is
        // still open when the registry stops, however slow this machine.
        let held = FaultProxy::start(
            fresh.port,
            Faults {
                hold_patch: 2,
                ..Default::default()
            },
        );
        let s = format!("127.0.0.1:{}", held.port);
        let state = t.path().join(format!("state-{secret}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args([
                "import",
                "-q",
                bundle.to_str().unwrap(),
                "--pub",
                public.to_str().unwrap(),
                "--to",
                &s,
                &*format!("--plain-http={s}"),
            ])
            .args(["--chunk-size", "1M", "-j", "1", "--retries", "2", "--state"])
            .arg(&state)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Stop the registry while the journal shows an upload session open
        // (a PATCH confirmed, the blob not committed), and check that the
        // registry had not committed that blob before it stopped.
        let deadline = Instant::now() + Duration::from_secs(30);
        let open = loop {
            let open = open_uploads(&state);
            if !open.is_empty() {
                break open;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "secret={secret}: the import ended before an upload was open"
            );
            assert!(Instant::now() < deadline, "no upload session ever opened");
            std::thread::sleep(Duration::from_millis(2));
        };
        fresh.stop();
        let log = fresh.log();
        let still_open = open_uploads(&state);
        let (_, layer) = open[0].split_once('@').unwrap();
        assert!(
            still_open.iter().any(|k| k.ends_with(layer)),
            "secret={secret}: {open:?} was no longer open when the registry stopped"
        );
        let commits = |log: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("digest={layer}")) && l.contains("\" 201 "))
                .count()
        };
        assert_eq!(
            commits(&log),
            0,
            "secret={secret}: the registry committed {layer} before it stopped"
        );
        fresh.restart();
        let _ = child.wait();
        // Whatever the first run managed, a re-run completes the import.
        let r = report(import_with_state(
            t.path(),
            &state,
            &bundle,
            &public,
            &s,
            &[&*format!("--plain-http={s}"), "--chunk-size", "1M"],
        ));
        // The access log shows the commit (so the check above could see one).
        assert_eq!(commits(&fresh.log()), 1, "secret={secret}");
        // `exists` when the first run finished after the restart.
        let status = r["images"][0]["status"].as_str().unwrap();
        assert!(
            ["pushed", "exists"].contains(&status),
            "secret={secret}: {r:#}"
        );
        assert_eq!(
            fresh.digest("large:large", &["--tls-verify=false"]),
            want,
            "secret={secret}"
        );
        reg = fresh;
    }
}

#[test]
fn kill_nine_at_random_moments_and_the_result_is_always_complete() {
    /// Kills per round, each after the run made progress, before a run
    /// left to finish.
    const KILLS: u64 = 10;
    let t = scratch();
    let (bundle, public) = packed(
        t.path(),
        &[
            &format!("oci:{}:large", fixtures().join("large").display()),
            &format!("oci:{}:multi", layout().display()),
        ],
    );
    let total: u64 = inspect_images(&bundle)
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for round in 0..2 {
        let reg = Registry::start(Config {
            secret: true,
            ..Default::default()
        });
        // Every answer is 40 ms late: a run takes seconds, and the work
        // left after any confirmed step takes longer than a kill's delay.
        let proxy = FaultProxy::start(
            reg.port,
            Faults {
                throttle: Some(Duration::from_millis(40)),
                ..Default::default()
            },
        );
        let p = format!("127.0.0.1:{}", proxy.port);
        let state = t.path().join(format!("kill-state-{round}"));
        let chunk: u64 = 1024 * 1024;
        let mut kills = 0u64;
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "never finished"
            );
            let before = journal_lines(&state);
            let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
                .args([
                    "import",
                    "-q",
                    bundle.to_str().unwrap(),
                    "--pub",
                    public.to_str().unwrap(),
                    "--to",
                    &p,
                    &*format!("--plain-http={p}"),
                ])
                .args(["--chunk-size", "1M", "-j", "2", "--state"])
                .arg(&state)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            if kills == KILLS {
                // A run left to finish.
                let status = child.wait().unwrap();
                assert!(status.success(), "an import run failed on its own");
                break;
            }
            // Kill at a random moment after the journal shows this run
            // made progress (a chunk, a blob or a manifest confirmed):
            // mid-request, between chunks, or among the manifests.
            let deadline = Instant::now() + Duration::from_secs(60);
            while journal_lines(&state).iter().all(|l| before.contains(l)) {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "round {round}: run {kills} ended before it made progress"
                );
                assert!(Instant::now() < deadline, "round {round}: no progress");
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: run {kills} finished before its kill"
            );
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
        }
        assert_eq!(kills, KILLS, "round {round}");
        for image in inspect_images(&bundle) {
            let name = image["name"].as_str().unwrap();
            let repo_tag = name.split_once('/').unwrap().1;
            assert_eq!(
                reg.digest(repo_tag, &["--tls-verify=false"]),
                image["digest"].as_str().unwrap(),
                "round {round}"
            );
        }
        skopeo(
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &format!("docker://{p}/layout:multi"),
                &format!("oci:{}:m", t.path().join(format!("b{round}")).display()),
            ],
            t.path(),
        )
        .ok();
        // Completed blobs are never sent again. A kill during a PATCH spoils
        // that upload session on distribution 2.8 (it keeps the partial
        // bytes), so each kill may cost the blobs in flight (two workers),
        // never more.
        let sent = proxy.bytes_up.load(Ordering::SeqCst);
        let largest = largest_blob(&fixtures().join("large")).0;
        assert!(
            sent <= total + kills * 2 * largest + 1024 * 1024,
            "round {round}: {sent} bytes sent for {total} bytes of images after {kills} kills"
        );
        eprintln!("round {round}: {kills} kills, {sent} bytes sent for {total} (chunk {chunk})");
    }
}

#[test]
fn an_upload_whose_session_survived_continues_from_its_last_chunk() {
    // The proxy drops the connection carrying the 5th PATCH before the
    // registry sees a byte of it, so the session stays valid: the import
    // must continue from the 4th chunk, re-sending at most that one chunk.
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = packed(
        t.path(),
        &[&format!("oci:{}:large", fixtures().join("large").display())],
    );
    let layer = largest_blob(&fixtures().join("large")).0;
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            drop_patch: 5,
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", proxy.port);
    let chunk = 1024 * 1024;
    let r = report(import(
        t.path(),
        &bundle,
        &public,
        &p,
        &[
            &*format!("--plain-http={p}"),
            "--chunk-size",
            "1M",
            "-j",
            "1",
        ],
    ));
    assert_eq!(r["images"][0]["status"], "pushed", "{r:#}");
    let sent = proxy.bytes_up.load(Ordering::SeqCst);
    assert!(
        sent < layer + chunk + 64 * 1024,
        "{sent} bytes sent for a {layer}-byte layer: the upload restarted"
    );
    let want = skopeo_digest(
        &format!("oci:{}:large", fixtures().join("large").display()),
        t.path(),
    );
    assert_eq!(reg.digest("large:large", &["--tls-verify=false"]), want);
}

#[test]
fn pack_to_stdout_piped_into_import_from_stdin() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (key, public) = keys(t.path(), "k");
    let h = reg.host.as_str();
    let bin = env!("CARGO_BIN_EXE_airlock");
    let sources = format!(
        "oci:{} docker-archive:{}",
        layout().display(),
        fixtures().join("app2.docker.tar").display()
    );
    let pipeline = format!(
        "{bin} pack -q -o - --key {} {sources} | {bin} import - --json --pub {} --to {h}/via-pipe --plain-http={h} --state {}",
        key.display(),
        public.display(),
        t.path().join("state").display()
    );
    let r: serde_json::Value =
        serde_json::from_str(&run("sh", &["-c", &pipeline], t.path()).ok().stdout()).unwrap();
    assert!(
        r["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "pushed"),
        "{r:#}"
    );
    // Blobs went up once, into the first image's repository, and were
    // mounted into the other one.
    assert!(r["blob_counts"]["mounted"].as_u64().unwrap() >= 1, "{r:#}");
    for (image, tag) in [
        ("via-pipe/layout:multi", "multi"),
        ("via-pipe/layout:app-1", "app-1"),
    ] {
        assert_eq!(
            reg.digest(image, &["--tls-verify=false"]),
            skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path())
        );
    }
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{h}/via-pipe/team/app2:2"),
            &format!("oci:{}:x", t.path().join("o").display()),
        ],
        t.path(),
    )
    .ok();
}

#[test]
fn a_bad_stream_is_refused_and_its_images_never_appear() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-2", layout().display())]);
    let h = reg.host.as_str();
    let bin = env!("CARGO_BIN_EXE_airlock");
    let import_from = |file: &Path, key: &Path| {
        let cmd = format!(
            "{bin} import - --pub {} --to {h}/s --plain-http={h} --state {} < {}",
            key.display(),
            t.path().join("state").display(),
            file.display()
        );
        run("sh", &["-c", &cmd], t.path())
    };
    // The wrong key: refused before anything is pushed.
    let (_, other) = keys(t.path(), "other");
    let err = import_from(&bundle, &other).fails();
    assert!(err.contains("not by the trusted key"), "{err}");
    assert!(reg.catalog().contains(r#""repositories":[]"#));
    // A damaged layer: that blob is never committed and the image is not pushed.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x01;
    let bad = t.path().join("bad.airlock");
    std::fs::write(&bad, bytes).unwrap();
    let err = import_from(&bad, &public).fails();
    assert!(
        err.contains("member") || err.contains("digest") || err.contains("zstd"),
        "{err}"
    );
    let code = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{h}/s/layout:app-2"),
        ])
        .output()
        .unwrap();
    assert!(!code.status.success(), "the damaged image was pushed");
}

/// A source that adds one referrer (found "through the referrers API") to
/// another source's images; registries here have no such API, so bundles
/// carrying one are built through the library.
struct WithReferrer {
    inner: Box<dyn airlock::source::Source>,
    referrer: airlock::source::Root,
}

impl airlock::source::Source for WithReferrer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn roots(&self) -> airlock::Result<Vec<airlock::source::Root>> {
        let mut r = self.inner.roots()?;
        r.push(self.referrer.clone());
        Ok(r)
    }
    fn open_blob(
        &self,
        blob: &airlock::model::Descriptor,
    ) -> airlock::Result<Box<dyn std::io::Read + Send + '_>> {
        self.inner.open_blob(blob)
    }
}

#[test]
fn referrers_without_a_tag_update_the_fallback_index_of_their_subject() {
    use airlock::model::Digest;
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    let write = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(lay.join(d.layout_path()), bytes).unwrap();
        d
    };
    let subject_raw = skopeo(
        &["inspect", "--raw", &format!("oci:{}:app-1", lay.display())],
        t.path(),
    )
    .ok()
    .out
    .stdout;
    let subject = Digest::of(&subject_raw);
    let empty = write(b"{}");
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"app-1"}"#;
    let sbom_blob = write(sbom);
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom_blob, "size": sbom.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_raw.len()},
    }))
    .unwrap();
    let artifact_digest = write(&artifact);
    let spec = format!("oci:{}:app-1", lay.display());
    let source = WithReferrer {
        inner: airlock::ops::transport::SourceSpec::parse(&spec)
            .unwrap()
            .open(&spec, None)
            .unwrap(),
        referrer: airlock::source::Root {
            name: None,
            descriptor: airlock::model::Descriptor::new(
                "application/vnd.oci.image.manifest.v1+json",
                artifact_digest.clone(),
                artifact.len() as u64,
            ),
            subject: Some(subject.clone()),
        },
    };
    let mut plan = airlock::plan::Plan::default();
    plan.add_source(0, &source, &[]).unwrap();
    let bundle = t.path().join("ref.airlock");
    let writer = airlock::bundle::BundleWriter::to_file(
        &bundle,
        airlock::bundle::PackOptions {
            level: 3,
            key: None,
            created: 0,
            split: None,
            parity: None,
        },
    )
    .unwrap();
    let sources: Vec<Box<dyn airlock::source::Source>> = vec![Box::new(source)];
    airlock::sink::copy(
        &plan,
        &sources,
        Box::new(writer),
        &airlock::progress::Progress::hidden(),
    )
    .unwrap();
    let images = inspect_images(&bundle);
    let main = images
        .iter()
        .find(|i| i["name"] == "localhost/lay:app-1")
        .unwrap();
    assert_eq!(
        main["referrers"],
        serde_json::json!([artifact_digest.to_string()])
    );

    let reg = Registry::start(Config::default());
    let h = reg.host.as_str();
    airlock(
        &[
            "import",
            "-q",
            bundle.to_str().unwrap(),
            "--allow-unsigned",
            "--to",
            h,
            &*format!("--plain-http={h}"),
            "--state",
            "s",
        ],
        t.path(),
    )
    .ok();
    // The subject's fallback tag now lists the SBOM, as OCI clients expect.
    let index = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/lay:sha256-{}", subject.hex()),
        ],
        t.path(),
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&index.stdout()).unwrap();
    assert_eq!(v["manifests"][0]["digest"], artifact_digest.to_string());
    assert_eq!(v["manifests"][0]["artifactType"], "application/spdx+json");
    let got = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/lay@{artifact_digest}"),
        ],
        t.path(),
    )
    .ok()
    .out
    .stdout;
    assert_eq!(got, artifact);
}
