//! Small things users hit (#12): the exit status of every usage mistake,
//! transport typos, a closed stdout, platform normalisation, `repair`
//! without parity, foreign volumes, referrers in `inspect`, key mix-ups,
//! an empty password on stdin and `-v`. Messages that matter are checked
//! whole.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::*;
use crate::util::*;

/// Hides what changes between runs: ports, digests, dates, sizes, rates.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"127\.0\.0\.1:\d+", "[REG]"),
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"sha256-[0-9a-f]{64}", "sha256-[HEX]"),
        (r"sha256:[0-9a-f]{12}", "sha256:[SHORT]"),
        (r"created \S+", "created [DATE]"),
        (r"\d+(\.\d+)? (B|KiB|MiB)\b", "[SIZE]"),
        (r"volume (\d+) of \d+", "volume $1 of [N]"),
    ]
}

/// A one-file bundle of app-1 signed by a fresh key, in `dir`.
fn small_bundle(dir: &Path) -> (String, String) {
    let (bundle, public) = packed(dir, &[&format!("oci:{}:app-1", layout().display())]);
    (
        bundle.to_str().unwrap().to_string(),
        public.to_str().unwrap().to_string(),
    )
}

#[test]
fn every_usage_mistake_exits_2_and_others_exit_1() {
    let t = scratch();
    let dir = t.path();
    let (b, p) = small_bundle(dir);
    let src = format!("oci:{}:app-1", layout().display());
    let usage: Vec<Vec<&str>> = vec![
        // Found after parsing (exit 1 before #12).
        vec!["pack", "-o", "x", "--split", "100", &src],
        vec!["pack", "-o", "x", "--platform", "linux", &src],
        vec!["pack", "-o", "x", "-j", "0", &src],
        vec!["verify", &b, "--pub", &p, "-j", "0"],
        vec![
            "import",
            &b,
            "--pub",
            &p,
            "--to",
            "127.0.0.1:1",
            "--map",
            "nomap",
        ],
        vec!["import", &b, "--pub", &p, "--to", "127.0.0.1:1/UPPER case"],
        vec!["export", &b, "--pub", &p, "--to", "tarball:x"],
        vec!["pack", "-o", "x", "dokcer://host/a:1"],
        vec!["pack", "-o", "x", "--all-tags", "127.0.0.1:1/UPPER"],
        // Accepted before #12.
        vec!["import", &b, "--pub", &p, "--to", "127.0.0.1:1", "-j", "0"],
        vec![
            "import",
            &b,
            "--pub",
            &p,
            "--to",
            "127.0.0.1:1",
            "--chunk-size",
            "100",
        ],
        vec!["pack", "-o", "x", "--catalog", "127.0.0.1:1/ns"],
        // clap's own.
        vec!["pack", "--no-such-flag"],
        vec!["import", &b, "--pub", &p],
        vec!["frobnicate"],
    ];
    for args in &usage {
        airlock(args, dir).fails_usage();
    }
    assert!(!dir.join("x").exists());
    // The file system in the way is not a usage mistake.
    airlock(&["keygen", "-o", "signer"], dir).fails();
}

