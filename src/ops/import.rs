//! `airlock import`: a verified bundle into a registry, resuming where a
//! previous run stopped.
//!
//! The whole bundle is verified before anything is pushed; a damaged bundle
//! pushes nothing. Then, in the order registries require: blobs (in
//! parallel; each skipped if the registry has it, mounted if another of its
//! repositories has it, else uploaded), image manifests, indexes, tags.
//! Small blobs go up in one PUT after their digest checked out; large ones
//! in PATCH chunks, and the session is committed only once the whole blob's
//! digest checked out. A [`Journal`] records each confirmed step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::bundle::{Bundle, Verified};
use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::image::{media, Descriptor};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::registry::journal::Journal;
use crate::registry::push::Mount;
use crate::registry::{Client, Registries, RegistryOptions, Target};
use crate::source::{Root, Source};

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
}

#[derive(Debug, Default, Serialize)]
pub struct BlobCounts {
    pub pushed: usize,
    pub mounted: usize,
    pub existed: usize,
}

#[derive(Debug, Serialize)]
pub struct ImageOutcome {
    pub source: String,
    pub target: String,
    pub digest: Digest,
    /// `pushed`, `failed`, or with `--dry-run` `would push`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub target: String,
    pub dry_run: bool,
    pub images: Vec<ImageOutcome>,
    pub blobs: BlobCounts,
    /// Bytes this run sent (for --dry-run: the bytes it would send).
    pub bytes_pushed: u64,
    /// Bytes of every blob in the bundle.
    pub bytes_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<PathBuf>,
}

impl ImportReport {
    pub fn failed(&self) -> usize {
        self.images.iter().filter(|i| i.status == "failed").count()
    }
}

/// One image to push: its root, where it goes, and what it needs.
struct Job {
    label: String,
    root: Root,
    repo: String,
    tag: Option<String>,
    /// Every blob the image needs, in push order.
    blobs: Vec<Descriptor>,
    /// Raw bytes of its manifests and indexes.
    raw: HashMap<Digest, std::sync::Arc<[u8]>>,
}

fn is_manifest(d: &Descriptor) -> bool {
    media::is_manifest(&d.media_type) || media::is_index(&d.media_type)
}

pub fn import(bundle: &Bundle<Verified>, req: ImportRequest) -> Result<ImportReport> {
    // Nothing goes up from a damaged bundle: a `Bundle<Verified>` is checked.
    let host = req.target.host.clone();
    let source = bundle.source();

    let jobs = plan_jobs(&source, &host, &req)?;

    let registries = Registries::new(req.registry.clone());
    let client = registries.client(&host)?;
    let journal = if req.dry_run {
        Journal::none()
    } else {
        let dir = req.state.clone().unwrap_or_else(Journal::default_dir);
        Journal::open(&dir, bundle.id(), req.target.spec())?
    };
    let bytes_total = bundle.manifest().blobs.iter().map(|b| b.size).sum();

    // Phase 1: every (blob, repository) pair, grouped by blob so that the
    // first repository uploads and the others mount.
    let mut pairs: BTreeMap<Digest, (Descriptor, BTreeSet<String>)> = BTreeMap::new();
    for job in &jobs {
        for b in job.blobs.iter().filter(|b| !is_manifest(b)) {
            pairs
                .entry(b.digest.clone())
                .or_insert_with(|| (b.clone(), BTreeSet::new()))
                .1
                .insert(job.repo.clone());
        }
    }
    let mut order: Vec<(Descriptor, BTreeSet<String>)> = pairs.into_values().collect();
    order.sort_by_key(|(d, _)| std::cmp::Reverse(d.size));
    let progress = Progress::new(
        order.iter().map(|(d, _)| d.size).sum(),
        "push",
        req.quiet || req.dry_run,
    );
    let counts = Mutex::new(BlobCounts::default());
    let pushed_bytes = AtomicU64::new(0);
    let failed_blobs: Mutex<HashMap<Digest, String>> = Mutex::new(HashMap::new());
    let queue = Mutex::new(order.iter());

    std::thread::scope(|scope| {
        for _ in 0..req.registry.jobs.max(1) {
            scope.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let Some((blob, repos)) = queue.lock().expect("not poisoned").next() else {
                        break;
                    };
                    let ctx = Push {
                        client: &client,
                        source: Some(&source),
                        journal: &journal,
                        chunk: req.chunk_size.max(1),
                        progress: &progress,
                        dry_run: req.dry_run,
                    };
                    match ctx.blob_everywhere(blob, repos, &mut buf) {
                        Ok((c, bytes)) => {
                            let mut t = counts.lock().expect("not poisoned");
                            t.pushed += c.pushed;
                            t.mounted += c.mounted;
                            t.existed += c.existed;
                            pushed_bytes.fetch_add(bytes, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed_blobs
                                .lock()
                                .expect("not poisoned")
                                .insert(blob.digest.clone(), e.to_string());
                        }
                    }
                }
            });
        }
    });
    progress.finish();
    let failed_blobs = failed_blobs.into_inner().expect("not poisoned");

    let outcomes = finish_images(&client, &journal, &jobs, &failed_blobs, req.dry_run, &host);
    Ok(ImportReport {
        target: req.target.spec().to_string(),
        dry_run: req.dry_run,
        images: outcomes,
        blobs: counts.into_inner().expect("not poisoned"),
        bytes_pushed: pushed_bytes.into_inner(),
        bytes_total,
        journal: journal.path().map(PathBuf::from),
    })
}

