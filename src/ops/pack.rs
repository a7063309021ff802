//! `pack`: read every source, check every manifest, download what
//! registries hold, then write one bundle.
//!
//! Orchestration only: the sources, the plan, the blob cache and the bundle
//! writer do the work. Not for parsing flags or printing; the caller renders
//! the [`PackSummary`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::imageset::{self, ImageSet};
use super::transport::SourceSpec;
use crate::atomic::Swept;
use crate::bundle::{existing_outputs, sweep_partials, BundleWriter, PackOptions};
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::registry::cache::BlobCache;
use crate::registry::{Registries, RegistryOptions};
use crate::registry::{RegistryContext, RegistrySource};
use crate::sink::copy;
use crate::source::Source;

/// What `pack` wrote; `pack --json` prints it (docs/json.md).
#[derive(Debug, Serialize)]
pub struct PackSummary {
    pub images: Vec<PackedImage>,
    #[serde(rename = "blob_count")]
    pub blobs: usize,
    pub bytes: u64,
    /// Bytes downloaded from registries by this run (the rest came from the cache).
    pub downloaded: u64,
    pub output: PathBuf,
    /// The id of the key that signed the bundle; empty when unsigned. A
    /// list, as in `verify` and `inspect`.
    pub signed_by: Vec<String>,
    /// `--dry-run`: planned, nothing downloaded or written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// For a delta (`--against`): what it expects instead of carrying
    /// (`blob_count` and `bytes` are what it carries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::bundle::DeltaReport>,
}

