//! The operations behind each command, as library calls. They do no
//! printing; the CLI renders what they return.

pub mod import;
pub mod repair;
pub mod transport;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::{Bundle, BundleWriter, Opened, PackOptions, Trusted};
use crate::docker_archive::DockerArchiveSink;
use crate::error::{Error, Result};
use crate::integrity::VerifyingReader;
use crate::model::image::{media, platform_of_config, Parsed, Platform};
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::oci::OciDirSink;
use crate::plan::{read_node, Plan};
use crate::progress::Progress;
use crate::registry::cache::BlobCache;
use crate::registry::{Registries, RegistryOptions};
use crate::registry::{RegistryContext, RegistrySource};
use crate::sink::{copy, Sink};
use crate::source::{Root, Source};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use transport::SourceSpec;

#[derive(Debug, Serialize)]
pub struct PackSummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Bytes downloaded from registries by this run (the rest came from the cache).
    pub downloaded: u64,
    pub output: PathBuf,
}

/// Everything `pack` needs to know.
pub struct PackRequest {
    /// Source arguments: transports, or bare references for registries.
    pub sources: Vec<String>,
    /// `REGISTRY/REPO`: every tag of these repositories.
    pub all_tags: Vec<String>,
    /// `REGISTRY`: every repository and tag it lists.
    pub catalogs: Vec<String>,
    pub output: PathBuf,
    pub platforms: Vec<Platform>,
    pub options: PackOptions,
    pub registry: RegistryOptions,
    /// Blob cache for registry sources [default: the XDG cache dir].
    pub cache: Option<PathBuf>,
    /// Bring signatures, SBOMs and attestations along.
    pub referrers: bool,
    pub quiet: bool,
}

