//! One table of hostile bundles (issue #11), each run through every reader:
//! `verify FILE`, `verify -`, `export FILE`, `import FILE` and `import -`
//! against a real registry. Each must refuse with exit 1 and a message
//! naming the member or byte offset at fault; nothing may reach the
//! registry (its catalog stays empty) or the export directory.
//!
//! The bundles start from a real pack, taken apart into members and the
//! signed manifest, altered, re-signed with the packing key where the
//! manifest changes, and laid out again in frames byte by byte.

pub(crate) mod craft;
mod labels;

use std::path::Path;

use airlock::model::Digest;
use craft::*;
use labels::{cuts, label_cases};

use crate::harness::{Config, Registry};
use crate::util::{airlock, fixtures, keys, layout, packed, run, scratch, verify_signed, Run};

/// A hostile bundle: its label, its bytes, and what the file and stream
/// readers' messages must contain.
struct Case {
    label: &'static str,
    bytes: Vec<u8>,
    file: &'static str,
    stream: &'static str,
}

/// The cases one family of attacks builds.
#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    /// A hostile bundle, and what the file and stream readers must say.
    fn add(
        &mut self,
        label: &'static str,
        bytes: Vec<u8>,
        file: &'static str,
        stream: &'static str,
    ) {
        self.0.push(Case {
            label,
            bytes,
            file,
            stream,
        })
    }
}

fn cases(parts: &Parts, key: &Path) -> Vec<Case> {
    let mut all = frame_cases(parts);
    all.extend(tar_cases(parts));
    all.extend(manifest_cases(parts, key));
    all.extend(size_cases(parts, key));
    all.extend(label_cases(parts));
    all
}

/// Bytes no frame accounts for, and frames that break §5.
fn frame_cases(parts: &Parts) -> Vec<Case> {
    let good = parts.frames();
    let mut cases = Cases::default();

    // 12 MiB of attacker data in skippable frames, appended inside the
    // seek-table entries of three data frames.
    let mut e = entries(&good);
    for i in [2, 4, 6] {
        e[i].0.extend_from_slice(&skippable(0x184D_2A50, 4 * MIB));
    }
    cases.add(
        "smuggled inside entries",
        write(&e),
        "follow its zstd frame",
        "skippable frame",
    );

    // A skippable frame as an entry of its own, between two members.
    let mut e = entries(&good);
    e.insert(2, (skippable(0x184D_2A53, 1024), 0));
    cases.add(
        "skippable frame between members",
        write(&e),
        "at byte",
        "skippable frame",
    );

    // A data frame that does not declare its content size.
    let mut e = entries(&good);
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_contentsize(false).unwrap();
    e[4].0 = c.compress(&good[4]).unwrap();
    cases.add(
        "frame without a content size",
        write(&e),
        "content size",
        "content size",
    );

    // RFC 8878's unused header bit set on a data frame: zstd ignores it,
    // so the content and every digest are unchanged.
    let mut e = entries(&good);
    e[4].0[4] |= 0x10;
    cases.add("unused header bit", write(&e), "unused bit", "unused bit");

    cases.0
}

