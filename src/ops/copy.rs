//! `airlock copy SOURCE… TARGET`: any source into any sink, registry to
//! registry included.
//!
//! Into a registry it is `copy(plan, sources, RegistrySink)`, the same call
//! `import` makes, with registry sources that stream: each blob goes from
//! the source registry to the target once, checked against its digest on
//! the way ([`crate::sink::copy`]), with no bundle, temp file or cache in
//! between; the sink's HEAD skips, mounts, parallel uploads, journal and
//! ordered commits do the rest, so a re-run continues (the journal is keyed
//! by the set of sources and the target) and an image whose tag already
//! names the same digest is `exists`. Into an OCI layout or docker-archive
//! it is the same plan into that sink. A bundle target is `pack`; a bundle
//! source is `import` or `export` (the caller opens it, as they do).
//!
//! Credentials: `--username` belongs to the target registry only (the
//! sources share them only when all of them are on that registry); other
//! source registries use docker's config.json and helpers, so no password
//! ever reaches a registry it was not given for.
//!
//! Not here: flags, printing, or opening a bundle's trust (the CLI does).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::imageset::{self, ImageSet};
use super::import::{import, import_stream, ImportReport, ImportRequest};
use super::pack::{pack, PackRequest, PackSummary};
use super::transport::{SourceSpec, TargetSpec};
use super::{export, ExportTarget};
use crate::bundle::{Bundle, PackOptions, Trusted};
use crate::docker_archive::DockerArchiveSink;
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::oci::OciDirSink;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::registry::cache::BlobCache;
use crate::registry::journal::Journal;
use crate::registry::{
    PushOptions, Pushed, Registries, RegistryContext, RegistryOptions, RegistrySink,
    RegistrySource, Target,
};
use crate::sink::{copy as copy_plan, Sink};
use crate::source::Source;

/// Everything `copy` needs to know.
pub struct CopyRequest {
    /// Source arguments, as `pack` takes them, or one `bundle:FILE`.
    pub sources: Vec<String>,
    /// `REGISTRY/REPO`: every tag of these repositories.
    pub all_tags: Vec<String>,
    /// `REGISTRY`: every repository and tag it lists.
    pub catalogs: Vec<String>,
    /// `-f SET.yaml`: an image set (docs/image-sets.md).
    pub set: Option<ImageSet>,
    pub target: TargetSpec,
    /// For a registry target, as `import` has them.
    pub prefix: Option<String>,
    pub maps: Vec<String>,
    pub keep_registry: bool,
    pub platforms: Vec<Platform>,
    pub referrers: bool,
    /// Into a registry: say what would move, move nothing.
    pub dry_run: bool,
    /// Journal directory [default: the XDG state dir].
    pub state: Option<PathBuf>,
    pub chunk_size: u64,
    pub registry: RegistryOptions,
    /// For a bundle target: pack's blob cache.
    pub cache: Option<PathBuf>,
    /// For a bundle target.
    pub pack: PackOptions,
    /// For a bundle target: replace an existing bundle of its name.
    pub force: bool,
    /// Seconds since the epoch, for a docker-archive's mtimes.
    pub created: u64,
    pub quiet: bool,
}

/// What a copy did, by kind of target.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Copied {
    Registry(ImportReport),
    Bundle(PackSummary),
    Files {
        #[serde(rename = "image_count")]
        images: usize,
        to: String,
    },
}

impl CopyRequest {
    fn target_spec(&self) -> String {
        match &self.target {
            TargetSpec::Registry(r) => format!("docker://{r}"),
            TargetSpec::OciDir(p) => format!("oci:{}", p.display()),
            TargetSpec::DockerArchive(p) => format!("docker-archive:{}", p.display()),
            TargetSpec::Bundle(p) => format!("bundle:{}", p.display()),
        }
    }

    fn registry_target(&self) -> Result<Option<Target>> {
        let TargetSpec::Registry(r) = &self.target else {
            return Ok(None);
        };
        // Said as the user wrote it (Target's own message names import's --to).
        Target::parse(r, None, &[], false).map_err(|_| {
            Error::Usage(format!(
                "docker://{r} is not docker://REGISTRY[/PREFIX] (e.g. \
                 docker://registry.local:5000/mirror; repository paths are lowercase)"
            ))
        })?;
        Ok(Some(Target::parse(
            r,
            self.prefix.as_deref(),
            &self.maps,
            self.keep_registry,
        )?))
    }

