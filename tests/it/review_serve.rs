//! Review of `airlock serve` (#14) as a pulling cluster and as an attacker:
//! each test here failed on the code before its fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::serve::{image, Served};
use crate::util::*;

fn base_and_delta(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Vec<(&'static str, String)>) {
    let (key, public) = keys(dir, "signer");
    let (one, two) = (dir.join("one/layout"), dir.join("two/layout"));
    std::fs::create_dir_all(dir.join("one")).unwrap();
    std::fs::create_dir_all(dir.join("two")).unwrap();
    for (tag, from) in [("base", "base"), ("app-1", "app-1")] {
        skopeo(
            &[
                "copy",
                "--all",
                &image(from),
                &format!("oci:{}:{tag}", one.display()),
            ],
            dir,
        )
        .ok();
    }
    let delta_tags = [
        ("base", "base"),
        ("app-1", "app-2"),
        ("app-2", "app-2"),
        ("multi", "multi"),
    ];
    for (tag, from) in delta_tags {
        skopeo(
            &[
                "copy",
                "--all",
                &image(from),
                &format!("oci:{}:{tag}", two.display()),
            ],
            dir,
        )
        .ok();
    }
    let (base, delta) = (dir.join("base.airlock"), dir.join("delta.airlock"));
    let k = key.to_str().unwrap();
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            base.to_str().unwrap(),
            "--key",
            k,
            &format!("oci:{}", one.display()),
        ],
        dir,
    )
    .ok();
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            delta.to_str().unwrap(),
            "--key",
            k,
            "--pub",
            public.to_str().unwrap(),
            "--against",
            base.to_str().unwrap(),
            &format!("oci:{}", two.display()),
        ],
        dir,
    )
    .ok();
    let tags = delta_tags
        .iter()
        .map(|&(tag, from)| (tag, skopeo_digest(&image(from), dir)))
        .collect();
    (base, delta, public, tags)
}

/// A base and its delta served together, in either order: `skopeo copy
/// --all` of every image of the delta gives the source's digests. Given
/// delta first, the base's older `app-1` used to win (a later bundle's
/// tags won, whatever the bundles were to each other).
#[test]
fn a_base_and_its_delta_serve_the_delta_images_in_either_order() {
    let t = scratch();
    let dir = t.path();
    let (base, delta, public, tags) = base_and_delta(dir);
    let orders = [[&base, &delta], [&delta, &base]];
    for (i, order) in orders.iter().enumerate() {
        let s = Served::start(
            dir,
            &[
                "--pub",
                public.to_str().unwrap(),
                order[0].to_str().unwrap(),
                order[1].to_str().unwrap(),
            ],
        );
        for (tag, want) in &tags {
            let out = dir.join(format!("copied-{i}-{tag}"));
            skopeo(
                &[
                    "copy",
                    "--all",
                    "--src-tls-verify=false",
                    &format!("docker://{}/layout:{tag}", s.host()),
                    &format!("oci:{}:{tag}", out.display()),
                ],
                dir,
            )
            .ok();
            assert_eq!(
                &skopeo_digest(&format!("oci:{}:{tag}", out.display()), dir),
                want,
                "layout:{tag} with the bundles given as {:?}:\n{}",
                order,
                s.log()
            );
        }
    }
}

