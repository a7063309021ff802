//! The registry as a [`Sink`]: `import` is `copy(bundle, RegistrySink)`,
//! and a registry-to-registry copy would be the same call with a registry
//! source.
//!
//! Each blob is placed in every repository whose images need it: skipped
//! where a HEAD finds it (never on the journal's word), mounted from a repository
//! that holds it, else uploaded ([`super::upload`]). Several blobs go at
//! once ([`SharedSink`], `-j`). A blob that fails is recorded, not fatal:
//! the images that need it are reported failed and the others go on;
//! unless the failure concerns the whole registry (see
//! `RegistryError::is_whole_target`), which ends the run with that cause.
//! [`Sink::finish`] then commits manifests, indexes and tags in order
//! ([`super::commit`]). See `README.md` beside this file for why the order.
//!
//! For a stream ([`RegistrySink::staged`]) the images are not known while
//! blobs arrive: every blob goes to one staging repository and is mounted
//! into the others in `finish`.
//!
//! Not here: opening or verifying the source (the caller and
//! [`crate::sink::copy`] do), or the HTTP requests ([`super::push`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::commit::{commit_images, is_manifest, ImageOutcome, Job};
use super::expected::{find_expected, ExpectedBlob};
use super::journal::Journal;
use super::push::Mount;
use super::upload::{Data, Failure, Uploader};
use super::{Client, Target};
use crate::error::{Error, Result};
use crate::model::image::{Descriptor, Node};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::plan::{Plan, PlannedBlob};
use crate::progress::Progress;
use crate::sink::{SharedSink, Sink};

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Ask the registry what it has, send nothing.
    pub dry_run: bool,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk_size: u64,
    /// Blobs placed at once.
    pub jobs: usize,
    /// Refuse to move an existing tag to another digest (the image fails;
    /// by default the tag is moved and the move reported).
    pub no_overwrite: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct BlobCounts {
    pub pushed: usize,
    pub mounted: usize,
    pub existed: usize,
}

/// What a push did, written by [`Sink::finish`].
#[derive(Debug, Default)]
pub struct Pushed {
    pub images: Vec<ImageOutcome>,
    pub blobs: BlobCounts,
    /// Bytes sent (for a dry run: the bytes it would send).
    pub bytes: u64,
    /// Some failure was one a later run may not meet (a 5xx, a cut
    /// connection): running the same command again is the cure.
    pub retry_helps: bool,
}

#[derive(Default)]
struct Tally {
    counts: BlobCounts,
    bytes: u64,
    /// Blobs that could not be placed, with the reason.
    failed: HashMap<Digest, String>,
    /// One of them may go in on a later run.
    retry_helps: bool,
}

pub struct RegistrySink<'a> {
    client: Arc<Client>,
    journal: Journal,
    target: Target,
    opts: PushOptions,
    /// For a stream: where every blob goes first.
    staging: Option<String>,
    jobs: Vec<Job>,
    /// Each blob's repositories, in the order they get it.
    routes: HashMap<Digest, BTreeSet<String>>,
    tally: Mutex<Tally>,
    out: &'a mut Pushed,
    /// For a delta: the blobs it expects the target to hold, not carried.
    expected: HashMap<Digest, ExpectedBlob>,
}

/// A failure of the registry as a whole (unreachable, untrusted, wrong
/// protocol, credentials refused or missing, no right to push, or the
/// run's retry budget spent): every other blob would fail the same way, so
/// the import stops at once with this one cause.
fn whole_target(e: &Error) -> bool {
    matches!(e, Error::Registry(r) if r.is_whole_target())
}

/// A failure that running the same command again may cure.
fn retry_cures(e: &Error) -> bool {
    matches!(e, Error::Registry(r) if r.retry_cures())
}

/// A blob that failed its digest or size check on a stream, or a broken
/// stream: its trust has ended, so the import stops there.
fn ends_the_stream(e: &Error) -> bool {
    matches!(
        e,
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::BadBundle { .. }
    )
}