    /// The rules between flags that clap cannot state.
    fn check(&self) -> Result<()> {
        if self.sources.is_empty()
            && self.all_tags.is_empty()
            && self.catalogs.is_empty()
            && self.set.is_none()
        {
            return Err(Error::Usage(
                "name at least one source and a target: airlock copy SOURCE… TARGET".into(),
            ));
        }
        let registry_only = self.prefix.is_some() || !self.maps.is_empty() || self.keep_registry;
        if !matches!(self.target, TargetSpec::Registry(_)) && (registry_only || self.dry_run) {
            return Err(Error::Usage(format!(
                "--dry-run, --prefix, --map and --keep-registry are for a docker:// target, not {}",
                self.target_spec()
            )));
        }
        Ok(())
    }
}

/// The `bundle:FILE` among `sources`, if any: it must then be the only one.
pub fn bundle_source(req: &CopyRequest) -> Result<Option<PathBuf>> {
    let mut bundles = Vec::new();
    for s in &req.sources {
        if let SourceSpec::Bundle(p) = SourceSpec::parse(s)? {
            bundles.push(p);
        }
    }
    match bundles.len() {
        0 => Ok(None),
        1 if req.sources.len() == 1
            && req.all_tags.is_empty()
            && req.catalogs.is_empty()
            && req.set.is_none() =>
        {
            Ok(bundles.pop())
        }
        _ => Err(Error::Usage(
            "a bundle:FILE source is copied alone; copy other sources in a command of their own"
                .into(),
        )),
    }
}

impl CopyRequest {
    fn import_request(self, target: Target) -> ImportRequest {
        ImportRequest {
            target,
            dry_run: self.dry_run,
            state: self.state,
            chunk_size: self.chunk_size,
            registry: self.registry,
            quiet: self.quiet,
            // As import's default: a tag that names another digest moves,
            // and the report says so.
            no_overwrite: false,
        }
    }
}

/// Copies a bundle (trusted by the caller, as `import` and `export` take
/// it) into a registry, an OCI layout or a docker-archive.
pub fn copy_bundle(bundle: Bundle<Trusted>, req: CopyRequest) -> Result<Copied> {
    req.check()?;
    if let Some(target) = req.registry_target()? {
        return Ok(Copied::Registry(import(
            bundle,
            req.import_request(target),
        )?));
    }
    let to = req.target_spec();
    let target = match req.target {
        TargetSpec::OciDir(p) => ExportTarget::OciDir(p),
        TargetSpec::DockerArchive(p) => ExportTarget::DockerArchive(p),
        _ => {
            return Err(Error::Usage(
                "a bundle is already a bundle: copy the file (cp), or re-pack its images \
                 with `airlock export` then `airlock pack`"
                    .into(),
            ))
        }
    };
    let bundle = bundle.verify(&Progress::hidden())?;
    let images = export(&bundle, &target, &[], &req.platforms, req.quiet)?;
    Ok(Copied::Files { images, to })
}

/// `bundle:-`: a bundle read once from a stream into a registry, as
/// `import -` reads it.
pub fn copy_bundle_stream(
    input: impl std::io::Read,
    key: Option<&crate::bundle::sign::TrustedKeys>,
    req: CopyRequest,
) -> Result<Copied> {
    req.check()?;
    match req.registry_target()? {
        Some(target) => Ok(Copied::Registry(import_stream(
            input,
            key,
            req.import_request(target),
        )?)),
        None => Err(Error::Usage(
            "bundle:- (a stream) is copied into a docker:// target only; for files, \
             save the stream to a file first"
                .into(),
        )),
    }
}

