//! The frame rules of spec §5 that both readers apply to every frame: one
//! zstd frame (RFC 8878) walked header, blocks and checksum, without
//! decompressing it, so a reader knows exactly where it ends and what it
//! declares before it spends memory on it.
//!
//! A bundle carries no byte that is not accounted for: a seek-table entry
//! (file reader) or a frame read from a pipe (stream reader) must be exactly
//! one data frame declaring its content size, within the 4 MiB limit, or a
//! known skippable frame (volume label, seek table). Anything else, such as
//! a skippable frame smuggled after a data frame inside one entry, is
//! refused. Not for decompressing (the readers do, into a buffer of the
//! declared size) nor for the seek table's contents ([`super::seek`]).

use super::format::{LABEL_MAGIC, MAX_FRAME_DATA};

/// Magic number of a zstd data frame.
pub(crate) const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Skippable-frame magic of the seek table (zstd seekable format).
pub(crate) const SEEK_TABLE_MAGIC: u32 = 0x184D_2A5E;
/// The largest block RFC 8878 allows.
const MAX_BLOCK: usize = 128 * 1024;

/// The largest a frame may be compressed: zstd's compress bound of 4 MiB.
pub(crate) fn max_compressed() -> usize {
    zstd::zstd_safe::compress_bound(MAX_FRAME_DATA)
}

/// Where a frame's bytes come from: a slice of a mapped file, or a pipe.
pub(crate) trait FrameInput {
    /// The next `n` bytes of the frame; `Err` says why there are none.
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String>;
}

/// What one frame is, once its header (and, for a data frame, its blocks)
/// has been walked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A zstd frame of `content` bytes (its declared size), `len` bytes long.
    Data { content: usize, len: usize },
    /// A skippable frame: its magic and content length. Only its 8-byte
    /// header was taken; the caller decides what its content may be.
    Skippable { magic: u32, content: u32 },
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Walks one frame. A data frame must declare its content size, of 1 byte
/// to 4 MiB, use no dictionary, and be at most [`max_compressed`] bytes.
pub(crate) fn walk(input: &mut impl FrameInput) -> std::result::Result<Frame, String> {
    let magic = le(input.take(4)?) as u32;
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        let content = le(input.take(4)?) as u32;
        return Ok(Frame::Skippable { magic, content });
    }
    if magic != ZSTD_MAGIC {
        return Err(format!("it is not a zstd frame (magic {magic:#010x})"));
    }
    let descriptor = input.take(1)?[0];
    let (fcs_flag, single, reserved) = (descriptor >> 6, descriptor & 0x20 != 0, descriptor & 0x08);
    let (checksum, dict_flag) = (descriptor & 0x04 != 0, descriptor & 0x03);
    if reserved != 0 {
        return Err("its frame header sets a reserved bit".into());
    }
    // RFC 8878's unused bit: decoders ignore it, so set it would carry a
    // bit per frame past every digest (§5, §11).
    if descriptor & 0x10 != 0 {
        return Err("its frame header sets the unused bit".into());
    }
    if dict_flag != 0 {
        return Err("its frame header names a dictionary; bundles use none".into());
    }
    if !single {
        input.take(1)?; // window descriptor: decoding is into the output buffer
    }
    let content = match (fcs_flag, single) {
        (0, false) => {
            return Err(
                "its frame header does not declare its content size (the format requires it)"
                    .into(),
            )
        }
        (0, true) => le(input.take(1)?),
        (1, _) => le(input.take(2)?) + 256,
        (2, _) => le(input.take(4)?),
        _ => le(input.take(8)?),
    };
    if content == 0 || content > MAX_FRAME_DATA as u64 {
        return Err(format!(
            "its frame header declares {content} bytes; a frame holds 1 to {MAX_FRAME_DATA}"
        ));
    }
    // Magic, descriptor, window descriptor, content size (flag 0 is 1 byte
    // here: a frame without a single segment was refused above).
    let mut len = 4 + 1 + usize::from(!single) + [1, 2, 4, 8][fcs_flag as usize];
    loop {
        let block = le(input.take(3)?) as usize;
        let (last, kind, size) = (block & 1 != 0, (block >> 1) & 3, block >> 3);
        if size > MAX_BLOCK {
            return Err(format!(
                "a block of {size} bytes, more than zstd allows, at frame byte {len}"
            ));
        }
        let body = match kind {
            0 | 2 => size,
            1 => 1,
            _ => return Err(format!("a reserved block type at frame byte {len}")),
        };
        len += 3 + body;
        if len > max_compressed() {
            return Err(format!(
                "it is longer than the {} bytes a frame may take",
                max_compressed()
            ));
        }
        input.take(body)?;
        if last {
            break;
        }
    }
    if checksum {
        input.take(4)?;
        len += 4;
    }
    Ok(Frame::Data {
        content: content as usize,
        len,
    })
}

/// A frame held whole in memory (a seek-table entry of a mapped file).
pub(crate) struct SliceInput<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> SliceInput<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> SliceInput<'a> {
        SliceInput { bytes, pos: 0 }
    }
}

impl FrameInput for SliceInput<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let got = self.bytes.get(self.pos..self.pos + n).ok_or_else(|| {
            "its zstd frame runs past the end of its seek-table entry".to_string()
        })?;
        self.pos += n;
        Ok(got)
    }
}

