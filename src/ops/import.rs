//! `airlock import`: a verified bundle into a registry, resuming where a
//! previous run stopped.
//!
//! The registry is pinged first (`GET /v2/` with the auth handshake), so
//! one that cannot be reached, trusted or logged in to is said once before
//! any work. The whole bundle is verified before anything is pushed; a
//! damaged bundle pushes nothing. Then it is `copy(bundle source → registry sink)`: the
//! [`RegistrySink`] places the blobs (in parallel; each skipped if the
//! registry has it, mounted if another of its repositories has it, else
//! uploaded) and then commits image manifests, indexes and tags, in the
//! order registries require, with a journal of each confirmed step (a
//! hint for a re-run, checked against the registry, and locked so that one
//! import at a time uses it; see `src/registry/README.md`).
//!
//! Not here: any request to the registry, or the naming rules
//! ([`crate::registry::Target`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::bundle::format::{BaseKind, BlobRecord, BundleManifest};
use crate::bundle::{Bundle, Received, StreamVisitor, Trusted, Verified};
use crate::error::Result;
use crate::model::image::Descriptor;
use crate::model::Digest;
use crate::plan::{Plan, PlannedBlob};
use crate::progress::Progress;
use crate::registry::journal::Journal;
use crate::registry::{
    Client, ExpectedBlob, PushOptions, Pushed, Registries, RegistryOptions, RegistrySink, Target,
};
use crate::sink::{copy, Sink};
use crate::source::Source;

pub use crate::registry::{BlobCounts, ImageOutcome};

pub struct ImportRequest {
    /// Where the images go.
    pub target: Target,
    pub dry_run: bool,
    /// Journal directory [default: the XDG state dir].
    pub state: Option<PathBuf>,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk_size: u64,
    pub registry: RegistryOptions,
    pub quiet: bool,
    /// Refuse to move an existing tag to another digest.
    pub no_overwrite: bool,
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub target: String,
    pub dry_run: bool,
    pub images: Vec<ImageOutcome>,
    /// `blob_counts`: a field named `blobs` is a count elsewhere.
    #[serde(rename = "blob_counts")]
    pub blobs: BlobCounts,
    /// Bytes this run sent (for --dry-run: the bytes it would send).
    pub bytes_pushed: u64,
    /// Bytes of every blob in the bundle.
    pub bytes_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
    /// A failed image may go in on a later run (a 5xx, a cut connection):
    /// running the same command again is the cure.
    #[serde(skip)]
    pub retry_helps: bool,
}

impl ImportReport {
    pub fn failed(&self) -> usize {
        self.images.iter().filter(|i| i.status == "failed").count()
    }

    /// The images that failed, each with its reason.
    pub fn failures(&self) -> impl Iterator<Item = &ImageOutcome> {
        self.images.iter().filter(|i| i.status == "failed")
    }

    fn new(
        req: &ImportRequest,
        pushed: Pushed,
        manifest: &BundleManifest,
        journal: Option<PathBuf>,
    ) -> ImportReport {
        ImportReport {
            target: req.target.spec().to_string(),
            dry_run: req.dry_run,
            images: pushed.images,
            blobs: pushed.blobs,
            bytes_pushed: pushed.bytes,
            bytes_total: manifest.blobs.iter().map(|b| b.size).sum(),
            journal,
            retry_helps: pushed.retry_helps,
        }
    }
}

impl ImportRequest {
    fn push_options(&self) -> PushOptions {
        PushOptions {
            dry_run: self.dry_run,
            chunk_size: self.chunk_size.max(1),
            jobs: self.registry.jobs.max(1),
            no_overwrite: self.no_overwrite,
        }
    }

    /// The journal of this bundle and target; none for a dry run.
    fn journal(&self, bundle: &Digest) -> Result<Journal> {
        if self.dry_run {
            return Ok(Journal::none());
        }
        let dir = self.state.clone().unwrap_or_else(Journal::default_dir);
        Journal::open(&dir, bundle, self.target.spec())
    }

    /// The target's client; `--username` credentials go to it alone. Its
    /// first request is a ping with the auth handshake, so a registry that
    /// cannot be reached, trusted, spoken to or logged in to stops the
    /// import here, said once, before any blob work.
    fn client(&self) -> Result<Arc<Client>> {
        let mut opts = self.registry.clone();
        opts.scope_login([self.target.host.as_str()])?;
        let client = Registries::new(opts).client(&self.target.host)?;
        client.ping()?;
        Ok(client)
    }
}

/// Takes the journal's lock, verifies every member of the bundle (so
/// nothing goes up from a damaged one), then pushes it.
pub fn import(bundle: Bundle<Trusted>, req: ImportRequest) -> Result<ImportReport> {
    // First, so a second import on the same state is refused at once.
    let journal = req.journal(bundle.id())?;
    // Then the registry, so that one that cannot be used is said before
    // the (long) verification, not after it.
    let client = req.client()?;
    let bundle: Bundle<Verified> = bundle.verify(&Progress::hidden())?;

    let source = bundle.source();
    let mut plan = Plan::default();
    plan.add_source(0, &source, &[])?;
    let journal_path = journal.path().map(PathBuf::from);
    let progress = Progress::new(plan.total_bytes(), "push", req.quiet || req.dry_run);
    let mut pushed = Pushed::default();
    let sink = RegistrySink::new(
        client,
        journal,
        req.target.clone(),
        req.push_options(),
        &mut pushed,
    )
    .expecting(expected_blobs(bundle.manifest()));
    let sources: Vec<Box<dyn Source + '_>> = vec![Box::new(source)];
    copy(&plan, &sources, Box::new(sink), &progress)?;
    progress.finish();
    Ok(ImportReport::new(
        &req,
        pushed,
        bundle.manifest(),
        journal_path,
    ))
}

