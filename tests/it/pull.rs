//! `pack` from real registries: plain HTTP, TLS, htpasswd, the token flow,
//! referrers, tag and catalog listing, faults, and resume after a kill.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use airlock::model::Digest;

use crate::harness::*;
use crate::util::*;

/// `airlock pack -q --json --cache CACHE ARGS… -o OUT` in `dir`.
fn pack(dir: &Path, args: &[&str]) -> Run {
    let cache = dir.join("cache");
    // Tests pack into out.airlock again and again.
    let mut all = vec![
        "pack",
        "-q",
        "--force",
        "--json",
        "--cache",
        cache.to_str().unwrap(),
        "-o",
        "out.airlock",
    ];
    all.extend_from_slice(args);
    airlock(&all, dir)
}

fn pack_json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.ok().stdout()).unwrap()
}

fn inspect(dir: &Path) -> serde_json::Value {
    let r = airlock(&["inspect", "--json", "out.airlock"], dir).ok();
    serde_json::from_str(&r.stdout()).unwrap()
}

fn names(report: &serde_json::Value) -> Vec<String> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("-").to_string())
        .collect()
}

fn push_fixtures(reg: &Registry) {
    let lay = layout();
    reg.push(&format!("oci:{}:app-1", lay.display()), "demo/app:1");
    reg.push(&format!("oci:{}:app-2", lay.display()), "demo/app:2");
    reg.push(&format!("oci:{}:multi", lay.display()), "demo/multi:latest");
}

#[test]
fn pulls_over_plain_http_with_digests_skopeo_agrees_with() {
    let reg = Registry::start(Config::default());
    push_fixtures(&reg);
    let t = scratch();
    let h = &reg.host;
    let mut args: Vec<String> = reg.plain_flags();
    args.push(format!("{h}/demo/multi"));
    args.push(format!("docker://{h}/demo/app:2"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = pack_json(pack(t.path(), &argv));
    assert_eq!(summary["images"].as_array().unwrap().len(), 2);
    assert!(summary["downloaded"].as_u64().unwrap() > 300_000);
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
    let report = inspect(t.path());
    let multi = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == format!("{h}/demo/multi:latest"))
        .unwrap();
    assert_eq!(
        multi["digest"],
        reg.digest("demo/multi:latest", &["--tls-verify=false"])
    );
    assert_eq!(
        multi["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64", "linux/ppc64le"])
    );

    // A second run finds everything in the cache and downloads nothing.
    let again = pack_json(pack(t.path(), &argv));
    assert_eq!(again["downloaded"], 0);

    // Platform filter works on registry indexes too.
    // Without demo/app:2, an amd64-only image that the filter refuses.
    let mut one = argv[..argv.len() - 1].to_vec();
    one.extend(["--platform", "linux/arm64"]);
    pack_json(pack(t.path(), &one));
    let report = inspect(t.path());
    assert_eq!(
        report["images"][0]["digest"],
        skopeo_digest(&format!("oci:{}:arm-1", layout().display()), t.path())
    );
}

#[test]
fn registry_errors_say_what_to_do() {
    let reg = Registry::start(Config::default());
    push_fixtures(&reg);
    let t = scratch();
    let h = reg.host.as_str();
    // Wrong tag: 404 with the registry's code.
    let err = pack(
        t.path(),
        &[&*format!("--plain-http={h}"), &format!("{h}/demo/app:nope")],
    )
    .fails();
    assert!(
        err.contains("404") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );
    assert!(err.contains("hint: check the repository name"), "{err}");
    // A plain-HTTP registry on loopback needs no flag (#15; any other host
    // gets the protocol error naming --plain-http: conventions_auth.rs).
    pack_json(pack(
        t.path(),
        &["--retries", "1", &format!("{h}/demo/app:1")],
    ));
    std::fs::remove_file(t.path().join("out.airlock")).unwrap();
    // Nothing listening: a connection error, after retries, with a hint.
    let port = free_port();
    let err = pack(
        t.path(),
        &[
            "--retries",
            "2",
            &*format!("--plain-http=127.0.0.1:{port}"),
            &format!("127.0.0.1:{port}/a:1"),
        ],
    )
    .fails();
    assert!(err.contains("connection failed"), "{err}");
    assert!(!t.path().join("out.airlock").exists());
}