/// Two `Content-Length` headers that disagree (RFC 9112 §6.3: an error):
/// serve read the first (0), kept the connection open and answered the
/// body as a second request, a request smuggled past whatever in front
/// of serve looked at the other length.
#[test]
fn conflicting_content_lengths_do_not_smuggle_a_second_request() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&format!("oci:{}", layout().display())]);
    let s = Served::signed(dir, &bundle, &public);
    let smuggled = b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut req = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    req.extend_from_slice(smuggled);
    let answer = s.raw(&req);
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(
        !answer.contains("repositories"),
        "the body was answered as a request:\n{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    // The same request without the conflict is still answered on one
    // connection, twice (keep-alive is not broken for honest clients).
    let mut honest = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    honest.extend_from_slice(b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = s.raw(&honest);
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
    assert!(answer.contains("\"repositories\""), "{answer}");
}

/// A crafted bundle (signed by a trusted key, or served with
/// `--allow-unsigned`) whose image record and `index.json` give a media
/// type with a CR LF in it: serve wrote it into `Content-Type` as is, so
/// the bundle could add any header (here a `Set-Cookie`) to the answer.
#[test]
fn a_media_type_with_a_line_break_cannot_add_a_header() {
    use crate::hostile::craft::{entries, write, Parts};
    let t = scratch();
    let dir = t.path();
    let (bundle, _) = packed(dir, &[&image("base")]);
    let mut p = Parts::of(&bundle);
    let evil = "application/vnd.oci.image.manifest.v1+json\r\nSet-Cookie: evil=1";
    p.manifest["images"][0]["mediaType"] = evil.into();
    let at = p
        .members
        .iter()
        .position(|(n, _)| n == "index.json")
        .unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&p.members[at].1).unwrap();
    index["manifests"][0]["mediaType"] = evil.into();
    let raw = serde_json::to_vec(&index).unwrap();
    p.manifest["index"]["digest"] = format!("sha256:{}", sha256_hex(&raw)).into();
    p.manifest["index"]["size"] = raw.len().into();
    p.members[at].1 = raw;
    p.unsign();
    let crafted = dir.join("crafted.airlock");
    std::fs::write(&crafted, write(&entries(&p.frames()))).unwrap();
    let s = Served::start(dir, &["--allow-unsigned", crafted.to_str().unwrap()]);
    let answer =
        s.raw(b"GET /v2/layout/manifests/base HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        !answer.to_lowercase().contains("\r\nset-cookie"),
        "the bundle added a header:\n{answer}\n{}",
        s.log()
    );
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    let log = s.log();
    assert!(
        log.contains("is not served") && log.contains("not one an HTTP header can carry"),
        "{log}"
    );
}

/// A repository whose name has a `manifests` component (legal in the
/// distribution spec, here made with `--prefix`): its blob paths
/// `/v2/a/manifests/layout/blobs/…` were routed as a manifest of `a`, so
/// every pull of it failed.
#[test]
fn a_repository_named_with_manifests_or_blobs_components_is_pulled() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&image("base")]);
    for prefix in ["a/manifests", "a/blobs", "a/referrers"] {
        let s = Served::start(
            dir,
            &[
                "--pub",
                public.to_str().unwrap(),
                "--prefix",
                prefix,
                bundle.to_str().unwrap(),
            ],
        );
        let out = dir.join(prefix.replace('/', "-"));
        skopeo(
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{}/{prefix}/layout:base", s.host()),
                &format!("oci:{}:base", out.display()),
            ],
            dir,
        )
        .ok();
        assert_eq!(
            skopeo_digest(&format!("oci:{}:base", out.display()), dir),
            skopeo_digest(&image("base"), dir),
            "{prefix}"
        );
    }
}