/// Tar rules (§4) and what may follow the archive.
fn tar_cases(parts: &Parts) -> Vec<Case> {
    let good = parts.frames();
    let mut cases = Cases::default();

    // A pax extension header before the first blob.
    let mut f = good.clone();
    let pax = b"30 path=blobs/sha256/smuggled\n".to_vec();
    let at = header_frame(&f, "blobs/");
    let mut padded = pax.clone();
    padded.resize(512, 0);
    f.insert(at, padded);
    f.insert(
        at,
        header("PaxHeader", pax.len() as u64, tar::EntryType::XHeader).to_vec(),
    );
    cases.add("pax header", write(&entries(&f)), "member 3", "member 3");

    // A GNU long-name header before the first blob.
    let mut f = good.clone();
    let at = header_frame(&f, "blobs/");
    f.insert(at, vec![b'a'; 512]);
    f.insert(
        at,
        header("././@LongLink", 200, tar::EntryType::GNULongName).to_vec(),
    );
    cases.add("GNU long name", write(&entries(&f)), "member 3", "member 3");

    // index.json's size in base-256 (GNU binary), near u64::MAX.
    let mut f = good.clone();
    let at = header_frame(&f, "index.json");
    let mut size = [0xFF; 12];
    size[..4].copy_from_slice(&[0x80, 0, 0, 0]);
    f[at] = with_size_field(&f[at], size);
    let (file, stream) = ("index.json: its size", "index.json: its size");
    cases.add("base-256 size", write(&entries(&f)), file, stream);

    // Non-zero padding after index.json.
    let mut f = good.clone();
    let at = header_frame(&f, "index.json") + 1;
    *f[at].last_mut().unwrap() = b'!';
    cases.add(
        "non-zero padding",
        write(&entries(&f)),
        "padding",
        "padding",
    );

    // Non-zero end-of-archive blocks.
    let mut f = good.clone();
    f.last_mut().unwrap()[700] = 1;
    cases.add(
        "non-zero end blocks",
        write(&entries(&f)),
        "not zero",
        "not zero",
    );

    // A frame after the end of the archive, listed in the seek table.
    let mut f = good.clone();
    f.push(vec![7u8; 512]);
    cases.add(
        "frame after the end",
        write(&entries(&f)),
        "follow the end of the archive",
        "follows the end of the archive",
    );

    // Bytes after the seek table.
    let mut b = write(&entries(&good));
    b.extend_from_slice(&skippable(0x184D_2A50, 4096));
    cases.add(
        "data after the seek table",
        b,
        "appended",
        "follows the seek table",
    );

    // A seek table with per-frame checksums (4 unchecked bytes a frame).
    let e = entries(&good);
    let mut b: Vec<u8> = e.iter().flat_map(|(c, _)| c.clone()).collect();
    let mut t = Vec::new();
    for (c, d) in &e {
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(&d.to_le_bytes());
        t.extend_from_slice(b"evil");
    }
    t.extend_from_slice(&(e.len() as u32).to_le_bytes());
    t.push(0x80);
    t.extend_from_slice(&zeekstd::SEEKABLE_MAGIC_NUMBER.to_le_bytes());
    b.extend_from_slice(&0x184D_2A5Eu32.to_le_bytes());
    b.extend_from_slice(&(t.len() as u32).to_le_bytes());
    b.extend_from_slice(&t);
    cases.add(
        "seek table with checksums",
        b,
        "seek table",
        "seek table at byte",
    );

    cases.0
}

/// Members that are not the signed list; the manifest re-signed with the
/// packing key where it changes.
fn manifest_cases(parts: &Parts, key: &Path) -> Vec<Case> {
    let mut cases = Cases::default();

    // A 5 MiB frame: an extra blob in one frame, re-signed.
    let mut p = parts.clone();
    p.add_blob(vec![0u8; 5 * MIB], "application/octet-stream");
    p.resign(key);
    let mut f = p.frames();
    let end = f.pop().unwrap();
    let tail = f.pop().unwrap();
    f.last_mut().unwrap().extend_from_slice(&tail);
    f.push(end);
    cases.add(
        "a 5 MiB frame",
        write(&entries(&f)),
        "more than the format allows",
        "1 to 4194304",
    );

    // The manifest lists the last blob twice, and the member is there twice.
    let mut p = parts.clone();
    let blobs = p.manifest["blobs"].as_array_mut().unwrap();
    blobs.push(blobs.last().unwrap().clone());
    p.members.push(p.members.last().unwrap().clone());
    p.resign(key);
    cases.add(
        "duplicated blob",
        write(&entries(&p.frames())),
        "appears twice",
        "twice",
    );

    // index.json altered (one image dropped) and re-signed with it: its
    // digest is the signed one, but it no longer matches the image list.
    let mut p = parts.clone();
    let mut index: serde_json::Value = serde_json::from_slice(&p.members[2].1).unwrap();
    index["manifests"].as_array_mut().unwrap().pop();
    let raw = serde_json::to_vec(&index).unwrap();
    p.manifest["index"] = serde_json::json!({"digest": Digest::of(&raw), "size": raw.len()});
    p.members[2].1 = raw;
    p.resign(key);
    cases.add(
        "index.json not the image list",
        write(&entries(&p.frames())),
        "does not match the signed image list",
        "does not match the signed image list",
    );

    // An extra member after the last blob, not in the manifest.
    let mut p = parts.clone();
    p.members
        .push((Digest::of(b"extra").layout_path(), b"extra".to_vec()));
    cases.add(
        "extra member",
        write(&entries(&p.frames())),
        "is not in the signed manifest",
        "follows the last blob",
    );

    // The last two blob members swapped.
    let mut p = parts.clone();
    let n = p.members.len();
    p.members.swap(n - 1, n - 2);
    cases.add(
        "swapped members",
        write(&entries(&p.frames())),
        "the signed manifest expects",
        "belongs there",
    );

    // An unused blob, listed and signed.
    let mut p = parts.clone();
    p.add_blob(b"nobody uses me".to_vec(), "application/octet-stream");
    p.resign(key);
    cases.add(
        "unused blob",
        write(&entries(&p.frames())),
        "no image uses it",
        "no image uses it",
    );

    cases.0
}

