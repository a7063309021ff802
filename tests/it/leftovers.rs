//! Nothing left behind, nothing clobbered (issue #12): partial files of
//! killed runs are removed by the next run that writes the same output
//! (never those of a live writer), `pack -o EXISTING` needs `--force`,
//! binary output refuses a terminal, `docker-archive:-` goes to standard
//! output, and a bundle that contradicts itself is refused, not a panic.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Config, Registry};
use crate::hostile::craft;
use crate::util::*;

/// The `note:` lines of a run's standard error.
fn notes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("note:"))
        .map(String::from)
        .collect()
}

/// The note a run prints after removing `files` partial files of `bytes`.
fn swept_note(files: usize, bytes: u64) -> String {
    format!(
        "note: removed {files} stale partial file(s) ({}) that killed or failed runs left",
        indicatif::BinaryBytes(bytes)
    )
}

/// Partial files in `dir` (hidden, `.partial`), sorted.
fn partials(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with('.') && n.ends_with(".partial")
        })
        .collect();
    v.sort();
    v
}

/// A file whose `flock` the returned handle holds, as a live airlock
/// writer holds its partial file.
fn held(path: &Path, bytes: &[u8]) -> File {
    std::fs::write(path, bytes).unwrap();
    use std::os::fd::AsRawFd;
    let f = File::options().read(true).write(true).open(path).unwrap();
    // SAFETY: a plain syscall on a descriptor `f` owns.
    let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0, "lock {}", path.display());
    f
}

/// An OCI layout with one image whose 32 MiB layer compresses slowly at
/// level 19 (text of a small alphabet), so a pack of it can be killed
/// mid-write.
fn slow_layout(dir: &Path) -> PathBuf {
    let lay = dir.join("slow");
    std::fs::create_dir_all(lay.join("blobs/sha256")).unwrap();
    std::fs::write(lay.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let layer: Vec<u8> = (0..32 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefgh \n"[(x % 10) as usize]
        })
        .collect();
    let layer = blob(&lay, "application/vnd.oci.image.layer.v1.tar", &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    });
    let config = blob(
        &lay,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    });
    let mut m = blob(
        &lay,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "slow"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m]});
    std::fs::write(lay.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    lay
}

