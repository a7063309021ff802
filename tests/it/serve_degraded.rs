//! `airlock serve` of a split bundle with damage beyond its parity (issue
//! #14): a missing or truncated volume takes away only the blobs it holds,
//! named at start and when a pull meets them; the rest is served. Losing
//! the seek table (the last volume) still refuses to start, and `verify`
//! still refuses the bundle: the degraded reading is serve's alone.
//!
//! The bundle is `pack_split`'s: the fixture layout and the large image in
//! 1 MB volumes, where volumes 3 to 6 lie inside the large image's 6 MiB
//! layer, so they take away `large:large` and nothing of the layout.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{assert_large_pull_fails, image, pack_split, Served};
use crate::util::*;

const LARGE: &str = "localhost/large:large";

fn volume(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("b.airlock.{n:03}"))
}

fn serve(dir: &Path, public: &Path) -> Served {
    Served::start(
        dir,
        &[
            "--pub",
            public.to_str().unwrap(),
            volume(dir, 1).to_str().unwrap(),
        ],
    )
}

/// The start-up notice about volume `n`: it names the volume, what became
/// of it, the large image and no image of the layout.
fn assert_start_names(log: &str, n: u32, state: &str) {
    let prefix = format!("volume {n} (");
    let line = log
        .lines()
        .find(|l| l.contains(&prefix) && l.contains("the rest is served"))
        .unwrap_or_else(|| panic!("no notice names volume {n}:\n{log}"));
    assert!(line.contains(state), "{state}: {line}");
    assert!(line.contains(&format!("b.airlock.{n:03})")), "{line}");
    assert!(
        line.contains("1 blob of image localhost/large:large will fail"),
        "{line}"
    );
    assert!(!line.contains("localhost/layout"), "{line}");
}

/// The layout's images pull whole with their source digests.
fn assert_the_rest_serves(s: &Served, dir: &Path) {
    for name in ["app-1", "multi", "arm-1"] {
        let out = dir.join(format!("copy-{name}"));
        skopeo(
            &[
                "copy",
                "--all",
                "--retry-times",
                "0",
                "--src-tls-verify=false",
                &format!("docker://{}/layout:{name}", s.host()),
                &format!("oci:{}:x", out.display()),
            ],
            dir,
        )
        .ok();
        assert_eq!(
            skopeo_digest(&format!("oci:{}:x", out.display()), dir),
            skopeo_digest(&image(name), dir),
            "{name}"
        );
    }
}

/// The large image's pull fails (no retries), and the log says which
/// volume cut it and how.
fn assert_large_fails_naming(s: &Served, dir: &Path, n: u32, state: &str) {
    assert_large_pull_fails(s, dir);
    let log = s.log();
    let volume = format!("volume {n} (");
    assert!(
        log.lines().any(|l| l.contains("the response was cut")
            && l.contains("cannot be read")
            && l.contains(&volume)
            && l.contains(state)),
        "the failure names volume {n} as {state}:\n{log}"
    );
}

/// `verify` refuses the bundle as it always did, naming the volume.
fn assert_verify_refuses(dir: &Path, public: &Path, n: u32) {
    let err = airlock(
        &[
            "verify",
            volume(dir, 1).to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
        ],
        dir,
    )
    .fails();
    assert!(err.contains(&format!("volume {n}")), "{err}");
    assert!(err.contains(LARGE), "what it takes away: {err}");
}

#[test]
fn serve_degraded_a_missing_volume_without_parity_fails_only_its_image() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    std::fs::remove_file(volume(dir, 4)).unwrap();
    let s = serve(dir, &public);
    assert_start_names(
        &s.log(),
        4,
        "is missing and there is no parity to rebuild it",
    );
    assert_the_rest_serves(&s, dir);
    assert_large_fails_naming(&s, dir, 4, "is missing");
    // Still serving after the failure.
    assert_the_rest_serves(&s, dir);
}

#[test]
fn serve_degraded_two_missing_volumes_beyond_the_parity_fail_only_their_image() {
    let t = scratch();
    let dir = t.path();
    // About 6 % parity: two of seven volumes are well beyond it.
    let public = pack_split(dir, &["--parity", "5"]);
    std::fs::remove_file(volume(dir, 4)).unwrap();
    std::fs::remove_file(volume(dir, 5)).unwrap();
    let s = serve(dir, &public);
    let log = s.log();
    assert_start_names(&log, 4, "is missing and parity cannot rebuild it");
    assert_start_names(&log, 5, "is missing and parity cannot rebuild it");
    // Only the volumes that lost bytes are named, not their neighbours
    // whose parity shards straddle into them.
    for n in [3, 6] {
        assert!(
            !log.lines()
                .any(|l| l.contains(&format!("volume {n} (")) && l.contains("the rest is served")),
            "volume {n} is whole:\n{log}"
        );
    }
    assert_the_rest_serves(&s, dir);
    assert_large_fails_naming(&s, dir, 4, "is missing");
    assert_verify_refuses(dir, &public, 4);
}

#[test]
fn serve_degraded_a_truncated_volume_beyond_the_parity_fails_only_its_image() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &["--parity", "5"]);
    // Keep its label and a tenth of it: 0.9 MB of 6.5 MB is lost, more
    // than the parity covers.
    let vol = volume(dir, 4);
    let len = std::fs::metadata(&vol).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&vol)
        .unwrap()
        .set_len(len / 10)
        .unwrap();
    let s = serve(dir, &public);
    assert_start_names(
        &s.log(),
        4,
        &format!(
            "is truncated (it has {} of its {len} bytes) and parity cannot rebuild it",
            len / 10
        ),
    );
    assert_the_rest_serves(&s, dir);
    assert_large_fails_naming(&s, dir, 4, "is truncated");
}

#[test]
fn serve_degraded_refuses_to_start_without_the_last_volume_and_its_seek_table() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    let last = (1..)
        .take_while(|&n| volume(dir, n).exists())
        .last()
        .unwrap();
    assert!(last >= 5, "the bundle has {last} volumes");
    std::fs::remove_file(volume(dir, last)).unwrap();
    let port = crate::harness::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--pub", public.to_str().unwrap()])
        .arg(volume(dir, 1))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("serve started without its seek table");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("volume {last} of {last} (")) && err.contains("is missing"),
        "{err}"
    );
    assert!(err.contains("hint:"), "says what to do: {err}");
}

#[test]
fn serve_degraded_does_not_change_verify() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    std::fs::remove_file(volume(dir, 4)).unwrap();
    assert_verify_refuses(dir, &public, 4);
    // Nor export, which opens as verify does.
    let err = airlock(
        &[
            "export",
            volume(dir, 1).to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
            "--to",
            &format!("oci:{}", dir.join("out").display()),
        ],
        dir,
    )
    .fails();
    assert!(err.contains("volume 4"), "{err}");
}
