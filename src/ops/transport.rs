//! Source arguments as users write them (`oci:DIR[:REF]`,
//! `docker-archive:FILE`, `docker://REF`, …), parsed the way skopeo names
//! transports, and opened into a [`Source`].
//!
//! This is the one place that knows every format; the formats themselves do
//! not know each other. Not for reading images: opening a source only
//! resolves what it offers; the plan reads it.

use std::path::PathBuf;

use crate::docker_archive::DockerArchive;
use crate::error::{Error, Result};
use crate::fs::{DirFs, TarFs};
use crate::model::Reference;
use crate::oci::Layout;
use crate::registry::{RegistryContext, RegistrySource};
use crate::source::Source;

/// A parsed `TRANSPORT:LOCATION[:REF]` source argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    OciDir {
        path: PathBuf,
        reference: Option<String>,
    },
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    Registry(String),
    /// `bundle:FILE`: a bundle (its volumes included); only `copy` reads it.
    Bundle(PathBuf),
}

/// A parsed `copy` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// `docker://REGISTRY[/PREFIX]`.
    Registry(String),
    OciDir(PathBuf),
    DockerArchive(PathBuf),
    /// `bundle:FILE`: the same as `pack -o FILE`.
    Bundle(PathBuf),
}

impl TargetSpec {
    pub fn parse(spec: &str) -> Result<TargetSpec> {
        let bad = |reason: String| Error::Usage(format!("{spec:?} is not a copy target: {reason}"));
        let (transport, rest) = if let Some(rest) = spec.strip_prefix("docker://") {
            ("docker://", rest)
        } else {
            match spec.split_once(':') {
                Some((t, rest)) if ["oci", "docker-archive", "bundle"].contains(&t) => (t, rest),
                _ => {
                    return Err(bad(
                        "write docker://REGISTRY[/PREFIX], oci:DIR, docker-archive:FILE \
                         or bundle:FILE"
                            .into(),
                    ))
                }
            }
        };
        if rest.is_empty() {
            return Err(bad(format!("{transport} needs a location after it")));
        }
        Ok(match transport {
            "docker://" => TargetSpec::Registry(rest.to_string()),
            "oci" => TargetSpec::OciDir(rest.into()),
            "docker-archive" => TargetSpec::DockerArchive(rest.into()),
            _ => TargetSpec::Bundle(rest.into()),
        })
    }
}

