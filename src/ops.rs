//! The operations behind each command, as library calls. They do no
//! printing; the CLI renders what they return.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::{Bundle, BundleWriter, PackOptions, Unverified, Verified};
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::{media, platform_of_config, Parsed, Platform};
use crate::plan::{read_node, Plan};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::sink::{copy, DockerArchiveSink, OciDirSink, Sink};
use crate::source::{self, Root, Source};

#[derive(Debug, Serialize)]
pub struct PackSummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub output: PathBuf,
}

/// Reads every source, checks every manifest, then writes the bundle.
///
/// All sources are opened and walked before anything is written; problems
/// with any of them are reported together and no bundle is created.
pub fn pack(
    specs: &[String],
    output: &Path,
    platforms: &[Platform],
    options: PackOptions,
    quiet: bool,
) -> Result<PackSummary> {
    if specs.is_empty() {
        return Err(Error::Usage("name at least one source to pack".into()));
    }
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let mut plan = Plan::default();
    let mut problems = Vec::new();
    for spec in specs {
        match source::open(spec) {
            Ok(s) => {
                if let Err(e) = plan.add_source(sources.len(), s.as_ref(), platforms) {
                    problems.push(e);
                }
                sources.push(s);
            }
            Err(e) => problems.push(e),
        }
    }
    Error::many(problems)?;
    if plan.images.is_empty() {
        return Err(Error::Usage("the sources hold no images".into()));
    }
    let progress = Progress::new(plan.total_bytes(), "pack", quiet);
    let writer = BundleWriter::to_file(output, options)?;
    copy(&plan, &sources, Box::new(writer), &progress)?;
    progress.finish();
    Ok(PackSummary {
        images: plan.images.len(),
        blobs: plan.blobs.len(),
        bytes: plan.total_bytes(),
        output: output.to_path_buf(),
    })
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
    bundle: &Bundle<Verified>,
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

fn created_secs<S>(bundle: &Bundle<S>) -> Result<u64> {
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
}

/// Describes a bundle from its manifest and its manifests' contents.
pub fn inspect(bundle: &Bundle<Unverified>) -> Result<Inspection> {
    let m = bundle.manifest();
    let source = bundle.source();
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
    let images = per_image
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
        Parsed::Manifest { config, .. } if config.size <= crate::image::MAX_CONFIG_SIZE => {
            let mut raw = Vec::new();
            let r = source.open_blob(&config.digest)?;
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