impl<'a> RegistrySink<'a> {
    /// A sink into `target` on `client`'s registry; `finish` writes what it
    /// did into `out`. With `--dry-run`, pass `Journal::none`.
    pub fn new(
        client: Arc<Client>,
        journal: Journal,
        target: Target,
        opts: PushOptions,
        out: &'a mut Pushed,
    ) -> RegistrySink<'a> {
        RegistrySink {
            client,
            journal,
            target,
            opts,
            staging: None,
            jobs: Vec::new(),
            routes: HashMap::new(),
            tally: Mutex::new(Tally::default()),
            out,
            expected: HashMap::new(),
        }
    }

    /// For a delta: `expected` are the blobs its images need that it does
    /// not carry. They are looked for in the target before any blob is
    /// sent (see [`super::expected`]); an image that needs one found
    /// nowhere fails, and none of its manifests or tags are committed.
    pub fn expecting(mut self, expected: HashMap<Digest, ExpectedBlob>) -> RegistrySink<'a> {
        self.expected = expected;
        self
    }

    /// Looks for the expected blobs in `routes`' repositories, counting
    /// what it found and recording what it did not as failed blobs.
    fn find_expected(&self, routes: &HashMap<Digest, BTreeSet<String>>) -> Result<()> {
        if self.expected.is_empty() {
            return Ok(());
        }
        let found = find_expected(
            &self.client,
            &self.journal,
            &self.expected,
            routes,
            self.opts.dry_run,
            self.jobs(),
        )?;
        let mut tally = self.tally.lock().expect("not poisoned");
        tally.counts.existed += found.existed;
        tally.counts.mounted += found.mounted;
        tally.failed.extend(found.missing);
        Ok(())
    }

    /// For a stream: looks for the expected blobs in the staging
    /// repository, where the end of the stream mounts every blob from into
    /// the repositories that need it. Called before any blob arrives.
    pub fn find_expected_staged(&self) -> Result<()> {
        let staging = self.staging.clone().expect("a staged sink");
        let routes = self
            .expected
            .keys()
            .map(|d| (d.clone(), BTreeSet::from([staging.clone()])))
            .collect();
        self.find_expected(&routes)
    }

    /// For a stream: blobs go to `repo` as they arrive, without
    /// [`Sink::begin`]; `finish` mounts them where the images need them.
    pub fn staged(mut self, repo: String) -> RegistrySink<'a> {
        self.staging = Some(repo);
        self
    }

    /// Places a blob in every repository that needs it, recording a
    /// failure instead of returning it (except on a stream, see below).
    fn place(&self, blob: &PlannedBlob, mut data: Data<'_, '_>) -> Result<()> {
        let d = &blob.descriptor;
        if is_manifest(d) || self.expected.contains_key(&d.digest) {
            // Manifests are committed by finish, in order, from the plan's
            // verified bytes; expected blobs were placed by `begin`.
            return Ok(());
        }
        let repos: Vec<&str> = match &self.staging {
            Some(s) => vec![s.as_str()],
            None => self
                .routes
                .get(&d.digest)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        };
        let result = self.place_in(d, &repos, &mut data);
        let mut tally = self.tally.lock().expect("not poisoned");
        match result {
            Ok((c, bytes)) => {
                tally.counts.pushed += c.pushed;
                tally.counts.mounted += c.mounted;
                tally.counts.existed += c.existed;
                tally.bytes += bytes;
                Ok(())
            }
            // On a stream only a refused upload is the blob's own failure;
            // a registry that cannot answer a HEAD or open a session, or a
            // damaged blob, ends the import there.
            Err(Failure::Sent(e)) if self.staging.is_some() && ends_the_stream(&e) => Err(e),
            Err(Failure::Other(e)) if self.staging.is_some() => Err(e),
            Err(f) if whole_target(f.error()) => Err(f.into_error()),
            Err(f) => {
                tally.retry_helps |= retry_cures(f.error());
                tally
                    .failed
                    .insert(d.digest.clone(), f.into_error().to_string());
                Ok(())
            }
        }
    }

    /// HEAD, then mount, then upload, in each repository: a blob that one
    /// of them holds is mounted from there into the others; else the first
    /// gets it by upload, the others by mount. A dry run counts the same
    /// (a planned upload adds its bytes once; a planned mount none).
    fn place_in(
        &self,
        blob: &Descriptor,
        repos: &[&str],
        data: &mut Data<'_, '_>,
    ) -> std::result::Result<(BlobCounts, u64), Failure> {
        let (client, journal, d) = (&*self.client, &self.journal, &blob.digest);
        let mut counts = BlobCounts::default();
        let mut bytes = 0;
        let mut buf = Vec::new();
        // The registry, not the journal, says what it holds: after a
        // restore from backup the journal lists blobs that are gone.
        let mut missing = Vec::new();
        let mut holder: Option<&str> = None;
        for &repo in repos {
            if client.blob_exists(repo, d)? {
                if !self.opts.dry_run {
                    journal.blob_done(repo, d)?;
                }
                counts.existed += 1;
                holder.get_or_insert(repo);
            } else {
                missing.push(repo);
            }
        }
        for repo in missing {
            if self.opts.dry_run {
                match holder {
                    Some(_) => counts.mounted += 1,
                    None => {
                        counts.pushed += 1;
                        bytes += blob.size;
                        holder = Some(repo);
                    }
                }
                continue;
            }
            let mut opened = None;
            if let Some(from) = holder {
                match client.mount(repo, d, from)? {
                    Mount::Mounted => {
                        journal.blob_done(repo, d)?;
                        counts.mounted += 1;
                        continue;
                    }
                    // No mount: upload in the session the registry opened.
                    Mount::Session(location) => opened = Some(location),
                }
            }
            let uploader = Uploader {
                client,
                journal,
                chunk: self.opts.chunk_size.max(1),
            };
            bytes += uploader.upload(repo, blob, data, &mut buf, opened)?;
            journal.blob_done(repo, d)?;
            counts.pushed += 1;
            holder.get_or_insert(repo);
        }
        Ok((counts, bytes))
    }

    /// For a stream, at the end: mounts each staged blob into the other
    /// repositories whose images need it.
    fn mount_staged(&self, staging: &str, tally: &mut Tally) -> Result<()> {
        let (client, journal) = (&*self.client, &self.journal);
        for job in &self.jobs {
            for b in job.blobs.iter().filter(|b| !is_manifest(b)) {
                if job.repo == staging || tally.failed.contains_key(&b.digest) || self.opts.dry_run
                {
                    continue;
                }
                let result = match client.blob_exists(&job.repo, &b.digest) {
                    Ok(true) => Ok(()),
                    _ => match client.mount(&job.repo, &b.digest, staging) {
                        Ok(Mount::Mounted) => {
                            tally.counts.mounted += 1;
                            Ok(())
                        }
                        Ok(Mount::Session(_)) => {
                            Err(format!("the registry would not mount it from {staging}"))
                        }
                        Err(e) if e.is_whole_target() => return Err(e.into()),
                        Err(e) => Err(e.to_string()),
                    },
                };
                match result {
                    Ok(()) => journal.blob_done(&job.repo, &b.digest)?,
                    Err(e) => {
                        tally.failed.insert(b.digest.clone(), e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where each image goes, and every blob it needs, in plan order.
fn plan_jobs(plan: &Plan, target: &Target) -> Result<Vec<Job>> {
    target.refuse_shared_tags(
        plan.images
            .iter()
            .filter_map(|i| Some((i.name.as_ref()?, &i.descriptor.digest))),
    )?;
    let host = &target.host;
    let by_digest: HashMap<&Digest, &Reference> = plan
        .images
        .iter()
        .filter_map(|i| Some((&i.descriptor.digest, i.name.as_ref()?)))
        .collect();
    let blobs = blobs_by_digest(plan);
    let mut jobs = Vec::new();
    for image in &plan.images {
        let digest = &image.descriptor.digest;
        let (repo, tag, label) = match (&image.name, &image.subject) {
            (Some(n), _) => (target.repository(n), n.tag.clone(), n.to_string()),
            (None, Some(s)) => match by_digest.get(s) {
                Some(n) => (
                    target.repository(n),
                    None,
                    format!("referrer {} of {n}", digest.short()),
                ),
                None => (target.untagged(), None, digest.to_string()),
            },
            (None, None) => (target.untagged(), None, digest.to_string()),
        };
        Reference::parse(&format!("{host}/{repo}")).map_err(|e| {
            Error::Usage(format!(
                "{label} would go to {host}/{repo}, which is not a valid name: {e}"
            ))
        })?;
        jobs.push(Job {
            blobs: closure(plan, &blobs, &image.descriptor, &label)?,
            label,
            image: image.clone(),
            repo,
            tag,
        });
    }
    Ok(jobs)
}

/// The plan's blobs by digest, with their place in plan order: built once
/// per import, so each image's [`closure`] costs what it reaches, not the
/// whole plan (2,000 images of a 60,000-blob bundle).
type BlobsByDigest<'a> = HashMap<&'a Digest, (usize, &'a PlannedBlob)>;

fn blobs_by_digest(plan: &Plan) -> BlobsByDigest<'_> {
    plan.blobs
        .iter()
        .enumerate()
        .map(|(i, b)| (&b.descriptor.digest, (i, b)))
        .collect()
}

/// Every blob of the plan that `root` reaches, in plan order.
fn closure(
    plan: &Plan,
    by_digest: &BlobsByDigest<'_>,
    root: &Descriptor,
    label: &str,
) -> Result<Vec<Descriptor>> {
    let mut reached = HashSet::new();
    let mut found = Vec::new();
    let mut todo = vec![root.digest.clone()];
    while let Some(d) = todo.pop() {
        if !reached.insert(d.clone()) {
            continue;
        }
        if let Some(&(i, b)) = by_digest.get(&d) {
            found.push(i);
            if let Some(raw) = &b.inline {
                let node = Node::parse(b.descriptor.clone(), raw.clone(), label)?;
                todo.extend(node.children().into_iter().map(|c| c.digest.clone()));
            }
        }
    }
    found.sort_unstable();
    Ok(found
        .into_iter()
        .map(|i| plan.blobs[i].descriptor.clone())
        .collect())
}

impl Sink for RegistrySink<'_> {
    /// Names every image's repository (refusing an invalid name before
    /// anything is sent) and routes each blob to the repositories needing it.
    fn begin(&mut self, plan: &Plan) -> Result<()> {
        self.jobs = plan_jobs(plan, &self.target)?;
        for job in &self.jobs {
            for b in job.blobs.iter().filter(|b| !is_manifest(b)) {
                self.routes
                    .entry(b.digest.clone())
                    .or_default()
                    .insert(job.repo.clone());
            }
        }
        self.find_expected(&self.routes)
    }

    fn put_blob(&mut self, blob: &PlannedBlob, data: &mut dyn Read) -> Result<()> {
        self.place(blob, Data::Once(Some(Box::new(data))))
    }

    fn shared(&self) -> Option<&dyn SharedSink> {
        Some(self)
    }

    /// Mounts staged blobs (for a stream), then commits manifests, indexes
    /// and tags of every image whose blobs are all in.
    fn finish(self: Box<Self>, plan: &Plan) -> Result<()> {
        let mut this = *self;
        let mut tally = std::mem::take(this.tally.get_mut().expect("not poisoned"));
        if let Some(staging) = this.staging.clone() {
            this.jobs = plan_jobs(plan, &this.target)?;
            this.mount_staged(&staging, &mut tally)?;
        }
        let inline: HashMap<Digest, Arc<[u8]>> = plan
            .blobs
            .iter()
            .filter_map(|b| Some((b.descriptor.digest.clone(), b.inline.clone()?)))
            .collect();
        this.out.images = commit_images(
            &this.client,
            &this.journal,
            &this.jobs,
            &inline,
            &tally.failed,
            &this.opts,
            &this.target.host,
        );
        // A registry that died during the commits failed each image left
        // with the same cause: that is one failure, said once.
        if let Some(e) = this.client.target_failure() {
            return Err(e.into());
        }
        this.out.blobs = tally.counts;
        this.out.bytes = tally.bytes;
        this.out.retry_helps = tally.retry_helps || this.client.had_transient_failure();
        // One rewrite per run keeps the log as short as its state.
        this.journal.compact()
    }
}

impl SharedSink for RegistrySink<'_> {
    fn jobs(&self) -> usize {
        match self.staging {
            Some(_) => 1,
            None => self.opts.jobs,
        }
    }

    fn put_shared<'s>(
        &self,
        blob: &PlannedBlob,
        open: &dyn Fn() -> Result<Box<dyn Read + 's>>,
        progress: &Progress,
    ) -> Result<()> {
        self.place(blob, Data::Reopen(open, progress))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Descriptor;
    use crate::plan::{PlannedBlob, PlannedImage};

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn planned(descriptor: Descriptor, inline: Option<Arc<[u8]>>) -> PlannedBlob {
        PlannedBlob {
            descriptor,
            origin: 0,
            inline,
            needed_by: String::new(),
        }
    }

    /// 2,000 images of 28 layers and a config: 60,000 blobs.
    fn big_plan() -> Plan {
        let mut plan = Plan::default();
        for i in 0..2_000 {
            let blob = |what: String| {
                Descriptor::new(LAYER, Digest::of(what.as_bytes()), what.len() as u64)
            };
            let layers: Vec<Descriptor> = (0..28).map(|l| blob(format!("{i} {l}"))).collect();
            let config = blob(format!("config {i}"));
            let raw = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": MANIFEST,
                "config": config, "layers": layers,
            }))
            .unwrap();
            let root = Descriptor::new(MANIFEST, Digest::of(&raw), raw.len() as u64);
            plan.blobs.push(planned(config, None));
            plan.blobs
                .extend(layers.into_iter().map(|d| planned(d, None)));
            plan.blobs.push(planned(root.clone(), Some(raw.into())));
            plan.images.push(PlannedImage {
                name: Some(Reference::parse(&format!("example.com/img{i}:v1")).unwrap()),
                source: String::new(),
                descriptor: root,
                source_digest: None,
                subject: None,
            });
        }
        plan
    }

    /// Each image's blobs were found by rebuilding a map of every blob of
    /// the plan and filtering them all again: 2,000 × 60,000 steps.
    #[test]
    fn jobs_for_60000_blobs_keep_each_images_blobs_in_plan_order() {
        let plan = big_plan();
        let target = Target::parse("localhost:5000", None, &[], false).unwrap();
        let jobs = plan_jobs(&plan, &target).unwrap();
        assert_eq!(jobs.len(), 2_000);
        for (i, job) in jobs.iter().enumerate() {
            // Plan order: config, layers, manifest.
            let want: Vec<&Digest> = plan.blobs[i * 30..(i + 1) * 30]
                .iter()
                .map(|b| &b.descriptor.digest)
                .collect();
            let got: Vec<&Digest> = job.blobs.iter().map(|b| &b.digest).collect();
            assert_eq!(got, want, "image {i}");
        }
    }
}