/// One image in the bundle, as `inspect` names it.
#[derive(Debug, Serialize)]
pub struct PackedImage {
    pub name: Option<String>,
    /// The root manifest or index as stored.
    pub digest: Digest,
    pub source: String,
    /// The source's root digest when `--platform` replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// For a referrer: the manifest it refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// Everything `pack` needs to know.
pub struct PackRequest {
    /// Source arguments: transports, or bare references for registries.
    pub sources: Vec<String>,
    /// `REGISTRY/REPO`: every tag of these repositories.
    pub all_tags: Vec<String>,
    /// `REGISTRY`: every repository and tag it lists.
    pub catalogs: Vec<String>,
    /// `-f SET.yaml`: an image set (docs/image-sets.md).
    pub set: Option<ImageSet>,
    pub output: PathBuf,
    pub platforms: Vec<Platform>,
    pub options: PackOptions,
    pub registry: RegistryOptions,
    /// Blob cache for registry sources [default: the XDG cache dir].
    pub cache: Option<PathBuf>,
    /// Bring signatures, SBOMs and attestations along.
    pub referrers: bool,
    /// Replace an existing bundle of the output's name (file, volumes,
    /// parity); without it, pack refuses to.
    pub force: bool,
    /// Plan (list tags and catalogs, fetch and check every manifest), say
    /// what would be packed, write nothing.
    pub dry_run: bool,
    pub quiet: bool,
    /// Bases for a delta bundle (`--against`): what they hold is listed
    /// as expected, not carried. Empty: a whole bundle.
    pub against: super::delta::Against,
}

/// Reads every source, checks every manifest, downloads what registries
/// hold, then writes the bundle.
///
/// All sources are opened and walked, and all downloads attempted, before
/// anything is written; problems with any of them are reported together and
/// no bundle is created.
pub fn pack(req: PackRequest) -> Result<PackSummary> {
    if req.sources.is_empty()
        && req.all_tags.is_empty()
        && req.catalogs.is_empty()
        && req.set.is_none()
    {
        return Err(Error::Usage("name at least one source to pack".into()));
    }
    refuse_to_clobber(&req.output, req.force)?;
    let specs: Vec<(String, SourceSpec)> = req
        .sources
        .iter()
        .map(|s| Ok((s.clone(), SourceSpec::parse(s)?)))
        .collect::<Result<_>>()?;
    let registry = registry_context(&req, &specs)?;
    let mut problems = Vec::new();
    let (sources, own_platforms): (Vec<_>, Vec<_>) =
        open_sources(&req, &specs, registry.as_ref(), &mut problems)
            .into_iter()
            .unzip();
    let mut plan = Plan::default();
    for (i, s) in sources.iter().enumerate() {
        // A set's entry that names platforms keeps those; others --platform.
        let platforms = own_platforms[i].as_deref().unwrap_or(&req.platforms);
        if let Err(e) = plan.add_source(i, s.as_ref(), platforms) {
            problems.push(e);
        }
    }
    Error::many(problems)?;
    if plan.images.is_empty() {
        return Err(Error::Usage("the sources hold no images".into()));
    }
    // Before any download: what the bases hold is neither pulled nor carried.
    let delta = super::delta::against(&mut plan, &req.against)?;
    if req.dry_run {
        return Ok(PackSummary {
            images: packed_images(&plan),
            blobs: plan.blobs.len(),
            bytes: plan.total_bytes(),
            downloaded: 0,
            output: req.output.clone(),
            signed_by: Vec::new(),
            dry_run: true,
            delta: delta.map(|d| crate::bundle::DeltaReport::of_delta(&d)),
        });
    }

    let to_fetch: u64 = plan
        .blobs
        .iter()
        .filter(|b| b.inline.is_none())
        .map(|b| b.descriptor.size)
        .sum();
    let pull = match registry {
        Some(_) => Progress::new(to_fetch, "pull", req.quiet),
        None => Progress::hidden(),
    };
    let progress = pull.sibling(plan.total_bytes(), "pack", req.quiet);
    let mut swept = Swept::default();
    if let Some(ctx) = &registry {
        swept.add(ctx.cache.sweep());
    }
    if req.output != Path::new("-") {
        swept.add(sweep_partials(&req.output));
    }
    if let Some(note) = swept.note() {
        progress.note(&note);
    }
    let signed_by = req
        .options
        .key
        .as_ref()
        .map(|k| crate::bundle::sign::key_id(&k.verifying_key()))
        .into_iter()
        .collect();
    let writer = BundleWriter::to_file(&req.output, req.options)?;
    let writer = match &delta {
        Some(d) => writer.with_delta(d.clone()),
        None => writer,
    };
    let jobs = registry.as_ref().map(|_| req.registry.jobs);
    let written = write_while_downloading(&plan, &sources, writer, jobs, &pull, &progress);
    pull.finish();
    progress.finish();
    written?;
    // Counted by the cache: the writer may fetch a blob itself when it gets
    // there before the pool does.
    let downloaded = registry.as_ref().map_or(0, |ctx| ctx.cache.downloaded());
    Ok(PackSummary {
        images: packed_images(&plan),
        signed_by,
        blobs: plan.blobs.len(),
        bytes: plan.total_bytes(),
        downloaded,
        output: req.output.clone(),
        dry_run: false,
        delta: delta.map(|d| crate::bundle::DeltaReport::of_delta(&d)),
    })
}

fn packed_images(plan: &Plan) -> Vec<PackedImage> {
    plan.images
        .iter()
        .map(|i| PackedImage {
            name: i.name.as_ref().map(|n| n.to_string()),
            digest: i.descriptor.digest.clone(),
            source: i.source.clone(),
            source_digest: i.source_digest.clone(),
            subject: i.subject.clone(),
        })
        .collect()
}

/// A pack replaces the bundle at `output`, and removes the volumes and
/// parity of an older one of that name, only when asked to (`--force`).
fn refuse_to_clobber(output: &Path, force: bool) -> Result<()> {
    if output == Path::new("-") {
        return Ok(());
    }
    if std::fs::symlink_metadata(output).is_ok_and(|m| !m.is_file()) {
        // A directory, a symlink or a device: refused even with --force.
        return super::stdio::check_output_file(output, true, ("-o FILE", "-o -"));
    }
    if force {
        return Ok(());
    }
    let found = existing_outputs(output);
    if found.is_empty() {
        return Ok(());
    }
    let reason = if found.iter().any(|f| f == output) {
        "exists".to_string()
    } else {
        let names: Vec<String> = found.iter().map(|f| f.display().to_string()).collect();
        format!(
            "the volumes or parity of a bundle of this name exist ({})",
            names.join(", ")
        )
    };
    Err(Error::Refused {
        what: output.display().to_string(),
        reason,
        hint: "pass --force to replace it (the old files go once the new bundle is complete), or choose another -o".into(),
    })
}

/// The registry clients and the blob cache, opened only when some source
/// is a registry.
fn registry_context(
    req: &PackRequest,
    specs: &[(String, SourceSpec)],
) -> Result<Option<RegistryContext>> {
    let needs_registry = !req.all_tags.is_empty()
        || !req.catalogs.is_empty()
        || specs.iter().any(|(_, s)| s.is_registry())
        || req.set.as_ref().is_some_and(ImageSet::needs_registry);
    if !needs_registry {
        return Ok(None);
    }
    // `--username` belongs to the one registry the sources share.
    let mut options = req.registry.clone();
    let named = specs
        .iter()
        .filter_map(|(_, s)| match s {
            SourceSpec::Registry(r) => Some(r),
            _ => None,
        })
        .chain(&req.all_tags)
        .filter_map(|r| Reference::parse(r).ok().map(|r| r.registry));
    let set_hosts = req.set.iter().flat_map(ImageSet::hosts);
    let names: Vec<String> = named
        .chain(req.catalogs.iter().cloned())
        .chain(set_hosts)
        .collect();
    options.scope_login(names.iter().map(String::as_str))?;
    let dir = req.cache.clone().unwrap_or_else(BlobCache::default_dir);
    Ok(Some(RegistryContext {
        registries: Arc::new(Registries::new(options)),
        cache: Arc::new(BlobCache::open(&dir)?),
        referrers: req
            .set
            .as_ref()
            .map_or(req.referrers, |s| s.referrers(req.referrers)),
    }))
}

/// Opens every source named on the command line, then the repositories of
/// `--all-tags` and `--catalog`, then what the image set names, each with
/// the platforms its entry names (`None`: `--platform`'s). Problems are
/// collected, not returned, so that all of them are reported together.
fn open_sources(
    req: &PackRequest,
    specs: &[(String, SourceSpec)],
    registry: Option<&RegistryContext>,
    problems: &mut Vec<Error>,
) -> Vec<imageset::Opened> {
    let mut sources: Vec<imageset::Opened> = Vec::new();
    for (text, spec) in specs {
        match spec.open(text, registry) {
            Ok(s) => sources.push((s, None)),
            Err(e) => problems.push(e),
        }
    }
    if let Some(ctx) = registry {
        for repo in repositories(req, ctx, problems) {
            let name = format!("docker://{}", repo.name());
            match RegistrySource::all_tags(&name, &repo, ctx) {
                Ok(s) => sources.push((Box::new(s), None)),
                Err(e) => problems.push(e),
            }
        }
    }
    if let Some(set) = &req.set {
        sources.extend(imageset::open(set, registry, false, problems));
    }
    sources
}

/// The repositories of `--all-tags`, then those each `--catalog` registry
/// lists.
fn repositories(
    req: &PackRequest,
    ctx: &RegistryContext,
    problems: &mut Vec<Error>,
) -> Vec<Reference> {
    let mut repos: Vec<Reference> = Vec::new();
    for r in &req.all_tags {
        match Reference::parse(r) {
            Ok(r) => repos.push(r),
            Err(e) => problems.push(e),
        }
    }
    for registry_host in &req.catalogs {
        match RegistrySource::catalog(registry_host, ctx) {
            Ok(list) => {
                for repo in list {
                    match Reference::parse(&format!("{registry_host}/{repo}")) {
                        Ok(r) => repos.push(r),
                        Err(e) => problems.push(e),
                    }
                }
            }
            Err(e) => problems.push(e),
        }
    }
    repos
}

/// Writes the bundle while, with `jobs` set, a pool downloads what the
/// registries hold: the pool fetches in plan order, and the writer waits
/// only for the blob it needs next.
fn write_while_downloading(
    plan: &Plan,
    sources: &[Box<dyn Source>],
    writer: BundleWriter,
    jobs: Option<usize>,
    pull: &Progress,
    progress: &Progress,
) -> Result<()> {
    let stop = &AtomicBool::new(false);
    let (written, downloads) = std::thread::scope(|scope| {
        let pool = jobs.map(|jobs| scope.spawn(move || prefetch(plan, sources, jobs, pull, stop)));
        let written = copy(plan, sources, Box::new(writer), progress);
        if written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let downloads = pool.map(|p| p.join().expect("the download pool does not panic"));
        (written, downloads)
    });
    match (written, downloads) {
        // A failed download is the cause; the writer only saw its echo.
        (_, Some(Err(e))) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), _) => Ok(()),
    }
}

/// Fetches every blob that a source must download, on `jobs` network
/// threads, in plan order (the order the bundle is written in). Failures do
/// not stop the others; all are reported at the end. `stop` ends the work
/// early when the bundle cannot be written anyway.
fn prefetch(
    plan: &Plan,
    sources: &[Box<dyn Source>],
    jobs: usize,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<()> {
    let queue = std::sync::Mutex::new(plan.blobs.iter().filter(|b| b.inline.is_none()));
    let problems = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some(blob) = queue.lock().expect("not poisoned").next() else {
                    break;
                };
                if let Err(e) = sources[blob.origin].prefetch(&blob.descriptor, progress) {
                    problems.lock().expect("not poisoned").push(e);
                }
            });
        }
    });
    Error::many(problems.into_inner().expect("not poisoned"))
}

/// Reads a `-f LIST` file: one source per line, `#` comments and blank
/// lines ignored. (`-f` itself reads an image set too: [`imageset::read`].)
pub fn read_source_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read source list", path, e))?;
    Ok(imageset::parse_list(&text))
}
