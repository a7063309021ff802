//! Compresses a sequence of frames on rayon and writes them in order,
//! followed by the zstd seekable-format seek table.
//!
//! Three kinds of work overlap: the caller fills frames, rayon compresses
//! them, and one writer thread puts them in order and writes them. Writing is
//! off the caller's thread because copying into the page cache costs about as
//! much as compressing already-compressed layers. At most a fixed number of
//! frames are in flight, so memory stays bounded (about
//! `2 × in_flight × MAX_FRAME_DATA`) whatever the input size.
//!
//! Not for what goes in the frames (tar members: [`super::writer`]) nor for
//! reading them back ([`super::index`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use zeekstd::SeekTable;

type Compressed = io::Result<(Vec<u8>, u32)>;

/// Where compressed frames go, in order: one stream, or volumes.
pub trait FrameSink: Send {
    /// Writes one frame and logs it (and anything written before it, such
    /// as a volume label) in the seek table.
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()>;
    /// Writes the seek table after the last frame.
    fn end(&mut self, table: SeekTable) -> io::Result<()>;
}

/// A plain stream: frames back to back, then the seek table.
pub struct Stream<W>(pub W);

impl<W: Write + Send> FrameSink for Stream<W> {
    fn put(&mut self, frame: &[u8], d_size: u32, table: &mut SeekTable) -> io::Result<()> {
        self.0.write_all(frame)?;
        table
            .log_frame(frame.len() as u32, d_size)
            .map_err(|e| io::Error::other(format!("seek table: {e}")))
    }

    fn end(&mut self, table: SeekTable) -> io::Result<()> {
        io::copy(&mut table.into_serializer(), &mut self.0)?;
        self.0.flush()
    }
}

/// Frame buffers handed back after use. Steady-state packing then reuses
/// memory it has touched before, instead of faulting in and zeroing fresh
/// pages for every frame, which cost as much as the rest of the copying.
struct Buffers {
    kept: Mutex<Vec<Vec<u8>>>,
    /// At most this many are kept: as many as frames in flight can hold.
    keep: usize,
}

/// Smaller buffers (tar headers) are not worth keeping.
const KEEP_FROM: usize = 64 * 1024;

impl Buffers {
    /// A buffer with whatever length and contents it had.
    fn take(&self) -> Vec<u8> {
        self.kept
            .lock()
            .expect("not poisoned")
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() >= KEEP_FROM {
            let mut kept = self.kept.lock().expect("not poisoned");
            if kept.len() < self.keep {
                kept.push(buf);
            }
        }
    }
}

pub struct FrameWriter<W: FrameSink + 'static> {
    level: i32,
    buffers: Arc<Buffers>,
    submitted: u64,
    outstanding: u64,
    in_flight: u64,
    to_writer: Option<mpsc::Sender<(u64, Compressed)>>,
    /// One message per frame written: a credit to submit another.
    written: mpsc::Receiver<()>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Compresses `data` into `out` (replacing what it held).
fn compress(data: &[u8], level: i32, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    if looks_incompressible(data, level)? {
        stored_frame(data, out);
        return Ok(());
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            *slot = Some((level, c));
        }
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        slot.as_mut()
            .expect("set above")
            .1
            .compress_to_buffer(data, out)
            .map(|_| ())
    })
}

/// Frames smaller than this are always compressed: probing would cost more
/// than it saves.
const PROBE_FROM: usize = 64 * 1024;
const PROBE_SAMPLE: usize = 16 * 1024;

/// From this level on the user asked for size over speed: only frames that
/// barely shrink at all are stored.
const THOROUGH_LEVEL: i32 = 10;

