//! The frames of a bundle read from a pipe, one at a time, checked as the
//! file reader checks its seek-table entries (spec §5, §10): every frame is
//! a data frame declaring its size (at most 4 MiB), a volume label, or the
//! seek table that ends the stream; nothing follows the seek table.
//!
//! Each data frame is read whole (at most zstd's compress bound of 4 MiB)
//! and decompressed into a buffer of exactly its declared size, so no input
//! makes this hold more than about 8 MiB. The seek table is checked against
//! the frames actually read, entry by entry, without being kept: the
//! entries the frames call for are hashed as they pass, then compared with
//! the table's bytes as they arrive. Labels must name the signed bundle,
//! run from 1 to their count, and match their volume's length and checksum.
//!
//! Not for tar members (that is [`super::stream`]).

use std::io::Read;

use sha2::{Digest as _, Sha256};

use super::format::{LABEL_CONTENT, LABEL_LEN, LABEL_MAGIC};
use super::volume::Label;
use super::zframe::{max_compressed, walk, Frame, FrameInput, SEEK_TABLE_MAGIC};
use crate::error::{Error, Result};
use crate::model::Digest;

/// How a stream is named in messages.
pub(super) const STREAM: &str = "standard input";

/// What the next frame of the stream is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// A data frame, now decompressed and available.
    Data,
    /// The seek table's skippable frame begins here.
    SeekTable,
    /// The stream ended cleanly, between frames.
    End,
}

pub(super) struct StreamFrames<R> {
    input: R,
    /// The current frame's compressed bytes.
    comp: Vec<u8>,
    /// The current data frame, decompressed, and how much of it was read.
    data: Vec<u8>,
    pos: usize,
    /// Bytes of the stream consumed: where the next frame starts.
    offset: u64,
    /// Where the current frame starts.
    frame_at: u64,
    /// The seek-table entries the frames so far call for, and their count.
    entries: Sha256,
    frames: u64,
    /// The seek table's offset and content length, once reached.
    table: Option<(u64, u32)>,
    labels: Labels,
    dctx: zstd::bulk::Decompressor<'static>,
}

/// The volume labels seen so far, and the volume being read.
#[derive(Default)]
struct Labels {
    /// The signed manifest's id, once the envelope was read.
    bundle: Option<Digest>,
    first: Option<Label>,
    seen: u32,
    /// The current volume's label, where it started, and its bytes hashed.
    open: Option<(Label, u64, Sha256)>,
}

fn bad(problem: String) -> Error {
    Error::bad_bundle(STREAM, problem)
}

/// A frame's bytes as they come off the pipe, kept in `comp`.
struct Pipe<'a, R> {
    input: &'a mut R,
    comp: &'a mut Vec<u8>,
    /// The stream ended before the frame's first byte.
    clean_end: bool,
}

impl<R: Read> FrameInput for Pipe<'_, R> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let start = self.comp.len();
        if start + n > max_compressed() + LABEL_LEN {
            return Err(format!(
                "it is longer than the {} bytes a frame may take",
                max_compressed()
            ));
        }
        self.comp.resize(start + n, 0);
        let mut got = 0;
        while got < n {
            match self.input.read(&mut self.comp[start + got..]) {
                Ok(0) => {
                    self.clean_end = start == 0 && got == 0;
                    return Err("the stream ends inside it: it is truncated".into());
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("the stream is damaged or cut short ({e})")),
            }
        }
        Ok(&self.comp[start..])
    }
}

impl<R: Read> StreamFrames<R> {
    pub(super) fn new(input: R) -> Result<StreamFrames<R>> {
        Ok(StreamFrames {
            input,
            comp: Vec::new(),
            data: Vec::new(),
            pos: 0,
            offset: 0,
            frame_at: 0,
            entries: Sha256::new(),
            frames: 0,
            table: None,
            labels: Labels::default(),
            dctx: zstd::bulk::Decompressor::new()
                .map_err(|e| Error::Failed(format!("cannot start zstd: {e}")))?,
        })
    }

