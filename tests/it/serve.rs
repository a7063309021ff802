//! `airlock serve` read by independent clients: skopeo, podman, curl, and
//! airlock's own registry client (`pack docker://…`). The fixtures are
//! built by umoci and skopeo; digests are compared with theirs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;

/// A running `airlock serve`; stopped with SIGTERM when dropped.
pub(crate) struct Served {
    child: Option<Child>,
    port: u16,
    stderr: PathBuf,
}

impl Served {
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Served {
        let port = free_port();
        let stderr = dir.join(format!("serve-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("-v")
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let served = Served {
            child: Some(child),
            port,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve did not start:\n{}",
                served.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    /// Serves one bundle, trusting the key it was signed with.
    pub(crate) fn signed(dir: &Path, bundle: &Path, public: &Path) -> Served {
        Served::start(
            dir,
            &["--pub", public.to_str().unwrap(), bundle.to_str().unwrap()],
        )
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `raw` on one connection and reads until the server closes it
    /// (or 3 s pass).
    pub(crate) fn raw(&self, raw: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// SIGTERM, then the exit status and the log.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        term(&child);
        let status = child.wait().unwrap();
        (status, self.log())
    }
}

fn term(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            term(&c);
            let _ = c.wait();
        }
    }
}

/// curl, returning (HTTP status, headers, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let t = scratch();
    let head = t.path().join("h");
    let out = Command::new("curl")
        .args(["-s", "-D", head.to_str().unwrap(), "-o", "-"])
        .args(args)
        .output()
        .unwrap();
    let headers = std::fs::read_to_string(&head).unwrap_or_default();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers.to_lowercase(), out.stdout)
}

/// `sha256:<hex>` of what skopeo reads from the served registry.
fn served_digest(image: &str, cwd: &Path) -> String {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", image], cwd)
        .ok()
        .out
        .stdout;
    format!("sha256:{}", sha256_hex(&raw))
}

fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

pub(crate) fn image(name: &str) -> String {
    format!("oci:{}:{name}", layout().display())
}

const IMAGES: [&str; 5] = ["base", "app-1", "app-2", "arm-1", "multi"];

/// The fixture layout packed, signed.
fn pack_layout(dir: &Path) -> (PathBuf, PathBuf) {
    packed(dir, &[&format!("oci:{}", layout().display())])
}

#[test]
fn skopeo_podman_and_airlock_pull_every_image_with_the_source_digests() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    // How fast it starts is scripts/bench-serve.sh's to show, not a test's.
    let s = Served::signed(dir, &bundle, &public);
    let h = s.host();
    for name in IMAGES {
        let want = skopeo_digest(&image(name), dir);
        let served = format!("docker://{h}/layout:{name}");
        let got = served_digest(&served, dir);
        assert_eq!(got, want, "{name}: inspect --raw, byte for byte");
        let _ = skopeo(&["inspect", "--tls-verify=false", &served], dir);
        let out = dir.join(format!("copy-{name}"));
        skopeo(
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &served,
                &format!("oci:{}:x", out.display()),
            ],
            dir,
        )
        .ok();
        assert_eq!(
            skopeo_digest(&format!("oci:{}:x", out.display()), dir),
            want,
            "{name}: copy --all"
        );
    }
    // Our own client: pack from the served registry gives the same images.
    let again = dir.join("again.airlock");
    airlock(
        &[
            "pack",
            "-q",
            &format!("--plain-http={h}"),
            "-o",
            again.to_str().unwrap(),
            &format!("docker://{h}/layout:app-1"),
            &format!("docker://{h}/layout:multi"),
        ],
        dir,
    )
    .ok();
    let exported = dir.join("exported");
    airlock(
        &[
            "export",
            "-q",
            again.to_str().unwrap(),
            "--allow-unsigned",
            "--to",
            &format!("oci:{}", exported.display()),
        ],
        dir,
    )
    .ok();
    for name in ["app-1", "multi"] {
        let want = skopeo_digest(&image(name), dir);
        let index = std::fs::read_to_string(exported.join("index.json")).unwrap();
        assert!(index.contains(&want), "{name} round-tripped: {index}");
    }
    // podman, daemonless, when the machine has it.
    if Command::new("podman").arg("--version").output().is_ok() {
        let store = dir.join("podman");
        let p = run(
            "podman",
            &[
                "--root",
                store.join("root").to_str().unwrap(),
                "--runroot",
                store.join("run").to_str().unwrap(),
                "--storage-driver",
                "vfs",
                "pull",
                "-q",
                "--tls-verify=false",
                &format!("{h}/layout:app-1"),
            ],
            dir,
        );
        assert!(
            p.out.status.success(),
            "podman pull: {}\n{}",
            p.stderr(),
            s.log()
        );
    }
    let (status, log) = s.stop();
    assert!(status.success(), "SIGTERM stops it cleanly: {log}");
    // The access log: method, path, status, bytes, time.
    assert!(
        log.lines()
            .any(|l| l.contains("GET /v2/layout/manifests/app-1 200 ") && l.ends_with("ms")),
        "{log}"
    );
}

