//! The stream reader against streams crafted frame by frame: it accepts a
//! well-formed one and refuses, naming where, what the file reader refuses.

use super::*;
use crate::bundle::sign::Envelope;
use crate::bundle::tar::build_header;

/// The decompressed content of each frame of an unsigned bundle of no
/// images, as the writer lays them out: header, data, …, end frame.
fn frames() -> Vec<Vec<u8>> {
    let index = br#"{"schemaVersion":2,"manifests":[]}"#.to_vec();
    let manifest = BundleManifest {
        format_version: FORMAT_VERSION,
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
    let env = Envelope::new(PAYLOAD_TYPE, &serde_json::to_vec(&manifest).unwrap(), None);
    let mut out = Vec::new();
    for (name, data) in [
        (ENVELOPE_NAME, serde_json::to_vec(&env).unwrap()),
        (OCI_LAYOUT_NAME, crate::oci::OCI_LAYOUT.to_vec()),
        (INDEX_NAME, index),
    ] {
        out.push(build_header(name, data.len() as u64, 0).to_vec());
        let mut data = data;
        data.resize(padded(data.len() as u64) as usize, 0);
        out.push(data);
    }
    out.push(vec![0u8; END_FRAME]);
    out
}

/// Compresses each frame and appends the seek table; `raw` may alter the
/// compressed bytes before the table is written (the table then lists
/// what `raw` left, as a forger would write it).
fn stream(frames: &[Vec<u8>], raw: impl Fn(&mut Vec<Vec<u8>>)) -> Vec<u8> {
    let mut compressed: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut c = zstd::bulk::Compressor::new(3).unwrap();
            c.include_contentsize(true).unwrap();
            c.include_checksum(true).unwrap();
            c.compress(f).unwrap()
        })
        .collect();
    raw(&mut compressed);
    let mut table = zeekstd::SeekTable::new();
    let mut out = Vec::new();
    for (c, f) in compressed.iter().zip(frames) {
        table.log_frame(c.len() as u32, f.len() as u32).unwrap();
        out.extend_from_slice(c);
    }
    std::io::copy(&mut table.into_serializer(), &mut out).unwrap();
    out
}

fn read(bytes: &[u8]) -> Result<BundleManifest> {
    struct Nothing;
    impl StreamVisitor for Nothing {
        fn start(&mut self, _: &BundleManifest, _: &Digest) -> Result<()> {
            Ok(())
        }
        fn blob(&mut self, _: &BlobRecord, _: &mut dyn Read) -> Result<()> {
            Ok(())
        }
    }
    read_stream(bytes, None, &mut Nothing)
}

fn refused(bytes: &[u8], expect: &str) {
    let err = read(bytes).unwrap_err().to_string();
    assert!(err.contains(expect), "expected {expect:?}: {err}");
}

#[test]
fn reads_a_well_formed_stream() {
    read(&stream(&frames(), |_| {})).unwrap();
}

#[test]
fn refuses_what_the_file_reader_refuses() {
    // Non-zero padding after index.json (the last data before the end).
    let mut f = frames();
    let last = f.len() - 2;
    *f[last].last_mut().unwrap() = 1;
    refused(&stream(&f, |_| {}), "padding");
    // No end-of-archive blocks.
    let mut f = frames();
    f.pop();
    refused(&stream(&f, |_| {}), "truncated");
    // Non-zero end-of-archive blocks.
    let mut f = frames();
    f.last_mut().unwrap()[1000] = 1;
    refused(
        &stream(&f, |_| {}),
        "should end the archive but is not zero",
    );
    // A pax header where the envelope belongs.
    let mut h = tar::Header::new_ustar();
    h.set_path(ENVELOPE_NAME).unwrap();
    h.set_size(0);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    let mut f = frames();
    f.insert(0, h.as_bytes().to_vec());
    refused(&stream(&f, |_| {}), "member 0");
    // A header and its data in one frame.
    let mut f = frames();
    let data = f.remove(3);
    f[2].extend_from_slice(&data);
    refused(
        &stream(&f, |_| {}),
        "should hold the tar header of member 1",
    );
}

#[test]
fn refuses_bytes_that_no_frame_accounts_for() {
    let skippable = |len: u32| {
        let mut s = 0x184D_2A50u32.to_le_bytes().to_vec();
        s.extend_from_slice(&len.to_le_bytes());
        s.resize(8 + len as usize, 0xAA);
        s
    };
    // Smuggled inside the seek-table entry of oci-layout's data frame.
    let s = stream(&frames(), |c| c[3].extend_from_slice(&skippable(4096)));
    refused(&s, "skippable frame (magic 0x184d2a50)");
    // After the seek table.
    let mut s = stream(&frames(), |_| {});
    s.extend_from_slice(b"x");
    refused(&s, "data follows the seek table");
    // Between the end frame and the seek table.
    let good = stream(&frames(), |_| {});
    let table = 8 + 9 + 8 * frames().len();
    let mut s = good[..good.len() - table].to_vec();
    s.extend_from_slice(&skippable(16));
    s.extend_from_slice(&good[good.len() - table..]);
    refused(&s, "skippable frame");
    // No seek table at all.
    refused(&good[..good.len() - table], "without the seek table");
    // A seek table that does not list the frames as they are.
    let mut s = good.clone();
    let at = s.len() - table + 8;
    s[at] ^= 1;
    refused(&s, "does not list the frames");
}

#[test]
fn refuses_frames_without_a_size_or_over_the_limit() {
    // oci-layout's data frame without a content size.
    let mut f = frames();
    let s = stream(&f, |c| {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        z.include_contentsize(false).unwrap();
        c[3] = z.compress(&frames()[3]).unwrap();
    });
    refused(&s, "does not declare its content size");
    // index.json declared 5 MiB: refused from the frame header, before
    // 5 MiB are decompressed.
    f[5].resize(5 << 20, 0);
    refused(&stream(&f, |_| {}), "a frame holds 1 to 4194304");
}

#[test]
fn a_huge_manifest_record_is_refused_before_allocating() {
    let record = BlobRecord {
        digest: Digest::of(b"x"),
        size: 1 << 40,
        media_type: crate::model::image::media::OCI_MANIFEST.into(),
    };
    let err = Received::new(&BundleManifest {
        format_version: 1,
        tool: String::new(),
        created: String::new(),
        index: record.clone(),
        images: vec![],
        blobs: vec![],
        delta: None,
    })
    .unwrap()
    .keep(&record, &mut std::io::empty())
    .unwrap_err();
    assert!(err.to_string().contains("more than the"), "{err}");
}

#[test]
fn a_frame_that_decompresses_past_its_declared_size_is_refused() {
    // index.json's data frame declares 512 bytes (its size field patched)
    // but holds 5000: decoding stops at the 512-byte buffer.
    let mut f = frames();
    f[5].resize(5120, 0);
    let s = stream(&f, |c| {
        let fcs_at = 4 + 1; // single segment: no window descriptor
        assert_eq!(c[5][4] >> 6, 1, "a 2-byte content size field");
        c[5][fcs_at..fcs_at + 2].copy_from_slice(&(512u16 - 256).to_le_bytes());
    });
    refused(&s, "is damaged");
}
