//! The seek table that ends every bundle (spec §2): where each frame is,
//! and which entries are volume labels.
//!
//! The table is not signed; it only finds frames, and everything read through
//! it is checked afterwards. Its length is checked against the file before
//! zeekstd parses it, so a forged frame count cannot make the parser allocate.
//! Not for reading frames or members: that is [`super::index`].

use std::path::Path;

use zeekstd::SeekTable;

use super::format::*;
use super::store::BundleBytes;
use crate::error::{Error, Result};

/// One data frame: where it is, how big it is compressed and decompressed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub c_offset: u64,
    pub c_size: u32,
    pub d_size: u32,
}

/// Reads the seek table at the end of the bundle: data frames, and the
/// offsets of volume labels (entries with no decompressed bytes).
pub(crate) fn read_seek_table(path: &Path, bytes: &BundleBytes) -> Result<(Vec<Frame>, Vec<u64>)> {
    let bad = |p: String| Error::bad_bundle(path, p);
    let len = bytes.len();
    let no_table = |why: &str| {
        bad(format!(
            "no valid seek table ends the file at byte {len} ({why}): it is truncated, damaged, has data appended, or is not an airlock bundle"
        ))
    };
    let (table, table_len) = seek_table_at_end(bytes).map_err(|why| no_table(&why))?;
    if table.size_comp() + table_len != len {
        return Err(bad(format!(
            "the seek table accounts for {} bytes but the file has {len}: it is truncated or has data appended",
            table.size_comp() + table_len
        )));
    }
    let mut frames = Vec::new();
    let mut labels = Vec::new();
    for i in 0..table.num_frames() {
        let c_size = table.frame_size_comp(i).map_err(|e| bad(e.to_string()))?;
        let d_size = table.frame_size_decomp(i).map_err(|e| bad(e.to_string()))?;
        let c_offset = table.frame_start_comp(i).map_err(|e| bad(e.to_string()))?;
        if d_size == 0 {
            if c_size as usize != LABEL_LEN {
                return Err(bad(format!(
                    "frame {i} at byte {c_offset} is empty but is not a volume label"
                )));
            }
            labels.push(c_offset);
            continue;
        }
        frames.push(Frame {
            c_offset,
            c_size: c_size as u32,
            d_size: d_size as u32,
        });
    }
    let max_c = zstd::zstd_safe::compress_bound(MAX_FRAME_DATA) as u32;
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.d_size as usize > MAX_FRAME_DATA || f.c_size > max_c)
    {
        return Err(bad(format!(
            "the seek table gives frame {i} at byte {} {} bytes ({} compressed), more than the format allows",
            f.c_offset, f.d_size, f.c_size
        )));
    }
    Ok((frames, labels))
}

/// Parses the seek table that ends `bytes`; returns it and its length
/// (skippable frame included). `Err` says why there is no valid one. Does
/// not check that the table accounts for every byte: a lone last volume
/// holds only the end of what its table describes.
pub(crate) fn seek_table_at_end(
    bytes: &BundleBytes,
) -> std::result::Result<(SeekTable, u64), String> {
    let len = bytes.len();
    if len < SEEK_TABLE_MIN {
        return Err("the file is too short".into());
    }
    let footer = bytes
        .read(len - 9, 9)
        .map_err(|gap| bytes.describe_gap(gap))?;
    let (table_len, frames) = seek_table_len(&footer)?;
    if table_len > len {
        return Err(format!(
            "it claims {frames} frames, more than the file can hold"
        ));
    }
    let tail = bytes
        .read(len - table_len, table_len as usize)
        .map_err(|gap| bytes.describe_gap(gap))?;
    check_seek_table_footer(&tail)?;
    let table = SeekTable::from_seekable(&mut zeekstd::BytesWrapper::new(&tail))
        .map_err(|e| e.to_string())?;
    Ok((table, table_len))
}

/// The seek table's length (skippable frame included) and frame count, from
/// its 9-byte footer. Checked against the file before any parser trusts the
/// count: zeekstd allocates room for that many entries up front, so a forged
/// count could demand gigabytes.
fn seek_table_len(footer: &[u8]) -> std::result::Result<(u64, u64), String> {
    let le32 = |at: usize| u32::from_le_bytes(footer[at..at + 4].try_into().expect("4 bytes"));
    if le32(5) != zeekstd::SEEKABLE_MAGIC_NUMBER {
        return Err("the seekable-format magic number is missing".into());
    }
    // No per-frame checksums, no reserved bits (§5): 4 unchecked bytes a
    // frame would be a channel for unsigned data.
    if footer[4] != 0 {
        return Err(format!(
            "its descriptor is {:#04x}; a bundle's seek table has no per-frame checksums",
            footer[4]
        ));
    }
    let frames = le32(0) as u64;
    Ok((SEEK_TABLE_MIN + frames * 8, frames))
}

/// Checks that `table` (exactly the length its footer declares, see
/// `seek_table_len`) is one skippable frame, before zeekstd parses it.
fn check_seek_table_footer(table: &[u8]) -> std::result::Result<(), String> {
    let le32 = |at: usize| u32::from_le_bytes(table[at..at + 4].try_into().expect("4 bytes"));
    if le32(0) != 0x184D_2A5E || le32(4) as usize != table.len() - 8 {
        return Err("the skippable frame holding it does not match its length".into());
    }
    Ok(())
}