#[test]
fn blobs_answer_ranges_and_parallel_gets_byte_for_byte() {
    let t = scratch();
    let dir = t.path();
    let large = fixtures().join("large");
    let (bundle, public) = packed(dir, &[&format!("oci:{}", large.display())]);
    let s = Served::signed(dir, &bundle, &public);
    // The largest blob of the layout, as umoci wrote it.
    let (size, path) = largest_blob(&large);
    assert!(size > 4 << 20, "a blob over several frames");
    let want = std::fs::read(&path).unwrap();
    let hex = path.file_name().unwrap().to_str().unwrap();
    let url = s.url(&format!("/v2/large/blobs/sha256:{hex}"));

    let (status, headers, body) = curl(&[&url]);
    assert_eq!(status, 200);
    assert!(body == want, "whole blob byte for byte");
    assert!(
        headers.contains(&format!("content-length: {size}")),
        "{headers}"
    );
    assert!(headers.contains(&format!("docker-content-digest: sha256:{hex}")));
    assert!(headers.contains("docker-distribution-api-version: registry/2.0"));

    let (status, headers, _) = curl(&["-I", &url]);
    assert_eq!(status, 200);
    assert!(headers.contains(&format!("content-length: {size}")));

    for (range, lo, hi) in [
        ("0-99", 0, 100),
        ("5000000-", 5_000_000, size),
        ("-10", size - 10, size),
        ("1000-1000", 1000, 1001),
    ] {
        let (status, headers, body) = curl(&["-r", range, &url]);
        assert_eq!(status, 206, "{range}");
        assert!(body == want[lo as usize..hi as usize], "{range}");
        assert!(
            headers.contains(&format!("content-range: bytes {lo}-{}/{size}", hi - 1)),
            "{headers}"
        );
    }
    let (status, headers, _) = curl(&["-r", &format!("{size}-"), &url]);
    assert_eq!(status, 416);
    assert!(headers.contains(&format!("content-range: bytes */{size}")));

    // Eight at once, whole and in quarters.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let q = size / 4;
                let (lo, hi) = if i < 4 {
                    (0, size)
                } else {
                    ((i - 4) * q, (i - 3) * q)
                };
                let (status, _, body) = curl(&["-r", &format!("{lo}-{}", hi - 1), &url]);
                (lo, hi, status, body)
            })
        })
        .collect();
    for h in handles {
        let (lo, hi, status, body) = h.join().unwrap();
        assert_eq!(status, 206);
        assert!(body == want[lo as usize..hi as usize], "{lo}-{hi}");
    }
    let (status, _, body) = curl(&[&s.url(
        "/v2/large/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )]);
    assert_eq!(status, 404);
    assert_eq!(json_of(&body)["errors"][0]["code"], "BLOB_UNKNOWN");
}

#[test]
fn catalog_and_tags_page_with_n_last_and_link() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(
        dir,
        &[
            &format!("oci:{}", layout().display()),
            &format!("oci:{}", fixtures().join("large").display()),
        ],
    );
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "--prefix",
            "mirror",
            bundle.to_str().unwrap(),
        ],
    );
    let (status, _, body) = curl(&[&s.url("/v2/_catalog")]);
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body)["repositories"],
        serde_json::json!(["mirror/large", "mirror/layout"])
    );
    let (_, headers, body) = curl(&[&s.url("/v2/_catalog?n=1")]);
    assert_eq!(
        json_of(&body)["repositories"],
        serde_json::json!(["mirror/large"])
    );
    assert!(
        headers.contains("link: </v2/_catalog?last=mirror/large&n=1>; rel=\"next\""),
        "{headers}"
    );
    let (_, headers, body) = curl(&[&s.url("/v2/_catalog?n=1&last=mirror/large")]);
    assert_eq!(
        json_of(&body)["repositories"],
        serde_json::json!(["mirror/layout"])
    );
    assert!(!headers.contains("link:"), "last page: {headers}");

    let tags = s.url("/v2/mirror/layout/tags/list");
    let (_, _, body) = curl(&[&tags]);
    assert_eq!(
        json_of(&body)["tags"],
        serde_json::json!(["app-1", "app-2", "arm-1", "base", "multi"])
    );
    let mut seen = Vec::new();
    let mut next = format!("{tags}?n=2");
    for _ in 0..5 {
        let (_, headers, body) = curl(&[&next]);
        seen.extend(
            json_of(&body)["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        );
        let Some(link) = headers.lines().find(|l| l.starts_with("link:")) else {
            break;
        };
        let path = link.split('<').nth(1).unwrap().split('>').next().unwrap();
        next = s.url(path);
    }
    assert_eq!(seen, ["app-1", "app-2", "arm-1", "base", "multi"]);
    let (status, _, body) = curl(&[&s.url("/v2/nope/tags/list")]);
    assert_eq!(status, 404);
    assert_eq!(json_of(&body)["errors"][0]["code"], "NAME_UNKNOWN");
    let (status, _, body) = curl(&[&format!("{tags}?n=x")]);
    assert_eq!(status, 400);
    assert_eq!(
        json_of(&body)["errors"][0]["code"],
        "PAGINATION_NUMBER_INVALID"
    );
}

#[test]
fn push_and_delete_are_refused_and_accept_is_honoured() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    let s = Served::signed(dir, &bundle, &public);
    for (method, path) in [
        ("POST", "/v2/layout/blobs/uploads/"),
        ("PUT", "/v2/layout/manifests/app-1"),
        ("DELETE", "/v2/layout/manifests/app-1"),
        ("PATCH", "/v2/layout/blobs/uploads/x"),
    ] {
        let (status, _, body) = curl(&["-X", method, "--data", "x", &s.url(path)]);
        assert_eq!(status, 405, "{method} {path}");
        insta::allow_duplicates! {
            insta::assert_snapshot!(
                json_of(&body)["errors"][0].to_string().replace(method, "METHOD"),
                @r#"{"code":"UNSUPPORTED","detail":null,"message":"METHOD is not supported: airlock serve is read-only (import the bundle into a registry to push to it)"}"#
            );
        }
    }
    // skopeo cannot push either.
    let err = skopeo(
        &[
            "copy",
            "--dest-tls-verify=false",
            &image("base"),
            &format!("docker://{}/layout:pushed", s.host()),
        ],
        dir,
    );
    assert!(!err.out.status.success());
    // The multi image is an OCI index: a client that takes only Docker
    // manifests gets the registry's error, not a conversion.
    let url = s.url("/v2/layout/manifests/multi");
    let (status, _, body) = curl(&[
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
        &url,
    ]);
    assert_eq!(status, 404);
    assert_eq!(json_of(&body)["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let (status, headers, body) = curl(&[
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json",
        &url,
    ]);
    assert_eq!(status, 200);
    let raw = skopeo(&["inspect", "--raw", &image("multi")], dir)
        .ok()
        .out
        .stdout;
    assert!(body == raw, "byte for byte");
    assert!(headers.contains("content-type: application/vnd.oci.image.index.v1+json"));
    assert!(headers.contains(&format!(
        "docker-content-digest: sha256:{}",
        sha256_hex(&raw)
    )));
    // By digest, HEAD too.
    let (status, headers, _) = curl(&[
        "-I",
        &s.url(&format!("/v2/layout/manifests/sha256:{}", sha256_hex(&raw))),
    ]);
    assert_eq!(status, 200);
    assert!(headers.contains(&format!("content-length: {}", raw.len())));
    let (status, headers, _) = curl(&[&s.url("/v2/")]);
    assert_eq!(status, 200);
    assert!(headers.contains("docker-distribution-api-version: registry/2.0"));
}