#[test]
fn trusts_a_private_ca_by_flag_by_certs_d_or_not_at_all_when_told() {
    let t = scratch();
    let certs = Certs::make(&t.path().join("pki"));
    let reg = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    push_fixtures(&reg);
    let image = format!("{}/demo/app:1", reg.host);

    let err = pack(t.path(), &["--retries", "1", &image]).fails();
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");

    pack_json(pack(
        t.path(),
        &["--ca-cert", certs.ca.to_str().unwrap(), &image],
    ));

    let certs_d = t.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&reg.host)).unwrap();
    std::fs::copy(&certs.ca, certs_d.join(&reg.host).join("ca.crt")).unwrap();
    std::fs::remove_dir_all(t.path().join("cache")).unwrap();
    pack_json(pack(
        t.path(),
        &["--certs-dir", certs_d.to_str().unwrap(), &image],
    ));

    // --insecure names the host it applies to, and only that one.
    let err = pack(
        t.path(),
        &["--retries", "1", "--insecure=127.0.0.2", &image],
    )
    .fails();
    assert!(err.contains("certificate"), "{err}");
    pack_json(pack(
        t.path(),
        &[&*format!("--insecure={}", reg.host), &image],
    ));
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
}

#[test]
fn logs_in_with_htpasswd_from_the_command_line_or_docker_config() {
    let reg = Registry::start(Config {
        basic: Some(("alice", "s3cret-pass")),
        ..Default::default()
    });
    push_fixtures(&reg);
    let t = scratch();
    let h = reg.host.as_str();
    let image = format!("{h}/demo/app:1");

    let err = pack(t.path(), &[&*format!("--plain-http={h}"), &image]).fails();
    assert!(err.contains("401"), "{err}");
    assert!(
        err.contains("airlock login") && err.contains("--password-stdin"),
        "{err}"
    );

    let run = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "pack",
            "-q",
            &*format!("--plain-http={h}"),
            "--username",
            "alice",
            "--password-stdin",
            "-o",
            "out.airlock",
            &image,
        ])
        .arg("--cache")
        .arg(t.path().join("cache"))
        .current_dir(t.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            // Refused before it reads: its output says so, not this write.
            let _ = c.stdin.take().unwrap().write_all(b"s3cret-pass\n");
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // docker's config.json, found through DOCKER_CONFIG.
    let docker = t.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{h}":{{"auth":"{}"}}}}}}"#,
            base64_encode("alice:s3cret-pass")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "pack",
            &*format!("--plain-http={h}"),
            "-o",
            "out2.airlock",
            &image,
        ])
        .arg("--cache")
        .arg(t.path().join("cache2"))
        .env("DOCKER_CONFIG", &docker)
        .current_dir(t.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("s3cret"), "the password leaked: {all}");
    let bundle = std::fs::read(t.path().join("out2.airlock")).unwrap();
    assert!(
        !bundle.windows(11).any(|w| w == b"s3cret-pass"),
        "the password is in the bundle"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn pack_with_password(
    dir: &Path,
    cache: &str,
    password: &str,
    args: &[&str],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
    c.args([
        "pack",
        "-q",
        "--json",
        "--username",
        "tester",
        "--password-stdin",
        "--force",
        "-o",
        "out.airlock",
        "--cache",
        cache,
    ]);
    c.args(args).current_dir(dir);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        // The child may refuse before it reads: its output says so, not a
        // broken pipe here.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes());
    }
    child.wait_with_output().unwrap()
}