/// Where each image goes, and every blob it needs (its manifests read from
/// `source`, which checks them).
fn plan_jobs(source: &dyn Source, host: &str, req: &ImportRequest) -> Result<Vec<Job>> {
    let roots = source.roots()?;
    // Where each image goes, and what it needs.
    let by_digest: HashMap<Digest, Reference> = roots
        .iter()
        .filter_map(|r| Some((r.descriptor.digest.clone(), r.name.clone()?)))
        .collect();
    let mut jobs = Vec::new();
    for root in roots {
        let (repo, tag, label) = match (&root.name, &root.subject) {
            (Some(n), _) => (req.target.repository(n), n.tag.clone(), n.to_string()),
            (None, Some(s)) => match by_digest.get(s) {
                Some(n) => (
                    req.target.repository(n),
                    None,
                    format!("referrer {} of {n}", root.descriptor.digest.short()),
                ),
                None => (
                    req.target.untagged(),
                    None,
                    root.descriptor.digest.to_string(),
                ),
            },
            (None, None) => (
                req.target.untagged(),
                None,
                root.descriptor.digest.to_string(),
            ),
        };
        Reference::parse(&format!("{host}/{repo}")).map_err(|e| {
            Error::Usage(format!(
                "{label} would go to {host}/{repo}, which is not a valid name: {e}"
            ))
        })?;
        let mut plan = Plan::default();
        plan.add_root(0, source, root.clone(), &[])?;
        jobs.push(Job {
            label,
            root,
            repo,
            tag,
            blobs: plan.blobs.iter().map(|b| b.descriptor.clone()).collect(),
            raw: plan
                .blobs
                .iter()
                .filter_map(|b| Some((b.descriptor.digest.clone(), b.inline.clone()?)))
                .collect(),
        });
    }

    Ok(jobs)
}