#[test]
fn a_bad_signature_or_a_missing_key_refuses_to_start() {
    let t = scratch();
    let dir = t.path();
    let (bundle, _) = pack_layout(dir);
    let (_, other) = keys(dir, "other");
    let err = airlock(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--pub",
            other.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
        dir,
    )
    .fails();
    assert!(err.contains("b.airlock"), "{err}");
    assert!(err.to_lowercase().contains("sign"), "{err}");
    // Neither --pub nor --allow-unsigned: a usage error.
    airlock(&["serve", bundle.to_str().unwrap()], dir).fails_usage();
}

#[test]
fn htpasswd_and_tls() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    let certs = Certs::make(&dir.join("pki"));
    let users = dir.join("users");
    run(
        "htpasswd",
        &[
            "-B",
            "-b",
            "-c",
            users.to_str().unwrap(),
            "ann",
            "pw-of-ann",
        ],
        dir,
    )
    .ok();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
            "--htpasswd",
            users.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ],
    );
    let url = format!("https://127.0.0.1:{}/v2/layout/manifests/app-1", s.port);
    let ca = certs.ca.to_str().unwrap();
    let (status, headers, _) = curl(&["--cacert", ca, &url]);
    assert_eq!(status, 401);
    assert!(headers.contains("www-authenticate: basic"), "{headers}");
    let (status, _, _) = curl(&["--cacert", ca, "-u", "ann:wrong", &url]);
    assert_eq!(status, 401);
    let (status, _, body) = curl(&["--cacert", ca, "-u", "ann:pw-of-ann", &url]);
    assert_eq!(status, 200);
    let raw = skopeo(&["inspect", "--raw", &image("app-1")], dir)
        .ok()
        .out
        .stdout;
    assert!(body == raw);
    // Plain HTTP to the TLS port gets nothing.
    let (status, _, _) = curl(&[&s.url("/v2/")]);
    assert_ne!(status, 200);
    // skopeo with the CA and the credentials copies the image whole.
    let certdir = dir.join("certdir");
    std::fs::create_dir_all(&certdir).unwrap();
    std::fs::copy(&certs.ca, certdir.join("ca.crt")).unwrap();
    let out = dir.join("copied");
    skopeo(
        &[
            "copy",
            "--src-cert-dir",
            certdir.to_str().unwrap(),
            "--src-creds",
            "ann:pw-of-ann",
            &format!("docker://{}/layout:multi", s.host()),
            &format!("oci:{}:x", out.display()),
            "--all",
        ],
        dir,
    )
    .ok();
    assert_eq!(
        skopeo_digest(&format!("oci:{}:x", out.display()), dir),
        skopeo_digest(&image("multi"), dir)
    );
}

