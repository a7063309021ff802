//! Compresses a sequence of frames on rayon and writes them in order,
//! followed by the zstd seekable-format seek table.
//!
//! Three kinds of work overlap: the caller fills frames, rayon compresses
//! them, and one writer thread puts them in order and writes them. Writing is
//! off the caller's thread because copying into the page cache costs about as
//! much as compressing already-compressed layers. At most a fixed number of
//! frames are in flight, so memory stays bounded (about
//! `2 × in_flight × MAX_FRAME_DATA`) whatever the input size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
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

pub struct FrameWriter<W: FrameSink + 'static> {
    level: i32,
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

fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(true)?;
            c.include_contentsize(true)?;
            *slot = Some((level, c));
        }
        slot.as_mut().expect("set above").1.compress(data)
    })
}

/// Writes frames in sequence order as they arrive, then the seek table.
fn write_in_order(
    out: &mut impl FrameSink,
    frames: mpsc::Receiver<(u64, Compressed)>,
    credits: mpsc::Sender<()>,
) -> io::Result<()> {
    let mut table = SeekTable::new();
    let mut pending: BTreeMap<u64, Compressed> = BTreeMap::new();
    let mut next = 0u64;
    for (seq, frame) in frames {
        pending.insert(seq, frame);
        while let Some(frame) = pending.remove(&next) {
            let (compressed, d_size) = frame?;
            out.put(&compressed, d_size, &mut table)?;
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
        let writer = std::thread::Builder::new()
            .name("airlock-writer".into())
            .spawn(move || {
                let mut out = out;
                write_in_order(&mut out, frames, credits)?;
                Ok(out)
            })
            .expect("spawn writer thread");
        FrameWriter {
            level,
            submitted: 0,
            outstanding: 0,
            in_flight: 2 * rayon::current_num_threads() as u64 + 2,
            to_writer: Some(to_writer),
            written,
            writer: Some(writer),
        }
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
        rayon::spawn(move || {
            let result = compress(&data, level).map(|c| (c, data.len() as u32));
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