/// True when samples from the start, middle and end of `data` all fail to
/// shrink by 1/32 (1/256 from [`THOROUGH_LEVEL`] on) at zstd's fastest
/// level, as gzip or zstd layers do. Such a frame is stored, not compressed:
/// zstd would save at most a few percent on it, after a match search that
/// costs more than the rest of the pack.
fn looks_incompressible(data: &[u8], level: i32) -> io::Result<bool> {
    if data.len() < PROBE_FROM {
        return Ok(false);
    }
    let must_save = if level >= THOROUGH_LEVEL {
        PROBE_SAMPLE / 256
    } else {
        PROBE_SAMPLE / 32
    };
    thread_local! {
        static PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    }
    PROBE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(1)?);
        }
        let probe = slot.as_mut().expect("set above");
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(PROBE_SAMPLE));
        let last = data.len() - PROBE_SAMPLE;
        for start in [0, last / 2, last] {
            out.clear();
            probe.compress_to_buffer(&data[start..start + PROBE_SAMPLE], &mut out)?;
            if out.len() < PROBE_SAMPLE - must_save {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// The largest block RFC 8878 allows.
const MAX_BLOCK: usize = 128 * 1024;

/// Appends `data` to `frame` as one zstd frame of raw (stored) blocks,
/// with its content size and checksum like every other frame: RFC 8878
/// §3.1.1. Any zstd decoder reads it.
fn stored_frame(data: &[u8], frame: &mut Vec<u8>) {
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    frame.reserve(4 + 1 + 4 + 3 * blocks + data.len() + 4);
    frame.extend_from_slice(&zstd::zstd_safe::MAGICNUMBER.to_le_bytes());
    // Frame header descriptor: a 4-byte content size (flag 2), single
    // segment (no window descriptor), content checksum, no dictionary.
    frame.push((2 << 6) | (1 << 5) | (1 << 2));
    let size = u32::try_from(data.len()).expect("frames are at most 4 MiB");
    frame.extend_from_slice(&size.to_le_bytes());
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    if data.is_empty() {
        frame.extend_from_slice(&[1, 0, 0]); // one empty raw block, the last
    }
    while let Some(chunk) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        // Block header: last-block bit, type 0 (raw), then the size.
        let header = ((chunk.len() as u32) << 3) | last;
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.extend_from_slice(chunk);
    }
    let checksum = xxhash_rust::xxh64::xxh64(data, 0) as u32;
    frame.extend_from_slice(&checksum.to_le_bytes());
}

#[cfg(test)]
pub(crate) fn stored_frame_for_tests(data: &[u8], frame: &mut Vec<u8>) {
    stored_frame(data, frame)
}

/// Writes frames in sequence order as they arrive, then the seek table.
fn write_in_order(
    out: &mut impl FrameSink,
    frames: mpsc::Receiver<(u64, Compressed)>,
    credits: mpsc::Sender<()>,
    buffers: &Buffers,
) -> io::Result<()> {
    let mut table = SeekTable::new();
    let mut pending: BTreeMap<u64, Compressed> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, frame) in frames {
        pending.insert(seq, frame);
        while let Some(frame) = pending.remove(&next) {
            let (compressed, d_size) = frame?;
            out.put(&compressed, d_size, &mut table)?;
            buffers.give(compressed);
            next += 1;
            let _ = credits.send(());
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a compressed frame went missing"));
    }
    out.end(table)
}

impl<W: FrameSink + 'static> FrameWriter<W> {
    pub fn new(out: W, level: i32) -> FrameWriter<W> {
        let (to_writer, frames) = mpsc::channel();
        let (credits, written) = mpsc::channel();
        let in_flight = 2 * rayon::current_num_threads() as u64 + 2;
        // Each frame in flight holds at most two buffers: data and output.
        let buffers = Arc::new(Buffers {
            kept: Mutex::default(),
            keep: 2 * in_flight as usize + 2,
        });
        let writer_buffers = buffers.clone();
        let writer = std::thread::Builder::new()
            .name("airlock-writer".into())
            .spawn(move || {
                let mut out = out;
                write_in_order(&mut out, frames, credits, &writer_buffers)?;
                Ok(out)
            })
            .expect("spawn writer thread");
        FrameWriter {
            level,
            buffers,
            submitted: 0,
            outstanding: 0,
            in_flight,
            to_writer: Some(to_writer),
            written,
            writer: Some(writer),
        }
    }

    /// A buffer to fill with a frame's data, recycled from earlier frames:
    /// its length and contents are whatever they were.
    pub fn buffer(&self) -> Vec<u8> {
        self.buffers.take()
    }

    /// Queues one frame of decompressed data.
    pub fn frame(&mut self, data: Vec<u8>) -> io::Result<()> {
        while self.outstanding >= self.in_flight {
            if self.written.recv().is_err() {
                // The writer stopped early: its error says why.
                return Err(self.writer_error());
            }
            self.outstanding -= 1;
        }
        let seq = self.submitted;
        self.submitted += 1;
        self.outstanding += 1;
        let tx = self.to_writer.clone().expect("open until finish");
        let level = self.level;
        let buffers = self.buffers.clone();
        rayon::spawn(move || {
            let mut out = buffers.take();
            let result = compress(&data, level, &mut out).map(|()| (out, data.len() as u32));
            buffers.give(data);
            // The receiver is gone only if the writer already failed.
            let _ = tx.send((seq, result));
        });
        Ok(())
    }

    fn writer_error(&mut self) -> io::Error {
        self.to_writer = None;
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the writer thread stopped"),
        }
    }

    /// Waits for every frame, writes the seek table and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.to_writer = None;
        match self.writer.take().expect("joined once").join() {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("the writer thread panicked")),
        }
    }
}

