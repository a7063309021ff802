//! Readers over a tar member's data: frame by frame, decompressed into a
//! buffer of the size the seek table declares, or (for `serve`) frames of
//! stored blocks read in place from the mapped file.
//!
//! Damage surfaces as a read error naming the member. Not for finding the
//! members or checking the archive's structure ([`super::index`]).

use std::io::{self, BufRead, Read};

use super::index::{decompressor, BundleFile, Dctx, Member};
use super::zframe::check_entry;
use crate::error::{into_io, Error, Result};

impl BundleFile {
    /// Streams a member's data. Damage surfaces as a read error naming it.
    pub(crate) fn open_member(&self, m: &Member) -> Result<MemberReader<'_>> {
        Ok(MemberReader {
            bundle: self,
            member: m.clone(),
            next_frame: m.first_frame,
            buf: Vec::new(),
            pos: 0,
            remaining: m.size,
            dctx: decompressor()?,
            direct: false,
            stored: None,
        })
    }

    /// [`Self::open_member`] for a reader that copies what it reads once
    /// anyway (`serve`): frames of stored blocks are handed out as slices
    /// of the mapped file, after their zstd checksum, with no
    /// decompression and no copy. Every other frame, and a stored one
    /// whose checksum fails, is read as by `open_member`.
    pub(crate) fn open_member_direct(&self, m: &Member) -> Result<MemberReader<'_>> {
        let mut reader = self.open_member(m)?;
        reader.direct = true;
        Ok(reader)
    }

    /// Reads a small member whole.
    pub(crate) fn read_member(&self, m: &Member, limit: u64) -> Result<Vec<u8>> {
        if m.size > limit {
            return Err(Error::bad_bundle(
                &self.path,
                format!(
                    "member {} has {} bytes, more than the {limit} allowed",
                    m.name, m.size
                ),
            ));
        }
        let mut out = Vec::with_capacity(m.size as usize);
        self.open_member(m)?
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(out)
    }
}

pub struct MemberReader<'a> {
    bundle: &'a BundleFile,
    member: Member,
    next_frame: usize,
    buf: Vec<u8>,
    pos: usize,
    remaining: u64,
    dctx: Dctx,
    /// Stored frames are read in place ([`BundleFile::open_member_direct`]).
    direct: bool,
    /// The stored frame being read in place, if any.
    stored: Option<Stored<'a>>,
}

/// A frame of raw blocks read in place: its bytes in the map, the data
/// ranges of its blocks, and how far into them the reader is.
struct Stored<'a> {
    frame: &'a [u8],
    offset: u64,
    blocks: Vec<(usize, usize)>,
    block: usize,
    at: usize,
}

impl MemberReader<'_> {
    /// Makes sure there is unread data at the reader's position, unless the
    /// member ended: in the stored frame being read in place, or in the
    /// frame buffer.
    fn refill(&mut self) -> Result<()> {
        loop {
            if self.remaining == 0 {
                return Ok(());
            }
            match &mut self.stored {
                Some(s) => {
                    while s.block < s.blocks.len() && s.at == s.blocks[s.block].1 {
                        s.block += 1;
                        s.at = 0;
                    }
                    if s.block < s.blocks.len() {
                        return Ok(());
                    }
                    // Done with these pages: see `BundleBytes::release`.
                    self.bundle.bytes.release(s.offset, s.frame.len());
                    self.stored = None;
                }
                None if self.pos < self.buf.len() => return Ok(()),
                None => {}
            }
            if self.next_frame >= self.member.end_frame {
                return Err(Error::bad_bundle(
                    &self.bundle.path,
                    format!("member {} ends before its data", self.member.name),
                ));
            }
            if !(self.direct && self.read_in_place()?) {
                self.bundle
                    .read_frame(self.next_frame, &mut self.dctx, &mut self.buf)?;
                self.pos = 0;
            }
            self.next_frame += 1;
            if self.next_frame == self.member.end_frame && !self.padding_is_zero() {
                return Err(Error::bad_bundle(
                    &self.bundle.path,
                    format!(
                        "member {}: the padding after its data is not zero",
                        self.member.name
                    ),
                ));
            }
        }
    }

    /// Takes frame `next_frame` in place if it is one mapped slice of raw
    /// blocks that passes the frame rules; false leaves it to `read_frame`
    /// (which also reports whatever is wrong with it).
    fn read_in_place(&mut self) -> Result<bool> {
        let f = self.bundle.frames[self.next_frame];
        let Ok(std::borrow::Cow::Borrowed(frame)) =
            self.bundle.bytes.read(f.c_offset, f.c_size as usize)
        else {
            return Ok(false);
        };
        if check_entry(frame, f.d_size).is_err() {
            return Ok(false);
        }
        let Some(blocks) = super::zframe::raw_blocks(frame) else {
            return Ok(false);
        };
        if blocks.iter().map(|&(_, n)| n as u64).sum::<u64>() != u64::from(f.d_size) {
            return Ok(false);
        }
        // The frame's checksum before any of it is handed out: damage is
        // found frame by frame, where parity can still repair it and a
        // reader can go on (the whole-blob digest comes too late for that).
        let mut xxh = xxhash_rust::xxh64::Xxh64::new(0);
        for &(start, n) in &blocks {
            xxh.update(&frame[start..start + n]);
        }
        if frame[frame.len() - 4..] != (xxh.digest() as u32).to_le_bytes() {
            return Ok(false);
        }
        self.stored = Some(Stored {
            frame,
            offset: f.c_offset,
            blocks,
            block: 0,
            at: 0,
        });
        Ok(true)
    }

    /// In the member's last frame: whether every byte after its data is zero.
    fn padding_is_zero(&self) -> bool {
        let data = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        match &self.stored {
            Some(s) => {
                let mut skip = data;
                s.blocks.iter().all(|&(start, n)| {
                    let k = skip.min(n);
                    skip -= k;
                    s.frame[start + k..start + n].iter().all(|&b| b == 0)
                })
            }
            None => self.buf[data.min(self.buf.len())..].iter().all(|&b| b == 0),
        }
    }
}

impl BufRead for MemberReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill().map_err(into_io)?;
        let limit = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        if let Some(s) = &self.stored {
            let (start, n) = s.blocks[s.block];
            let take = (n - s.at).min(limit);
            return Ok(&s.frame[start + s.at..start + s.at + take]);
        }
        let n = (self.buf.len() - self.pos).min(limit);
        Ok(&self.buf[self.pos..self.pos + n])
    }

    fn consume(&mut self, n: usize) {
        match &mut self.stored {
            Some(s) => s.at += n,
            None => self.pos += n,
        }
        self.remaining -= n as u64;
    }
}

impl Read for MemberReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}