/// Sizes in the signed manifest that would make a reader allocate them.
fn size_cases(parts: &Parts, key: &Path) -> Vec<Case> {
    let mut cases = Cases::default();

    // A manifest record and header claiming a 1 TiB manifest blob.
    let mut p = parts.clone();
    let fake = Digest::of(b"huge");
    p.manifest["blobs"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "digest": fake, "size": 1u64 << 40,
        "mediaType": "application/vnd.oci.image.manifest.v1+json"}));
    p.resign(key);
    let mut f = p.frames();
    let end = f.pop().unwrap();
    f.push(header(&fake.layout_path(), 1 << 40, tar::EntryType::Regular).to_vec());
    f.push(vec![0u8; 4 * MIB]);
    f.push(end);
    cases.add(
        "1 TiB manifest record",
        write(&entries(&f)),
        "cut short",
        "more than the",
    );

    // index.json claiming 1 TiB, its frames listed in the seek table (as
    // garbage: the reader must refuse before reading, let alone allocating).
    let mut p = parts.clone();
    p.manifest["index"]["size"] = (1u64 << 40).into();
    p.resign(key);
    let f = p.frames();
    let at = header_frame(&f, "index.json");
    let mut e = entries(&f[..at]);
    e.push((
        compress(&header("index.json", 1 << 40, tar::EntryType::Regular)),
        512,
    ));
    e.extend((0..(1 << 40) / (4 * MIB)).map(|_| (vec![0u8], (4 * MIB) as u32)));
    e.extend(entries(&f[at + 2..]));
    cases.add("1 TiB index.json", write(&e), "index.json", "index.json");

    cases.0
}

