//! Crafting hostile bundles: a packed bundle taken apart into members and
//! its signed manifest, altered, re-signed with the packing key, and laid
//! out again in frames and a seek table byte by byte.

use std::io::Read;
use std::path::Path;

use airlock::bundle::format::{ENVELOPE_NAME, LABEL_LEN, PAYLOAD_TYPE};
use airlock::bundle::sign::{load_private, Envelope};
use airlock::bundle::volume::Label;
use airlock::model::Digest;
use sha2::{Digest as _, Sha256};
use zeekstd::SeekTable;

pub const MIB: usize = 1 << 20;

/// A packed bundle taken apart: its members and its signed manifest.
#[derive(Clone)]
pub struct Parts {
    pub members: Vec<(String, Vec<u8>)>,
    pub manifest: serde_json::Value,
}

impl Parts {
    pub fn of(bundle: &Path) -> Parts {
        let tar = zstd::decode_all(&std::fs::read(bundle).unwrap()[..]).unwrap();
        let mut members = Vec::new();
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_str().unwrap().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            members.push((name, data));
        }
        let env: Envelope = serde_json::from_slice(&members[0].1).unwrap();
        let manifest = serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
        Parts { members, manifest }
    }

    /// The envelope member, re-signed over the (altered) manifest.
    pub fn resign(&mut self, key: &Path) {
        let key = load_private(key).unwrap();
        let env = Envelope::new(
            PAYLOAD_TYPE,
            &serde_json::to_vec(&self.manifest).unwrap(),
            Some(&key),
        );
        self.members[0] = (ENVELOPE_NAME.into(), serde_json::to_vec(&env).unwrap());
    }

    /// The envelope member over the manifest, without a signature.
    pub fn unsign(&mut self) {
        let env = Envelope::new(
            PAYLOAD_TYPE,
            &serde_json::to_vec(&self.manifest).unwrap(),
            None,
        );
        self.members[0] = (ENVELOPE_NAME.into(), serde_json::to_vec(&env).unwrap());
    }

    /// The bundle id: the digest of the signed manifest bytes.
    pub fn id(&self) -> Digest {
        let env: Envelope = serde_json::from_slice(&self.members[0].1).unwrap();
        Digest::of(&env.payload_bytes().unwrap())
    }

    /// Adds a blob record and its member, after the others.
    pub fn add_blob(&mut self, data: Vec<u8>, media_type: &str) -> Digest {
        let digest = Digest::of(&data);
        self.manifest["blobs"].as_array_mut().unwrap().push(
            serde_json::json!({"digest": digest, "size": data.len(), "mediaType": media_type}),
        );
        self.members.push((digest.layout_path(), data));
        digest
    }

    /// Decompressed frame contents as the writer lays them out: each
    /// header alone, data in frames of at most 4 MiB, the end frame.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, data) in &self.members {
            out.push(header(name, data.len() as u64, tar::EntryType::Regular).to_vec());
            let mut padded = data.clone();
            padded.resize(data.len().div_ceil(512) * 512, 0);
            out.extend(padded.chunks(4 * MIB).map(<[u8]>::to_vec));
        }
        out.push(vec![0u8; 1024]);
        out
    }
}

pub fn header(name: &str, size: u64, kind: tar::EntryType) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    *h.as_bytes()
}

pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_contentsize(true).unwrap();
    c.include_checksum(true).unwrap();
    c.compress(data).unwrap()
}

/// One seek-table entry: the compressed bytes and the decompressed size
/// the table gives them.
pub type Entry = (Vec<u8>, u32);

pub fn entries(frames: &[Vec<u8>]) -> Vec<Entry> {
    frames
        .iter()
        .map(|f| (compress(f), f.len() as u32))
        .collect()
}

/// The entries back to back, then a seek table that lists them.
pub fn write(entries: &[Entry]) -> Vec<u8> {
    let mut table = SeekTable::new();
    let mut out = Vec::new();
    for (c, d) in entries {
        table.log_frame(c.len() as u32, *d).unwrap();
        out.extend_from_slice(c);
    }
    std::io::copy(&mut table.into_serializer(), &mut out).unwrap();
    out
}

pub fn skippable(magic: u32, len: usize) -> Vec<u8> {
    let mut s = magic.to_le_bytes().to_vec();
    s.extend_from_slice(&(len as u32).to_le_bytes());
    s.extend((0..len).map(|i| (i * 7) as u8));
    s
}

/// The frame number of member `name`'s header.
pub fn header_frame(frames: &[Vec<u8>], name: &str) -> usize {
    frames
        .iter()
        .position(|f| f.len() == 512 && f.starts_with(name.as_bytes()))
        .unwrap()
}

/// A tar header with its 12-byte size field replaced (and its checksum
/// made right again).
pub fn with_size_field(block: &[u8], field: [u8; 12]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(block);
    h.as_old_mut().size = field;
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The entries as a set of volumes concatenated (format §13): a label
/// before entry 0 and before each entry of `cuts`, the labels written as
/// the packer writes them, then handed to `forge` before they are sealed
/// (each label's own hash is always made right).
pub fn volumes(
    entries: &[Entry],
    cuts: &[usize],
    id: &Digest,
    forge: impl Fn(&mut [Label]),
) -> Vec<u8> {
    let mut e = Vec::new();
    let mut at = Vec::new();
    let mut offset = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        if i == 0 || cuts.contains(&i) {
            at.push(offset);
            e.push((vec![0u8; LABEL_LEN], 0));
            offset += LABEL_LEN as u64;
        }
        e.push(entry.clone());
        offset += entry.0.len() as u64;
    }
    let mut out = write(&e);
    let ends: Vec<u64> = at[1..].iter().copied().chain([out.len() as u64]).collect();
    let mut labels: Vec<Label> = at
        .iter()
        .zip(&ends)
        .enumerate()
        .map(|(i, (&start, &end))| Label {
            bundle_id: id.clone(),
            number: i as u32 + 1,
            count: at.len() as u32,
            length: end - start,
            checksum: Sha256::digest(&out[start as usize + LABEL_LEN..end as usize]).into(),
        })
        .collect();
    forge(&mut labels);
    for (&start, label) in at.iter().zip(&labels) {
        out[start as usize..start as usize + LABEL_LEN].copy_from_slice(&label.encode());
    }
    out
}
