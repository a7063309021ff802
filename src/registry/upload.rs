//! One blob into one repository's upload session: monolithic (one PUT) up
//! to [`FINAL_PIECE`], else PATCH chunks and a final PUT; a session the
//! journal remembers is continued when the registry still has it (and it
//! is on the registry's origin).
//!
//! The last piece is held in memory and sent only after the whole blob's
//! digest checked out, so an unverified blob is never committed. A data
//! request is never resent blindly (see [`super::push`]): after a failure
//! the registry is asked where the session stands, and the blob is read
//! again from the start when it can be (a file; a stream cannot).
//!
//! Progress counts bytes as they stream into each PATCH and the final
//! PUT, each byte of a blob once (a restarted blob re-sends what it counted
//! before); bytes a continued session holds already count as held, not
//! into the rate.
//!
//! Not here: whether the blob is needed at all (HEAD, mount), which is
//! [`super::sink`]'s decision.

use std::io::Read;

use super::journal::Journal;
use super::Client;
use crate::error::{Error, Result};
use crate::model::image::Descriptor;
use crate::progress::Progress;

/// The last bytes of a blob (and a whole blob up to this size) are held in
/// memory and sent with the final PUT, after the digest checked out.
pub const FINAL_PIECE: u64 = 8 * 1024 * 1024;

/// How many times a blob is started again after a registry failure.
const ATTEMPTS: u32 = 4;

/// Where an upload reads its blob from.
pub enum Data<'o, 's> {
    /// A fresh verified reader from the first byte, as often as needed, and
    /// the blob's progress, which the upload advances as it sends.
    Reopen(&'o dyn Fn() -> Result<Box<dyn Read + 's>>, &'o Progress),
    /// One reader, read once (a stream, counted as it is received): no
    /// second attempt.
    Once(Option<Box<dyn Read + 's>>),
}

impl<'o, 's> Data<'o, 's> {
    /// Where the bytes sent are counted, if anywhere.
    fn progress(&self) -> Option<&'o Progress> {
        match self {
            Data::Reopen(_, p) => Some(*p),
            Data::Once(_) => None,
        }
    }

    /// The blob from its start, or `None` when it cannot be read again.
    fn open(&mut self) -> Option<Result<Box<dyn Read + 's>>> {
        match self {
            Data::Reopen(open, _) => Some(open()),
            Data::Once(reader) => reader.take().map(Ok),
        }
    }
}

/// Why an upload failed: in sending the blob's bytes (the registry refused
/// or lost this blob, or they failed their check), or in a request around
/// that (opening or asking after a session, the journal).
pub enum Failure {
    Sent(Error),
    Other(Error),
}

impl Failure {
    pub fn error(&self) -> &Error {
        match self {
            Failure::Sent(e) | Failure::Other(e) => e,
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            Failure::Sent(e) | Failure::Other(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Other(e)
    }
}

impl From<crate::error::registry::RegistryError> for Failure {
    fn from(e: crate::error::registry::RegistryError) -> Failure {
        Failure::Other(e.into())
    }
}

/// Uploads blobs for one sink; `buf` holds the final piece.
pub struct Uploader<'a> {
    pub client: &'a Client,
    pub journal: &'a Journal,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk: u64,
}

impl Uploader<'_> {
    /// Uploads `blob` into `repo`, in `opened` (a session the registry
    /// opened when it refused a mount) or a new one, continuing a journaled
    /// session the registry still has. Returns the bytes sent. A failed
    /// attempt restarts the blob in a new session (a broken PATCH spoils its
    /// session on distribution 2.8).
    pub fn upload(
        &self,
        repo: &str,
        blob: &Descriptor,
        data: &mut Data<'_, '_>,
        buf: &mut Vec<u8>,
        mut opened: Option<String>,
    ) -> std::result::Result<u64, Failure> {
        let mut last = None;
        let hidden = Progress::hidden();
        let progress = data.progress().unwrap_or(&hidden);
        for _ in 0..ATTEMPTS {
            let Some(reader) = data.open() else { break };
            let result = self.try_upload(repo, blob, reader?, buf, opened.take(), progress);
            if matches!(data, Data::Once(_)) {
                return result;
            }
            let failure = match result {
                Ok(n) => return Ok(n),
                Err(f) => f,
            };
            match failure.error() {
                // The next attempt asks the registry whether the session
                // survived (it continues from there) or not (it starts over).
                Error::Registry(e) if e.is_temporary() => {}
                Error::Registry(e)
                    if e.has_code("BLOB_UPLOAD_INVALID") || e.has_code("BLOB_UPLOAD_UNKNOWN") =>
                {
                    self.journal.forget_upload(repo, &blob.digest)?;
                }
                _ => return Err(failure),
            }
            last = Some(failure);
        }
        Err(last.unwrap_or_else(|| {
            Failure::Other(Error::Failed(format!(
                "blob {} for {repo}: its data cannot be read again",
                blob.digest
            )))
        }))
    }

