//! OCI image layouts: `oci:DIR` and `oci-archive:FILE` as a source
//! ([`Layout`], also used for the layout inside a docker 25+ `docker save`
//! tar) and `oci:DIR` and `oci-archive:FILE` as sinks ([`OciDirSink`],
//! [`OciArchiveSink`]), with the layout's names and annotations.

mod archive;
mod layout;
mod sink;

pub use archive::{sweep_archive_partials, OciArchiveSink};
pub(crate) use layout::{describe_root, Layout};
pub(crate) use sink::{index_entries, OCI_LAYOUT};
pub use sink::{sweep_partials, OciDirSink};

use crate::model::{Descriptor, Reference};

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

/// The lock file inside a layout directory that serialises airlock's
/// writers of `index.json` (read, merge, replace), so two exports into one
/// layout both land. Not for blobs: they are content addressed and renamed
/// into place, so concurrent writers of one blob agree.
pub(crate) const LOCK_FILE: &str = ".airlock.lock";

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
