//! Readers that check content against its digest as it streams.
//!
//! [`crate::model::Digest`] is the value; this module is what checks bytes
//! against one. It does not decide what to check: plans and sinks do.

use std::io::{self, BufRead, Read};

use sha2::{Digest as _, Sha256};

use crate::error::{into_io, Error};
use crate::model::Digest;

/// Reads from `inner` and checks size and digest against what was declared.
///
/// The check happens in `read` itself: a read past the declared size fails at
/// once, and the read that reaches end-of-file fails if the digest differs.
/// A consumer that reads to EOF (as `io::copy` does) therefore never sees a
/// successful end for bad content, so sinks can rename into place safely.
///
/// With [`VerifyingReader::hash_in_background`], large blobs are hashed on a
/// helper thread so hashing overlaps with what the consumer does with the
/// bytes (compressing, writing); the result is still awaited before the final
/// read returns. Callers that already run many readers in parallel should
/// not use it.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    expected_size: u64,
    seen: u64,
    what: String,
    done: bool,
}

/// Blobs at least this large are hashed on a helper thread.
const BACKGROUND_HASH_MIN: u64 = 8 * 1024 * 1024;

enum Hasher {
    Inline(Sha256),
    Background {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        /// Chunks the worker is done with, to be filled again: fresh
        /// allocations would cost a page fault per 4 KiB.
        spent: std::sync::mpsc::Receiver<Vec<u8>>,
        worker: std::thread::JoinHandle<Sha256>,
    },
    /// The bytes were hashed against the digest already, by this process.
    Checked,
    Finished,
}

impl Hasher {
    fn background() -> Hasher {
        // A few chunks in the queue keep the thread busy without letting
        // memory grow with the blob.
        let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (give_back, spent) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in queue {
                h.update(&chunk);
                let _ = give_back.send(chunk);
            }
            h
        });
        Hasher::Background {
            chunks,
            spent,
            worker,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Inline(h) => h.update(bytes),
            Hasher::Background { chunks, spent, .. } => {
                let mut chunk = spent.try_recv().unwrap_or_default();
                chunk.clear();
                chunk.extend_from_slice(bytes);
                // The worker only stops when this side drops the sender.
                let _ = chunks.send(chunk);
            }
            Hasher::Checked | Hasher::Finished => {}
        }
    }

    fn finish(&mut self) -> io::Result<Digest> {
        match std::mem::replace(self, Hasher::Finished) {
            Hasher::Inline(h) => Ok(Digest::from_hasher(h)),
            Hasher::Background { chunks, worker, .. } => {
                drop(chunks);
                let h = worker
                    .join()
                    .map_err(|_| io::Error::other("the hashing thread failed"))?;
                Ok(Digest::from_hasher(h))
            }
            Hasher::Checked => Err(io::Error::other("no digest: the bytes were checked before")),
            Hasher::Finished => Err(io::Error::other("digest already taken")),
        }
    }
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: u64, what: impl Into<String>) -> Self {
        VerifyingReader {
            inner,
            hasher: Hasher::Inline(Sha256::new()),
            expected,
            expected_size,
            seen: 0,
            what: what.into(),
            done: false,
        }
    }

    /// Hashes on a helper thread when the blob is large enough to gain.
    /// Call before the first read.
    pub fn hash_in_background(mut self) -> Self {
        if self.expected_size >= BACKGROUND_HASH_MIN && self.seen == 0 {
            self.hasher = Hasher::background();
        }
        self
    }

    /// For bytes this process has just hashed against the same digest (a
    /// registry blob checked as it was downloaded into the cache): hashing
    /// them again would find nothing new, so only the size is checked.
    /// Call before the first read.
    pub fn already_checked(mut self) -> Self {
        if self.seen == 0 {
            self.hasher = Hasher::Checked;
        }
        self
    }

    fn check_end(&mut self) -> io::Result<()> {
        if self.seen != self.expected_size {
            return Err(into_io(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.expected_size,
                actual: self.seen,
            }));
        }
        if matches!(self.hasher, Hasher::Checked) {
            self.done = true;
            return Ok(());
        }
        let actual = self.hasher.finish()?;
        if actual != self.expected {
            return Err(into_io(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            }));
        }
        self.done = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // Never ask for more than one byte past the declared size: enough to
        // detect a longer stream without buffering unbounded extra data.
        let room = self
            .expected_size
            .saturating_sub(self.seen)
            .saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        self.seen += n as u64;
        if self.seen > self.expected_size {
            return Err(into_io(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.expected_size,
                actual: self.seen,
            }));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Lets a consumer hash straight out of the inner reader's buffer, with no