#[test]
fn referrers_api_lists_an_sbom_and_the_signature_tag_is_served() {
    use airlock::model::Digest;
    let t = scratch();
    let dir = t.path();
    let lay = dir.join("lay");
    copy_dir(&layout(), &lay);
    let write = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(lay.join(d.layout_path()), bytes).unwrap();
        d
    };
    let subject_raw = skopeo(
        &["inspect", "--raw", &format!("oci:{}:app-1", lay.display())],
        dir,
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
        "annotations": {"org.example.kind": "sbom"},
    }))
    .unwrap();
    let artifact_digest = write(&artifact);
    // The SBOM under a tag of its own, and a cosign-style signature tag.
    let index_path = lay.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": artifact_digest, "size": artifact.len(),
            "annotations": {"org.opencontainers.image.ref.name": "app-1-sbom"},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let sig_tag = format!("sha256-{}.sig", subject.hex());
    skopeo(
        &[
            "copy",
            &format!("oci:{}:base", lay.display()),
            &format!("oci:{}:{sig_tag}", lay.display()),
        ],
        dir,
    )
    .ok();
    let (bundle, public) = packed(
        dir,
        &[
            &format!("oci:{}:app-1", lay.display()),
            &format!("oci:{}:app-1-sbom", lay.display()),
            &format!("oci:{}:{sig_tag}", lay.display()),
        ],
    );
    let s = Served::signed(dir, &bundle, &public);
    let url = s.url(&format!("/v2/lay/referrers/{subject}"));
    let (status, headers, body) = curl(&[&url]);
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: application/vnd.oci.image.index.v1+json"));
    let v = json_of(&body);
    assert_eq!(
        v["manifests"],
        serde_json::json!([{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": artifact_digest, "size": artifact.len(),
            "artifactType": "application/spdx+json",
            "annotations": {"org.example.kind": "sbom"},
        }])
    );
    let (_, headers, body) = curl(&[&format!("{url}?artifactType=application/spdx%2Bjson")]);
    assert_eq!(json_of(&body)["manifests"].as_array().unwrap().len(), 1);
    assert!(headers.contains("oci-filters-applied: artifacttype"));
    let (_, _, body) = curl(&[&format!("{url}?artifactType=application/other")]);
    assert_eq!(json_of(&body)["manifests"], serde_json::json!([]));
    // The signature is an ordinary tag, served as packed.
    let got = served_digest(&format!("docker://{}/lay:{sig_tag}", s.host()), dir);
    assert_eq!(
        got,
        skopeo_digest(&format!("oci:{}:{sig_tag}", lay.display()), dir)
    );
    // The SBOM's own layer, by digest.
    let (status, _, body) = curl(&[&s.url(&format!("/v2/lay/blobs/{sbom_blob}"))]);
    assert_eq!(status, 200);
    assert_eq!(body, sbom);
}