#[test]
fn usage_messages_say_what_to_pass() {
    let t = scratch();
    let dir = t.path();
    let (b, p) = small_bundle(dir);
    let src = format!("oci:{}:app-1", layout().display());
    let err = airlock(&["pack", "-o", "x", "--split", "100", &src], dir).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: --split 100: volumes must hold at least 1000000 bytes (1M)");
    let err = airlock(
        &[
            "import",
            &b,
            "--pub",
            &p,
            "--to",
            "127.0.0.1:1",
            "--chunk-size",
            "100",
        ],
        dir,
    )
    .fails_usage();
    insta::assert_snapshot!(err, @r#"
    error: invalid value '100' for '--chunk-size <SIZE>': "100" is less than the smallest chunk, 1M

    For more information, try '--help'.
    "#);
    let err = airlock(
        &["import", &b, "--pub", &p, "--to", "127.0.0.1:1", "-j", "0"],
        dir,
    )
    .fails_usage();
    insta::assert_snapshot!(err, @r"
    error: invalid value '0' for '--jobs <N>': must be at least 1

    For more information, try '--help'.
    ");
    let err = airlock(
        &["pack", "-o", "x", "--catalog", "reg.local:5000/team"],
        dir,
    )
    .fails_usage();
    insta::assert_snapshot!(err, @r#"
    error: invalid value 'reg.local:5000/team' for '--catalog <REGISTRY>': "reg.local:5000/team": a registry's catalog lists every repository of reg.local:5000; it cannot be limited to "team". Pass --catalog reg.local:5000, or --all-tags reg.local:5000/REPO for each repository under team

    For more information, try '--help'.
    "#);
}

#[test]
fn transport_typos_and_bare_paths_are_named() {
    let t = scratch();
    let dir = t.path();
    copy_dir(&layout(), &dir.join("lay"));
    let err = airlock(&["pack", "-o", "x", "dokcer://host/a:1"], dir).fails_usage();
    insta::assert_snapshot!(err, @r#"
    airlock: error: invalid source "dokcer://host/a:1": unknown transport "dokcer"; the known ones are oci:, oci-archive:, docker-archive:, docker://
      hint: sources are oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or docker://REF (a bare REF is a registry image)
    "#);
    let err = airlock(&["pack", "-o", "x", "oci-archiv:f"], dir).fails_usage();
    insta::assert_snapshot!(err, @r#"
    airlock: error: invalid source "oci-archiv:f": unknown transport "oci-archiv"; the known ones are oci:, oci-archive:, docker-archive:, docker://
      hint: sources are oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or docker://REF (a bare REF is a registry image)
    "#);
    let err = airlock(&["pack", "-o", "x", "./lay"], dir).fails_usage();
    insta::assert_snapshot!(err, @r#"
    airlock: error: invalid source "./lay": ./lay is a directory; name an OCI layout as oci:./lay
      hint: sources are oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or docker://REF (a bare REF is a registry image)
    "#);
    // A layout without ./ is still a layout, not docker.io/library/lay.
    let err = airlock(&["pack", "-o", "x", "lay"], dir).fails_usage();
    assert!(err.contains("name an OCI layout as oci:lay"), "{err}");
    assert!(!dir.join("x").exists());
}

/// Runs airlock with standard output a pipe whose reader is already gone.
fn with_closed_stdout(args: &[&str], dir: &Path) -> Output {
    // libc, not std::io::pipe: the MSRV (1.85) predates it.
    let mut fds = [0; 2];
    // SAFETY: pipe() fills both descriptors; the read end is closed at once
    // and the write end owned by `writer` from here on.
    let writer = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    };
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_sigpipe(out: &Output, what: &str) {
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{what}: {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{what}");
}

#[test]
fn a_closed_stdout_ends_quietly_as_sigpipe_would() {
    let t = scratch();
    let dir = t.path();
    let (b, p) = small_bundle(dir);
    assert_quiet_sigpipe(&with_closed_stdout(&["inspect", &b], dir), "inspect");
    assert_quiet_sigpipe(
        &with_closed_stdout(&["inspect", "--json", &b], dir),
        "inspect --json",
    );
    let src = format!("oci:{}:app-1", layout().display());
    assert_quiet_sigpipe(
        &with_closed_stdout(&["pack", "-q", "-o", "-", &src], dir),
        "pack -o -",
    );

    let reg = Registry::start(Config::default());
    let out = with_closed_stdout(
        &[
            "import",
            &b,
            "--pub",
            &p,
            "--to",
            &reg.host,
            &*format!("--plain-http={}", reg.host),
            "--dry-run",
        ],
        dir,
    );
    assert_quiet_sigpipe(&out, "import --dry-run");
    // And as a shell sees it.
    let cmd = format!(
        "{} inspect {b} | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
        env!("CARGO_BIN_EXE_airlock")
    );
    let run = run("bash", &["-c", &cmd], dir).ok();
    // The table may fit the pipe before head exits: 0 or 141, never a panic.
    let status = run.stdout();
    assert!(
        status.trim() == "141" || status.trim() == "0",
        "{status}\n{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
}

/// Standard error gone (a closed pipe, a full device): the work goes on
/// and ends as it would, the lines lost. (The first note or progress line
/// panicked, exit 101, leaving no bundle.)
#[test]
fn a_closed_or_full_stderr_does_not_stop_the_work() {
    let t = scratch();
    let dir = t.path();
    let src = format!("oci:{}", layout().display());
    let (key, public) = keys(dir, "k");
    let key = key.to_str().unwrap().to_string();
    let run_with_stderr = |stderr: Stdio, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["-v", "pack", "--key", &key, "-o", out, &src])
            .env("AIRLOCK_PROGRESS_EVERY_MS", "1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .unwrap()
    };
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = run_with_stderr(full.into(), "full.airlock");
    assert!(status.success(), "stderr on /dev/full: {status:?}");
    let mut fds = [0; 2];
    // SAFETY: as in with_closed_stdout.
    let writer = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    };
    let status = run_with_stderr(writer.into(), "closed.airlock");
    assert!(status.success(), "stderr a closed pipe: {status:?}");
    for b in ["full.airlock", "closed.airlock"] {
        airlock(&["verify", b, "--pub", public.to_str().unwrap()], dir).ok();
    }
}

fn inspect_json(bundle: &Path) -> serde_json::Value {
    let out = airlock(
        &["inspect", "--json", bundle.to_str().unwrap()],
        bundle.parent().unwrap(),
    )
    .ok();
    serde_json::from_str(&out.stdout()).unwrap()
}

#[test]
fn platforms_match_in_containerds_normal_form() {
    let t = scratch();
    let dir = t.path();
    let multi = format!("oci:{}:multi", layout().display());
    let arm = skopeo_digest(&format!("oci:{}:arm-1", layout().display()), dir);
    // The fixture's arm64 entry has no variant: v8 is arm64's default.
    for wanted in ["linux/arm64/v8", "linux/aarch64", "linux/arm64"] {
        let out = dir.join("one.airlock");
        airlock(
            &[
                "pack",
                "-q",
                &multi,
                "--platform",
                wanted,
                "-o",
                out.to_str().unwrap(),
            ],
            dir,
        )
        .ok();
        assert_eq!(inspect_json(&out)["images"][0]["digest"], arm, "{wanted}");
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn a_single_platform_image_outside_the_filter_fails_as_an_index_does() {
    let t = scratch();
    let dir = t.path();
    copy_dir(&layout(), &dir.join("lay"));
    let err = airlock(
        &[
            "pack",
            "oci:lay:app-1",
            "--platform",
            "linux/arm64",
            "-o",
            "x",
        ],
        dir,
    )
    .fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: localhost/lay:app-1: no platform matches linux/arm64; it has: linux/amd64
      hint: pass --platform with one of the platforms listed, or none to keep them all
    ");
    assert!(!dir.join("x").exists());
    // The platform it has is kept, in any of its spellings.
    airlock(
        &[
            "pack",
            "-q",
            "oci:lay:app-1",
            "--platform",
            "linux/x86_64",
            "-o",
            "x",
        ],
        dir,
    )
    .ok();
}

#[test]
fn the_host_platform_of_a_docker_archive_export_is_a_default_not_a_filter() {
    let t = scratch();
    let dir = t.path();
    // amd64 and arm64: one of them is not this host's platform.
    let (bundle, public) = packed(
        dir,
        &[
            &format!("oci:{}:app-1", layout().display()),
            &format!("oci:{}:arm-1", layout().display()),
        ],
    );
    export(&bundle, &public, "docker-archive:both.tar", &[]).ok();
    let out = run("tar", &["-xOf", "both.tar", "manifest.json"], dir).ok();
    let manifest: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest}");
}

#[test]
fn repair_without_parity_has_nothing_to_do_or_renames_volumes() {
    let t = scratch();
    let dir = t.path();
    let (b, _) = small_bundle(dir);
    let before = std::fs::read(&b).unwrap();
    let run = airlock(&["repair", &b], dir).ok();
    insta::assert_snapshot!(run.stderr(), @"nothing to repair: the bundle checks out (it has no parity)");
    assert_eq!(std::fs::read(&b).unwrap(), before);

    // Volumes under each other's names: the labels say where each belongs.
    let sources = [
        format!("oci:{}", layout().display()),
        format!("oci:{}", fixtures().join("large").display()),
    ];
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "v",
            "--split",
            "1M",
            &sources[0],
            &sources[1],
        ],
        dir,
    )
    .ok();
    let (two, three) = (dir.join("v.002"), dir.join("v.003"));
    let (was_two, was_three) = (std::fs::read(&two).unwrap(), std::fs::read(&three).unwrap());
    std::fs::rename(&two, dir.join("tmp")).unwrap();
    std::fs::rename(&three, &two).unwrap();
    std::fs::rename(dir.join("tmp"), &three).unwrap();
    let run = airlock(&["repair", "v.001"], dir).ok();
    insta::assert_snapshot!(run.stderr(), @r"
    rewrote v.002 (it was found as v.003)
    rewrote v.003 (it was found as v.002)
    repaired: the bundle checks out
    ");
    assert_eq!(std::fs::read(&two).unwrap(), was_two);
    assert_eq!(std::fs::read(&three).unwrap(), was_three);
    let run = airlock(&["repair", "v.001"], dir).ok();
    insta::assert_snapshot!(run.stderr(), @"nothing to repair: the bundle checks out (it has no parity)");
}

#[test]
fn a_foreign_volume_is_named_even_when_parity_rebuilds_its_slot() {
    let t = scratch();
    let dir = t.path();
    let large = format!("oci:{}", fixtures().join("large").display());
    let (key, public) = keys(dir, "signer");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            "--split",
            "1M",
            "--parity",
            "30",
            "--key",
            key.to_str().unwrap(),
            &format!("oci:{}", layout().display()),
            &large,
        ],
        dir,
    )
    .ok();
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    airlock(
        &["pack", "-q", "-o", "b.airlock", "--split", "1M", &large],
        &other,
    )
    .ok();
    std::fs::copy(other.join("b.airlock.002"), dir.join("b.airlock.002")).unwrap();
    let run = airlock(
        &["verify", "b.airlock.001", "--pub", public.to_str().unwrap()],
        dir,
    )
    .ok();
    let notes: Vec<&str> = run
        .out
        .stderr
        .split(|&b| b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.starts_with("note:"))
        .collect();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(notes.join("\n"), @r"
        note: b.airlock.002 belongs to another bundle (sha256:[SHORT], volume 2 of [N]), not to sha256:[SHORT]
        note: volume 2 of [N] (b.airlock.002) is missing
        note: repaired volume 2 (b.airlock.002) from parity: 999688 bytes rebuilt in memory
        ");
    });
}

/// Adds a cosign-style signature (tag `sha256-HEX.sig`) of `tag` to the
/// layout at `lay`; returns its tag.
fn add_signature(lay: &Path, tag: &str) -> String {
    let index_path = lay.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let subject = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let config = blob(lay, "application/vnd.oci.empty.v1+json", b"{}");
    let payload = blob(
        lay,
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{subject}"}}}}}}"#)
            .as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [payload],
    });
    let mut d = blob(
        lay,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let sig_tag = format!("{}.sig", subject.replace(':', "-"));
    d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": sig_tag});
    index["manifests"].as_array_mut().unwrap().push(d);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    sig_tag
}

#[test]
fn text_inspect_lists_referrers_under_their_image() {
    let t = scratch();
    let dir = t.path();
    copy_dir(&layout(), &dir.join("lay"));
    let sig = add_signature(&dir.join("lay"), "app-1");
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            &format!("oci:lay:{sig}"),
            "oci:lay:app-1",
            "oci:lay:app-2",
        ],
        dir,
    )
    .ok();
    let run = airlock(&["inspect", "b.airlock"], dir).ok();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!(run.stdout(), @r"
        bundle:   b.airlock
        format:   v1 (airlock 0.1.0), created [DATE]
        signer:   unsigned (claimed; run `airlock verify --pub KEY` to check)
        content:  2 image(s) and 1 referrer(s), 10 blob(s), [SIZE] stored, [SIZE] shared between images

        localhost/lay:app-1
          digest:    sha256:[DIGEST]
          source:    oci:lay:app-1
          platforms: linux/amd64
          size:      [SIZE] ([SIZE] shared)
          referrers:
            - localhost/lay:sha256-[HEX].sig
              digest:    sha256:[DIGEST]
              source:    oci:lay:sha256-[HEX].sig
              platforms: -
              size:      [SIZE] ([SIZE] shared)
        localhost/lay:app-2
          digest:    sha256:[DIGEST]
          source:    oci:lay:app-2
          platforms: linux/amd64
          size:      [SIZE] ([SIZE] shared)
        ");
    });
}

