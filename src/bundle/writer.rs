//! Writes a bundle: the signed manifest first, then the OCI layout, each
//! member cut into frames as `docs/bundle-format.md` specifies.
//!
//! [`BundleWriter`] is a [`crate::sink::Sink`]: `pack` copies into it like
//! into any sink. Not for compressing (that is [`super::frames`]) nor for
//! building headers ([`super::tar`]).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use zeekstd::SeekTable;

use super::format::*;
use super::frames::{FrameSink, FrameWriter, Stream};
use super::parity;
use super::sign::Envelope;
use super::store::{BundleBytes, Part};
use super::tar::build_header;
use super::volume::{volume_path, SplitOutput};
use crate::atomic::{sweep_stale, AtomicFile, Swept};
use crate::error::{Error, Result};
use crate::model::Digest;
use crate::plan::{Plan, PlannedBlob};
use crate::sink::Sink;

/// Where a finished bundle goes: a file renamed into place, volumes, or a
/// stream. Frames flow in through `FrameSink`; `commit` makes it final.
pub trait Output: FrameSink {
    fn commit(self: Box<Self>, bundle_id: &Digest) -> Result<()>;
}

impl FrameSink for Box<dyn Output> {
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()> {
        (**self).put(frame, d_size, table)
    }
    fn end(&mut self, table: SeekTable) -> io::Result<()> {
        (**self).end(table)
    }
}

/// Standard output, for `pack -o -` on one-way links. A failed pack leaves
/// a stream without its end marker and seek table, which readers refuse.
impl Output for Stream<io::Stdout> {
    fn commit(self: Box<Self>, _: &Digest) -> Result<()> {
        self.0
            .lock()
            .flush()
            .map_err(|e| Error::io("write", "standard output", e))
    }
}

/// One file, with its parity file when asked for.
struct FileOutput {
    stream: Stream<AtomicFile>,
    parity: Option<u32>,
}

impl FrameSink for FileOutput {
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()> {
        self.stream.put(frame, d_size, table)
    }
    fn end(&mut self, table: SeekTable) -> io::Result<()> {
        self.stream.end(table)
    }
}

impl Output for FileOutput {
    fn commit(self: Box<Self>, bundle_id: &Digest) -> Result<()> {
        let file = self.stream.0;
        let target = file.target().to_path_buf();
        let parity = match self.parity {
            Some(percent) => {
                let part = Part::open(file.temp_path(), 0, 0, None)?;
                write_parity(vec![part], percent, bundle_id, &[], &target, None)?
            }
            None => Vec::new(),
        };
        file.commit()?;
        let mut kept = parity;
        kept.push(target.clone());
        remove_others(&target, &kept);
        Ok(())
    }
}

/// Volumes of at most `limit` bytes, with parity volumes when asked for.
struct VolumeOutput {
    split: SplitOutput,
    target: PathBuf,
    limit: u64,
    parity: Option<u32>,
}

impl FrameSink for VolumeOutput {
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()> {
        self.split.put(frame, d_size, table)
    }
    fn end(&mut self, table: SeekTable) -> io::Result<()> {
        self.split.end(table)
    }
}

impl Output for VolumeOutput {
    fn commit(self: Box<Self>, bundle_id: &Digest) -> Result<()> {
        let volumes = self.split.finish_labels(bundle_id)?;
        let parity = match self.parity {
            Some(percent) => {
                let mut parts = Vec::new();
                let mut start = 0;
                for (i, v) in volumes.iter().enumerate() {
                    let part = Part::open(v.temp_path(), i as u32 + 1, start, None)?;
                    start = part.end();
                    parts.push(part);
                }
                let lengths: Vec<u64> = parts.iter().map(|p| p.len).collect();
                write_parity(
                    parts,
                    percent,
                    bundle_id,
                    &lengths,
                    &self.target,
                    Some(self.limit),
                )?
            }
            None => Vec::new(),
        };
        // The first volume last: a set is found through it, so an interrupted
        // commit never leaves a set that looks whole.
        let count = volumes.len() as u32;
        for v in volumes.into_iter().rev() {
            v.commit()?;
        }
        let mut kept = parity;
        kept.extend((1..=count).map(|n| volume_path(&self.target, n)));
        remove_others(&self.target, &kept);
        Ok(())
    }
}

/// Whether `file_name` is one of the files a bundle written to `target_name`
/// consists of: `NAME`, `NAME.NNN`, `NAME.parity` or `NAME.parity.NNN`.
fn is_output_of(target_name: &str, file_name: &str) -> bool {
    let volume = |s: &str| s.len() >= 3 && s.bytes().all(|b| b.is_ascii_digit());
    match file_name.strip_prefix(target_name) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('.').is_some_and(|rest| {
            volume(rest) || rest == "parity" || rest.strip_prefix("parity.").is_some_and(volume)
        }),
        None => false,
    }
}