/// Starts a pack of the slow layout into `dir/b.airlock` and returns once
/// it has written into a partial file, still running.
fn slow_pack(dir: &Path, extra: &[&str]) -> std::process::Child {
    let lay = slow_layout(dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["pack", "-q", "--level", "19", "-o", "b.airlock"])
        .args(extra)
        .arg(format!("oci:{}", lay.display()))
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let written = || {
        partials(dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
    };
    while !written() {
        assert!(Instant::now() < deadline, "pack wrote nothing in 120 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "pack ended before it wrote"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn a_killed_pack_leaves_partial_files_that_the_next_pack_removes() {
    let t = scratch();
    let out = t.path().join("b.airlock");
    let mut child = slow_pack(t.path(), &["--split", "4M"]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "pack ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let left = partials(t.path());
    assert!(!left.is_empty(), "the kill left no partial files");
    let names: Vec<String> = left
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with(".b.airlock.0")),
        "{names:?}"
    );
    let bytes: u64 = left
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(!out.exists() && !t.path().join("b.airlock.001").exists());

    // The next pack to the same name, unsplit, removes the volumes' leftovers.
    let run = airlock(
        &[
            "pack",
            "-o",
            "b.airlock",
            &format!("oci:{}:app-1", layout().display()),
        ],
        t.path(),
    )
    .ok();
    assert_eq!(
        notes(&run.stderr()),
        [swept_note(left.len(), bytes)],
        "{}",
        run.stderr()
    );
    assert_eq!(partials(t.path()), Vec::<PathBuf>::new());
    airlock(&["verify", "--allow-unsigned", "b.airlock"], t.path()).ok();
}

#[test]
fn a_second_pack_to_the_same_output_keeps_the_first_ones_partial_file() {
    let t = scratch();
    let mut first = slow_pack(t.path(), &[]);
    let writing = partials(t.path());
    assert_eq!(writing.len(), 1, "{writing:?}");
    let second = airlock(
        &[
            "pack",
            "-o",
            "b.airlock",
            &format!("oci:{}:app-1", layout().display()),
        ],
        t.path(),
    )
    .ok();
    assert_eq!(notes(&second.stderr()), Vec::<String>::new());
    assert!(writing[0].exists(), "the live pack's partial file went");
    assert!(first.try_wait().unwrap().is_none(), "the first pack ended");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_pack_keeps_the_partial_files_of_a_live_writer_and_of_other_outputs() {
    let t = scratch();
    let live = t.path().join(".b.airlock.Live01.partial");
    let _writer = held(&live, b"live writer");
    let live_parity = t.path().join(".b.airlock.parity.Live02.partial");
    let _parity_writer = held(&live_parity, b"live");
    let stale = t.path().join(".b.airlock.Stale1.partial");
    std::fs::write(&stale, vec![7u8; 3000]).unwrap();
    let stale_parity = t.path().join(".b.airlock.parity.001.Stale2.partial");
    std::fs::write(&stale_parity, vec![7u8; 100]).unwrap();
    let other = t.path().join(".c.airlock.Stale3.partial");
    std::fs::write(&other, b"another output's").unwrap();

    let run = airlock(
        &[
            "pack",
            "-o",
            "b.airlock",
            &format!("oci:{}:app-1", layout().display()),
        ],
        t.path(),
    )
    .ok();
    insta::assert_snapshot!(notes(&run.stderr()).join("\n"), @"note: removed 2 stale partial file(s) (3.03 KiB) that killed or failed runs left");
    assert!(!stale.exists() && !stale_parity.exists());
    assert!(live.exists() && live_parity.exists() && other.exists());
    assert_eq!(std::fs::read(&live).unwrap(), b"live writer");
}

#[test]
fn an_export_removes_stale_partial_files_and_keeps_a_live_writers() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let export_to = |target: &str| {
        airlock(
            &[
                "export",
                bundle.to_str().unwrap(),
                "--pub",
                public.to_str().unwrap(),
                "--to",
                target,
            ],
            t.path(),
        )
        .ok()
    };

    // An OCI layout: blobs, index.json and oci-layout.
    let dir = t.path().join("out");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let hex = "a".repeat(64);
    let stale_blob = dir.join(format!("blobs/sha256/.{hex}.Stale1.partial"));
    std::fs::write(&stale_blob, vec![1u8; 1024]).unwrap();
    let stale_index = dir.join(".index.json.Stale2.partial");
    std::fs::write(&stale_index, vec![1u8; 1024]).unwrap();
    let live_blob = dir.join(format!("blobs/sha256/.{}.Live01.partial", "b".repeat(64)));
    let _writer = held(&live_blob, b"live");
    let run = export_to("oci:out");
    insta::assert_snapshot!(notes(&run.stderr()).join("\n"), @"note: removed 2 stale partial file(s) (2.00 KiB) that killed or failed runs left");
    assert!(!stale_blob.exists() && !stale_index.exists());
    assert!(live_blob.exists());

    // A docker-archive file.
    let stale_tar = t.path().join(".a.tar.Stale3.partial");
    std::fs::write(&stale_tar, vec![1u8; 512]).unwrap();
    let live_tar = t.path().join(".a.tar.Live02.partial");
    let _tar_writer = held(&live_tar, b"live");
    let run = export_to("docker-archive:a.tar");
    insta::assert_snapshot!(notes(&run.stderr()).join("\n"), @"note: removed 1 stale partial file(s) (512 B) that killed or failed runs left");
    assert!(!stale_tar.exists() && live_tar.exists());
    assert!(t.path().join("a.tar").is_file());
}

#[test]
fn a_pack_removes_useless_partial_downloads_from_the_cache_and_keeps_the_rest() {
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "demo/app:1");
    let t = scratch();
    let cache = t.path().join("cache");
    let pack = |out: &str| {
        let mut args: Vec<String> = reg.plain_flags();
        args.extend(["--cache".into(), cache.display().to_string()]);
        args.extend(["-o".into(), out.into()]);
        args.push(format!("docker://{}/demo/app:1", reg.host));
        let mut argv: Vec<&str> = vec!["pack"];
        argv.extend(args.iter().map(String::as_str));
        airlock(&argv, t.path()).ok()
    };
    pack("first.airlock");
    let cached: Vec<String> = entries(&cache.join("blobs/sha256"));
    assert!(!cached.is_empty());
    let partial = cache.join("partial/sha256");
    // Useless: a blob cached already, and an empty download.
    let done = partial.join(&cached[0]);
    std::fs::write(&done, vec![0u8; 1000]).unwrap();
    let empty = partial.join("c".repeat(64));
    std::fs::write(&empty, b"").unwrap();
    // Kept: a download another pack holds, and one a later pack continues.
    let live = partial.join("d".repeat(64));
    let _writer = held(&live, b"");
    let resumable = partial.join("e".repeat(64));
    std::fs::write(&resumable, vec![0u8; 100]).unwrap();

    let run = pack("second.airlock");
    insta::assert_snapshot!(notes(&run.stderr()).join("\n"), @"note: removed 2 stale partial file(s) (1000 B) that killed or failed runs left");
    assert!(!done.exists() && !empty.exists());
    assert!(live.exists() && resumable.exists());
}

fn pack_app(dir: &Path, tag: &str, extra: &[&str]) -> Run {
    let source = format!("oci:{}:{tag}", layout().display());
    let mut args = vec!["pack", "-q", "-o", "b.airlock"];
    args.extend_from_slice(extra);
    args.push(&source);
    airlock(&args, dir)
}

#[test]
fn pack_refuses_to_replace_a_bundle_without_force() {
    let t = scratch();
    pack_app(t.path(), "app-1", &[]).ok();
    let before = std::fs::read(t.path().join("b.airlock")).unwrap();
    let err = pack_app(t.path(), "app-2", &[]).fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: b.airlock: exists
      hint: pass --force to replace it (the old files go once the new bundle is complete), or choose another -o
    ");
    assert_eq!(std::fs::read(t.path().join("b.airlock")).unwrap(), before);

    pack_app(t.path(), "app-2", &["--force"]).ok();
    assert_ne!(std::fs::read(t.path().join("b.airlock")).unwrap(), before);
    let report = airlock(&["inspect", "--json", "b.airlock"], t.path())
        .ok()
        .stdout();
    assert!(report.contains("localhost/layout:app-2"), "{report}");
}

#[test]
fn pack_refuses_to_remove_a_volume_set_and_parity_without_force() {
    let t = scratch();
    pack_app(t.path(), "app-1", &["--split", "1M", "--parity", "10"]).ok();
    let mut set = entries(t.path());
    set.retain(|n| n.starts_with("b.airlock"));
    assert!(
        set.contains(&"b.airlock.001".to_string())
            && set.contains(&"b.airlock.parity.001".to_string()),
        "{set:?}"
    );
    let err = pack_app(t.path(), "app-2", &[]).fails();
    let listed: Vec<&str> = set.iter().map(String::as_str).collect();
    assert_eq!(
        err,
        format!(
            "airlock: error: b.airlock: the volumes or parity of a bundle of this name exist ({})\n  \
             hint: pass --force to replace it (the old files go once the new bundle is complete), or choose another -o\n",
            listed.join(", ")
        )
    );
    let mut after = entries(t.path());
    after.retain(|n| n.starts_with("b.airlock"));
    assert_eq!(after, set);

    // With --force the unsplit bundle replaces the set, which is gone.
    pack_app(t.path(), "app-2", &["--force"]).ok();
    let mut after = entries(t.path());
    after.retain(|n| n.starts_with("b.airlock"));
    assert_eq!(after, ["b.airlock"]);
    airlock(&["verify", "--allow-unsigned", "b.airlock"], t.path()).ok();
}

/// Runs airlock with standard output (and error) on a pseudo-terminal.
fn on_terminal(dir: &Path, args: &str) -> (Option<i32>, String) {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_airlock"));
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

#[test]
fn binary_output_refuses_a_terminal() {
    let t = scratch();
    let (code, text) = on_terminal(
        t.path(),
        &format!("pack -q -o - oci:{}:app-1", layout().display()),
    );
    assert_eq!(code, Some(1), "{text}");
    insta::assert_snapshot!(text, @r"
    airlock: error: -o -: standard output is a terminal; refusing to write a bundle to it
      hint: redirect standard output to a file or a pipe (> FILE, | ssh …), or use -o FILE
    ");

    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let (code, text) = on_terminal(
        t.path(),
        &format!(
            "export -q {} --pub {} --to docker-archive:-",
            bundle.display(),
            public.display()
        ),
    );
    assert_eq!(code, Some(1), "{text}");
    insta::assert_snapshot!(text, @r"
    airlock: error: docker-archive:-: standard output is a terminal; refusing to write an archive to it
      hint: redirect standard output to a file or a pipe (> FILE, | ssh …), or use --to docker-archive:FILE
    ");
    assert!(!t.path().join("-").exists());
}

#[test]
fn export_to_docker_archive_dash_writes_the_archive_to_standard_output() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let piped = t.path().join("piped.tar");
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["export"])
        .arg(&bundle)
        .arg("--pub")
        .arg(&public)
        .args(["--to", "docker-archive:-"])
        .current_dir(t.path())
        .stdout(File::create(&piped).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("exported 1 image(s) to docker-archive:-")
    );
    assert!(!t.path().join("-").exists());

    // The same bytes as an export to a file, and a tar skopeo reads.
    export(&bundle, &public, "docker-archive:file.tar", &[]).ok();
    assert_eq!(
        std::fs::read(&piped).unwrap(),
        std::fs::read(t.path().join("file.tar")).unwrap()
    );
    let listing = run("tar", &["-tf", "piped.tar"], t.path()).ok().stdout();
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    skopeo(&["inspect", "docker-archive:piped.tar"], t.path()).ok();

    // --json cannot share standard output with the archive.
    let err = export(&bundle, &public, "docker-archive:-", &["--json"]).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: --json prints to standard output, which docker-archive:- already uses for the archive");
}

#[test]
fn export_refuses_a_bundle_whose_manifest_record_holds_an_index() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:multi", layout().display())]);
    let mut parts = craft::Parts::of(&bundle);
    let images = parts.manifest["images"].as_array_mut().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    images[0]["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    let digest = images[0]["digest"].as_str().unwrap().to_string();
    // The layout's index.json says the same, as the signed record must.
    let at = parts
        .members
        .iter()
        .position(|(name, _)| name == "index.json")
        .unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&parts.members[at].1).unwrap();
    index["manifests"][0]["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    let index = serde_json::to_vec(&index).unwrap();
    parts.manifest["index"]["digest"] = airlock::model::Digest::of(&index).to_string().into();
    parts.manifest["index"]["size"] = index.len().into();
    parts.members[at].1 = index;
    parts.resign(&t.path().join("signer"));
    let lying = t.path().join("lying.airlock");
    std::fs::write(&lying, craft::write(&craft::entries(&parts.frames()))).unwrap();

    let err = export(
        &lying,
        &public,
        "docker-archive:out.tar",
        &["--platform", "linux/amd64", "--platform", "linux/arm64"],
    )
    .fails();
    insta::with_settings!({filters => vec![(digest.as_str(), "[DIGEST]")]}, {
        insta::assert_snapshot!(err, @"airlock: error: localhost/layout:multi: its record says application/vnd.oci.image.manifest.v1+json but its blob [DIGEST] is an image index; the bundle contradicts itself: pack it again from the source");
    });
    assert!(!t.path().join("out.tar").exists());
    assert_eq!(partials(t.path()), Vec::<PathBuf>::new());
}

/// An export to an existing docker-archive file replaced it without a
/// word, and through a symlink it replaced the link itself (so
/// `docker-archive:/dev/stdout`, run as root, turned /dev/stdout into a
/// regular file). Now: refused without --force, and a path that is not a
/// regular file is refused always.
#[test]
fn export_refuses_to_replace_a_file_and_never_replaces_a_symlink() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let file = t.path().join("a.tar");
    std::fs::write(&file, b"keep me").unwrap();
    let err = export(&bundle, &public, "docker-archive:a.tar", &[]).fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: a.tar: exists
      hint: pass --force to replace it, or choose another name
    ");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    export(&bundle, &public, "docker-archive:a.tar", &["--force"]).ok();
    assert_ne!(std::fs::read(&file).unwrap(), b"keep me");

    let elsewhere = t.path().join("elsewhere");
    std::fs::write(&elsewhere, b"not this").unwrap();
    std::os::unix::fs::symlink(&elsewhere, t.path().join("link.tar")).unwrap();
    let err = export(&bundle, &public, "docker-archive:link.tar", &["--force"]).fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: link.tar: it is a symbolic link; airlock writes a new file and renames it into place
      hint: name a regular file (--to docker-archive:FILE), or docker-archive:- for standard output
    ");
    assert!(std::fs::symlink_metadata(t.path().join("link.tar"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not this");
}

/// `pack -o DIR` packed everything, then failed to rename over the
/// directory; and `--force` removed any file named like a volume or parity
/// of the bundle (`backup.2024`, `backup.parity`) whatever it held.
#[test]
fn pack_refuses_a_directory_and_force_removes_only_airlock_files() {
    let t = scratch();
    std::fs::create_dir(t.path().join("outdir")).unwrap();
    let source = format!("oci:{}:app-1", layout().display());
    let err = airlock(
        &["pack", "-q", "--force", "-o", "outdir", &source],
        t.path(),
    )
    .fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: outdir: it is a directory; airlock writes a new file and renames it into place
      hint: name a regular file (-o FILE), or -o - for standard output
    ");

    for name in ["b.airlock.2024", "b.airlock.parity"] {
        std::fs::write(t.path().join(name), b"someone else's").unwrap();
    }
    pack_app(t.path(), "app-1", &["--split", "1M", "--parity", "10"]).ok();
    pack_app(t.path(), "app-2", &["--force"]).ok();
    for name in ["b.airlock.2024", "b.airlock.parity"] {
        assert_eq!(
            std::fs::read(t.path().join(name)).unwrap(),
            b"someone else's",
            "{name}"
        );
    }
    assert!(
        !t.path().join("b.airlock.001").exists(),
        "the old volume went"
    );
}