/// Packs the layout and the large image into 1 MB volumes.
/// `skopeo copy` (no retries) of `large:large` from `s` gives the
/// fixture's digest: the pull went through whole.
fn assert_large_pulls_whole(s: &Served, dir: &Path) {
    let out = dir.join("large-copy");
    skopeo(
        &[
            "copy",
            "--retry-times",
            "0",
            "--src-tls-verify=false",
            &format!("docker://{}/large:large", s.host()),
            &format!("oci:{}:x", out.display()),
        ],
        dir,
    )
    .ok();
    assert_eq!(
        skopeo_digest(&format!("oci:{}:x", out.display()), dir),
        skopeo_digest(
            &format!("oci:{}:large", fixtures().join("large").display()),
            dir
        )
    );
}

pub(crate) fn pack_split(dir: &Path, extra: &[&str]) -> PathBuf {
    let (key, public) = keys(dir, "signer");
    let mut args = vec![
        "pack",
        "-q",
        "-o",
        "b.airlock",
        "--key",
        key.to_str().unwrap(),
        "--split",
        "1M",
    ];
    args.extend_from_slice(extra);
    let layout = format!("oci:{}", layout().display());
    let large = format!("oci:{}", fixtures().join("large").display());
    args.extend([layout.as_str(), large.as_str()]);
    airlock(&args, dir).ok();
    public
}

#[test]
fn a_missing_volume_is_rebuilt_from_parity_and_everything_serves() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &["--parity", "30"]);
    std::fs::remove_file(dir.join("b.airlock.002")).unwrap();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            dir.join("b.airlock.001").to_str().unwrap(),
        ],
    );
    let h = s.host();
    for (repo, name) in [("layout", "multi"), ("layout", "app-2"), ("large", "large")] {
        let out = dir.join(format!("copy-{name}"));
        skopeo(
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &format!("docker://{h}/{repo}:{name}"),
                &format!("oci:{}:x", out.display()),
            ],
            dir,
        )
        .ok();
        let src = if repo == "large" {
            format!("oci:{}:large", fixtures().join("large").display())
        } else {
            image(name)
        };
        assert_eq!(
            skopeo_digest(&format!("oci:{}:x", out.display()), dir),
            skopeo_digest(&src, dir)
        );
    }
    let log = s.log();
    assert!(log.contains("volume 2"), "the repair is named: {log}");
}

/// `skopeo copy` of `large:large`, with no retries, fails.
pub(crate) fn assert_large_pull_fails(s: &Served, dir: &Path) {
    let out = dir.join("large-copy");
    let failed = skopeo(
        &[
            "copy",
            "--retry-times",
            "0",
            "--src-tls-verify=false",
            &format!("docker://{}/large:large", s.host()),
            &format!("oci:{}:x", out.display()),
        ],
        dir,
    );
    assert!(!failed.out.status.success(), "{}", failed.stderr());
}