#[test]
fn follows_the_bearer_token_flow_and_renews_short_lived_tokens() {
    let token = TokenServer::start("tester", "tok-pass", 300);
    let reg = Registry::start(Config {
        token: Some(&token),
        ..Default::default()
    });
    push_fixtures(&reg);
    let t = scratch();
    let h = reg.host.as_str();
    let before = token.issued.load(Ordering::SeqCst);
    let out = pack_with_password(
        t.path(),
        "c1",
        "tok-pass",
        &[
            &*format!("--plain-http={h}"),
            &format!("{h}/demo/multi"),
            &format!("{h}/demo/app:2"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One token per repository scope, reused for every request in it.
    let used = token.issued.load(Ordering::SeqCst) - before;
    assert!(
        (1..=3).contains(&used),
        "{used} tokens for two repositories"
    );

    let out = pack_with_password(
        t.path(),
        "c2",
        "wrong",
        &[&*format!("--plain-http={h}"), &format!("{h}/demo/app:2")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("401") && err.contains("token"), "{err}");

    // Tokens that live 2 s are fetched again rather than reused expired.
    let short = TokenServer::start("tester", "tok-pass", 2);
    let reg2 = Registry::start(Config {
        token: Some(&short),
        ..Default::default()
    });
    push_fixtures(&reg2);
    let h2 = reg2.host.as_str();
    let out = pack_with_password(
        t.path(),
        "c3",
        "tok-pass",
        &[&*format!("--plain-http={h2}"), &format!("{h2}/demo/multi")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        short.issued.load(Ordering::SeqCst) > 3,
        "short-lived tokens were reused"
    );
}

/// Pushes a blob with the plain monolithic upload (test fixtures only).
fn put_blob(host: &str, repo: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send_empty()
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{host}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = agent
        .put(format!("{url}{sep}digest={digest}"))
        .send(bytes)
        .unwrap();
    assert_eq!(resp.status(), 201);
    digest
}

fn put_manifest(host: &str, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .put(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .send(bytes)
        .unwrap();
    assert_eq!(resp.status(), 201, "manifest {reference}");
    Digest::of(bytes)
}

#[test]
fn signatures_sboms_and_referrer_indexes_travel_with_their_image() {
    let reg = Registry::start(Config::default());
    push_fixtures(&reg);
    let h = reg.host.as_str();
    let subject = reg.digest("demo/app:1", &["--tls-verify=false"]);
    let subject_size = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{h}/demo/app:1"),
        ],
        Path::new("/"),
    )
    .ok()
    .out
    .stdout
    .len();
    let hex = subject.trim_start_matches("sha256:");
    let empty = put_blob(h, "demo/app", b"{}");
    let manifest = |artifact: &str, payload_type: &str, payload: &[u8], with_subject: bool| {
        let layer = put_blob(h, "demo/app", payload);
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": payload_type, "digest": layer, "size": payload.len()}],
        });
        if with_subject {
            m["subject"] = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size});
        }
        serde_json::to_vec(&m).unwrap()
    };
    // cosign-style signature under its tag.
    let sig = manifest(
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        br#"{"critical":{}}"#,
        false,
    );
    put_manifest(
        h,
        "demo/app",
        &format!("sha256-{hex}.sig"),
        "application/vnd.oci.image.manifest.v1+json",
        &sig,
    );
    // An SBOM referrer, found through the referrers fallback tag.
    let sbom = manifest(
        "application/spdx+json",
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
        true,
    );
    let sbom_digest = put_manifest(
        h,
        "demo/app",
        &Digest::of(&sbom).to_string(),
        "application/vnd.oci.image.manifest.v1+json",
        &sbom,
    );
    let fallback = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sbom_digest, "size": sbom.len(), "artifactType": "application/spdx+json"}],
    }))
    .unwrap();
    put_manifest(
        h,
        "demo/app",
        &format!("sha256-{hex}"),
        "application/vnd.oci.image.index.v1+json",
        &fallback,
    );

    let t = scratch();
    pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={h}"), &format!("{h}/demo/app:1")],
    ));
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
    let report = inspect(t.path());
    let got = names(&report);
    assert!(
        got.contains(&format!("{h}/demo/app:sha256-{hex}.sig")),
        "{got:?}"
    );
    assert!(
        got.contains(&format!("{h}/demo/app:sha256-{hex}")),
        "{got:?}"
    );
    let main = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == format!("{h}/demo/app:1"))
        .unwrap();
    assert_eq!(main["referrers"].as_array().unwrap().len(), 2, "{main:#}");
    // The SBOM manifest itself is inside, byte for byte.
    let x = t.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(
        "sh",
        &[
            "-c",
            &format!("zstd -dc out.airlock | tar -x -C {}", x.display()),
        ],
        t.path(),
    )
    .ok();
    assert_eq!(
        std::fs::read(x.join(sbom_digest.layout_path())).unwrap(),
        sbom
    );

    // --no-referrers leaves them all behind.
    pack_json(pack(
        t.path(),
        &[
            &*format!("--plain-http={h}"),
            "--no-referrers",
            &format!("{h}/demo/app:1"),
        ],
    ));
    assert_eq!(names(&inspect(t.path())), vec![format!("{h}/demo/app:1")]);

    // --all-tags lists the referrer tags under their image, not as images of their own.
    pack_json(pack(
        t.path(),
        &[
            &*format!("--plain-http={h}"),
            "--all-tags",
            &format!("{h}/demo/app"),
        ],
    ));
    let got = names(&inspect(t.path()));
    assert_eq!(
        got.iter().filter(|n| n.contains("sha256-")).count(),
        2,
        "{got:?}"
    );
    assert!(got.contains(&format!("{h}/demo/app:2")), "{got:?}");
}

