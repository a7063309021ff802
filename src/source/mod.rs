//! The read side: every format airlock packs from implements [`Source`].
//!
//! A source only lists its images and hands out blobs by digest. It does not
//! verify, filter platforms or walk manifests: [`crate::plan`] does that once
//! for every format, so a new format is a few dozen lines.

mod docker_archive;
mod fs;
mod layout;
mod registry;

use std::io::Read;
use std::path::PathBuf;

pub(crate) use docker_archive::DockerArchive;
pub(crate) use fs::{DirFs, Fs, TarFs};
pub(crate) use layout::Layout;
pub use registry::{is_referrer_tag, RegistryContext, RegistrySource};

use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::progress::Progress;
use crate::reference::Reference;

/// One image a source offers: its root manifest or index, and its name.
#[derive(Clone, Debug)]
pub struct Root {
    pub name: Option<Reference>,
    pub descriptor: Descriptor,
    /// For a referrer (a signature, SBOM or attestation found through the
    /// referrers API): the manifest it refers to.
    pub subject: Option<crate::digest::Digest>,
}

pub trait Source: Send + Sync {
    /// How the user named this source, for messages.
    fn name(&self) -> &str;

    /// The images selected from this source.
    fn roots(&self) -> Result<Vec<Root>>;

    /// Opens a blob. The bytes are unverified: callers check them against
    /// the descriptor (see [`crate::digest::VerifyingReader`]).
    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;

    /// True when this process hashes every blob `open_blob` returns against
    /// its digest anyway, before the read that ends it returns, so
    /// [`crate::sink::copy`] checks only its size. A registry source hashes
    /// each blob as it downloads it into the cache (or, for one cached
    /// before, when it reuses it); a reader following a download gets its
    /// end only once that hash matched.
    fn opens_checked_blobs(&self) -> bool {
        false
    }

    /// Makes a blob available locally before it is read (a registry source
    /// downloads it into its cache). Called from a pool of network threads;
    /// local sources have nothing to do.
    fn prefetch(&self, _blob: &Descriptor, _progress: &Progress) -> Result<()> {
        Ok(())
    }
}

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

/// Names an image from a layout's annotations, in order of preference: the
/// full reference containerd and docker write, a ref name that is itself a
/// full reference, or a bare tag placed under `localhost/<stem>` as podman
/// does for local images.
pub(crate) fn name_from_annotations(d: &Descriptor, stem: &str) -> Option<Reference> {
    if let Some(r) = d
        .annotations
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok())
    {
        return Some(r);
    }
    let ref_name = d.annotations.get(ANNOTATION_REF_NAME)?;
    if ref_name.contains('/') {
        if let Ok(r) = Reference::parse(ref_name) {
            return Some(r);
        }
    }
    let repo: String = stem
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Reference::parse(&format!("localhost/{}:{ref_name}", repo.trim_matches('-'))).ok()
}

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

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