/// copy: bytes are hashed as they are consumed, and the `fill_buf` that meets
/// end-of-file fails if size or digest differ.
impl<R: BufRead> BufRead for VerifyingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.done {
            return Ok(&[]);
        }
        let available = self.inner.fill_buf()?.len() as u64;
        if available == 0 {
            self.check_end()?;
            return Ok(&[]);
        }
        if self.seen + available > self.expected_size {
            return Err(into_io(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.expected_size,
                actual: self.seen + available,
            }));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let n = n.min(buf.len());
            self.hasher.update(&buf[..n]);
            self.seen += n as u64;
            self.inner.consume(n);
        }
    }
}

/// Checks bytes already in memory against a declared digest and size.
pub fn verify_bytes(bytes: &[u8], expected: &Digest, size: u64, what: &str) -> crate::Result<()> {
    if bytes.len() as u64 != size {
        return Err(Error::SizeMismatch {
            what: what.to_string(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if &actual != expected {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Hashes a whole stream, returning its digest and length.
pub fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((Digest::from_hasher(h), n_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_accepts_good_content() {
        let data = b"hello world";
        let mut r = VerifyingReader::new(&data[..], Digest::of(data), 11, "blob");
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn verifying_reader_rejects_wrong_digest_at_eof() {
        let mut r = VerifyingReader::new(&b"hello"[..], Digest::of(b"jello"), 5, "blob x");
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        let e = Error::io("read", "x", err);
        assert!(
            matches!(e, Error::DigestMismatch { ref what, .. } if what == "blob x"),
            "{e}"
        );
    }

    #[test]
    fn buffered_verification_hashes_what_it_consumes() {
        let data = b"hello buffered world";
        let mut ok = VerifyingReader::new(&data[..], Digest::of(data), data.len() as u64, "b");
        loop {
            let n = ok.fill_buf().unwrap().len();
            if n == 0 {
                break;
            }
            ok.consume(n.min(5));
        }
        let mut bad = VerifyingReader::new(&data[..], Digest::of(b"other"), data.len() as u64, "b");
        let n = bad.fill_buf().unwrap().len();
        bad.consume(n);
        assert!(matches!(
            Error::io("r", "x", bad.fill_buf().unwrap_err()),
            Error::DigestMismatch { .. }
        ));
        let mut long = VerifyingReader::new(&data[..], Digest::of(data), 3, "b");
        assert!(long.fill_buf().is_err());
    }

    #[test]
    fn background_hashing_checks_large_blobs_too() {
        let big: Vec<u8> = (0..BACKGROUND_HASH_MIN as usize + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut ok = VerifyingReader::new(&big[..], Digest::of(&big), big.len() as u64, "big")
            .hash_in_background();
        io::copy(&mut ok, &mut io::sink()).unwrap();
        let mut bad = big.clone();
        bad[1] ^= 1;
        let mut r = VerifyingReader::new(&bad[..], Digest::of(&big), big.len() as u64, "big")
            .hash_in_background();
        let e = Error::io("r", "x", io::copy(&mut r, &mut io::sink()).unwrap_err());
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    }

    #[test]
    fn already_checked_bytes_are_not_hashed_again_but_still_sized() {
        let d = Digest::of(b"hello");
        let mut same = VerifyingReader::new(&b"hello"[..], d.clone(), 5, "b").already_checked();
        assert_eq!(io::copy(&mut same, &mut io::sink()).unwrap(), 5);
        for (bytes, size) in [(&b"hello!"[..], 6), (&b"hell"[..], 4)] {
            let mut r = VerifyingReader::new(bytes, d.clone(), 5, "b").already_checked();
            let e = Error::io("r", "x", io::copy(&mut r, &mut io::sink()).unwrap_err());
            assert!(
                matches!(e, Error::SizeMismatch { actual, .. } if actual == size),
                "{e}"
            );
        }
    }

    #[test]
    fn verifying_reader_rejects_long_and_short_streams() {
        let long = io::copy(
            &mut VerifyingReader::new(&b"hello!"[..], Digest::of(b"hello"), 5, "b"),
            &mut io::sink(),
        )
        .unwrap_err();
        assert!(matches!(
            Error::io("r", "x", long),
            Error::SizeMismatch { actual: 6, .. }
        ));
        let short = io::copy(
            &mut VerifyingReader::new(&b"hell"[..], Digest::of(b"hello"), 5, "b"),
            &mut io::sink(),
        )
        .unwrap_err();
        assert!(matches!(
            Error::io("r", "x", short),
            Error::SizeMismatch { actual: 4, .. }
        ));
    }
}
