//! Volumes and parity: `pack --split` and `--parity`, then damage of every
//! kind the issue names (deleted, truncated, swapped and foreign volumes,
//! random bytes, whole 4 KiB sectors), detected by volume, repaired within
//! the parity, and refused beyond it with nothing pushed.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use crate::harness::*;
use crate::util::*;

/// Decimal, as `--split` reads it.
const VOLUME: u64 = 1_000_000;

/// The fixture layout and the large image: about 7 MB, so 1M volumes make
/// a set of 7 or 8.
fn sources() -> Vec<String> {
    vec![
        format!("oci:{}", layout().display()),
        format!("oci:{}", fixtures().join("large").display()),
    ]
}

/// Packs into `dir/b.airlock.NNN` with the flags given; returns the public key.
fn pack_split(dir: &Path, extra: &[&str]) -> PathBuf {
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
    let srcs = sources();
    args.extend(srcs.iter().map(String::as_str));
    airlock(&args, dir).ok();
    public
}

fn volumes(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("b.airlock.") && n[10..].bytes().all(|b| b.is_ascii_digit()))
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

/// sha256 of every file in `dir` whose name starts with `b.airlock`.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("b.airlock"))
        .map(|n| {
            let hash = sha256_hex(&std::fs::read(dir.join(&n)).unwrap());
            (n, hash)
        })
        .collect()
}

fn verify(dir: &Path, target: &str, public: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify", target, "--pub", public.to_str().unwrap()];
    args.extend_from_slice(extra);
    airlock(&args, dir)
}

/// Overwrites `len` bytes at `at` with random ones.
fn scribble(path: &Path, at: u64, len: usize, rng: &mut impl Rng) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    f.write_all(&junk).unwrap();
}

fn tar_listing(file: &Path, dir: &Path) -> String {
    run(
        "sh",
        &["-c", &format!("zstd -dc {} | tar tv", file.display())],
        dir,
    )
    .ok()
    .stdout()
}

#[test]
fn volumes_fit_their_size_name_themselves_and_concatenate_to_a_plain_bundle() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    let vols = volumes(dir);
    assert!(vols.len() >= 5, "{vols:?}");
    for v in &vols {
        let len = std::fs::metadata(v).unwrap().len();
        assert!(len <= VOLUME, "{} has {len} bytes", v.display());
        // Every volume starts with its label: a zstd skippable frame.
        let head = std::fs::read(v).unwrap();
        assert_eq!(&head[..4], &0x184D_2A5Au32.to_le_bytes());
        assert_eq!(&head[8..16], b"AIRLKVOL");
    }
    // Every way of naming the set works.
    for name in ["b.airlock.001", "b.airlock.003", ".", "b.airlock"] {
        let out = verify(dir, name, &public, &[]).ok().stdout();
        assert!(out.contains("OK: 6 image(s)"), "{name}: {out}");
    }
    // The volumes, concatenated, are a one-file bundle that verifies, and
    // zstd and tar read through the labels to the same tar as a plain pack.
    let mut whole = Vec::new();
    for v in &vols {
        whole.extend(std::fs::read(v).unwrap());
    }
    std::fs::write(dir.join("joined.airlock"), &whole).unwrap();
    verify(dir, "joined.airlock", &public, &[]).ok();
    std::fs::create_dir(dir.join("plain")).unwrap();
    let srcs = sources();
    let (plain, _) = packed(
        &dir.join("plain"),
        &srcs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        tar_listing(&dir.join("joined.airlock"), dir),
        tar_listing(&plain, dir)
    );
    // inspect and export read the set too; skopeo reads the export.
    let inspect = airlock(&["inspect", "--json", "b.airlock.001"], dir).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout()).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 6);
    export(
        &dir.join("b.airlock.001"),
        &public,
        &format!("oci:{}", dir.join("out").display()),
        &[],
    )
    .ok();
    assert_eq!(
        skopeo_digest(
            &format!("oci:{}:localhost/large:large", dir.join("out").display()),
            dir
        ),
        skopeo_digest(
            &format!("oci:{}:large", fixtures().join("large").display()),
            dir
        )
    );
    // Volumes are files: a stream cannot be split.
    let err = airlock(&["pack", "-o", "-", "--split", "1M", &sources()[0]], dir).fails_usage();
    assert!(err.contains("cannot be used with -o -"), "{err}");
    let err = airlock(&["pack", "-o", "x", "--split", "100K", &sources()[0]], dir).fails_usage();
    assert!(err.contains("at least 1000000 bytes"), "{err}");
}