#[test]
fn a_volume_damaged_beyond_parity_fails_only_its_blobs() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    // Volume 4 lies inside the large image's 6 MiB layer: damage its middle.
    let vol = dir.join("b.airlock.004");
    let mut bytes = std::fs::read(&vol).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid - 20_000..mid + 20_000] {
        *b ^= 0x5a;
    }
    std::fs::write(&vol, &bytes).unwrap();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            dir.join("b.airlock.001").to_str().unwrap(),
        ],
    );
    let h = s.host();
    // The damaged layer: the pull fails, and never completes with bad bytes.
    assert_large_pull_fails(&s, dir);
    // The rest keeps serving.
    for name in ["app-1", "multi"] {
        let out = dir.join(format!("copy-{name}"));
        skopeo(
            &[
                "copy",
                "--all",
                "--src-tls-verify=false",
                &format!("docker://{h}/layout:{name}"),
                &format!("oci:{}:x", out.display()),
            ],
            dir,
        )
        .ok();
        assert_eq!(
            skopeo_digest(&format!("oci:{}:x", out.display()), dir),
            skopeo_digest(&image(name), dir)
        );
    }
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("the response was cut") && l.contains("volume 4 (")),
        "the log names the volume: {log}"
    );
}

#[test]
fn many_connections_and_stalled_clients_do_not_stall_the_others() {
    use std::io::Write;
    let t = scratch();
    let dir = t.path();
    let large = fixtures().join("large");
    let (bundle, public) = packed(dir, &[&format!("oci:{}", large.display())]);
    let s = Served::signed(dir, &bundle, &public);
    let (_, _, body) = curl(&[&s.url("/v2/large/manifests/large")]);
    let layer = json_of(&body)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v2/large/blobs/{layer}");
    // 8 clients ask for the 6 MiB layer and never read a byte; 72 more
    // send half a request and stop (a debug build hashes too slowly for
    // 80 blob streams on two cores to say anything about stalls).
    let stalled: Vec<std::net::TcpStream> = (0..80)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            if i < 8 {
                write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            } else {
                write!(c, "GET /v2/ HTTP/1.1\r\nHost:").unwrap();
            }
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Others still get whole answers. A stall is an answer that never
    // ends: curl's limit is far above what three 6 MiB pulls take on any
    // machine, so it is not a speed test (scripts/bench-serve.sh is).
    let started = Instant::now();
    let want = std::fs::read(large.join("blobs/sha256").join(&layer["sha256:".len()..])).unwrap();
    for _ in 0..3 {
        let (status, _, body) = curl(&["--max-time", "60", &s.url(&path)]);
        assert_eq!(status, 200);
        assert!(
            body == want,
            "{} of {} bytes after {:?}\n{}",
            body.len(),
            want.len(),
            started.elapsed(),
            s.log()
        );
    }
    assert_eq!(stalled.len(), 80);
    drop(stalled);
    let (status, log) = s.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn bundles_given_together_are_one_registry_and_a_later_tag_wins() {
    let t = scratch();
    let dir = t.path();
    let (key, public) = keys(dir, "signer");
    // Two layouts with the same repository name: the second moves app-1.
    let first = dir.join("one/layout");
    let second = dir.join("two/layout");
    std::fs::create_dir_all(dir.join("one")).unwrap();
    std::fs::create_dir_all(dir.join("two")).unwrap();
    copy_dir(&layout(), &first);
    skopeo(
        &[
            "copy",
            &image("app-2"),
            &format!("oci:{}:app-1", second.display()),
        ],
        dir,
    )
    .ok();
    for (out, src) in [("one.airlock", &first), ("two.airlock", &second)] {
        airlock(
            &[
                "pack",
                "-q",
                "-o",
                out,
                "--key",
                key.to_str().unwrap(),
                &format!("oci:{}", src.display()),
            ],
            dir,
        )
        .ok();
    }
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "one.airlock",
            "two.airlock",
        ],
    );
    let h = s.host();
    assert_eq!(
        served_digest(&format!("docker://{h}/layout:app-1"), dir),
        skopeo_digest(&image("app-2"), dir),
        "the later bundle's tag wins"
    );
    assert_eq!(
        served_digest(&format!("docker://{h}/layout:base"), dir),
        skopeo_digest(&image("base"), dir),
        "the first bundle's other tags stay"
    );
    let out = dir.join("copied");
    skopeo(
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{h}/layout:app-1"),
            &format!("oci:{}:x", out.display()),
        ],
        dir,
    )
    .ok();
    let log = s.log();
    assert!(log.contains("from 2 bundle(s)"), "{log}");
}

