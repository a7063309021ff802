//! The write side: every format airlock writes implements [`Sink`], and
//! [`copy`] is the one data path: source, then verify, then sink.

use std::io::Read;

use crate::error::Result;
use crate::integrity::VerifyingReader;
use crate::plan::{Plan, PlannedBlob};
use crate::progress::Progress;
use crate::source::Source;

pub trait Sink {
    /// Called once before any blob, with everything that will follow.
    fn begin(&mut self, _plan: &Plan) -> Result<()> {
        Ok(())
    }

    /// Receives each blob once, in plan order (children before parents).
    /// `data` yields exactly the declared bytes, and its final read fails if
    /// they do not match the digest: a sink must read to end-of-file before
    /// it makes the blob visible.
    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()>;

    /// Called once after every blob; names the images and seals the output.
    fn finish(self: Box<Self>, plan: &Plan) -> Result<()>;
}

/// Streams every blob of `plan` from its source through a digest check into
/// `sink`. Nothing unverified reaches a sink's finished output.
pub fn copy(
    plan: &Plan,
    sources: &[Box<dyn Source + '_>],
    mut sink: Box<dyn Sink>,
    progress: &Progress,
) -> Result<()> {
    sink.begin(plan)?;
    for blob in &plan.blobs {
        let source = &sources[blob.origin];
        let (raw, checked): (Box<dyn Read + Send>, bool) = match &blob.inline {
            Some(bytes) => (Box::new(std::io::Cursor::new(bytes.clone())), false),
            None => (
                source.open_blob(&blob.descriptor)?,
                source.opens_checked_blobs(),
            ),
        };
        let verified = VerifyingReader::new(
            progress.wrap(raw),
            blob.descriptor.digest.clone(),
            blob.descriptor.size,
            blob.label(),
        );
        let mut verified = if checked {
            verified.already_checked()
        } else {
            verified.hash_in_background()
        };
        sink.put_blob(blob, &mut verified)?;
    }
    sink.finish(plan)
}