/// Whether `path` (named as a volume or parity file of a bundle) holds
/// one: a volume label or the parity header at its start. A file that only
/// has such a name (`backup.2024`) is someone else's, never removed.
fn is_airlock_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && (&head == crate::bundle::format::PARITY_TAG
            || crate::bundle::volume::read_label(path).is_ok())
}

fn dir_and_name(target: &Path) -> Option<(PathBuf, String)> {
    let name = target.file_name()?.to_str()?.to_string();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

/// The files of an earlier bundle that a pack to `target` would replace or
/// remove: the bundle file, its volumes and its parity, sorted.
pub fn existing_outputs(target: &Path) -> Vec<PathBuf> {
    let Some((dir, name)) = dir_and_name(target) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| is_output_of(&name, n))
        })
        .map(|e| target.with_file_name(e.file_name()))
        .filter(|path| path == target || is_airlock_file(path))
        .collect();
    found.sort();
    found
}

/// Removes the files of an earlier bundle at `target` (an unsplit file,
/// volumes, parity) that are not among the new bundle's `kept` files, so
/// no stale file looks like part of it or shadows it. Runs once the new
/// bundle is complete; best effort.
fn remove_others(target: &Path, kept: &[PathBuf]) {
    for old in existing_outputs(target) {
        if !kept.iter().any(|k| k.file_name() == old.file_name()) {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// Removes the partial files that killed or failed packs to `target` left
/// (of the bundle file, its volumes and its parity), except those a live
/// pack is writing.
pub fn sweep_partials(target: &Path) -> Swept {
    match dir_and_name(target) {
        Some((dir, name)) => sweep_stale(&dir, |t| is_output_of(&name, t)),
        None => Swept::default(),
    }
}

/// Encodes and commits parity for finished (not yet committed) data.
fn write_parity(
    parts: Vec<Part>,
    percent: u32,
    bundle_id: &Digest,
    volume_lengths: &[u64],
    target: &Path,
    split: Option<u64>,
) -> Result<Vec<PathBuf>> {
    let bytes = BundleBytes::new(parts);
    let layout = parity::Layout::new(bytes.len(), percent);
    let files = parity::encode(&bytes, &layout, bundle_id, volume_lengths, target, split)?;
    let paths = files.iter().map(|f| f.target().to_path_buf()).collect();
    for f in files {
        f.commit()?;
    }
    Ok(paths)
}

pub struct PackOptions {
    pub level: i32,
    pub key: Option<SigningKey>,
    /// Seconds since the epoch; also every member's mtime.
    pub created: i64,
    /// Cut the bundle into volumes of at most this many bytes.
    pub split: Option<u64>,
    /// Add Reed-Solomon parity of this many percent.
    pub parity: Option<u32>,
}

pub struct BundleWriter {
    frames: FrameWriter<Box<dyn Output>>,
    options: PackOptions,
    /// Decompressed bytes per data frame.
    frame_data: usize,
    /// For messages.
    path: PathBuf,
    /// The digest of the signed manifest, once `begin` wrote it.
    id: Option<Digest>,
    /// Set for a delta bundle (§16): what it expects instead of carrying.
    delta: Option<Delta>,
}

impl BundleWriter {
    /// A writer whose output appears at `path` only once it is complete;
    /// `-` writes to standard output.
    pub fn to_file(path: &Path, options: PackOptions) -> Result<BundleWriter> {
        if path == Path::new("-") {
            if options.split.is_some() || options.parity.is_some() {
                return Err(Error::Usage(
                    "--split and --parity write files; they cannot be used with -o -".into(),
                ));
            }
            return Ok(BundleWriter::new(
                Box::new(Stream(io::stdout())),
                Path::new("standard output"),
                options,
            ));
        }
        if options.parity.is_some_and(|p| !(1..=100).contains(&p)) {
            return Err(Error::Usage(
                "--parity takes a percentage from 1 to 100".into(),
            ));
        }
        let out: Box<dyn Output> = match options.split {
            Some(limit) => Box::new(VolumeOutput {
                split: SplitOutput::new(path, limit)?,
                target: path.to_path_buf(),
                limit,
                parity: options.parity,
            }),
            None => Box::new(FileOutput {
                stream: Stream(AtomicFile::create(path)?),
                parity: options.parity,
            }),
        };
        Ok(BundleWriter::new(out, path, options))
    }

    pub fn new(out: Box<dyn Output>, name: &Path, options: PackOptions) -> BundleWriter {
        BundleWriter {
            frames: FrameWriter::new(out, options.level),
            frame_data: options
                .split
                .map_or(MAX_FRAME_DATA, SplitOutput::frame_data),
            options,
            path: name.to_path_buf(),
            id: None,
            delta: None,
        }
    }

    /// Makes this a delta bundle (§16): the plan's blobs are what it
    /// carries, and `delta` lists what its images need besides.
    pub fn with_delta(mut self, delta: Delta) -> BundleWriter {
        self.delta = Some(delta);
        self
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io("write", &self.path, e)
    }

    fn header(&self, name: &str, size: u64) -> Vec<u8> {
        build_header(name, size, self.options.created.max(0) as u64).to_vec()
    }

    /// Writes one member: its header as a frame of its own, then its data in
    /// frames of at most MAX_FRAME_DATA, the last one padded to a block.
    /// Reads `data` to end-of-file, so a verifying reader gets to fail.
    fn member(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let header = self.header(name, size);
        self.frames.frame(header).map_err(|e| self.io(e))?;
        let mut remaining = size;
        loop {
            let take = remaining.min(self.frame_data as u64) as usize;
            let last = take as u64 == remaining;
            // A recycled buffer: resizing it zeroes only what it never held.
            let mut buf = self.frames.buffer();
            buf.truncate(take);
            buf.reserve(padded(take as u64) as usize - buf.len());
            buf.resize(take, 0);
            data.read_exact(&mut buf)
                .map_err(|e| Error::io("read data for", &self.path, e))?;
            remaining -= take as u64;
            if last {
                let mut probe = [0u8; 1];
                if data
                    .read(&mut probe)
                    .map_err(|e| Error::io("read data for", &self.path, e))?
                    != 0
                {
                    return Err(Error::SizeMismatch {
                        what: name.to_string(),
                        expected: size,
                        actual: size + 1,
                    });
                }
                buf.resize(padded(take as u64) as usize, 0);
                if !buf.is_empty() {
                    self.frames.frame(buf).map_err(|e| self.io(e))?;
                }
                return Ok(());
            }
            self.frames.frame(buf).map_err(|e| self.io(e))?;
        }
    }
}

/// The `index.json` of a bundle, naming each image (see the format spec).
fn index_json(plan: &Plan) -> Vec<u8> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::model::image::media::OCI_INDEX,
        "manifests": crate::oci::index_entries(plan),
    });
    serde_json::to_vec_pretty(&index).expect("JSON values serialise")
}

pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats")
}

impl Sink for BundleWriter {
    fn begin(&mut self, plan: &Plan) -> Result<()> {
        let index = index_json(plan);
        let manifest = BundleManifest {
            format_version: match self.delta {
                Some(_) => DELTA_FORMAT_VERSION,
                None => FORMAT_VERSION,
            },
            tool: format!("airlock {}", env!("CARGO_PKG_VERSION")),
            created: rfc3339(self.options.created),
            index: BlobRecord {
                digest: Digest::of(&index),
                size: index.len() as u64,
                media_type: crate::model::image::media::OCI_INDEX.into(),
            },
            images: plan
                .images
                .iter()
                .map(|i| ImageRecord {
                    name: i.name.as_ref().map(|n| n.to_string()),
                    source: i.source.clone(),
                    media_type: i.descriptor.media_type.clone(),
                    digest: i.descriptor.digest.clone(),
                    size: i.descriptor.size,
                    source_digest: i.source_digest.clone(),
                    subject: i.subject.clone(),
                })
                .collect(),
            blobs: plan
                .blobs
                .iter()
                .map(|b| BlobRecord {
                    digest: b.descriptor.digest.clone(),
                    size: b.descriptor.size,
                    media_type: b.descriptor.media_type.clone(),
                })
                .collect(),
            delta: self.delta.clone(),
        };
        let payload = serde_json::to_vec(&manifest).expect("JSON values serialise");
        self.id = Some(Digest::of(&payload));
        let envelope = Envelope::new(PAYLOAD_TYPE, &payload, self.options.key.as_ref());
        let envelope = serde_json::to_vec(&envelope).expect("JSON values serialise");
        self.member(ENVELOPE_NAME, envelope.len() as u64, &mut &envelope[..])?;
        let layout = crate::oci::OCI_LAYOUT;
        self.member(OCI_LAYOUT_NAME, layout.len() as u64, &mut &layout[..])?;
        self.member(INDEX_NAME, index.len() as u64, &mut &index[..])?;
        Ok(())
    }

    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()> {
        let d = &blob.descriptor;
        self.member(&d.digest.layout_path(), d.size, data)
    }

    fn finish(mut self: Box<Self>, _plan: &Plan) -> Result<()> {
        self.frames
            .frame(vec![0u8; END_FRAME])
            .map_err(|e| self.io(e))?;
        let path = self.path.clone();
        let out = self
            .frames
            .finish()
            .map_err(|e| Error::io("write", &path, e))?;
        out.commit(self.id.as_ref().expect("begin ran"))
    }
}

#[cfg(test)]
mod tests {
    use super::is_output_of;

    #[test]
    fn a_bundles_files_are_told_from_others() {
        for yes in ["b", "b.001", "b.1000", "b.parity", "b.parity.002"] {
            assert!(is_output_of("b", yes), "{yes}");
        }
        for no in [
            "b.01",
            "b.x",
            "bb",
            "b.parity.x",
            "b.parityx",
            "a",
            "b.001.x",
        ] {
            assert!(!is_output_of("b", no), "{no}");
        }
    }
}