    fn try_upload(
        &self,
        repo: &str,
        blob: &Descriptor,
        mut reader: Box<dyn Read + '_>,
        buf: &mut Vec<u8>,
        opened: Option<String>,
        progress: &Progress,
    ) -> std::result::Result<u64, Failure> {
        let d = &blob.digest;
        // A journaled session is a hint: continued only on the registry's
        // own origin (a journal file may have been edited to name another)
        // and only from the offset the registry reports.
        let resumed = match self.journal.upload(repo, d) {
            Some(u) if self.client.is_own(&u.location) => self
                .client
                .upload_offset(repo, &u.location)?
                .filter(|&o| o <= blob.size)
                .map(|o| (u.location, o)),
            _ => None,
        };
        let (session, offset) = match (resumed, opened) {
            (Some(s), _) => s,
            (None, Some(location)) => (location, 0),
            (None, None) => (self.client.start_upload(repo)?, 0),
        };
        let label = format!("blob {d} for {repo}");
        let to = Session {
            location: session,
            offset,
            progress,
        };
        self.send(repo, blob, &mut reader, buf, to, &label)
            .map_err(Failure::Sent)
    }

    /// Sends a blob from `reader` (which verifies it and is at offset 0)
    /// into the session, which already holds `offset` bytes: those are read
    /// and hashed locally only. The session is committed only after the
    /// final read checked the digest.
    fn send(
        &self,
        repo: &str,
        blob: &Descriptor,
        reader: &mut dyn Read,
        buf: &mut Vec<u8>,
        to: Session<'_>,
        label: &str,
    ) -> Result<u64> {
        let d = &blob.digest;
        let (mut session, mut offset, progress) = (to.location, to.offset, to.progress);
        let read_err = |e| Error::io("read", label, e);
        // Bytes the registry already holds are read (and hashed) locally only.
        std::io::copy(&mut reader.take(offset), &mut std::io::sink()).map_err(read_err)?;
        progress.held_to(offset);
        let start = offset;
        loop {
            // The last piece stays in memory so the digest is checked before
            // the session is committed: an unverified blob is never completed.
            let tail = self.chunk.min(FINAL_PIECE);
            let remaining = blob.size - offset;
            if remaining <= tail {
                buf.resize(remaining as usize, 0);
                reader.read_exact(buf).map_err(read_err)?;
                let mut probe = [0u8; 1];
                reader.read(&mut probe).map_err(read_err)?;
                self.client.finish_upload(repo, &session, d, buf)?;
                progress.moved_to(blob.size);
                return Ok(blob.size - start);
            }
            // Earlier chunks stream straight from the source.
            let take = self.chunk.min(remaining - tail);
            let mut piece = Sending {
                inner: (&mut *reader).take(take),
                at: offset,
                progress,
            };
            let (next, end) = self
                .client
                .patch(repo, &session, offset, &mut piece, take)?;
            if end != offset + take {
                return Err(Error::Failed(format!(
                    "{label}: the registry holds {end} bytes after a chunk ending at {}",
                    offset + take
                )));
            }
            session = next;
            offset = end;
            self.journal.upload_progress(repo, d, &session, offset)?;
        }
    }
}

/// Where an attempt sends a blob: a session, the bytes it holds, and the
/// blob's progress.
struct Session<'p> {
    location: String,
    offset: u64,
    progress: &'p Progress,
}

/// A chunk counted as the request streams it (the registry confirms the
/// whole chunk with its 202; a chunk cut halfway is sent again, and counted
/// once).
struct Sending<'p, R> {
    inner: R,
    /// The blob's offset of the next byte.
    at: u64,
    progress: &'p Progress,
}

impl<R: Read> Read for Sending<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        self.progress.moved_to(self.at);
        Ok(n)
    }
}
