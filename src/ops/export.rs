//! `export`: copy images out of a verified bundle into an OCI layout (a
//! directory or an oci-archive tar) or a docker-archive.
//!
//! Orchestration only: the bundle is the source, the OCI and docker-archive
//! sinks write, and every digest is checked again on the way. Not for
//! checking the bundle: the caller passes a `Bundle<Verified>`, so export
//! refuses whatever `verify` refuses (extra, swapped or unused members, an
//! index.json that is not the signed one, smuggled frames). Nor for printing.

use std::path::PathBuf;

use super::delta::{Bases, WithBases};
use crate::bundle::{Bundle, Verified};
use crate::docker_archive::DockerArchiveSink;
use crate::error::{Error, Result};
use crate::model::image::Platform;
use crate::model::reference::Reference;
use crate::oci::{OciArchiveSink, OciDirSink};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::sink::{copy, Sink};
use crate::source::{Root, Source};

/// Where `export` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    OciDir(PathBuf),
    /// A file, or standard output for `-`.
    OciArchive(PathBuf),
    /// A file, or standard output for `-`.
    DockerArchive(PathBuf),
}

impl ExportTarget {
    /// `docker-archive:-` or `oci-archive:-`: the archive goes to standard
    /// output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, ExportTarget::DockerArchive(p) | ExportTarget::OciArchive(p) if p.as_os_str() == "-")
    }

    /// How the target was written (`docker-archive:-`), for messages.
    pub fn transport(&self) -> &'static str {
        match self {
            ExportTarget::OciDir(_) => "oci",
            ExportTarget::OciArchive(_) => "oci-archive",
            ExportTarget::DockerArchive(_) => "docker-archive",
        }
    }

    pub fn parse(s: &str) -> Result<ExportTarget> {
        let target = if let Some(p) = s.strip_prefix("oci:") {
            ExportTarget::OciDir(p.into())
        } else if let Some(p) = s.strip_prefix("oci-archive:") {
            ExportTarget::OciArchive(p.into())
        } else if let Some(p) = s.strip_prefix("docker-archive:") {
            ExportTarget::DockerArchive(p.into())
        } else {
            return Err(Error::Usage(format!(
                "export target {s:?} must be oci:DIR, oci-archive:FILE or docker-archive:FILE"
            )));
        };
        match &target {
            ExportTarget::OciDir(p)
            | ExportTarget::OciArchive(p)
            | ExportTarget::DockerArchive(p)
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
    export_with(bundle, None, target, images, platforms, quiet)
}

/// [`export`] of a bundle that may be a delta: `bases` (`--with`) supply
/// the blobs it expects. A delta without bases, or with a blob no base
/// bundle carries, is refused before anything is written.
pub fn export_with(
    bundle: &Bundle<Verified>,
    bases: Option<&Bases>,
    target: &ExportTarget,
    images: &[String],
    platforms: &[Platform],
    quiet: bool,
) -> Result<usize> {
    let manifest = bundle.manifest();
    let source: Box<dyn Source + '_> = match (&manifest.delta, bases) {
        (None, Some(_)) => {
            return Err(Error::Usage(format!(
                "{} is a whole bundle, not a delta: it needs no --with",
                bundle.file().path().display()
            )))
        }
        (Some(delta), None) => {
            return Err(Error::Refused {
                what: bundle.file().path().display().to_string(),
                reason: format!(
                    "it is a delta bundle: it does not carry {} blob(s) ({} bytes) its images need, which it expects from {}",
                    delta.expected.len(),
                    delta.expected.iter().map(|e| e.size).sum::<u64>(),
                    delta
                        .bases
                        .iter()
                        .map(|b| b.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                hint: "give the base bundles with --with BASE".into(),
            })
        }
        (Some(_), Some(bases)) => Box::new(WithBases::new(bundle, bases)?),
        (None, None) => Box::new(bundle.source()),
    };
    let roots = select_roots(source.as_ref(), images)?;
    let host_default = matches!(target, ExportTarget::DockerArchive(_)) && platforms.is_empty();
    let platforms: Vec<Platform> = if host_default {
        vec![Platform::host()]
    } else {
        platforms.to_vec()
    };
    let mut plan = Plan::default();
    plan.platforms_are_default = host_default;
    for root in roots {
        plan.add_root(0, source.as_ref(), root, &platforms)?;
    }
    if bases.is_some() {
        super::delta::unsupplied(&plan, manifest, source.as_ref())?;
    }
    let progress = Progress::new(plan.total_bytes(), "export", quiet);
    let swept = match target {
        ExportTarget::OciDir(dir) => crate::oci::sweep_partials(dir),
        ExportTarget::OciArchive(file) => crate::oci::sweep_archive_partials(file),
        ExportTarget::DockerArchive(file) => crate::docker_archive::sweep_partials(file),
    };
    if let Some(note) = swept.note() {
        progress.note(&note);
    }
    let sink: Box<dyn Sink> = match target {
        ExportTarget::OciDir(dir) => Box::new(OciDirSink::new(dir)?),
        ExportTarget::OciArchive(file) => {
            Box::new(OciArchiveSink::new(file, created_secs(bundle)?)?)
        }
        ExportTarget::DockerArchive(file) => {
            Box::new(DockerArchiveSink::new(file, created_secs(bundle)?)?)
        }
    };
    let sources: Vec<Box<dyn Source + '_>> = vec![source];
    copy(&plan, &sources, sink, &progress)?;
    progress.finish();
    Ok(plan.images.len())
}

fn created_secs(bundle: &Bundle<Verified>) -> Result<u64> {
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