#[test]
fn backs_up_a_whole_registry_through_its_catalog() {
    let reg = Registry::start(Config::default());
    push_fixtures(&reg);
    let h = reg.host.as_str();
    let t = scratch();
    let summary = pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={h}"), "--catalog", h],
    ));
    assert_eq!(summary["images"].as_array().unwrap().len(), 3);
    let mut got = names(&inspect(t.path()));
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("{h}/demo/app:1"),
            format!("{h}/demo/app:2"),
            format!("{h}/demo/multi:latest")
        ]
    );
}

#[test]
fn survives_cut_connections_and_fails_clearly_when_the_registry_stays_down() {
    let reg = Registry::start(Config::default());
    let large = fixtures().join("large");
    reg.push(&format!("oci:{}:large", large.display()), "demo/large:1");
    // Cut the first four connections 100 KiB into their responses.
    let proxy = FaultProxy::start(
        reg.port,
        Faults {
            cut_after: 100 * 1024,
            cuts: 4,
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={p}"), &format!("{p}/demo/large:1")],
    ));
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();

    let down = FaultProxy::start(
        reg.port,
        Faults {
            fail_all: true,
            ..Default::default()
        },
    );
    let d = format!("127.0.0.1:{}", down.port);
    let t2 = scratch();
    let started = Instant::now();
    let err = pack(
        t2.path(),
        &[
            &*format!("--plain-http={d}"),
            "--retries",
            "3",
            &format!("{d}/demo/large:1"),
        ],
    )
    .fails();
    assert!(
        err.contains("connection failed") || err.contains("protocol error"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!t2.path().join("out.airlock").exists());
    assert!(
        entries(t2.path()).iter().all(|e| e == "cache"),
        "{:?}",
        entries(t2.path())
    );
}

#[test]
fn a_killed_pack_resumes_fetching_only_what_is_missing() {
    let reg = Registry::start(Config::default());
    let large = fixtures().join("large");
    reg.push(&format!("oci:{}:large", large.display()), "demo/large:1");
    let layer_size = largest_blob(&large).0;
    // Slow the first run down so it can be killed halfway.
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(4)),
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", slow.port);
    let t = scratch();
    let cache = t.path().join("cache");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "pack",
            "-q",
            &*format!("--plain-http={p}"),
            "-o",
            "out.airlock",
            &format!("{p}/demo/large:1"),
        ])
        .arg("--cache")
        .arg(&cache)
        .current_dir(t.path())
        .spawn()
        .unwrap();
    let partial_dir = cache.join("partial/sha256");
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial_len = loop {
        let len: u64 = std::fs::read_dir(&partial_dir)
            .map(|d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum())
            .unwrap_or(0);
        if len > layer_size / 3 {
            break len;
        }
        assert!(Instant::now() < deadline, "the download never got going");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!t.path().join("out.airlock").exists());

    // Re-run at full speed through a counting proxy.
    let counting = FaultProxy::start(reg.port, Faults::default());
    let c = format!("127.0.0.1:{}", counting.port);
    let summary = pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={c}"), &format!("{c}/demo/large:1")],
    ));
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
    let downloaded = summary["downloaded"].as_u64().unwrap();
    assert!(
        downloaded < layer_size - partial_len / 2,
        "fetched {downloaded} of {layer_size} after {partial_len} were cached"
    );
    let wire = counting.bytes_down.load(Ordering::SeqCst);
    assert!(
        wire < layer_size,
        "{wire} bytes crossed the wire for a {layer_size}-byte layer half cached"
    );
    assert!(
        reg.log().contains("206") || wire < layer_size,
        "no range request seen"
    );

    // A corrupt cache entry is noticed and fetched again.
    let entry = cache.join("blobs/sha256").join(
        std::fs::read_dir(cache.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap())
            .max_by_key(|e| e.metadata().unwrap().len())
            .unwrap()
            .file_name(),
    );
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let summary = pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={c}"), &format!("{c}/demo/large:1")],
    ));
    assert_eq!(summary["downloaded"].as_u64().unwrap(), layer_size);
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
}

