//! Damaged and hostile bundles. Each must be refused with an error that
//! names the member, frame or table at fault, exit 1, and no panic.

use std::path::{Path, PathBuf};

use airlock::bundle::format::{BlobRecord, BundleManifest, ENVELOPE_NAME, PAYLOAD_TYPE};
use airlock::bundle::sign::{generate, Envelope};
use airlock::model::Digest;
use rand::{Rng, SeedableRng};
use zeekstd::SeekTable;

use crate::util::*;

/// A tar member for crafting: a raw header and the data that follows it.
struct Raw {
    header: [u8; 512],
    data: Vec<u8>,
}

fn header(name: &str, size: u64, kind: tar::EntryType) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    // Written byte by byte: the tar crate refuses the hostile names we need.
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    *h.as_bytes()
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        header: header(name, data.len() as u64, tar::EntryType::Regular),
        data: data.to_vec(),
    }
}

/// Writes members the way the format spec lays them out: a header frame,
/// data frames, the end frame and the seek table. `lie` may change a
/// frame's declared decompressed size in the seek table.
fn craft(path: &Path, members: &[Raw], lie: Option<(usize, u32)>) {
    let mut out = Vec::new();
    let mut table = SeekTable::new();
    let mut n = 0;
    let mut frame = |out: &mut Vec<u8>, data: &[u8]| {
        let c = zstd::bulk::compress(data, 3).unwrap();
        out.extend_from_slice(&c);
        let d = match lie {
            Some((i, d)) if i == n => d,
            _ => data.len() as u32,
        };
        table.log_frame(c.len() as u32, d).unwrap();
        n += 1;
    };
    for m in members {
        frame(&mut out, &m.header);
        let mut data = m.data.clone();
        data.resize(data.len().div_ceil(512) * 512, 0);
        if !data.is_empty() {
            frame(&mut out, &data);
        }
    }
    frame(&mut out, &[0u8; 1024]);
    let mut ser = table.into_serializer();
    std::io::copy(&mut ser, &mut out).unwrap();
    std::fs::write(path, out).unwrap();
}

/// A bundle of one empty-config image whose envelope says what `tweak` makes it.
fn envelope_member(tweak: impl Fn(&mut serde_json::Value)) -> (Raw, Raw, Raw) {
    let index = br#"{"schemaVersion":2,"manifests":[]}"#.to_vec();
    let manifest = BundleManifest {
        format_version: 1,
        tool: "test".into(),
        created: "2024-01-01T00:00:00Z".into(),
        index: BlobRecord {
            digest: Digest::of(&index),
            size: index.len() as u64,
            media_type: String::new(),
        },
        images: vec![],
        blobs: vec![],
        delta: None,
    };
    let mut value = serde_json::to_value(&manifest).unwrap();
    tweak(&mut value);
    let env = Envelope::new(
        PAYLOAD_TYPE,
        &serde_json::to_vec(&value).unwrap(),
        Some(&generate().unwrap()),
    );
    (
        file(ENVELOPE_NAME, &serde_json::to_vec(&env).unwrap()),
        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", &index),
    )
}

fn verify_fails(path: &Path) -> String {
    airlock(
        &["verify", "--allow-unsigned", path.to_str().unwrap()],
        path.parent().unwrap(),
    )
    .fails()
}

fn crafted(t: &Path, name: &str, members: Vec<Raw>) -> PathBuf {
    let p = t.join(name);
    craft(&p, &members, None);
    p
}

#[test]
fn the_crafting_helper_makes_bundles_that_verify() {
    // Guards the tests below: their bundles fail for the one reason each
    // introduces, not because the helper is wrong.
    let t = scratch();
    let (a, b, c) = envelope_member(|_| {});
    let p = crafted(t.path(), "good.airlock", vec![a, b, c]);
    airlock(
        &["verify", "--allow-unsigned", p.to_str().unwrap()],
        t.path(),
    )
    .ok();
}