/// On an error path the writer thread still owns the output; join it so the
/// output is dropped (an unfinished bundle's temporary file removed) before
/// the error reaches the user and the process exits.
impl<W: FrameSink + 'static> Drop for FrameWriter<W> {
    fn drop(&mut self) {
        self.to_writer = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn stored_frames_decode_with_zstd_and_carry_a_checked_checksum() {
        for len in [
            0,
            1,
            MAX_BLOCK - 1,
            MAX_BLOCK,
            MAX_BLOCK + 1,
            3 * MAX_BLOCK + 7,
        ] {
            let data = random(len, len as u64);
            let mut frame = vec![9; 5]; // appended to, not overwritten
            stored_frame(&data, &mut frame);
            assert_eq!(frame.drain(..5).collect::<Vec<_>>(), [9; 5]);
            assert_eq!(zstd::decode_all(&frame[..]).unwrap(), data, "len {len}");
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&frame).ok(),
                Some(Some(len as u64))
            );
            if len > 0 {
                let mut bad = frame.clone();
                bad[9 + 3] ^= 1; // the first data byte
                assert!(
                    zstd::decode_all(&bad[..]).is_err(),
                    "len {len}: checksum not checked"
                );
            }
        }
    }

    #[test]
    fn only_frames_that_do_not_shrink_are_stored() {
        let noise = random(1 << 20, 7);
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n"
            .iter()
            .cycle()
            .take(1 << 20)
            .copied()
            .collect();
        assert!(looks_incompressible(&noise, 3).unwrap());
        assert!(!looks_incompressible(&text, 3).unwrap());
        // Text at the end only is still found.
        let mut mixed = noise.clone();
        mixed[(1 << 20) - PROBE_SAMPLE..].copy_from_slice(&text[..PROBE_SAMPLE]);
        assert!(!looks_incompressible(&mixed, 3).unwrap());
        assert!(!looks_incompressible(&noise[..PROBE_FROM - 1], 3).unwrap());
        // Data that shrinks by about 1/35 at level 1: stored at the default
        // level, compressed when the user asks for size.
        let mut nearly = noise.clone();
        for chunk in nearly.chunks_mut(1024) {
            chunk[..40].fill(0);
        }
        assert!(looks_incompressible(&nearly, 3).unwrap());
        assert!(!looks_incompressible(&nearly, THOROUGH_LEVEL).unwrap());
        assert!(looks_incompressible(&noise, 19).unwrap());

        let mut stored = vec![1; 100];
        compress(&noise, 3, &mut stored).unwrap();
        let mut expected = Vec::new();
        stored_frame(&noise, &mut expected);
        assert_eq!(stored, expected);
        let mut packed = vec![1; 100];
        compress(&text, 3, &mut packed).unwrap();
        assert!(packed.len() < text.len() / 10);
        assert_eq!(zstd::decode_all(&packed[..]).unwrap(), text);
    }
}