/// The largest blob of the `large` fixture (its 6 MiB layer): digest, bytes.
fn large_layer() -> (String, Vec<u8>) {
    let dir = fixtures().join("large/blobs/sha256");
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let hex = entry.file_name().to_string_lossy().to_string();
    (
        format!("sha256:{hex}"),
        std::fs::read(entry.path()).unwrap(),
    )
}

#[test]
fn a_blob_the_registry_serves_damaged_fails_the_pack_though_it_was_streaming_into_the_bundle() {
    let reg = Registry::start(Config::default());
    let large = fixtures().join("large");
    reg.push(&format!("oci:{}:large", large.display()), "demo/large:1");
    let (layer, bytes) = large_layer();
    // Damage the last byte, so the writer, which follows the download, has
    // streamed nearly all of it into the bundle before the digest is known.
    let stored = reg.blob_file(&layer);
    let mut damaged = std::fs::read(&stored).unwrap();
    assert_eq!(damaged, bytes);
    *damaged.last_mut().unwrap() ^= 1;
    std::fs::write(&stored, &damaged).unwrap();
    // Slowed down, so the bundle writer catches up with the download.
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(1)),
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", slow.port);
    let t = scratch();
    let err = pack(
        t.path(),
        &[&*format!("--plain-http={p}"), &format!("{p}/demo/large:1")],
    )
    .fails();
    assert!(
        err.contains("does not match its digest") && err.contains(&layer),
        "{err}"
    );
    assert!(!t.path().join("out.airlock").exists());
    assert_eq!(entries(t.path()), ["cache"], "a partial bundle was left");
    // Neither the damaged layer nor a partial copy stays in the cache.
    let cache = t.path().join("cache");
    let hex = layer.strip_prefix("sha256:").unwrap().to_string();
    assert!(!entries(&cache.join("blobs/sha256")).contains(&hex));
    assert!(entries(&cache.join("partial/sha256")).is_empty());
}