/// Damage within the parity met by several pulls at once: the first one
/// repairs the bundle and goes on, but the others, which met the damage
/// while the repair ran, were told "already tried" and cut, although the
/// repaired bundle was there for them too.
#[test]
fn concurrent_pulls_meeting_repairable_damage_all_complete() {
    let t = scratch();
    let dir = t.path();
    let (key, public) = keys(dir, "signer");
    let large = fixtures().join("large");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            "--key",
            key.to_str().unwrap(),
            "--split",
            "1M",
            "--parity",
            "30",
            &format!("oci:{}", large.display()),
        ],
        dir,
    )
    .ok();
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
    // The largest blob of the layout, as umoci wrote it.
    let (_, path) = largest_blob(&large);
    let hex = path.file_name().unwrap().to_str().unwrap().to_string();
    let url = format!("http://{}/v2/large/blobs/sha256:{hex}", s.host());
    let pulls: Vec<_> = (0..8)
        .map(|i| {
            let out = dir.join(format!("pull-{i}"));
            let child = Command::new("curl")
                .args(["-s", "-f", "-o", out.to_str().unwrap(), &url])
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    assert_eq!(pulls.len(), 8);
    for (out, mut child) in pulls {
        let status = child.wait().unwrap();
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(
            status.success() && sha256_hex(&got) == hex,
            "{} ({} bytes, {status}):\n{}",
            out.display(),
            got.len(),
            s.log()
        );
    }
    assert!(s.log().contains("repaired from parity, going on"));
}

/// `Authorization: basic …` (the scheme is case-insensitive, RFC 9110
/// §11.1) was refused 401 with the right password; a wrong password or
/// another scheme still is.
#[test]
fn basic_auth_takes_the_scheme_in_any_case_and_nothing_else() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&image("base")]);
    run("htpasswd", &["-Bbc", "users", "alice", "s3cret"], dir).ok();
    let s = Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            "--htpasswd",
            "users",
            bundle.to_str().unwrap(),
        ],
    );
    let status = |auth: &str| {
        let answer = s.raw(
            format!(
                "GET /v2/_catalog HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        answer.lines().next().unwrap_or_default().to_string()
    };
    // base64("alice:s3cret") and base64("alice:wrong")
    assert_eq!(status("Basic YWxpY2U6czNjcmV0"), "HTTP/1.1 200 OK");
    assert_eq!(status("basic YWxpY2U6czNjcmV0"), "HTTP/1.1 200 OK");
    assert_eq!(status("BASIC YWxpY2U6czNjcmV0"), "HTTP/1.1 200 OK");
    assert_eq!(
        status("basic YWxpY2U6d3Jvbmc="),
        "HTTP/1.1 401 Unauthorized"
    );
    assert_eq!(
        status("Bearer YWxpY2U6czNjcmV0"),
        "HTTP/1.1 401 Unauthorized"
    );
}

/// Out of file descriptors (here `ulimit -n 40` and 60 connections held
/// open), `accept` fails at once and the listener stays readable: serve
/// spun on it, a core at 100% and hundreds of thousands of warnings a
/// second. Now it says so once, waits, and serves again once the
/// connections close.
#[test]
fn running_out_of_descriptors_neither_spins_nor_floods_the_log() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&image("base")]);
    let port = free_port();
    let log = dir.join("serve.log");
    let mut child = Command::new("bash")
        .args([
            "-c",
            "ulimit -n 40 && exec \"$0\" -v serve --listen \"$1\" --pub \"$2\" \"$3\"",
            env!("CARGO_BIN_EXE_airlock"),
            &format!("127.0.0.1:{port}"),
            public.to_str().unwrap(),
            bundle.to_str().unwrap(),
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = Vec::new();
    while held.is_empty() {
        assert!(Instant::now() < deadline, "serve did not start");
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while held.len() < 60 {
        held.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.matches("accept:").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings:\n{}",
        &text[..text.len().min(2000)]
    );
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

/// Out of threads (here `prlimit --nproc` for an unprivileged user): a
/// connection that cannot get a thread is dropped alone and counted down
/// (a thread that once panicked never counted itself down, and the
/// connections lost that way were refused 503 to everyone afterwards).
/// Blobs are read on the connection's own thread, so six stalled blob
/// responses need six threads, more than the limit leaves.
#[test]
fn running_out_of_threads_fails_only_the_connections_that_needed_one() {
    let t = scratch();
    let dir = t.path();
    let large = fixtures().join("large");
    let (bundle, public) = packed(dir, &[&format!("oci:{}", large.display())]);
    use std::os::unix::fs::PermissionsExt;
    for p in [dir, &bundle, &public] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let port = free_port();
    let log = dir.join("serve.log");
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["prlimit", "--nproc=5", env!("CARGO_BIN_EXE_airlock")])
        .args(["-v", "serve", "--max-connections", "6", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--pub", public.to_str().unwrap(), bundle.to_str().unwrap()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // the probe is gone
    let hex = largest_blob(&large).1.file_name().unwrap().to_owned();
    let get = format!(
        "GET /v2/large/blobs/sha256:{} HTTP/1.1\r\n\r\n",
        hex.to_str().unwrap()
    );
    // Six blob responses at once, none read: six connection threads wanted.
    let stalled: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(get.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    drop(stalled);
    std::thread::sleep(Duration::from_secs(1));
    // Every slot is free again: six connections, one after the other (the
    // thread limit allows fewer at once), are each answered.
    let answers: Vec<String> = (0..6)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut a = String::new();
            let _ = c.read_to_string(&mut a);
            a.lines().next().unwrap_or_default().to_string()
        })
        .collect();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("cannot start a thread"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(answers, vec!["HTTP/1.1 200 OK"; 6], "{text}");
}