#[test]
fn without_parity_damage_is_named_by_volume_with_the_images_it_takes() {
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &[]);
    let vols = volumes(dir);
    let n = vols.len();
    let keep = dir.join("keep");
    std::fs::create_dir(&keep).unwrap();
    for v in &vols {
        std::fs::copy(v, keep.join(v.file_name().unwrap())).unwrap();
    }
    let restore = || {
        for v in &vols {
            std::fs::copy(keep.join(v.file_name().unwrap()), v).unwrap();
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);

    // Deleted.
    std::fs::remove_file(&vols[2]).unwrap();
    let err = verify(dir, "b.airlock.001", &public, &[]).fails();
    assert!(
        err.contains(&format!("volume 3 of {n} (b.airlock.003) is missing")),
        "{err}"
    );
    assert!(
        err.contains("lost with it") && err.contains("images: "),
        "{err}"
    );
    restore();

    // A whole 4 KiB sector of random bytes.
    scribble(&vols[1], 8192, 4096, &mut rng);
    let err = verify(dir, ".", &public, &[]).fails();
    assert!(
        err.contains("volume 2 (b.airlock.002) is damaged: its checksum does not match"),
        "{err}"
    );
    assert!(err.contains("images: "), "{err}");
    restore();

    // Truncated.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&vols[n - 2])
        .unwrap();
    f.set_len(1000).unwrap();
    let err = verify(dir, "b.airlock.001", &public, &[]).fails();
    assert!(
        err.contains(&format!(
            "volume {} (b.airlock.{:03}) is truncated: it has 1000 of",
            n - 1,
            n - 1
        )),
        "{err}"
    );
    restore();

    // A volume of another bundle under this one's name.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            "--split",
            "1M",
            &sources()[1],
        ],
        &other,
    )
    .ok();
    std::fs::copy(other.join("b.airlock.002"), &vols[1]).unwrap();
    let err = verify(dir, "b.airlock.001", &public, &[]).fails();
    assert!(
        err.contains("b.airlock.002 belongs to another bundle") && err.contains("volume 2 of"),
        "{err}"
    );
    restore();

    // Swapped file names: the labels say which is which, so it still reads.
    std::fs::rename(&vols[1], dir.join("tmp")).unwrap();
    std::fs::rename(&vols[2], &vols[1]).unwrap();
    std::fs::rename(dir.join("tmp"), &vols[2]).unwrap();
    let run = verify(dir, "b.airlock.001", &public, &[]).ok();
    assert!(
        run.stderr().contains("b.airlock.002 holds volume 3"),
        "{}",
        run.stderr()
    );
    // Without parity, repair still puts each volume under its proper name
    // (tests/it/usage.rs checks its report).
    let before = snapshot(dir);
    airlock(&["repair", "b.airlock.001"], dir).ok();
    let mut swapped_back = before.clone();
    swapped_back.insert("b.airlock.002".into(), before["b.airlock.003"].clone());
    swapped_back.insert("b.airlock.003".into(), before["b.airlock.002"].clone());
    assert_eq!(snapshot(dir), swapped_back);
}

#[test]
fn parity_repairs_damage_within_its_cover_on_the_fly_and_on_disk() {
    let t = scratch();
    let dir = t.path();
    // Volumes are about 1/7 of the bundle each; 30% covers one lost volume.
    let public = pack_split(dir, &["--parity", "30"]);
    let parity: Vec<String> = entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("b.airlock.parity."))
        .collect();
    assert!(!parity.is_empty());
    let good = snapshot(dir);
    let vols = volumes(dir);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);

    // Random sectors in three volumes and scattered single bytes in another.
    for (v, at) in [(0, 4096 * 20), (2, 4096 * 50), (4, 4096 * 3)] {
        scribble(&vols[v], at, 4096, &mut rng);
    }
    for _ in 0..20 {
        let at = rng.random_range(200..VOLUME - 1000);
        scribble(&vols[1], at, 1, &mut rng);
    }
    let err = verify(dir, "b.airlock.001", &public, &["--no-repair"]).fails();
    for n in [1, 2, 3, 5] {
        assert!(
            err.contains(&format!("volume {n} (b.airlock.{n:03}): ")),
            "volume {n} not named: {err}"
        );
    }
    assert!(err.contains("airlock repair"), "{err}");
    let run = verify(dir, "b.airlock.001", &public, &[]).ok();
    for n in [1, 2, 3, 5] {
        assert!(
            run.stderr().contains(&format!(
                "repaired volume {n} (b.airlock.{n:03}) from parity"
            )),
            "{}",
            run.stderr()
        );
    }
    let r = airlock(&["repair", "--json", "."], dir).ok();
    let report: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(
        report["rewritten"].as_array().unwrap().len(),
        4,
        "{report:#}"
    );
    assert_eq!(
        snapshot(dir),
        good,
        "repair must give back the packed bytes"
    );

    // A deleted volume, and a parity volume deleted as well.
    std::fs::remove_file(&vols[3]).unwrap();
    std::fs::remove_file(dir.join(&parity[parity.len() - 1])).unwrap();
    let run = verify(dir, "b.airlock.001", &public, &[]).ok();
    assert!(
        run.stderr().contains("repaired volume 4"),
        "{}",
        run.stderr()
    );
    airlock(&["repair", "b.airlock.002"], dir).ok();
    assert_eq!(snapshot(dir), good);

    // Repair that finds nothing to do changes nothing.
    let r = airlock(&["repair", "b.airlock.001"], dir).ok();
    assert!(r.stderr().contains("nothing to repair"), "{}", r.stderr());
    assert_eq!(snapshot(dir), good);
}

