//! A bundle's images and blobs as a [`Source`], for export, import and
//! verification.
//!
//! Reading through it is unverified like any source: callers verify as
//! they read (the plan and copy code does). Not handed out by an unchecked
//! bundle: [`super::Bundle`] gives one only once trusted, and `inspect`
//! reads one only through [`super::Claims::unchecked_source`].

use std::collections::HashMap;
use std::io::Read;

use super::format::{BundleManifest, ExpectedBlob, ImageRecord};
use super::index::BundleFile;
use crate::error::{Error, Result};
use crate::model::image::Descriptor;
use crate::model::reference::Reference;
use crate::model::Digest;
use crate::source::{Root, Source};

pub struct BundleSource<'a> {
    file: &'a BundleFile,
    manifest: &'a BundleManifest,
    name: String,
    /// A delta's expected blobs: asked for one, the source names its base.
    expected: HashMap<&'a Digest, &'a ExpectedBlob>,
}

impl<'a> BundleSource<'a> {
    pub(crate) fn new(file: &'a BundleFile, manifest: &'a BundleManifest) -> BundleSource<'a> {
        BundleSource {
            file,
            manifest,
            name: file.path().display().to_string(),
            expected: manifest.expected().iter().map(|e| (&e.digest, e)).collect(),
        }
    }
}

/// The image a bundle manifest record names, as a source root.
pub(crate) fn root_of(record: &ImageRecord) -> Result<Root> {
    Ok(Root {
        name: record.name.as_deref().map(Reference::parse).transpose()?,
        descriptor: Descriptor::new(
            record.media_type.clone(),
            record.digest.clone(),
            record.size,
        ),
        subject: record.subject.clone(),
    })
}

impl Source for BundleSource<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn roots(&self) -> Result<Vec<Root>> {
        self.manifest.images.iter().map(root_of).collect()
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = &blob.digest;
        if let (Some(e), Some(delta)) = (self.expected.get(digest), &self.manifest.delta) {
            return Err(Error::NotInDelta {
                source_name: self.name.clone(),
                digest: digest.clone(),
                size: e.size,
                base: delta.base_of(e),
                image: None,
            });
        }
        let m = self
            .file
            .member(&digest.layout_path())
            .ok_or_else(|| Error::missing_blob(&self.name, digest))?;
        Ok(Box::new(self.file.open_member(m)?))
    }
}