#[test]
fn key_mix_ups_are_named() {
    let t = scratch();
    let dir = t.path();
    let (b, _) = small_bundle(dir);
    let st = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "signer",
            "-out",
            "locked",
            "-passout",
            "pass:secret",
        ])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let src = format!("oci:{}:app-1", layout().display());
    // Encrypted keys are read now (#15); the wrong passphrase is named.
    std::fs::write(dir.join("guess"), "not-the-secret\n").unwrap();
    let err = airlock(
        &[
            "pack",
            "-o",
            "x",
            "--key",
            "locked",
            "--passphrase-file",
            "guess",
            &src,
        ],
        dir,
    )
    .fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: key locked: the passphrase does not decrypt it
      hint: give the passphrase the key was encrypted with (typed, or --passphrase-file FILE); if it is the right one, the key file is damaged
    ");
    let err = airlock(&["verify", &b, "--pub", "signer"], dir).fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: key signer: this is a private key, not the public key that checks signatures
      hint: pass the public key (NAME.pub, written beside NAME by `airlock keygen`) to --pub; the private key stays with the signer
    ");
    assert!(!dir.join("x").exists());
}

#[test]
fn an_empty_password_on_stdin_is_refused_before_anything_is_sent() {
    let t = scratch();
    let dir = t.path();
    let (b, p) = small_bundle(dir);
    // Nothing listens here: a run that sent the password would fail later,
    // with a connection error instead.
    let to = format!("127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "import",
            &b,
            "--pub",
            &p,
            "--to",
            &to,
            &*format!("--plain-http={to}"),
            "--username",
            "ci",
            "--password-stdin",
            "--retries",
            "1",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r#"airlock: error: --password-stdin read an empty password for ci; pipe it in, e.g. `printf %s "$TOKEN" | airlock … --password-stdin`"#);
}

#[test]
fn verbose_logs_go_to_stderr_only() {
    let t = scratch();
    let dir = t.path();
    let (b, _) = small_bundle(dir);
    let quiet = airlock(&["inspect", &b], dir).ok();
    assert_eq!(quiet.stderr(), "");
    let loud = airlock(&["-v", "inspect", &b], dir).ok();
    insta::with_settings!({filters => vec![(r"/\S+/b\.airlock", "[DIR]/b.airlock")]}, {
        insta::assert_snapshot!(loud.stderr(), @"airlock: info: opening bundle [DIR]/b.airlock (structure only)");
    });
    assert_eq!(loud.stdout(), quiet.stdout());
    // RUST_LOG alone does the same.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["inspect", &b])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), loud.stderr());
}