#[test]
fn beyond_the_parity_the_loss_is_named_and_nothing_is_pushed() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &["--parity", "10"]);
    let vols = volumes(dir);
    std::fs::remove_file(&vols[1]).unwrap();
    std::fs::remove_file(&vols[2]).unwrap();
    let before = snapshot(dir);
    let err = verify(dir, "b.airlock.001", &public, &[]).fails();
    assert!(err.contains("beyond what the parity covers"), "{err}");
    assert!(
        err.contains("volume 2 of") && err.contains("volume 3 of"),
        "{err}"
    );
    assert!(err.contains("images: "), "{err}");
    let err = airlock(&["repair", "b.airlock.001"], dir).fails();
    assert!(err.contains("nothing was changed on disk"), "{err}");
    assert_eq!(snapshot(dir), before);

    let h = reg.host.as_str();
    let err = airlock(
        &[
            "import",
            "b.airlock.001",
            "--pub",
            public.to_str().unwrap(),
            "--to",
            &format!("{h}/lost"),
            &*format!("--plain-http={h}"),
            "--state",
            "state",
        ],
        dir,
    )
    .fails();
    assert!(err.contains("beyond what the parity covers"), "{err}");
    assert!(!reg.catalog().contains("lost/"), "{}", reg.catalog());
}

#[test]
fn import_repairs_a_lost_volume_in_memory_and_pushes_every_image() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let dir = t.path();
    let public = pack_split(dir, &["--parity", "30"]);
    let vols = volumes(dir);
    std::fs::remove_file(&vols[1]).unwrap();
    let h = reg.host.as_str();
    let run = airlock(
        &[
            "import",
            ".",
            "--pub",
            public.to_str().unwrap(),
            "--to",
            &format!("{h}/fixed"),
            &*format!("--plain-http={h}"),
            "--state",
            "state",
        ],
        dir,
    )
    .ok();
    assert!(
        run.stderr().contains("repaired volume 2"),
        "{}",
        run.stderr()
    );
    // The volume stays missing on disk: import repairs in memory only.
    assert!(!vols[1].exists());
    assert_eq!(
        reg.digest("fixed/large:large", &["--tls-verify=false"]),
        skopeo_digest(
            &format!("oci:{}:large", fixtures().join("large").display()),
            dir
        )
    );
    assert_eq!(
        reg.digest("fixed/layout:multi", &["--tls-verify=false"]),
        skopeo_digest(&format!("oci:{}:multi", layout().display()), dir)
    );
}

#[test]
fn a_single_file_with_parity_survives_sectors_and_truncation() {
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&sources()[1]]);
    let name = bundle.file_name().unwrap().to_str().unwrap().to_string();
    // Pack again with parity over the same name: the plain pack's file goes.
    let key = dir.join("signer");
    airlock(
        &[
            "pack",
            "-q",
            "--force",
            "-o",
            &name,
            "--key",
            key.to_str().unwrap(),
            "--parity",
            "10",
            &sources()[1],
        ],
        dir,
    )
    .ok();
    assert!(dir.join(format!("{name}.parity")).exists());
    let good = snapshot(dir);
    let len = std::fs::metadata(&bundle).unwrap().len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    scribble(&bundle, 4096 * 7, 4096, &mut rng);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&bundle)
        .unwrap();
    f.set_len(len - 20_000).unwrap();
    let err = verify(dir, &name, &public, &["--no-repair"]).fails();
    assert!(err.contains("is truncated"), "{err}");
    let run = verify(dir, &name, &public, &[]).ok();
    assert!(
        run.stderr().contains(&format!("repaired {name}")),
        "{}",
        run.stderr()
    );
    airlock(&["repair", &name], dir).ok();
    assert_eq!(snapshot(dir), good);
    // Packing without parity removes the stale parity file.
    airlock(&["pack", "-q", "--force", "-o", &name, &sources()[1]], dir).ok();
    assert!(!dir.join(format!("{name}.parity")).exists());
}
