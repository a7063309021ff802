//! The read side: every format airlock packs from implements [`Source`].
//!
//! A source only lists its images and hands out blobs by digest. It does not
//! verify, filter platforms or walk manifests: [`crate::plan`] does that once
//! for every format, so a new format is a few dozen lines.

use std::io::Read;

use crate::error::Result;
use crate::model::image::Descriptor;
use crate::model::reference::Reference;
use crate::progress::Progress;

/// One image a source offers: its root manifest or index, and its name.
#[derive(Clone, Debug)]
pub struct Root {
    pub name: Option<Reference>,
    pub descriptor: Descriptor,
    /// For a referrer (a signature, SBOM or attestation found through the
    /// referrers API): the manifest it refers to.
    pub subject: Option<crate::model::Digest>,
}

pub trait Source: Send + Sync {
    /// How the user named this source, for messages.
    fn name(&self) -> &str;

    /// The images selected from this source.
    fn roots(&self) -> Result<Vec<Root>>;

    /// Opens a blob. The bytes are unverified: callers check them against
    /// the descriptor (see `integrity::VerifyingReader`).
    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;

    /// True when this process hashes every blob `open_blob` returns against
    /// its digest anyway, before the read that ends it returns, and the
    /// reader yields exactly the bytes hashed, so [`crate::sink::copy`]
    /// checks only its size. A registry source hashes each blob as it
    /// downloads it into the cache (or, for one cached before or by another
    /// process, when it reuses it) and reads it back through that same file
    /// descriptor, never a second open of the path; a reader following a
    /// download gets its end only once that hash matched.
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