/// Reads every source, checks every manifest, downloads what registries
/// hold, then writes the bundle.
///
/// All sources are opened and walked, and all downloads attempted, before
/// anything is written; problems with any of them are reported together and
/// no bundle is created.
pub fn pack(req: PackRequest) -> Result<PackSummary> {
    if req.sources.is_empty() && req.all_tags.is_empty() && req.catalogs.is_empty() {
        return Err(Error::Usage("name at least one source to pack".into()));
    }
    let specs: Vec<(String, SourceSpec)> = req
        .sources
        .iter()
        .map(|s| Ok((s.clone(), SourceSpec::parse(s)?)))
        .collect::<Result<_>>()?;
    let needs_registry = !req.all_tags.is_empty()
        || !req.catalogs.is_empty()
        || specs.iter().any(|(_, s)| s.is_registry());
    let registry = if needs_registry {
        let dir = req.cache.clone().unwrap_or_else(BlobCache::default_dir);
        Some(RegistryContext {
            registries: Arc::new(Registries::new(req.registry.clone())),
            cache: Arc::new(BlobCache::open(&dir)?),
            referrers: req.referrers,
        })
    } else {
        None
    };

    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut problems = Vec::new();
    for (text, spec) in &specs {
        match spec.open(text, registry.as_ref()) {
            Ok(s) => sources.push(s),
            Err(e) => problems.push(e),
        }
    }
    if let Some(ctx) = &registry {
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
        for repo in repos {
            let name = format!("docker://{}", repo.name());
            match RegistrySource::all_tags(&name, &repo, ctx) {
                Ok(s) => sources.push(Box::new(s)),
                Err(e) => problems.push(e),
            }
        }
    }
    let mut plan = Plan::default();
    for (i, s) in sources.iter().enumerate() {
        if let Err(e) = plan.add_source(i, s.as_ref(), &req.platforms) {
            problems.push(e);
        }
    }
    Error::many(problems)?;
    if plan.images.is_empty() {
        return Err(Error::Usage("the sources hold no images".into()));
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
    let writer = BundleWriter::to_file(&req.output, req.options)?;
    // Downloads run on their own pool while the bundle is written: the
    // pool fetches in plan order, and the writer waits only for the blob it
    // needs next.
    let stop = AtomicBool::new(false);
    let (written, downloads) = std::thread::scope(|scope| {
        let pool = registry
            .as_ref()
            .map(|_| scope.spawn(|| prefetch(&plan, &sources, req.registry.jobs, &pull, &stop)));
        let written = copy(&plan, &sources, Box::new(writer), &progress);
        if written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let downloads = pool.map(|p| p.join().expect("the download pool does not panic"));
        (written, downloads)
    });
    pull.finish();
    progress.finish();
    match (written, downloads) {
        // A failed download is the cause; the writer only saw its echo.
        (_, Some(Err(e))) => return Err(e),
        (Err(e), _) => return Err(e),
        (Ok(()), _) => {}
    }
    // Counted by the cache: the writer may fetch a blob itself when it gets
    // there before the pool does.
    let downloaded = registry.as_ref().map_or(0, |ctx| ctx.cache.downloaded());
    Ok(PackSummary {
        images: plan.images.len(),
        blobs: plan.blobs.len(),
        bytes: plan.total_bytes(),
        downloaded,
        output: req.output.clone(),
    })
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
/// lines ignored.
pub fn read_source_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read source list", path, e))?;
    Ok(text
        .lines()
        .map(|l| l.split_once(" #").map_or(l, |(a, _)| a).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Where `export` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    OciDir(PathBuf),
    DockerArchive(PathBuf),
}

impl ExportTarget {
    pub fn parse(s: &str) -> Result<ExportTarget> {
        let target = if let Some(p) = s.strip_prefix("oci:") {
            ExportTarget::OciDir(p.into())
        } else if let Some(p) = s.strip_prefix("docker-archive:") {
            ExportTarget::DockerArchive(p.into())
        } else {
            return Err(Error::Usage(format!(
                "export target {s:?} must be oci:DIR or docker-archive:FILE"
            )));
        };
        match &target {
            ExportTarget::OciDir(p) | ExportTarget::DockerArchive(p)
                if p.as_os_str().is_empty() =>
            {
                Err(Error::Usage(format!("export target {s:?} has no path")))
            }
            _ => Ok(target),
        }
    }
}

/// Copies images out of a verified bundle, checking every digest again as
/// it streams. `images` selects by name (all when empty). A docker-archive
/// holds one platform per image; without `--platform` the host's is chosen.
pub fn export(
    bundle: &Bundle<Trusted>,
    target: &ExportTarget,
    images: &[String],
    platforms: &[Platform],
    quiet: bool,
) -> Result<usize> {
    let source = bundle.source();
    let roots = select_roots(&source, images)?;
    let platforms: Vec<Platform> = match (target, platforms.is_empty()) {
        (ExportTarget::DockerArchive(_), true) => vec![Platform::host()],
        _ => platforms.to_vec(),
    };
    let mut plan = Plan::default();
    for root in roots {
        plan.add_root(0, &source, root, &platforms)?;
    }
    let sink: Box<dyn Sink> = match target {
        ExportTarget::OciDir(dir) => Box::new(OciDirSink::new(dir)?),
        ExportTarget::DockerArchive(file) => {
            Box::new(DockerArchiveSink::new(file, created_secs(bundle)?)?)
        }
    };
    let progress = Progress::new(plan.total_bytes(), "export", quiet);
    let sources: Vec<Box<dyn Source + '_>> = vec![Box::new(source)];
    copy(&plan, &sources, sink, &progress)?;
    progress.finish();
    Ok(plan.images.len())
}

fn created_secs(bundle: &Bundle<Trusted>) -> Result<u64> {
    let created = &bundle.manifest().created;
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp().max(0) as u64)
        .map_err(|e| {
            Error::bad_bundle(
                bundle.file().path(),
                format!("created time {created:?}: {e}"),
            )
        })
}

fn select_roots(source: &dyn Source, wanted: &[String]) -> Result<Vec<Root>> {
    let roots = source.roots()?;
    if wanted.is_empty() {
        return Ok(roots);
    }
    let mut chosen = Vec::new();
    for w in wanted {
        let r = Reference::parse(w)?;
        let hits: Vec<Root> = roots
            .iter()
            .filter(|root| root.name.as_ref() == Some(&r))
            .cloned()
            .collect();
        if hits.is_empty() {
            return Err(Error::ImageNotFound {
                source_name: source.name().to_string(),
                wanted: w.clone(),
                available: roots
                    .iter()
                    .filter_map(|r| r.name.as_ref().map(|n| n.to_string()))
                    .collect(),
            });
        }
        chosen.extend(hits);
    }
    Ok(chosen)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub format_version: u64,
    pub tool: String,
    pub created: String,
    /// Key ids the bundle claims; `inspect` does not check the signature.
    pub signed_by: Vec<String>,
    pub images: Vec<ImageInfo>,
    pub blobs: usize,
    pub total_bytes: u64,
    /// Bytes stored once but used by more than one image.
    pub shared_bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub name: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<String>,
    /// All bytes the image needs, shared or not.
    pub size: u64,
    /// The part of `size` that other images use too.
    pub shared_bytes: u64,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// Signatures, SBOMs and attestations that refer to this image: by
    /// `subject`, or by a cosign or referrers-fallback tag naming its digest.
    pub referrers: Vec<String>,
    /// For a referrer: the image it refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// Describes a bundle from its manifest and its manifests' contents.
pub fn inspect(bundle: &Bundle<Opened>) -> Result<Inspection> {
    let claims = bundle.read_claims()?;
    let m = claims.manifest();
    let source = claims.unchecked_source();
    let mut per_image: Vec<(ImageInfo, Vec<(Digest, u64)>)> = Vec::new();
    for (root, record) in source.roots()?.into_iter().zip(&m.images) {
        let label = record
            .name
            .clone()
            .unwrap_or_else(|| record.digest.to_string());
        let mut plan = Plan::default();
        plan.add_root(0, &source, root.clone(), &[])?;
        let platforms = platforms_of(&source, &root, &label)?;
        let blobs: Vec<(Digest, u64)> = plan
            .blobs
            .iter()
            .map(|b| (b.descriptor.digest.clone(), b.descriptor.size))
            .collect();
        per_image.push((
            ImageInfo {
                name: record.name.clone(),
                digest: record.digest.clone(),
                media_type: record.media_type.clone(),
                platforms,
                size: blobs.iter().map(|b| b.1).sum(),
                shared_bytes: 0,
                source: record.source.clone(),
                source_digest: record.source_digest.clone(),
                referrers: Vec::new(),
                subject: record.subject.clone(),
            },
            blobs,
        ));
    }
    // A blob counts as shared when images with different roots use it.
    let mut roots_using: HashMap<&Digest, HashSet<&Digest>> = HashMap::new();
    for (info, blobs) in &per_image {
        for (d, _) in blobs {
            roots_using.entry(d).or_default().insert(&info.digest);
        }
    }
    let shared: HashSet<Digest> = roots_using
        .iter()
        .filter(|(_, users)| users.len() > 1)
        .map(|(d, _)| (*d).clone())
        .collect();
    let mut images: Vec<ImageInfo> = per_image
        .into_iter()
        .map(|(mut info, blobs)| {
            info.shared_bytes = blobs
                .iter()
                .filter(|(d, _)| shared.contains(d))
                .map(|b| b.1)
                .sum();
            info
        })
        .collect();
    let labels: Vec<(String, Option<Digest>, Option<String>)> = images
        .iter()
        .map(|i| {
            let label = i.name.clone().unwrap_or_else(|| i.digest.to_string());
            let tag = i
                .name
                .as_deref()
                .and_then(|n| Reference::parse(n).ok())
                .and_then(|r| r.tag);
            (label, i.subject.clone(), tag)
        })
        .collect();
    for image in &mut images {
        let prefix = format!("sha256-{}", image.digest.hex());
        image.referrers = labels
            .iter()
            .filter(|(_, subject, tag)| {
                subject.as_ref() == Some(&image.digest)
                    || tag.as_deref().is_some_and(|t| {
                        t == prefix || t.strip_prefix(&prefix).is_some_and(|s| s.starts_with('.'))
                    })
            })
            .map(|(label, _, _)| label.clone())
            .collect();
    }
    Ok(Inspection {
        format_version: m.format_version,
        tool: m.tool.clone(),
        created: m.created.clone(),
        signed_by: bundle.signer_ids(),
        images,
        blobs: m.blobs.len(),
        total_bytes: m.blobs.iter().map(|b| b.size).sum(),
        shared_bytes: m
            .blobs
            .iter()
            .filter(|b| shared.contains(&b.digest))
            .map(|b| b.size)
            .sum(),
    })
}

/// An index's platforms (attestation entries left out), or the platform in
/// a single image's config.
fn platforms_of(source: &dyn Source, root: &Root, label: &str) -> Result<Vec<String>> {
    let node = read_node(source, &root.descriptor, label)?;
    Ok(match node.parsed {
        Parsed::Index { manifests } => manifests
            .iter()
            .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"))
            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
            .collect(),
        Parsed::Manifest { config, .. } if config.size <= crate::model::image::MAX_CONFIG_SIZE => {
            let mut raw = Vec::new();
            let r = source.open_blob(&config)?;
            std::io::Read::read_to_end(
                &mut VerifyingReader::new(
                    r,
                    config.digest.clone(),
                    config.size,
                    format!("{label}: config"),
                ),
                &mut raw,
            )
            .map_err(|e| Error::io("read", source.name(), e))?;
            let is_image = config.media_type == media::OCI_CONFIG
                || config.media_type.contains("container.image");
            platform_of_config(&raw)
                .filter(|_| is_image)
                .map(|p| vec![p.to_string()])
                .unwrap_or_default()
        }
        Parsed::Manifest { .. } => Vec::new(),
    })
}
