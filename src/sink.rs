//! The write side: every format airlock writes implements [`Sink`], and
//! [`copy`] is the one data path: source, then verify, then sink.
//!
//! A file sink takes blobs one at a time, in plan order. A sink whose far
//! end is slow per request (a registry) also implements [`SharedSink`]:
//! `copy` then drives it from several threads, and the sink may skip a blob
//! the far end already has without reading it, or read it again to restart
//! a broken upload. Either way, names (manifests, indexes, tags) are only
//! made visible in [`Sink::finish`], after every blob.
//!
//! Not here: what a format does with a blob, or in which order it commits
//! names; each sink decides that.

use std::io::Read;
use std::sync::Mutex;

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

    /// For a sink that takes several blobs at once: [`copy`] then calls
    /// [`SharedSink::put_shared`] instead of [`Sink::put_blob`].
    fn shared(&self) -> Option<&dyn SharedSink> {
        None
    }

    /// Called once after every blob; names the images and seals the output.
    fn finish(self: Box<Self>, plan: &Plan) -> Result<()>;
}

/// A sink that takes blobs from [`SharedSink::jobs`] threads at once, in no
/// particular order (the largest first); every blob is in before
/// [`Sink::finish`].
pub trait SharedSink: Sync {
    /// How many threads to drive it from.
    fn jobs(&self) -> usize;

    /// Places one blob. `open` returns a fresh reader over the blob from its
    /// first byte, verified like [`Sink::put_blob`]'s `data`; the sink need
    /// not call it (the far end has the blob), and may call it again to
    /// restart a broken transfer. `progress` is the blob's own: the sink
    /// counts bytes as it sends them ([`Progress::moved_to`]) and what the
    /// far end held already ([`Progress::held_to`]); whatever it did not
    /// count is counted as held once the blob is placed.
    fn put_shared<'s>(
        &self,
        blob: &PlannedBlob,
        open: &dyn Fn() -> Result<Box<dyn Read + 's>>,
        progress: &Progress,
    ) -> Result<()>;
}

/// Streams every blob of `plan` from its source through a digest check into
/// `sink`. Nothing unverified reaches a sink's finished output.
pub fn copy<'a>(
    plan: &Plan,
    sources: &[Box<dyn Source + '_>],
    mut sink: Box<dyn Sink + 'a>,
    progress: &Progress,
) -> Result<()> {
    sink.begin(plan)?;
    match sink.shared() {
        Some(shared) => copy_shared(plan, sources, shared, progress)?,
        None => {
            for blob in &plan.blobs {
                let mut verified = open_verified(blob, sources, Some(progress))?;
                sink.put_blob(blob, &mut verified)?;
            }
        }
    }
    sink.finish(plan)
}

/// A blob as a reader that fails at its end unless size and digest match.
fn open_verified<'s>(
    blob: &PlannedBlob,
    sources: &'s [Box<dyn Source + '_>],
    progress: Option<&Progress>,
) -> Result<Box<dyn Read + Send + 's>> {
    let source = &sources[blob.origin];
    let (raw, checked): (Box<dyn Read + Send>, bool) = match &blob.inline {
        Some(bytes) => (Box::new(std::io::Cursor::new(bytes.clone())), false),
        None => (
            source.open_blob(&blob.descriptor)?,
            source.opens_checked_blobs(),
        ),
    };
    let raw: Box<dyn Read + Send> = match progress {
        Some(p) => Box::new(p.wrap(raw)),
        None => raw,
    };
    let verified = VerifyingReader::new(
        raw,
        blob.descriptor.digest.clone(),
        blob.descriptor.size,
        blob.label(),
    );
    Ok(Box::new(if checked {
        verified.already_checked()
    } else {
        verified.hash_in_background()
    }))
}

/// A blob's bar label: the start of its digest's hex.
fn blob_label(blob: &PlannedBlob) -> String {
    let short = blob.descriptor.digest.short();
    short.strip_prefix("sha256:").unwrap_or(short).to_string()
}

/// [`open_verified`] for a [`SharedSink`], which may open a blob twice.
fn open_unshown<'s>(
    blob: &PlannedBlob,
    sources: &'s [Box<dyn Source + '_>],
) -> Result<Box<dyn Read + 's>> {
    Ok(open_verified(blob, sources, None)?)
}

/// Drives a [`SharedSink`] from its threads, the largest blobs first so the
/// long transfers do not start last. Progress counts what the sink sends
/// as it goes (a chunked upload advances chunk by chunk); a blob the far
/// end had (never read) advances the position without counting into the
/// rate. The first error stops the threads from taking more blobs.
fn copy_shared(
    plan: &Plan,
    sources: &[Box<dyn Source + '_>],
    sink: &dyn SharedSink,
    progress: &Progress,
) -> Result<()> {
    let mut order: Vec<&PlannedBlob> = plan.blobs.iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.descriptor.size));
    let queue = Mutex::new(order.into_iter());
    let failed = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..sink.jobs().max(1) {
            scope.spawn(|| loop {
                let next = queue.lock().expect("not poisoned").next();
                let Some(blob) = next else { break };
                let open = || open_unshown(blob, sources);
                let bar = progress.child(blob.descriptor.size, &blob_label(blob));
                let placed = sink.put_shared(blob, &open, &bar);
                if placed.is_ok() {
                    bar.held_to(blob.descriptor.size);
                }
                bar.finish();
                match placed {
                    Ok(()) => {}
                    Err(e) => {
                        failed.lock().expect("not poisoned").get_or_insert(e);
                        // Leave the rest to no one: the copy has failed.
                        queue.lock().expect("not poisoned").by_ref().for_each(drop);
                        break;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