impl SourceSpec {
    /// Parses a source the way skopeo names transports. The location ends at
    /// the first ':' after the transport, as in skopeo.
    pub fn parse(spec: &str) -> Result<SourceSpec> {
        let bad = |reason: &str| Error::InvalidSource {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        // Checked here, so that a bad reference is a usage mistake like a
        // bad transport, found before anything is opened.
        let registry = |r: &str| match Reference::parse(r) {
            Ok(_) => Ok(SourceSpec::Registry(r.to_string())),
            Err(Error::InvalidReference { reason, .. }) => {
                Err(bad(&format!("invalid image reference: {reason}")))
            }
            Err(e) => Err(e),
        };
        let split = |rest: &str| -> Result<(PathBuf, Option<String>)> {
            let (path, reference) = match rest.split_once(':') {
                Some((p, r)) => (p, Some(r.to_string()).filter(|r| !r.is_empty())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(bad("the path is empty"));
            }
            Ok((PathBuf::from(path), reference))
        };
        if let Some(rest) = spec.strip_prefix("oci:") {
            let (path, reference) = split(rest)?;
            Ok(SourceSpec::OciDir { path, reference })
        } else if let Some(rest) = spec.strip_prefix("oci-archive:") {
            let (path, reference) = split(rest)?;
            Ok(SourceSpec::OciArchive { path, reference })
        } else if let Some(rest) = spec.strip_prefix("docker-archive:") {
            let (path, reference) = split(rest)?;
            Ok(SourceSpec::DockerArchive { path, reference })
        } else if let Some(rest) = spec.strip_prefix("docker://") {
            registry(rest)
        } else if let Some(rest) = spec.strip_prefix("bundle:") {
            if rest.is_empty() {
                return Err(bad("the path is empty"));
            }
            Ok(SourceSpec::Bundle(rest.into()))
        } else if let Some((transport, _)) = spec
            .split_once(':')
            .filter(|(t, _)| UNSUPPORTED.contains(t))
        {
            Err(bad(&format!("the {transport}: transport is not supported")))
        } else if let Some(transport) = mistyped_transport(spec) {
            Err(bad(&format!(
                "unknown transport {transport:?}; the known ones are {}",
                KNOWN.join(", ")
            )))
        } else if let Some(hint) = bare_path(spec) {
            Err(bad(&hint))
        } else {
            // A bare reference means a registry, as with skopeo and crane.
            registry(spec)
        }
    }

    pub fn open(&self, spec: &str, registry: Option<&RegistryContext>) -> Result<Box<dyn Source>> {
        self.open_as(spec, registry, false)
    }

    /// [`SourceSpec::open`]; with `stream`, a registry source hands out its
    /// blobs as verified-on-the-way HTTP streams instead of through the
    /// blob cache (a copy into a registry keeps nothing on disk).
    pub fn open_as(
        &self,
        spec: &str,
        registry: Option<&RegistryContext>,
        stream: bool,
    ) -> Result<Box<dyn Source>> {
        Ok(match self {
            SourceSpec::OciDir { path, reference } => Box::new(Layout::open(
                spec,
                DirFs::open(path)?,
                reference.clone(),
                dir_stem(path),
            )?),
            SourceSpec::OciArchive { path, reference } => Box::new(Layout::open(
                spec,
                TarFs::open(path)?,
                reference.clone(),
                dir_stem(path),
            )?),
            SourceSpec::DockerArchive { path, reference } => {
                DockerArchive::open(spec, path, reference.clone())?
            }
            SourceSpec::Registry(r) => {
                let reference = Reference::parse(r)?;
                let ctx = registry.expect("callers pass a registry context for registry sources");
                Box::new(RegistrySource::image(spec, &reference, ctx)?.streaming(stream))
            }
            SourceSpec::Bundle(_) => {
                return Err(Error::InvalidSource {
                    spec: spec.to_string(),
                    reason: "a bundle is read by `airlock copy` (alone) or `import`/`export`, \
                             not mixed with other sources"
                        .into(),
                })
            }
        })
    }
}

impl SourceSpec {
    pub fn is_registry(&self) -> bool {
        matches!(self, SourceSpec::Registry(_))
    }
}

/// The transports airlock reads, as they are written.
const KNOWN: [&str; 4] = ["oci:", "oci-archive:", "docker-archive:", "docker://"];

/// skopeo's transports that airlock does not read.
const UNSUPPORTED: [&str; 5] = [
    "dir",
    "docker-daemon",
    "containers-storage",
    "ostree",
    "sif",
];

/// The transport of `spec` when it is not one airlock knows but looks like
/// one: any `SCHEME://` (no reference holds "://"), or a `NAME:` a typo
/// away from a known or unsupported transport. `NAME:REST` is also how a
/// Docker Hub reference with a tag looks (`nginx:1.25`), so only names
/// close to a transport's count; `docker:24` is the docker image.
fn mistyped_transport(spec: &str) -> Option<&str> {
    if let Some((scheme, _)) = spec.split_once("://") {
        return (scheme != "docker").then_some(scheme);
    }
    let (name, _) = spec.split_once(':')?;
    let names = KNOWN
        .iter()
        .map(|k| k.trim_end_matches(['/', ':']))
        .chain(UNSUPPORTED);
    let close = |known: &str| {
        let d = edit_distance(name, known);
        d > 0 && d <= if known.len() <= 4 { 1 } else { 2 }
    };
    (name != "docker" && names.into_iter().any(close)).then_some(name)
}

/// Levenshtein distance; names here are a few bytes long.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// A source written as a bare path to an OCI layout or an archive, which
/// would otherwise be read as a registry reference: what to write instead.
fn bare_path(spec: &str) -> Option<String> {
    let path = std::path::Path::new(spec);
    let looks_like_path = spec.starts_with(['/', '.', '~']) || spec.ends_with('/');
    if path.is_dir() && (looks_like_path || path.join("oci-layout").is_file()) {
        Some(format!(
            "{spec} is a directory; name an OCI layout as oci:{spec}"
        ))
    } else if path.is_file() && (looks_like_path || spec.ends_with(".tar")) {
        Some(format!(
            "{spec} is a file; name an archive as oci-archive:{spec} or docker-archive:{spec}"
        ))
    } else {
        None
    }
}

/// The file or directory name without extensions, for naming untagged images.
fn dir_stem(path: &std::path::Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    name.split('.').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports_like_skopeo() {
        assert_eq!(
            SourceSpec::parse("oci:/tmp/x:app-1").unwrap(),
            SourceSpec::OciDir {
                path: "/tmp/x".into(),
                reference: Some("app-1".into())
            }
        );
        assert_eq!(
            SourceSpec::parse("oci:dir").unwrap(),
            SourceSpec::OciDir {
                path: "dir".into(),
                reference: None
            }
        );
        assert_eq!(
            SourceSpec::parse("docker-archive:a.tar:nginx:latest").unwrap(),
            SourceSpec::DockerArchive {
                path: "a.tar".into(),
                reference: Some("nginx:latest".into())
            }
        );
        assert_eq!(
            SourceSpec::parse("nginx").unwrap(),
            SourceSpec::Registry("nginx".into())
        );
        assert!(SourceSpec::parse("oci:").is_err());
        assert!(SourceSpec::parse("dir:/x").is_err());
    }

    #[test]
    fn parses_copy_targets_and_bundle_sources() {
        assert_eq!(
            TargetSpec::parse("docker://reg:5000/mirror").unwrap(),
            TargetSpec::Registry("reg:5000/mirror".into())
        );
        assert_eq!(
            TargetSpec::parse("oci:out").unwrap(),
            TargetSpec::OciDir("out".into())
        );
        assert_eq!(
            TargetSpec::parse("docker-archive:a.tar").unwrap(),
            TargetSpec::DockerArchive("a.tar".into())
        );
        assert_eq!(
            TargetSpec::parse("bundle:b.airlock").unwrap(),
            TargetSpec::Bundle("b.airlock".into())
        );
        for bad in ["reg:5000", "oci:", "docker://", "dir:/x"] {
            assert!(TargetSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SourceSpec::parse("bundle:b.airlock").unwrap(),
            SourceSpec::Bundle("b.airlock".into())
        );
        assert!(SourceSpec::parse("bundle:").is_err());
    }

    #[test]
    fn tagged_hub_images_are_not_transport_typos() {
        for r in [
            "nginx:1.25",
            "docker:24-dind",
            "alpine:3",
            "oci",
            "busybox:latest",
        ] {
            assert_eq!(
                SourceSpec::parse(r).unwrap(),
                SourceSpec::Registry(r.into()),
                "{r}"
            );
        }
    }

    #[test]
    fn transport_typos_are_named() {
        for (spec, transport) in [
            ("dokcer://host/a:1", "dokcer"),
            ("oci-archiv:f", "oci-archiv"),
            ("docker-archiv:f.tar", "docker-archiv"),
            ("ocl:dir", "ocl"),
            ("https://host/a:1", "https"),
        ] {
            match SourceSpec::parse(spec) {
                Err(Error::InvalidSource { reason, .. }) => assert_eq!(
                    reason,
                    format!(
                        "unknown transport {transport:?}; the known ones are oci:, oci-archive:, docker-archive:, docker://"
                    )
                ),
                other => panic!("{spec}: {other:?}"),
            }
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("oci-archiv", "oci-archive"), 1);
        assert_eq!(edit_distance("dokcer", "docker"), 2);
        assert_eq!(edit_distance("", "oci"), 3);
        assert_eq!(edit_distance("oci", "oci"), 0);
    }
}