/// Phases 2–4 for every image: manifests, then indexes (children first, as
/// planned), then tags. An image whose blobs failed is skipped, with the
/// reason; the others go on.
fn finish_images(
    client: &Client,
    journal: &Journal,
    jobs: &[Job],
    failed_blobs: &HashMap<Digest, String>,
    dry_run: bool,
    host: &str,
) -> Vec<ImageOutcome> {
    let mut outcomes = Vec::new();
    let mut pushed_manifests: BTreeSet<(String, Digest)> = BTreeSet::new();
    let fallback_tags: BTreeSet<(String, String)> = jobs
        .iter()
        .filter_map(|j| Some((j.repo.clone(), j.tag.clone()?)))
        .collect();
    for job in jobs {
        let target = match &job.tag {
            Some(t) => format!("{host}/{}:{t}", job.repo),
            None => format!("{host}/{}@{}", job.repo, job.root.descriptor.digest),
        };
        let blob_error = job
            .blobs
            .iter()
            .find_map(|b| failed_blobs.get(&b.digest).map(|e| (b, e)));
        let result = match blob_error {
            Some((b, e)) => Err(Error::Usage(format!(
                "blob {} was not pushed: {e}",
                b.digest
            ))),
            None if dry_run => Ok(()),
            None => push_image(client, journal, job, &mut pushed_manifests, &fallback_tags),
        };
        outcomes.push(ImageOutcome {
            source: job.label.clone(),
            target,
            digest: job.root.descriptor.digest.clone(),
            status: match (&result, dry_run) {
                (Err(_), _) => "failed".into(),
                (Ok(()), true) => "would push".into(),
                (Ok(()), false) => "pushed".into(),
            },
            error: result.err().map(|e| e.to_string()),
        });
    }
    outcomes
}

/// Pushes an image's manifests and indexes by digest, then its tag, and
/// keeps the referrers fallback tag of its subject up to date.
fn push_image(
    client: &Client,
    journal: &Journal,
    job: &Job,
    done: &mut BTreeSet<(String, Digest)>,
    fallback_tags: &BTreeSet<(String, String)>,
) -> Result<()> {
    for d in job.blobs.iter().filter(|b| is_manifest(b)) {
        if !done.insert((job.repo.clone(), d.digest.clone())) {
            continue;
        }
        let key = format!("{}@{}", job.repo, d.digest);
        if journal.has_manifest(&key, &d.digest)
            && client.manifest_is(&job.repo, d.digest.as_str(), &d.digest)?
        {
            continue;
        }
        client.put_manifest(
            &job.repo,
            d.digest.as_str(),
            &d.media_type,
            &job.raw[&d.digest],
        )?;
        journal.manifest_done(&key, &d.digest)?;
    }
    if let Some(tag) = &job.tag {
        let key = format!("{}:{tag}", job.repo);
        let d = &job.root.descriptor;
        if !(journal.has_manifest(&key, &d.digest)
            && client.manifest_is(&job.repo, tag, &d.digest)?)
        {
            client.put_manifest(&job.repo, tag, &d.media_type, &job.raw[&d.digest])?;
            journal.manifest_done(&key, &d.digest)?;
        }
    }
    if let Some(subject) = &job.root.subject {
        let tag = format!("sha256-{}", subject.hex());
        // A fallback index carried in the bundle is pushed as it is.
        if !fallback_tags.contains(&(job.repo.clone(), tag.clone()))
            && !client.has_referrers_api(&job.repo, subject)?
        {
            add_to_fallback_index(client, &job.repo, &tag, job)?;
        }
    }
    Ok(())
}

/// Appends a referrer to its subject's `sha256-<hex>` index (read, add,
/// write back), as clients of registries without the referrers API do.
fn add_to_fallback_index(client: &Client, repo: &str, tag: &str, job: &Job) -> Result<()> {
    let mut index = match client.get_manifest(repo, tag)? {
        Some(raw) => {
            serde_json::from_slice::<serde_json::Value>(&raw).map_err(|e| Error::BadJson {
                what: format!("{repo}:{tag}"),
                reason: e.to_string(),
            })?
        }
        None => {
            serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
        }
    };
    let d = &job.root.descriptor;
    let manifests = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| Error::BadJson {
            what: format!("{repo}:{tag}"),
            reason: "no manifests array".into(),
        })?;
    if manifests.iter().any(|m| m["digest"] == d.digest.as_str()) {
        return Ok(());
    }
    let doc: serde_json::Value = serde_json::from_slice(&job.raw[&d.digest]).unwrap_or_default();
    let mut entry =
        serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size});
    let artifact_type = doc
        .get("artifactType")
        .or_else(|| doc.pointer("/config/mediaType"))
        .cloned();
    if let Some(a) = artifact_type {
        entry["artifactType"] = a;
    }
    if let Some(a) = doc.get("annotations") {
        entry["annotations"] = a.clone();
    }
    manifests.push(entry);
    let raw = serde_json::to_vec(&index).expect("JSON values serialise");
    client.put_manifest(repo, tag, media::OCI_INDEX, &raw)?;
    Ok(())
}