#[test]
fn damage_within_parity_met_while_serving_is_repaired_and_the_pull_goes_on() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &["--parity", "30"]);
    // The same damage as above, now within what the parity covers: serve
    // starts without noticing (no full pass), meets it on the first read.
    let vol = dir.join("b.airlock.004");
    let mut bytes = std::fs::read(&vol).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid - 20_000..mid + 20_000] {
        *b ^= 0x5a;
    }
    std::fs::write(&vol, &bytes).unwrap();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            dir.join("b.airlock.001").to_str().unwrap(),
        ],
    );
    assert_large_pulls_whole(&s, dir);
    let log = s.log();
    assert!(log.contains("repaired from parity, going on"), "{log}");
    assert!(log.contains("volume 4 ("), "{log}");
    assert!(!log.contains("the response was cut"), "{log}");
}

#[test]
fn names_follow_import_map_and_keep_registry() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    let catalog = |extra: &[&str]| {
        let mut args = vec!["--pub", public.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(bundle.to_str().unwrap());
        let s = Served::start(dir, &args);
        let (_, _, body) = curl(&[&s.url("/v2/_catalog")]);
        json_of(&body)["repositories"].clone()
    };
    assert_eq!(catalog(&[]), serde_json::json!(["layout"]));
    assert_eq!(
        catalog(&["--keep-registry", "--prefix", "m"]),
        serde_json::json!(["m/localhost/layout"])
    );
    assert_eq!(
        catalog(&["--map", "localhost/layout=apps/x", "--prefix", "m"]),
        serde_json::json!(["m/apps/x"])
    );
    let err = airlock(
        &[
            "serve",
            "--allow-unsigned",
            "--map",
            "nope",
            bundle.to_str().unwrap(),
        ],
        dir,
    )
    .fails_usage();
    assert!(err.contains("--map \"nope\" is not SRC=DST"), "{err}");
}

#[test]
fn a_blob_damaged_in_one_bundle_is_served_from_another_that_holds_it() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    let vol = dir.join("b.airlock.004");
    let mut bytes = std::fs::read(&vol).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid - 20_000..mid + 20_000] {
        *b ^= 0x5a;
    }
    std::fs::write(&vol, &bytes).unwrap();
    // The same large image, whole, in a second bundle signed by the same key.
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "whole.airlock",
            "--key",
            "signer",
            &format!("oci:{}", fixtures().join("large").display()),
        ],
        dir,
    )
    .ok();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "b.airlock.001",
            "whole.airlock",
        ],
    );
    assert_large_pulls_whole(&s, dir);
    let log = s.log();
    assert!(log.contains("going on from whole.airlock"), "{log}");
}

/// When every slot holds a response being sent (clients that never read
/// a large blob), a new client is answered 503; once they go, it is served.
#[test]
fn connections_past_the_limit_get_503_and_the_others_go_on() {
    use std::io::{Read, Write};
    let t = scratch();
    let dir = t.path();
    let large = fixtures().join("large");
    let (bundle, public) = packed(dir, &[&format!("oci:{}", large.display())]);
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "--max-connections",
            "2",
            bundle.to_str().unwrap(),
        ],
    );
    // Served::start's own probe has come and gone; let its thread end.
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, body) = curl(&[&s.url("/v2/large/manifests/large")]);
    let layer = json_of(&body)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Each proves it holds a slot by its answer's first line: the thread of
    // the curl before may not have counted itself down yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let busy: Vec<std::net::TcpStream> = (0..2)
        .map(|_| loop {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            write!(c, "GET /v2/large/blobs/{layer} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            if &head == b"HTTP/1.1 200" {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "no slot in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        })
        .collect();
    // Longer than a waiting connection is kept from a new client: these
    // are being answered, so they keep their slots anyway.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _, body) = curl(&[&s.url("/v2/")]);
    assert_eq!(status, 503);
    assert_eq!(json_of(&body)["errors"][0]["code"], "UNAVAILABLE");
    drop(busy);
    // The two threads see their clients gone at their next write; a slow
    // machine may take a moment, so ask until a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = curl(&[&s.url("/v2/")]);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(std::time::Instant::now() < deadline, "still 503 after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Idle keep-alive connections and requests sent too slowly (slowloris)
/// used to hold every slot until their 120 s timeout, and everyone else
/// was answered 503. Now a new client takes the slot of the one that has
/// waited longest, which is closed.
#[test]
fn idle_and_slow_connections_give_their_slots_to_new_clients() {
    use std::io::{Read, Write};
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "--max-connections",
            "3",
            bundle.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    // One idle after a whole answer, two halfway through sending a request.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(idle, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Its thread goes back to waiting just after answering: let it, so it
    // has waited longest, with room for a slow machine.
    std::thread::sleep(Duration::from_millis(800));
    let slow: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            write!(c, "GET /v2/ HTTP/1.1\r\nHost:").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        let (status, _, _) = curl(&[&s.url("/v2/")]);
        assert_eq!(status, 200, "{}", s.log());
    }
    // The idle one, waiting longest, was closed for the first of them.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(closed.is_ok(), "not closed: {closed:?}");
    assert_eq!(slow.len(), 2);
}