/// A delta's expected blobs, each with the base it said holds it; empty
/// for a whole bundle.
fn expected_blobs(manifest: &BundleManifest) -> HashMap<Digest, ExpectedBlob> {
    let Some(delta) = &manifest.delta else {
        return HashMap::new();
    };
    delta
        .expected
        .iter()
        .map(|e| {
            let base = match delta.bases.get(e.base) {
                Some(b) => {
                    let kind = match b.kind {
                        BaseKind::Bundle => "bundle",
                        BaseKind::Inventory => "inventory",
                    };
                    match b.name.is_empty() {
                        true => format!("base {kind} {}", b.digest),
                        false => format!("base {kind} {} ({})", b.digest, b.name),
                    }
                }
                None => "a base the delta does not name".to_string(),
            };
            let blob = ExpectedBlob { size: e.size, base };
            (e.digest.clone(), blob)
        })
        .collect()
}

/// `airlock import -`: a bundle read once, in order, from a stream (a data
/// diode, a pipe from `pack -o -`), through [`crate::bundle::read_stream`].
///
/// The signed manifest comes first and is checked before anything is
/// pushed. Blobs go up as they arrive into the first image's repository
/// (the stream does not say which image a layer belongs to until its
/// manifest arrives, later) and are mounted into the other repositories at
/// the end. A blob whose digest fails is never committed, and the stream
/// stops there; images that need a blob the registry refused are reported
/// as failed and the others are pushed.
pub fn import_stream(
    input: impl Read,
    key: Option<&crate::bundle::sign::TrustedKeys>,
    req: ImportRequest,
) -> Result<ImportReport> {
    let client = req.client()?;
    let mut pushed = Pushed::default();
    let mut visitor = StreamImport {
        req: &req,
        client,
        out: Some(&mut pushed),
        sink: None,
        received: None,
        journal: None,
        progress: Progress::hidden(),
    };
    let manifest = crate::bundle::read_stream(input, key, &mut visitor)?;
    visitor.progress.finish();
    let StreamImport {
        sink,
        received,
        journal,
        ..
    } = visitor;
    let mut plan = Plan::default();
    plan.add_source(0, &received.expect("start comes first"), &[])?;
    Box::new(sink.expect("start comes first")).finish(&plan)?;
    Ok(ImportReport::new(&req, pushed, &manifest, journal))
}

/// Feeds blobs into a staged [`RegistrySink`] as a stream delivers them.
struct StreamImport<'a> {
    req: &'a ImportRequest,
    client: Arc<Client>,
    /// Handed to the sink once the stream's manifest arrived.
    out: Option<&'a mut Pushed>,
    sink: Option<RegistrySink<'a>>,
    /// The manifests, kept for planning at the end.
    received: Option<Received>,
    journal: Option<PathBuf>,
    progress: Progress,
}

impl StreamVisitor for StreamImport<'_> {
    fn start(&mut self, manifest: &BundleManifest, id: &Digest) -> Result<()> {
        let req = self.req;
        let journal = req.journal(id)?;
        self.journal = journal.path().map(PathBuf::from);
        let received = Received::new(manifest)?;
        let roots = received.roots()?;
        // Before any blob is sent, as the sink refuses it for a file.
        req.target.refuse_shared_tags(
            roots
                .iter()
                .filter_map(|r| Some((r.name.as_ref()?, &r.descriptor.digest))),
        )?;
        // The stream says which image a layer belongs to only later: every
        // blob goes to the first named image's repository.
        let staging = roots
            .iter()
            .find_map(|r| r.name.as_ref())
            .map(|n| req.target.repository(n))
            .unwrap_or_else(|| req.target.untagged());
        self.received = Some(received);
        let out = self.out.take().expect("start comes once");
        let sink = RegistrySink::new(
            self.client.clone(),
            journal,
            req.target.clone(),
            req.push_options(),
            out,
        )
        .expecting(expected_blobs(manifest))
        .staged(staging);
        // Before the first blob arrives: what the delta expects is asked
        // for (and mounted into staging) while nothing is sent yet.
        sink.find_expected_staged()?;
        self.sink = Some(sink);
        let total = manifest.blobs.iter().map(|b| b.size).sum();
        self.progress = Progress::new(total, "import", req.quiet || req.dry_run);
        Ok(())
    }

    fn blob(&mut self, record: &BlobRecord, data: &mut dyn Read) -> Result<()> {
        self.progress.inc(record.size);
        let received = self.received.as_mut().expect("start comes first");
        if received.keep(record, data)? {
            return Ok(());
        }
        let blob = PlannedBlob {
            descriptor: Descriptor::new(
                record.media_type.clone(),
                record.digest.clone(),
                record.size,
            ),
            origin: 0,
            inline: None,
            needed_by: "the stream".into(),
        };
        self.sink
            .as_mut()
            .expect("start comes first")
            .put_blob(&blob, data)
    }
}