/// What one worker needs to push a blob.
struct Push<'a> {
    client: &'a Client,
    /// Where blobs are read from; `None` when they arrive on a stream.
    source: Option<&'a dyn Source>,
    journal: &'a Journal,
    chunk: u64,
    progress: &'a Progress,
    dry_run: bool,
}

impl Push<'_> {
    /// Makes the blob present in every repository that needs it: the first
    /// gets it by upload (unless it has it), the others by mount.
    fn blob_everywhere(
        &self,
        blob: &Descriptor,
        repos: &BTreeSet<String>,
        buf: &mut Vec<u8>,
    ) -> Result<(BlobCounts, u64)> {
        let mut counts = BlobCounts::default();
        let mut bytes = 0;
        let mut holder: Option<&str> = None;
        for repo in repos {
            if self.journal.has_blob(repo, &blob.digest)
                || self.client.blob_exists(repo, &blob.digest)?
            {
                if !self.dry_run {
                    self.journal.blob_done(repo, &blob.digest)?;
                }
                counts.existed += 1;
                holder.get_or_insert(repo);
                continue;
            }
            if self.dry_run {
                counts.pushed += 1;
                bytes += blob.size;
                continue;
            }
            let mut opened = None;
            if let Some(from) = holder {
                match self.client.mount(repo, &blob.digest, from)? {
                    Mount::Mounted => {
                        self.journal.blob_done(repo, &blob.digest)?;
                        counts.mounted += 1;
                        continue;
                    }
                    // No mount: upload in the session the registry opened.
                    Mount::Session(location) => opened = Some(location),
                }
            }
            bytes += self.upload(repo, blob, buf, opened)?;
            self.journal.blob_done(repo, &blob.digest)?;
            counts.pushed += 1;
            holder.get_or_insert(repo);
        }
        self.progress.inc(blob.size);
        Ok((counts, bytes))
    }

    /// Uploads a blob, continuing a session the journal knows of when the
    /// registry still has it. A failed data request restarts the blob in a
    /// new session (a broken PATCH spoils its session on distribution 2.8).
    fn upload(
        &self,
        repo: &str,
        blob: &Descriptor,
        buf: &mut Vec<u8>,
        mut opened: Option<String>,
    ) -> Result<u64> {
        const ATTEMPTS: u32 = 4;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self.try_upload(repo, blob, buf, opened.take()) {
                Ok(n) => return Ok(n),
                // The next attempt asks the registry whether the session
                // survived (it continues from there) or not (it starts over).
                Err(Error::Registry(e)) if e.is_temporary() => last = Some(Error::Registry(e)),
                Err(Error::Registry(e))
                    if e.has_code("BLOB_UPLOAD_INVALID") || e.has_code("BLOB_UPLOAD_UNKNOWN") =>
                {
                    self.journal.forget_upload(repo, &blob.digest)?;
                    last = Some(Error::Registry(e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_upload(
        &self,
        repo: &str,
        blob: &Descriptor,
        buf: &mut Vec<u8>,
        opened: Option<String>,
    ) -> Result<u64> {
        let d = &blob.digest;
        let resumed = match self.journal.upload(repo, d) {
            Some(u) => self
                .client
                .upload_offset(repo, &u.location)?
                .filter(|&o| o <= blob.size)
                .map(|o| (u.location, o)),
            None => None,
        };
        let (session, offset) = match (resumed, opened) {
            (Some(s), _) => s,
            (None, Some(location)) => (location, 0),
            (None, None) => (self.client.start_upload(repo)?, 0),
        };
        let label = format!("blob {d} for {repo}");
        let source = self
            .source
            .expect("file imports read blobs from the bundle");
        let mut reader =
            VerifyingReader::new(source.open_blob(blob)?, d.clone(), blob.size, label.clone());
        self.send(repo, blob, &mut reader, buf, session, offset, &label)
    }

    /// Sends a blob from `reader` (which verifies it and is at offset 0)
    /// into `session`, which already holds `offset` bytes: those are read
    /// and hashed locally only. The session is committed only after the
    /// final read checked the digest.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        repo: &str,
        blob: &Descriptor,
        reader: &mut dyn Read,
        buf: &mut Vec<u8>,
        mut session: String,
        mut offset: u64,
        label: &str,
    ) -> Result<u64> {
        let d = &blob.digest;
        // Bytes the registry already holds are read (and hashed) locally only.
        std::io::copy(&mut reader.take(offset), &mut std::io::sink())
            .map_err(|e| Error::io("read", label, e))?;
        let start = offset;
        loop {
            // The last piece stays in memory so the digest is checked before
            // the session is committed: an unverified blob is never completed.
            let tail = self.chunk.min(FINAL_PIECE);
            let remaining = blob.size - offset;
            if remaining <= tail {
                buf.resize(remaining as usize, 0);
                reader
                    .read_exact(buf)
                    .map_err(|e| Error::io("read", label, e))?;
                let mut probe = [0u8; 1];
                reader
                    .read(&mut probe)
                    .map_err(|e| Error::io("read", label, e))?;
                self.client.finish_upload(repo, &session, d, buf)?;
                return Ok(blob.size - start);
            }
            // Earlier chunks stream straight from the bundle.
            let take = self.chunk.min(remaining - tail);
            let mut piece = (&mut *reader).take(take);
            let (next, end) = self
                .client
                .patch(repo, &session, offset, &mut piece, take)?;
            if end != offset + take {
                return Err(Error::Usage(format!(
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

/// The last bytes of a blob (and a whole blob up to this size) are held in
/// memory and sent with the final PUT, after the digest checked out.
const FINAL_PIECE: u64 = 8 * 1024 * 1024;

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
    key: Option<&ed25519_dalek::VerifyingKey>,
    req: ImportRequest,
) -> Result<ImportReport> {
    let host = req.target.host.clone();
    let registries = Registries::new(req.registry.clone());
    let client = registries.client(&host)?;
    let mut visitor = StreamImport {
        req: &req,
        client: &client,
        journal: Journal::none(),
        staging: String::new(),
        received: None,
        progress: Progress::hidden(),
        counts: BlobCounts::default(),
        pushed_bytes: 0,
        failed_blobs: HashMap::new(),
        buf: Vec::new(),
    };
    let manifest = crate::bundle::read_stream(input, key, &mut visitor)?;
    visitor.progress.finish();
    let StreamImport {
        journal,
        staging,
        received,
        mut counts,
        pushed_bytes,
        mut failed_blobs,
        ..
    } = visitor;
    let received = received.expect("start comes first");
    let jobs = plan_jobs(&received, &host, &req)?;
    // Blobs went to the staging repository; mount them where images need them.
    for job in &jobs {
        for b in job.blobs.iter().filter(|b| !is_manifest(b)) {
            if job.repo == staging
                || failed_blobs.contains_key(&b.digest)
                || req.dry_run
                || journal.has_blob(&job.repo, &b.digest)
            {
                continue;
            }
            let result = match client.blob_exists(&job.repo, &b.digest) {
                Ok(true) => Ok(()),
                _ => match client.mount(&job.repo, &b.digest, &staging) {
                    Ok(Mount::Mounted) => {
                        counts.mounted += 1;
                        Ok(())
                    }
                    Ok(Mount::Session(_)) => {
                        Err(format!("the registry would not mount it from {staging}"))
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            match result {
                Ok(()) => journal.blob_done(&job.repo, &b.digest)?,
                Err(e) => {
                    failed_blobs.insert(b.digest.clone(), e);
                }
            }
        }
    }
    let outcomes = finish_images(&client, &journal, &jobs, &failed_blobs, req.dry_run, &host);
    Ok(ImportReport {
        target: req.target.spec().to_string(),
        dry_run: req.dry_run,
        images: outcomes,
        blobs: counts,
        bytes_pushed: pushed_bytes,
        bytes_total: manifest.blobs.iter().map(|b| b.size).sum(),
        journal: journal.path().map(PathBuf::from),
    })
}

/// Pushes blobs as a stream delivers them.
struct StreamImport<'a> {
    req: &'a ImportRequest,
    client: &'a Client,
    journal: Journal,
    /// Where blobs go first: the first named image's repository.
    staging: String,
    received: Option<crate::bundle::Received>,
    progress: Progress,
    counts: BlobCounts,
    pushed_bytes: u64,
    failed_blobs: HashMap<Digest, String>,
    buf: Vec<u8>,
}

impl crate::bundle::StreamVisitor for StreamImport<'_> {
    fn start(
        &mut self,
        manifest: &crate::bundle::format::BundleManifest,
        id: &Digest,
    ) -> Result<()> {
        let req = self.req;
        if !req.dry_run {
            let dir = req.state.clone().unwrap_or_else(Journal::default_dir);
            self.journal = Journal::open(&dir, id, req.target.spec())?;
        }
        let received = crate::bundle::Received::new(manifest)?;
        self.staging = received
            .roots()?
            .iter()
            .find_map(|r| r.name.as_ref())
            .map(|n| req.target.repository(n))
            .unwrap_or_else(|| req.target.untagged());
        self.received = Some(received);
        let total = manifest.blobs.iter().map(|b| b.size).sum();
        self.progress = Progress::new(total, "import", req.quiet || req.dry_run);
        Ok(())
    }

    fn blob(
        &mut self,
        record: &crate::bundle::format::BlobRecord,
        data: &mut dyn Read,
    ) -> Result<()> {
        self.progress.inc(record.size);
        if self
            .received
            .as_mut()
            .expect("start comes first")
            .keep(record, data)?
        {
            return Ok(());
        }
        let (client, staging, d) = (self.client, self.staging.as_str(), &record.digest);
        let present = self.journal.has_blob(staging, d) || client.blob_exists(staging, d)?;
        if present {
            self.counts.existed += 1;
            if !self.req.dry_run {
                self.journal.blob_done(staging, d)?;
            }
            return Ok(());
        }
        if self.req.dry_run {
            self.counts.pushed += 1;
            self.pushed_bytes += record.size;
            return Ok(());
        }
        let resumed = match self.journal.upload(staging, d) {
            Some(u) => client
                .upload_offset(staging, &u.location)?
                .filter(|&o| o <= record.size)
                .map(|o| (u.location, o)),
            None => None,
        };
        let (session, offset) = match resumed {
            Some(s) => s,
            None => (client.start_upload(staging)?, 0),
        };
        let push = Push {
            client,
            source: None,
            journal: &self.journal,
            chunk: self.req.chunk_size.max(1),
            progress: &self.progress,
            dry_run: false,
        };
        let desc = Descriptor::new(record.media_type.clone(), d.clone(), record.size);
        let label = format!("member {}", d.layout_path());
        match push.send(staging, &desc, data, &mut self.buf, session, offset, &label) {
            Ok(n) => {
                self.journal.blob_done(staging, d)?;
                self.counts.pushed += 1;
                self.pushed_bytes += n;
                Ok(())
            }
            // A damaged blob ends the stream's trust: stop here.
            Err(
                e @ (Error::DigestMismatch { .. }
                | Error::SizeMismatch { .. }
                | Error::BadBundle { .. }),
            ) => Err(e),
            // The registry failed: the stream reader checks the rest of the
            // member, and the images needing it are reported at the end.
            Err(e) => {
                self.failed_blobs.insert(d.clone(), e.to_string());
                Ok(())
            }
        }
    }
}