/// Stored frames are read in place, after their zstd checksum: a layer
/// whose bytes were changed in the bundle *and* whose frame checksum was
/// forged to match passes that check, so only the blob's digest can catch
/// it. Its pull fails, its response never arrives whole, and a range that
/// ends before the change is refused too (the whole blob is checked).
#[test]
fn a_stored_frame_with_a_forged_checksum_is_still_caught_by_the_blob_digest() {
    let t = scratch();
    let dir = t.path();
    let large = fixtures().join("large");
    let (bundle, public) = packed(dir, &[&format!("oci:{}", large.display())]);
    let (layer_len, layer_path) = largest_blob(&large);
    let layer = std::fs::read(&layer_path).unwrap();
    let hex = layer_path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let mut bytes = std::fs::read(&bundle).unwrap();
    // A sample from the layer's middle lies verbatim in a stored frame.
    let mid = layer.len() / 2;
    let sample = &layer[mid..mid + 64];
    let at = bytes
        .windows(64)
        .position(|w| w == sample)
        .expect("the layer is stored, not compressed");
    // Its frame: the last zstd frame magic before it, a header declaring a
    // 4-byte content size and a checksum (with or without a window byte).
    let start = bytes[..at]
        .windows(4)
        .rposition(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .expect("a frame header");
    let descriptor = bytes[start + 4];
    assert_eq!(descriptor & 0xc4, 0x84, "4-byte content size, checksum");
    let size_at = start + 5 + usize::from(descriptor & 0x20 == 0);
    let content = u32::from_le_bytes(bytes[size_at..size_at + 4].try_into().unwrap()) as usize;
    // Change one byte, then forge the checksum over the frame's blocks.
    bytes[at + 10] ^= 0x01;
    let mut pos = size_at + 4;
    let mut xxh = xxhash_rust::xxh64::Xxh64::new(0);
    let mut seen = 0;
    loop {
        let h = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], 0]);
        let (last, kind, size) = (h & 1 == 1, (h >> 1) & 3, (h >> 3) as usize);
        assert_eq!(kind, 0, "a raw block");
        xxh.update(&bytes[pos + 3..pos + 3 + size]);
        seen += size;
        pos += 3 + size;
        if last {
            break;
        }
    }
    assert_eq!(seen, content);
    let forged = (xxh.digest() as u32).to_le_bytes();
    bytes[pos..pos + 4].copy_from_slice(&forged);
    std::fs::write(&bundle, &bytes).unwrap();

    let s = Served::signed(dir, &bundle, &public);
    let url = s.url(&format!("/v2/large/blobs/sha256:{hex}"));
    let (_, _, body) = curl(&[&url]);
    assert!(
        (body.len() as u64) < layer_len,
        "{} of {layer_len} bytes arrived",
        body.len()
    );
    let (_, _, ranged) = curl(&["-r", "0-99", &url]);
    assert!(
        ranged.len() < 100,
        "a range of a damaged blob arrived whole"
    );
    assert_large_pull_fails(&s, dir);
    let log = s.log();
    assert!(log.contains("does not match its digest"), "{log}");
}

/// A request line is the client's text: control characters in it (an
/// escape sequence here) reached the access log raw, where they could
/// recolour a terminal or fake a line. They are written as escapes.
#[test]
fn control_characters_in_a_request_reach_the_access_log_escaped() {
    use std::io::{Read, Write};
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = pack_layout(dir);
    let s = Served::signed(dir, &bundle, &public);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        b"GET /v2/x\x1b[2Kfaked/manifests/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 "), "answered");
    let (_, log) = s.stop();
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains("x\\u{1b}[2Kfaked"), "{log}");
}