#[test]
fn unknown_format_version_is_refused_first() {
    let t = scratch();
    let (a, b, c) = envelope_member(|v| {
        v["formatVersion"] = 3.into();
        v["somethingNew"] = "x".into();
    });
    let err = verify_fails(&crafted(t.path(), "v2.airlock", vec![a, b, c]));
    assert!(err.contains("format version 3 is not supported"), "{err}");
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn links_devices_and_unsafe_paths_are_refused() {
    let t = scratch();
    let cases: Vec<(&str, Raw, &str)> = vec![
        (
            "symlink",
            Raw {
                header: header("blobs/sha256/x", 0, tar::EntryType::Symlink),
                data: vec![],
            },
            "Symlink",
        ),
        (
            "hardlink",
            Raw {
                header: header("blobs/sha256/x", 0, tar::EntryType::Link),
                data: vec![],
            },
            "Link",
        ),
        (
            "device",
            Raw {
                header: header("dev", 0, tar::EntryType::Char),
                data: vec![],
            },
            "Char",
        ),
        (
            "fifo",
            Raw {
                header: header("fifo", 0, tar::EntryType::Fifo),
                data: vec![],
            },
            "Fifo",
        ),
        ("absolute", file("/etc/cron.d/evil", b"x"), "absolute"),
        ("traversal", file("blobs/../../evil", b"x"), "'..'"),
        (
            "pax",
            Raw {
                header: header("pax", 0, tar::EntryType::XHeader),
                data: vec![],
            },
            "regular files",
        ),
    ];
    for (label, evil, expect) in cases {
        let (a, b, c) = envelope_member(|_| {});
        let p = crafted(t.path(), &format!("{label}.airlock"), vec![a, b, c, evil]);
        let err = verify_fails(&p);
        assert!(err.contains(expect), "{label}: {err}");
        assert!(err.contains("member 3"), "{label} names the member: {err}");
    }
    // Nothing was written anywhere while refusing them.
    assert!(!Path::new("/etc/cron.d/evil").exists());
}

#[test]
fn duplicate_and_unlisted_members_are_refused() {
    let t = scratch();
    let (a, b, c) = envelope_member(|_| {});
    let dup = file("oci-layout", b"again");
    let err = verify_fails(&crafted(t.path(), "dup.airlock", vec![a, b, c, dup]));
    assert!(err.contains("member oci-layout appears twice"), "{err}");

    let (a, b, c) = envelope_member(|_| {});
    let extra = file(&Digest::of(b"x").layout_path(), b"x");
    let err = verify_fails(&crafted(t.path(), "extra.airlock", vec![a, b, c, extra]));
    assert!(err.contains("is not in the signed manifest"), "{err}");

    let (a, b, c) = envelope_member(|_| {});
    let err = verify_fails(&crafted(t.path(), "order.airlock", vec![a, c, b]));
    assert!(err.contains("member 1 is index.json"), "{err}");
}

#[test]
fn sizes_that_lie_are_refused() {
    let t = scratch();
    let (a, b, c) = envelope_member(|_| {});
    let mut liar = file("blobs/sha256/liar", &[7u8; 2000]);
    liar.header = header("blobs/sha256/liar", 100, tar::EntryType::Regular);
    let err = verify_fails(&crafted(t.path(), "liar.airlock", vec![a, b, c, liar]));
    assert!(
        err.contains("declares 100 bytes but its frames hold 2048"),
        "{err}"
    );
}

#[test]
fn frames_that_decompress_beyond_their_declared_size_are_refused() {
    let t = scratch();
    // 64 MiB of zeros compresses to a few KiB; the table claims 1 KiB. The
    // member is listed in the signed manifest, so verify reads its data.
    let claimed = Digest::of(&[0u8; 1024]);
    let listed = claimed.clone();
    let (a, b, c) = envelope_member(move |v| {
        v["blobs"] = serde_json::json!([{"digest": listed, "size": 1024}]);
    });
    let name = claimed.layout_path();
    let p = t.path().join("bomb.airlock");
    // Frames: three members × (header, data), then the bomb's header (6) and data (7).
    let members = vec![
        a,
        b,
        c,
        Raw {
            header: header(&name, 1024, tar::EntryType::Regular),
            data: vec![0u8; 64 << 20],
        },
    ];
    craft(&p, &members, Some((7, 1024)));
    let err = verify_fails(&p);
    assert!(err.contains("frame 7") && err.contains("damaged"), "{err}");
    assert!(err.contains(&name), "names the member: {err}");

    // A table entry larger than any frame may be is refused before reading.
    let (a, b, c) = envelope_member(|_| {});
    let p = t.path().join("huge.airlock");
    craft(
        &p,
        &[a, b, c, file("blobs/sha256/h", b"x")],
        Some((7, 1 << 30)),
    );
    let err = verify_fails(&p);
    assert!(
        err.contains("frame 7") && err.contains("more than the format allows"),
        "{err}"
    );
}

#[test]
fn truncated_and_extended_bundles_are_refused() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let full = std::fs::read(&bundle).unwrap();
    for cut in [0, 100, full.len() / 2, full.len() - 30, full.len() - 1] {
        let p = t.path().join(format!("cut{cut}.airlock"));
        std::fs::write(&p, &full[..cut]).unwrap();
        let err = verify_fails(&p);
        assert!(err.contains("truncated"), "cut at {cut}: {err}");
    }
    let mut longer = full.clone();
    longer.extend_from_slice(b"trailing junk");
    let p = t.path().join("longer.airlock");
    std::fs::write(&p, longer).unwrap();
    let err = verify_fails(&p);
    assert!(
        err.contains("appended") || err.contains("seek table"),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_anywhere_fails_verification_and_names_where() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-2", layout().display())]);
    let full = std::fs::read(&bundle).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xa1_710c);
    let mut positions: Vec<usize> = (0..40).map(|_| rng.random_range(0..full.len())).collect();
    // Always include the edges: first frame, last bytes (seek table footer).
    positions.extend([0, 5, full.len() - 1, full.len() - 9]);
    let p = t.path().join("flipped.airlock");
    for pos in positions {
        let mut bytes = full.clone();
        bytes[pos] ^= 1 << rng.random_range(0..8);
        std::fs::write(&p, &bytes).unwrap();
        let err = verify_signed(&p, &public).fails();
        assert!(
            err.contains("member")
                || err.contains("frame")
                || err.contains("seek table")
                || err.contains("signature"),
            "flip at {pos} of {}: the error names nothing: {err}",
            full.len()
        );
    }
}