    /// The unread part of the current data frame.
    pub(super) fn available(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Where the current frame starts in the stream.
    pub(super) fn frame_at(&self) -> u64 {
        self.frame_at
    }

    /// The id of the signed manifest: every label must name it.
    pub(super) fn set_bundle(&mut self, id: &Digest) -> Result<()> {
        if let Some(first) = &self.labels.first {
            check_id(&first.bundle_id, id)?;
        }
        self.labels.bundle = Some(id.clone());
        Ok(())
    }

    /// Reads the next frame; volume labels on the way are checked and
    /// passed over. The current frame must have been read to its end.
    pub(super) fn next_frame(&mut self) -> Result<Next> {
        debug_assert!(self.available().is_empty());
        loop {
            self.comp.clear();
            self.data.clear();
            self.pos = 0;
            let at = self.offset;
            self.frame_at = at;
            let mut pipe = Pipe {
                input: &mut self.input,
                comp: &mut self.comp,
                clean_end: false,
            };
            let walked = walk(&mut pipe);
            let clean_end = pipe.clean_end;
            let (content, len) = match walked {
                Err(_) if clean_end => return Ok(Next::End),
                Err(p) => return Err(bad(format!("the frame at byte {at}: {p}"))),
                Ok(Frame::Skippable { magic, content }) if magic == LABEL_MAGIC => {
                    self.label(at, content)?;
                    continue;
                }
                Ok(Frame::Skippable { magic, content }) if magic == SEEK_TABLE_MAGIC => {
                    self.table = Some((at, content));
                    self.offset += 8;
                    return Ok(Next::SeekTable);
                }
                Ok(Frame::Skippable { magic, .. }) => {
                    return Err(bad(format!(
                        "the frame at byte {at} is a skippable frame (magic {magic:#010x}), not a data frame: a bundle carries no data outside its frames"
                    )))
                }
                Ok(Frame::Data { content, len }) => (content, len),
            };
            self.data.resize(content, 0);
            let n = self
                .dctx
                .decompress_to_buffer(&self.comp[..], &mut self.data[..])
                .map_err(|e| bad(format!("the frame at byte {at} is damaged: {e}")))?;
            if n != content {
                return Err(bad(format!(
                    "the frame at byte {at} holds {n} bytes, its header says {content}"
                )));
            }
            self.log(len as u32, content as u32);
            self.offset += len as u64;
            return Ok(Next::Data);
        }
    }

    /// One entry the seek table must hold; the volume's bytes hashed.
    fn log(&mut self, c_size: u32, d_size: u32) {
        self.entries.update(c_size.to_le_bytes());
        self.entries.update(d_size.to_le_bytes());
        self.frames += 1;
        if let Some((_, _, hash)) = &mut self.labels.open {
            hash.update(&self.comp);
        }
    }

    /// A volume label at byte `at`: well formed, naming this bundle, next
    /// in number; the volume before it had the length and checksum its own
    /// label gave.
    fn label(&mut self, at: u64, content: u32) -> Result<()> {
        let what = |p: String| bad(format!("the volume label at byte {at}: {p}"));
        if content as usize != LABEL_CONTENT {
            return Err(what(format!(
                "a label holds {LABEL_CONTENT} bytes, this skippable frame {content}"
            )));
        }
        let mut pipe = Pipe {
            input: &mut self.input,
            comp: &mut self.comp,
            clean_end: false,
        };
        pipe.take(LABEL_CONTENT).map_err(what)?;
        let label = Label::decode(&self.comp).map_err(what)?;
        self.close_volume(at)?;
        let first = self.labels.first.get_or_insert_with(|| label.clone());
        let number = self.labels.seen + 1;
        if (at == 0) != (number == 1) {
            return Err(what("volume 1's label must start the stream".into()));
        }
        if label.number != number || label.count != first.count || label.number > label.count {
            return Err(what(format!(
                "it says volume {} of {}, but volume {number} of {} belongs here",
                label.number, label.count, first.count
            )));
        }
        check_id(&label.bundle_id, &first.bundle_id)?;
        if let Some(id) = &self.labels.bundle {
            check_id(&label.bundle_id, id)?;
        }
        self.labels.seen = number;
        self.log(LABEL_LEN as u32, 0);
        self.offset += LABEL_LEN as u64;
        self.labels.open = Some((label, at, Sha256::new()));
        Ok(())
    }

    /// Ends the volume being read, if any, at byte `end`.
    fn close_volume(&mut self, end: u64) -> Result<()> {
        let Some((label, start, hash)) = self.labels.open.take() else {
            return Ok(());
        };
        if end - start != label.length {
            return Err(bad(format!(
                "volume {} has {} bytes in the stream, its label says {}",
                label.number,
                end - start,
                label.length
            )));
        }
        if hash.finalize()[..] != label.checksum {
            return Err(bad(format!(
                "volume {} (bytes {start} to {end}) does not match its label's checksum: it is damaged",
                label.number
            )));
        }
        Ok(())
    }

    /// After the end-of-archive frame: the seek table, listing exactly the
    /// frames read, without checksums; then the end of the stream.
    pub(super) fn finish(&mut self) -> Result<()> {
        let at = self.offset;
        match self.next_frame()? {
            Next::SeekTable => {}
            Next::End => {
                return Err(bad(format!(
                    "the stream ends at byte {at} without the seek table: it is truncated"
                )))
            }
            Next::Data => {
                return Err(bad(format!(
                    "a frame at byte {at} follows the end of the archive: only the seek table may"
                )))
            }
        }
        let (at, content) = self.table.expect("set with Next::SeekTable");
        let want = self.frames * 8 + 9;
        if u64::from(content) != want {
            return Err(bad(format!(
                "the seek table at byte {at} has {content} bytes, but the {} frames before it call for {want}",
                self.frames
            )));
        }
        let mut expected = std::mem::take(&mut self.entries);
        expected.update((self.frames as u32).to_le_bytes());
        expected.update([0u8]);
        expected.update(zeekstd::SEEKABLE_MAGIC_NUMBER.to_le_bytes());
        let mut got = Sha256::new();
        let mut volume = self.labels.open.as_mut().map(|(_, _, h)| h);
        if let Some(h) = &mut volume {
            h.update(SEEK_TABLE_MAGIC.to_le_bytes());
            h.update(content.to_le_bytes());
        }
        let mut left = want;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let chunk = &mut buf[..left.min(64 * 1024) as usize];
            self.input.read_exact(chunk).map_err(|e| {
                bad(format!(
                    "the seek table at byte {at} is cut short ({e}): the stream is truncated"
                ))
            })?;
            got.update(&*chunk);
            if let Some(h) = &mut volume {
                h.update(&*chunk);
            }
            left -= chunk.len() as u64;
        }
        if got.finalize() != expected.finalize() {
            return Err(bad(format!(
                "the seek table at byte {at} does not list the frames of the stream as they are"
            )));
        }
        let end = at + 8 + want;
        if self
            .input
            .read(&mut buf[..1])
            .map_err(|e| bad(format!("after the seek table: the stream is damaged ({e})")))?
            > 0
        {
            return Err(bad(format!(
                "data follows the seek table at byte {end}: a bundle ends with its seek table"
            )));
        }
        self.close_volume(end)?;
        match &self.labels.first {
            Some(first) if first.count != self.labels.seen => Err(bad(format!(
                "the stream holds {} of {} volumes",
                self.labels.seen, first.count
            ))),
            _ => Ok(()),
        }
    }
}

fn check_id(label: &Digest, bundle: &Digest) -> Result<()> {
    if label != bundle {
        return Err(bad(format!(
            "a volume label names bundle {}, but the stream's signed manifest is {}: the volumes come from different bundles",
            label.short(),
            bundle.short()
        )));
    }
    Ok(())
}