/// Checks that `entry`, one seek-table entry's bytes, is exactly one zstd
/// data frame declaring `d_size` bytes: nothing before, inside or after it
/// that the seek table and the tar do not account for.
pub(crate) fn check_entry(entry: &[u8], d_size: u32) -> std::result::Result<(), String> {
    match walk(&mut SliceInput::new(entry))? {
        Frame::Skippable { magic, .. } if magic == LABEL_MAGIC => {
            Err("it is a volume label where a data frame belongs".into())
        }
        Frame::Skippable { magic, .. } => Err(format!(
            "it is a skippable frame (magic {magic:#010x}), not a data frame: a bundle carries no data outside its frames"
        )),
        Frame::Data { content, .. } if content != d_size as usize => Err(format!(
            "its frame header declares {content} bytes, its seek-table entry {d_size}"
        )),
        Frame::Data { len, .. } if len != entry.len() => Err(format!(
            "{} bytes follow its zstd frame inside its seek-table entry: a bundle carries no data outside its frames",
            entry.len() - len
        )),
        Frame::Data { .. } => Ok(()),
    }
}

/// The data ranges (start, length) of a frame that [`check_entry`] passed
/// and that holds only raw (stored) blocks, as airlock writes
/// incompressible data: its content is these bytes of the entry, in order,
/// with nothing to decompress, and its last 4 bytes the checksum. `None`
/// for a frame with any other block or without a checksum.
pub(crate) fn raw_blocks(entry: &[u8]) -> Option<Vec<(usize, usize)>> {
    let descriptor = *entry.get(4)?;
    if descriptor & 0x04 == 0 {
        return None;
    }
    let (fcs_flag, single) = (descriptor >> 6, descriptor & 0x20 != 0);
    let mut at = 5 + usize::from(!single) + [1, 2, 4, 8][usize::from(fcs_flag)];
    let mut blocks = Vec::new();
    loop {
        let block = le(entry.get(at..at + 3)?) as usize;
        let (last, kind, size) = (block & 1 != 0, (block >> 1) & 3, block >> 3);
        if kind != 0 {
            return None;
        }
        at += 3;
        entry.get(at..at + size)?;
        if size > 0 {
            blocks.push((at, size));
        }
        at += size;
        if last {
            return (at + 4 == entry.len()).then_some(blocks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.include_contentsize(true).unwrap();
        c.include_checksum(true).unwrap();
        c.compress(data).unwrap()
    }

    #[test]
    fn accepts_one_frame_exactly_as_declared() {
        for data in [
            vec![1u8; 512],
            vec![0u8; 1 << 22],
            (0..70_000u32).map(|i| i as u8).collect(),
        ] {
            let f = frame(&data);
            check_entry(&f, data.len() as u32).unwrap();
            assert_eq!(
                walk(&mut SliceInput::new(&f)).unwrap(),
                Frame::Data {
                    content: data.len(),
                    len: f.len()
                }
            );
        }
    }

    #[test]
    fn raw_blocks_are_found_only_in_frames_of_stored_blocks() {
        let data: Vec<u8> = (0..300_000u32).map(|i| ((i * 7919) >> 3) as u8).collect();
        let mut stored = Vec::new();
        crate::bundle::frames::stored_frame_for_tests(&data, &mut stored);
        check_entry(&stored, data.len() as u32).unwrap();
        let blocks = raw_blocks(&stored).unwrap();
        let joined: Vec<u8> = blocks
            .iter()
            .flat_map(|&(s, n)| stored[s..s + n].iter().copied())
            .collect();
        assert_eq!(joined, data);
        assert_eq!(blocks.len(), 3, "128 KiB blocks");
        // A compressed frame has compressed blocks: not direct.
        assert_eq!(raw_blocks(&frame(&[5u8; 300_000])), None);
        // Cut short: no panic, no ranges.
        assert_eq!(raw_blocks(&stored[..stored.len() / 2]), None);
    }

    #[test]
    fn refuses_smuggled_bytes_missing_sizes_and_oversized_frames() {
        let mut f = frame(&[7u8; 512]);
        check_entry(&f, 511).unwrap_err();
        // A skippable frame of attacker data appended inside the entry.
        f.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(b"bad");
        assert!(check_entry(&f, 512)
            .unwrap_err()
            .contains("follow its zstd frame"));
        // A skippable frame instead of a data frame.
        assert!(check_entry(&f[f.len() - 11..], 512)
            .unwrap_err()
            .contains("skippable"));
        // No content size.
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.include_contentsize(false).unwrap();
        let bare = c.compress(&[1u8; 4096]).unwrap();
        assert!(check_entry(&bare, 4096)
            .unwrap_err()
            .contains("content size"));
        // 5 MiB declared.
        let big = frame(&vec![0u8; 5 << 20]);
        assert!(check_entry(&big, 5 << 20).unwrap_err().contains("1 to"));
        // The unused and reserved header bits, which zstd itself ignores
        // or refuses: the first decodes to the same bytes.
        let mut unused = frame(&[9u8; 4096]);
        unused[4] |= 0x10;
        assert_eq!(
            zstd::bulk::decompress(&unused, 4096).unwrap(),
            [9u8; 4096],
            "zstd ignores the bit"
        );
        assert!(check_entry(&unused, 4096)
            .unwrap_err()
            .contains("unused bit"));
        let mut reserved = frame(&[9u8; 4096]);
        reserved[4] |= 0x08;
        assert!(check_entry(&reserved, 4096)
            .unwrap_err()
            .contains("reserved bit"));
        // Cut short.
        let f = frame(&[3u8; 9000]);
        assert!(check_entry(&f[..f.len() - 1], 9000)
            .unwrap_err()
            .contains("runs past"));
    }
}
