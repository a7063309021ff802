//! Compresses a sequence of frames on rayon and writes them in order,
//! followed by the zstd seekable-format seek table.
//!
//! Each frame is an independent zstd frame with its content size and a
//! checksum. At most a fixed number of frames are in flight, so memory stays
//! bounded (about `2 × in_flight × MAX_FRAME_DATA`) whatever the input size.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;

use zeekstd::SeekTable;

type Compressed = io::Result<(Vec<u8>, u32)>;

pub struct FrameWriter<W: Write> {
    out: W,
    level: i32,
    table: SeekTable,
    submitted: u64,
    written: u64,
    in_flight: u64,
    pending: BTreeMap<u64, Compressed>,
    tx: mpsc::Sender<(u64, Compressed)>,
    rx: mpsc::Receiver<(u64, Compressed)>,
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

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W, level: i32) -> FrameWriter<W> {
        let (tx, rx) = mpsc::channel();
        FrameWriter {
            out,
            level,
            table: SeekTable::new(),
            submitted: 0,
            written: 0,
            in_flight: 2 * rayon::current_num_threads() as u64 + 2,
            pending: BTreeMap::new(),
            tx,
            rx,
        }
    }

    /// Queues one frame of decompressed data.
    pub fn frame(&mut self, data: Vec<u8>) -> io::Result<()> {
        while self.submitted - self.written >= self.in_flight {
            self.receive_one()?;
        }
        let seq = self.submitted;
        self.submitted += 1;
        let tx = self.tx.clone();
        let level = self.level;
        rayon::spawn(move || {
            let result = compress(&data, level).map(|c| (c, data.len() as u32));
            // The receiver only goes away when the writer was dropped on error.
            let _ = tx.send((seq, result));
        });
        while let Ok((seq, r)) = self.rx.try_recv() {
            self.pending.insert(seq, r);
        }
        self.write_ready()
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let (seq, r) = self
            .rx
            .recv()
            .map_err(|_| io::Error::other("compression worker vanished"))?;
        self.pending.insert(seq, r);
        self.write_ready()
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(r) = self.pending.remove(&self.written) {
            let (compressed, d_size) = r?;
            self.out.write_all(&compressed)?;
            self.table
                .log_frame(compressed.len() as u32, d_size)
                .map_err(|e| io::Error::other(format!("seek table: {e}")))?;
            self.written += 1;
        }
        Ok(())
    }

    /// Writes the remaining frames and the seek table; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        while self.written < self.submitted {
            self.receive_one()?;
        }
        let mut serializer = self.table.into_serializer();
        io::copy(&mut serializer, &mut self.out)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