/// Copies registries, OCI layouts and archives into the target.
pub fn copy(req: CopyRequest) -> Result<Copied> {
    req.check()?;
    if let TargetSpec::Bundle(output) = &req.target {
        return Ok(Copied::Bundle(pack(PackRequest {
            sources: req.sources.clone(),
            all_tags: req.all_tags.clone(),
            catalogs: req.catalogs.clone(),
            set: req.set,
            output: output.clone(),
            platforms: req.platforms.clone(),
            options: req.pack,
            registry: req.registry,
            cache: req.cache,
            referrers: req.referrers,
            force: req.force,
            dry_run: false,
            quiet: req.quiet,
            against: Default::default(),
        })?));
    }
    let specs: Vec<(String, SourceSpec)> = req
        .sources
        .iter()
        .map(|s| Ok((s.clone(), SourceSpec::parse(s)?)))
        .collect::<Result<_>>()?;
    match req.registry_target()? {
        Some(target) => to_registry(&req, &specs, target).map(Copied::Registry),
        None => to_files(&req, &specs),
    }
}

/// The registry hosts the sources read from.
fn source_hosts(req: &CopyRequest, specs: &[(String, SourceSpec)]) -> Vec<String> {
    let named = specs
        .iter()
        .filter_map(|(_, s)| match s {
            SourceSpec::Registry(r) => Some(r),
            _ => None,
        })
        .chain(&req.all_tags)
        .filter_map(|r| Reference::parse(r).ok().map(|r| r.registry));
    let set_hosts = req.set.iter().flat_map(ImageSet::hosts);
    named
        .chain(req.catalogs.iter().cloned())
        .chain(set_hosts)
        .collect()
}