#[test]
fn continues_a_partial_download_when_the_server_ignores_range_and_drops_a_bad_one() {
    let reg = Registry::start(Config::default());
    let large = fixtures().join("large");
    reg.push(&format!("oci:{}:large", large.display()), "demo/large:1");
    let (layer, bytes) = large_layer();
    let no_range = FaultProxy::start(
        reg.port,
        Faults {
            hide_range: true,
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", no_range.port);
    let t = scratch();
    let partial = t
        .path()
        .join("cache/partial/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let third = bytes.len() / 3;
    std::fs::write(&partial, &bytes[..third]).unwrap();

    // The whole layer comes back; the cached third is skipped, not fetched
    // into the file again.
    let summary = pack_json(pack(
        t.path(),
        &[&*format!("--plain-http={p}"), &format!("{p}/demo/large:1")],
    ));
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
    // The rest of the layer, plus the image's small config.
    let downloaded = summary["downloaded"].as_u64().unwrap() as usize;
    assert!(
        (bytes.len() - third..bytes.len() - third + 4096).contains(&downloaded),
        "{downloaded}"
    );
    assert!(no_range.bytes_down.load(Ordering::SeqCst) > bytes.len() as u64);
    assert!(
        !reg.log().contains("\" 206 "),
        "the registry saw a Range header"
    );

    // A partial file that does not match the blob is found out at the end,
    // removed, and the next run starts from scratch.
    let t2 = scratch();
    let partial2 = t2.path().join(partial.strip_prefix(t.path()).unwrap());
    std::fs::create_dir_all(partial2.parent().unwrap()).unwrap();
    let mut wrong = bytes[..third].to_vec();
    wrong[10] ^= 1;
    std::fs::write(&partial2, &wrong).unwrap();
    let err = pack(
        t2.path(),
        &[&*format!("--plain-http={p}"), &format!("{p}/demo/large:1")],
    )
    .fails();
    assert!(
        err.contains("does not match its digest") && err.contains(&layer),
        "{err}"
    );
    assert!(!partial2.exists());
    assert!(!t2.path().join("out.airlock").exists());
    let summary = pack_json(pack(
        t2.path(),
        &[&*format!("--plain-http={p}"), &format!("{p}/demo/large:1")],
    ));
    let downloaded = summary["downloaded"].as_u64().unwrap() as usize;
    assert!(
        (bytes.len()..bytes.len() + 4096).contains(&downloaded),
        "{downloaded}"
    );
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t2.path()).ok();
}

#[test]
fn referrers_arrive_in_the_target_registry_under_their_tags() {
    let src = Registry::start(Config::default());
    push_fixtures(&src);
    let h = src.host.as_str();
    let subject = src.digest("demo/app:1", &["--tls-verify=false"]);
    let hex = subject.trim_start_matches("sha256:");
    let empty = put_blob(h, "demo/app", b"{}");
    let payload = br#"{"critical":{"type":"cosign container image signature"}}"#;
    let layer = put_blob(h, "demo/app", payload);
    let sig = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": layer, "size": payload.len()}],
    }))
    .unwrap();
    let sig_tag = format!("sha256-{hex}.sig");
    put_manifest(
        h,
        "demo/app",
        &sig_tag,
        "application/vnd.oci.image.manifest.v1+json",
        &sig,
    );

    let t = scratch();
    let (key, public) = keys(t.path(), "k");
    airlock(
        &[
            "pack",
            "-q",
            "--cache",
            "c",
            "--key",
            key.to_str().unwrap(),
            &*format!("--plain-http={h}"),
            "-o",
            "r.airlock",
            &format!("{h}/demo/app:1"),
        ],
        t.path(),
    )
    .ok();
    let dst = Registry::start(Config::default());
    let d = dst.host.as_str();
    airlock(
        &[
            "import",
            "-q",
            "r.airlock",
            "--pub",
            public.to_str().unwrap(),
            "--to",
            d,
            "--prefix",
            "mirror",
            &*format!("--plain-http={d}"),
            "--state",
            "s",
        ],
        t.path(),
    )
    .ok();
    // cosign finds the signature by its tag next to the image, byte for byte.
    let got = skopeo(
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{d}/mirror/demo/app:{sig_tag}"),
        ],
        t.path(),
    )
    .ok()
    .out
    .stdout;
    assert_eq!(got, sig);
    assert_eq!(
        dst.digest("mirror/demo/app:1", &["--tls-verify=false"]),
        subject
    );
}