#[test]
fn every_reader_refuses_every_hostile_bundle_and_nothing_leaks() {
    let t = scratch();
    let (bundle, public) = packed(
        t.path(),
        &[
            &format!("oci:{}:app-1", layout().display()),
            &format!("oci:{}:app-2", layout().display()),
        ],
    );
    let key = t.path().join("signer");
    let parts = Parts::of(&bundle);
    let bin = env!("CARGO_BIN_EXE_airlock");
    let p = public.display().to_string();
    let state = t.path().join("state");

    // The helpers make a bundle every reader accepts, before it is altered.
    let check = t.path().join("check.airlock");
    std::fs::write(&check, write(&entries(&parts.frames()))).unwrap();
    verify_signed(&check, &public).ok();
    let e = entries(&parts.frames());
    let set = volumes(&e, &cuts(&e), &parts.id(), |_| ());
    std::fs::write(&check, set).unwrap();
    verify_signed(&check, &public).ok();
    run(
        "sh",
        &[
            "-c",
            &format!("{bin} verify - --pub {p} < {}", check.display()),
        ],
        t.path(),
    )
    .ok();

    let cases = cases(&parts, &key);
    assert_eq!(cases.len(), 24);
    let mut failures = Vec::new();
    for case in cases {
        // A fresh registry: import FILE runs first and must leave it empty.
        let reg = Registry::start(Config::default());
        let h = reg.host.clone();
        let file = t.path().join("hostile.airlock");
        std::fs::write(&file, &case.bytes).unwrap();
        let f = file.display().to_string();
        let out = t.path().join("out");
        let s = state.display();
        let runs = [
            (
                "verify FILE",
                format!("{bin} verify {f} --pub {p}"),
                case.file,
            ),
            (
                "verify -",
                format!("{bin} verify - --pub {p} < {f}"),
                case.stream,
            ),
            (
                "export FILE",
                format!("{bin} export -q {f} --pub {p} --to oci:{}", out.display()),
                case.file,
            ),
            (
                "import FILE",
                format!("{bin} import {f} --pub {p} --to {h}/x --plain-http={h} --state {s}"),
                case.file,
            ),
            (
                "import -",
                format!("{bin} import - --pub {p} --to {h}/x --plain-http={h} --state {s} < {f}"),
                case.stream,
            ),
        ];
        for (what, cmd, expect) in runs {
            let r = run("sh", &["-c", &cmd], t.path());
            if let Some(why) = refusal(&r, expect, &reg, &out, what == "import -") {
                failures.push(format!("{}: {what}: {why}", case.label));
            }
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Why a run is not a proper refusal (`None` when it is): exit 1 with a
/// rendered error containing `expect` and naming a member or an offset,
/// nothing exported, nothing in the registry (for a stream: no tag).
fn refusal(r: &Run, expect: &str, reg: &Registry, out: &Path, stream: bool) -> Option<String> {
    let err = r.stderr();
    if r.out.status.code() != Some(1) || err.contains("panicked") || !err.contains("airlock:") {
        return Some(format!(
            "status {}, not a clean refusal:\n{err}",
            r.out.status
        ));
    }
    if !err.contains(expect) {
        return Some(format!("expected {expect:?}:\n{err}"));
    }
    let names = ["member", "blob sha256:", "byte", "frame"];
    if !names.iter().any(|n| err.contains(n)) {
        return Some(format!("names neither member nor offset:\n{err}"));
    }
    if out.join("index.json").exists() {
        return Some("exported".into());
    }
    let catalog = reg.catalog();
    // A stream cannot be rewound: blobs go up as they arrive (signed
    // content, each checked against its digest), but a stream refused
    // later commits no manifest and no tag.
    if stream && !no_tags(reg, &catalog) {
        return Some(format!("committed: {catalog}"));
    }
    if !stream && !catalog.contains(r#""repositories":[]"#) {
        return Some(format!("pushed: {catalog}"));
    }
    None
}

/// No repository of the registry has a tag.
fn no_tags(reg: &Registry, catalog: &str) -> bool {
    let v: serde_json::Value = serde_json::from_str(catalog).unwrap();
    v["repositories"].as_array().unwrap().iter().all(|repo| {
        let code = format!(
            "import urllib.request;print(urllib.request.urlopen('http://{}/v2/{}/tags/list').read().decode())",
            reg.host,
            repo.as_str().unwrap()
        );
        let out = run("python3", &["-c", &code], Path::new("/")).stdout();
        let tags: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        tags["tags"].as_array().is_none_or(|t| t.is_empty())
    })
}

#[test]
fn concatenated_volumes_read_as_one_stream_and_a_forged_label_is_refused() {
    // The spec's promise (§13): volumes concatenated in order are a bundle;
    // the stream reader checks their labels as the file reader does.
    let t = scratch();
    let (key, public) = keys(t.path(), "signer");
    let b = t.path().join("v.airlock");
    let large = format!("oci:{}", fixtures().join("large").display());
    airlock(
        &[
            "pack",
            "-q",
            "-o",
            b.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--split",
            "1M",
            &large,
        ],
        t.path(),
    )
    .ok();
    let bin = env!("CARGO_BIN_EXE_airlock");
    let vols = format!("{}/v.airlock.0*", t.path().display());
    let ok = run(
        "sh",
        &[
            "-c",
            &format!("cat {vols} | {bin} verify - --pub {}", public.display()),
        ],
        t.path(),
    )
    .ok();
    assert!(ok.stdout().contains("OK"), "{}", ok.stdout());
    // Volume 1 again in place of volume 2: its label is out of place.
    let v1 = t.path().join("v.airlock.001");
    let cmd = format!(
        "cat {} {} | {bin} verify - --pub {}",
        v1.display(),
        v1.display(),
        public.display()
    );
    let err = run("sh", &["-c", &cmd], t.path()).fails();
    assert!(err.contains("volume label at byte"), "{err}");
}

#[test]
fn an_unsigned_manifest_whose_sizes_overflow_is_refused_without_a_panic() {
    let t = scratch();
    let (bundle, _) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let mut p = Parts::of(&bundle);
    for i in 0..2u8 {
        p.manifest["blobs"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "digest": Digest::of(&[i]), "size": u64::MAX - 1,
            "mediaType": "application/octet-stream"}));
    }
    p.unsign();
    let file = t.path().join("overflow.airlock");
    std::fs::write(&file, write(&entries(&p.frames()))).unwrap();
    let f = file.to_str().unwrap();
    for args in [vec!["verify", f, "--allow-unsigned"], vec!["inspect", f]] {
        let r = airlock(&args, t.path());
        let err = r.stderr();
        assert_eq!(r.out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("add up to more than"), "{args:?}: {err}");
    }
}