/// The sources' registry clients, or none when no source is a registry.
/// Command-line credentials go along only when every source registry is
/// the target's own (`target_host`); otherwise the sources are read with
/// docker's config.json and helpers.
fn source_context(
    req: &CopyRequest,
    specs: &[(String, SourceSpec)],
    target_host: Option<&str>,
) -> Result<Option<RegistryContext>> {
    let hosts = source_hosts(req, specs);
    if hosts.is_empty() {
        return Ok(None);
    }
    let mut options = req.registry.clone();
    match target_host {
        Some(t) if hosts.iter().all(|h| h == t) => options.scope_login([t])?,
        Some(_) => {
            options.username = None;
            options.password = None;
        }
        None => options.scope_login(hosts.iter().map(String::as_str))?,
    }
    // Never written to: streaming sources read no cache.
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

/// Opens every source (registries as streams) and plans them; all problems
/// are reported together.
fn plan_sources(
    req: &CopyRequest,
    specs: &[(String, SourceSpec)],
    ctx: Option<&RegistryContext>,
    platforms: &[Platform],
    platforms_are_default: bool,
) -> Result<(Vec<Box<dyn Source>>, Plan)> {
    let mut problems = Vec::new();
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for (text, spec) in specs {
        match spec.open_as(text, ctx, true) {
            Ok(s) => sources.push(s),
            Err(e) => problems.push(e),
        }
    }
    if let Some(ctx) = ctx {
        for repo in repositories(req, ctx, &mut problems) {
            let name = format!("docker://{}", repo.name());
            match RegistrySource::all_tags(&name, &repo, ctx) {
                Ok(s) => sources.push(Box::new(s.streaming(true))),
                Err(e) => problems.push(e),
            }
        }
    }
    // A set's entry that names platforms keeps those; others `platforms`.
    let mut own_platforms = vec![None; sources.len()];
    if let Some(set) = &req.set {
        for (s, p) in imageset::open(set, ctx, true, &mut problems) {
            sources.push(s);
            own_platforms.push(p);
        }
    }
    let mut plan = Plan::default();
    for (i, s) in sources.iter().enumerate() {
        // An entry's own platforms are the user's filter, never a default.
        plan.platforms_are_default = platforms_are_default && own_platforms[i].is_none();
        let platforms = own_platforms[i].as_deref().unwrap_or(platforms);
        if let Err(e) = plan.add_source(i, s.as_ref(), platforms) {
            problems.push(e);
        }
    }
    Error::many(problems)?;
    if plan.images.is_empty() {
        return Err(Error::Usage("the sources hold no images".into()));
    }
    Ok((sources, plan))
}

/// The repositories of `--all-tags`, then those each `--catalog` lists.
fn repositories(
    req: &CopyRequest,
    ctx: &RegistryContext,
    problems: &mut Vec<Error>,
) -> Vec<Reference> {
    let mut repos = Vec::new();
    for r in &req.all_tags {
        match Reference::parse(r) {
            Ok(r) => repos.push(r),
            Err(e) => problems.push(e),
        }
    }
    for host in &req.catalogs {
        match RegistrySource::catalog(host, ctx) {
            Ok(list) => {
                for repo in list {
                    match Reference::parse(&format!("{host}/{repo}")) {
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

/// What names this copy in its journal: the sources as given, the
/// repositories and registries listed, and the platforms kept.
fn journal_key(req: &CopyRequest) -> Vec<String> {
    let mut key = req.sources.clone();
    key.extend(req.all_tags.iter().map(|r| format!("--all-tags {r}")));
    key.extend(req.catalogs.iter().map(|r| format!("--catalog {r}")));
    key.extend(req.platforms.iter().map(|p| format!("--platform {p}")));
    key.extend(req.set.iter().flat_map(ImageSet::describe));
    key
}

/// Sources into a registry: the target is pinged and the journal locked
/// first, then every source is planned, then the one copy runs.
fn to_registry(
    req: &CopyRequest,
    specs: &[(String, SourceSpec)],
    target: Target,
) -> Result<ImportReport> {
    let journal = if req.dry_run {
        Journal::none()
    } else {
        let dir = req.state.clone().unwrap_or_else(Journal::default_dir);
        Journal::open_copy(&dir, &journal_key(req), target.spec())?
    };
    let mut target_opts = req.registry.clone();
    target_opts.scope_login([target.host.as_str()])?;
    let client = Registries::new(target_opts).client(&target.host)?;
    client.ping()?;

    let ctx = source_context(req, specs, Some(&target.host))?;
    let (sources, plan) = plan_sources(req, specs, ctx.as_ref(), &req.platforms, false)?;
    let journal_path = journal.path().map(PathBuf::from);
    let total = plan.total_bytes();
    let progress = Progress::new(total, "copy", req.quiet || req.dry_run);
    let mut pushed = Pushed::default();
    let options = PushOptions {
        dry_run: req.dry_run,
        chunk_size: req.chunk_size.max(1),
        jobs: req.registry.jobs.max(1),
        no_overwrite: false,
    };
    let sink = RegistrySink::new(client, journal, target.clone(), options, &mut pushed);
    copy_plan(&plan, &sources, Box::new(sink), &progress)?;
    progress.finish();
    Ok(ImportReport {
        target: target.spec().to_string(),
        dry_run: req.dry_run,
        images: pushed.images,
        blobs: pushed.blobs,
        bytes_pushed: pushed.bytes,
        bytes_total: plan
            .blobs
            .iter()
            .filter(|b| b.inline.is_none())
            .map(|b| b.descriptor.size)
            .sum(),
        journal: journal_path,
        retry_helps: pushed.retry_helps,
    })
}

/// Sources into an OCI layout or a docker-archive, one blob at a time.
fn to_files(req: &CopyRequest, specs: &[(String, SourceSpec)]) -> Result<Copied> {
    let ctx = source_context(req, specs, None)?;
    // A docker-archive holds one platform per image: the host's by default.
    let host_default =
        matches!(req.target, TargetSpec::DockerArchive(_)) && req.platforms.is_empty();
    let platforms = if host_default {
        vec![Platform::host()]
    } else {
        req.platforms.clone()
    };
    let (sources, plan) = plan_sources(req, specs, ctx.as_ref(), &platforms, host_default)?;
    let progress = Progress::new(plan.total_bytes(), "copy", req.quiet);
    let sink: Box<dyn Sink> = match &req.target {
        TargetSpec::OciDir(dir) => {
            crate::oci::sweep_partials(dir);
            Box::new(OciDirSink::new(dir)?)
        }
        TargetSpec::DockerArchive(file) => {
            crate::docker_archive::sweep_partials(file);
            Box::new(DockerArchiveSink::new(file, req.created)?)
        }
        other => {
            return Err(Error::Failed(format!(
                "copy into {other:?} is not a file target"
            )))
        }
    };
    copy_plan(&plan, &sources, sink, &progress)?;
    progress.finish();
    Ok(Copied::Files {
        images: plan.images.len(),
        to: req.target_spec(),
    })
}
