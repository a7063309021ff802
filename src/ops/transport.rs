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
}

impl SourceSpec {
    /// Parses a source the way skopeo names transports. The location ends at
    /// the first ':' after the transport, as in skopeo.
    pub fn parse(spec: &str) -> Result<SourceSpec> {
        let bad = |reason: &str| Error::InvalidSource {
            spec: spec.to_string(),
            reason: reason.to_string(),
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
            Ok(SourceSpec::Registry(rest.to_string()))
        } else if let Some((transport, _)) = spec.split_once(':').filter(|(t, _)| {
            [
                "dir",
                "docker-daemon",
                "containers-storage",
                "ostree",
                "sif",
            ]
            .contains(t)
        }) {
            Err(bad(&format!("the {transport}: transport is not supported")))
        } else {
            // A bare reference means a registry, as with skopeo and crane.
            Ok(SourceSpec::Registry(spec.to_string()))
        }
    }

    pub fn open(&self, spec: &str, registry: Option<&RegistryContext>) -> Result<Box<dyn Source>> {
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
                Box::new(RegistrySource::image(spec, &reference, ctx)?)
            }
        })
    }
}

impl SourceSpec {
    pub fn is_registry(&self) -> bool {
        matches!(self, SourceSpec::Registry(_))
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
}