#[test]
fn a_swapped_blob_is_named_with_the_images_that_use_it() {
    // Re-pack with a blob member replaced by other bytes of the same size:
    // structure and signature are fine, the digest is not.
    let t = scratch();
    let lay = t.path().join("lay");
    copy_dir(&layout(), &lay);
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", lay.display())]);
    let x = t.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(
        "sh",
        &[
            "-c",
            &format!(
                "zstd -dc '{}' | tar -x -C '{}'",
                bundle.display(),
                x.display()
            ),
        ],
        t.path(),
    )
    .ok();
    // Find the biggest blob (the layer) and overwrite it in place.
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(x.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let layer = blobs.last().unwrap().clone();
    let len = std::fs::metadata(&layer).unwrap().len() as usize;
    std::fs::write(&layer, vec![0x42u8; len]).unwrap();
    // Rebuild the bundle with the same member order, using the helper.
    let order = run(
        "sh",
        &["-c", &format!("zstd -dc '{}' | tar -t", bundle.display())],
        t.path(),
    )
    .ok()
    .stdout();
    let members: Vec<Raw> = order
        .lines()
        .map(|name| file(name, &std::fs::read(x.join(name)).unwrap()))
        .collect();
    let p = crafted(t.path(), "swapped.airlock", members);
    let err = verify_signed(&p, &public).fails();
    let name = layer.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name), "{err}");
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(
        err.contains("localhost/lay:app-1"),
        "names the image: {err}"
    );

    // Exporting it fails on that blob, and the layout is never named: no
    // index.json appears, and the bad blob is not in place.
    let out = t.path().join("out");
    let err = export(&p, &public, &format!("oci:{}", out.display()), &[]).fails();
    assert!(err.contains(name), "{err}");
    assert!(!out.join("index.json").exists());
    assert!(!out.join("blobs/sha256").join(name).exists());
}

#[test]
fn a_forged_frame_count_is_refused_without_allocating_for_it() {
    // Found by the bundle_file fuzzer: the footer claimed 2^27 frames and the
    // seek-table parser reserved 2 GiB for them.
    let t = scratch();
    let mut bytes = vec![0u8; 64];
    bytes.extend_from_slice(&0x0800_0000u32.to_le_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&zeekstd::SEEKABLE_MAGIC_NUMBER.to_le_bytes());
    let p = t.path().join("forged.airlock");
    std::fs::write(&p, bytes).unwrap();
    let run = run(
        "/usr/bin/time",
        &[
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_airlock"),
            "verify",
            "--allow-unsigned",
            p.to_str().unwrap(),
        ],
        t.path(),
    );
    let err = run.stderr();
    assert!(err.contains("more than the file can hold"), "{err}");
    let peak_kib: u64 = err.lines().last().unwrap().trim().parse().unwrap();
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn verify_reads_a_stream_and_refuses_cut_or_damaged_ones() {
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let bin = env!("CARGO_BIN_EXE_airlock");
    let verify_stdin = |file: &Path, key: &Path| {
        run(
            "sh",
            &[
                "-c",
                &format!(
                    "{bin} verify - --pub {} < {}",
                    key.display(),
                    file.display()
                ),
            ],
            t.path(),
        )
    };
    let ok = verify_stdin(&bundle, &public).ok();
    assert!(ok.stdout().contains("OK: 5 image(s)"), "{}", ok.stdout());

    let full = std::fs::read(&bundle).unwrap();
    let cut = t.path().join("cut.airlock");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).unwrap();
    let err = verify_stdin(&cut, &public).fails();
    assert!(
        err.contains("cut short") || err.contains("truncated"),
        "{err}"
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..12 {
        let mut bytes = full.clone();
        // Anywhere but the trailing seek table, which a stream reader skips.
        let at = rng.random_range(0..full.len() - 400);
        bytes[at] ^= 1 << rng.random_range(0..8);
        let bad = t.path().join("bad.airlock");
        std::fs::write(&bad, bytes).unwrap();
        let err = verify_stdin(&bad, &public).fails();
        assert!(
            err.contains("member") || err.contains("stream") || err.contains("signature"),
            "flip at {at}: {err}"
        );
    }
    let (_, other) = keys(t.path(), "other");
    let err = verify_stdin(&bundle, &other).fails();
    assert!(err.contains("not by the trusted key"), "{err}");
}
