//! OCI image layouts (`oci:DIR`, `oci-archive:FILE`, and the layout inside a
//! docker 25+ `docker save` tar) as a [`Source`].

use std::io::Read;

use super::{name_from_annotations, ANNOTATION_REF_NAME};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::model::image::{parse_manifest, Descriptor, Parsed};
use crate::model::reference::Reference;
use crate::source::{Root, Source};

/// index.json may list many images; this bounds what we buffer for it.
const MAX_INDEX_JSON: u64 = 64 * 1024 * 1024;

pub struct Layout<F> {
    name: String,
    fs: F,
    roots: Vec<Root>,
}

impl<F: Fs> Layout<F> {
    /// Reads `oci-layout` and `index.json` and selects the images `reference`
    /// names (all when `None`). `stem` names images that carry only a tag.
    pub fn open(name: &str, fs: F, reference: Option<String>, stem: String) -> Result<Layout<F>> {
        let layout_file = fs.location().join("oci-layout");
        let marker = fs
            .read_small("oci-layout", 4096)?
            .ok_or_else(|| Error::BadArchive {
                path: fs.location().to_path_buf(),
                reason: "no oci-layout file: this is not an OCI image layout".into(),
            })?;
        let version = serde_json::from_slice::<serde_json::Value>(&marker)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(String::from));
        if version.as_deref() != Some("1.0.0") {
            return Err(Error::BadJson {
                what: layout_file.display().to_string(),
                reason: format!("imageLayoutVersion is {version:?}, expected \"1.0.0\""),
            });
        }
        let index_path = fs.location().join("index.json");
        let index = fs
            .read_small("index.json", MAX_INDEX_JSON)?
            .ok_or_else(|| Error::BadArchive {
                path: fs.location().to_path_buf(),
                reason: "no index.json: this is not an OCI image layout".into(),
            })?;
        let Parsed::Index { manifests } = parse_manifest(
            crate::model::image::media::OCI_INDEX,
            &index,
            &index_path.display().to_string(),
        )?
        else {
            // Parsed as the index its media type names; an error, not a
            // panic, should that rule ever change.
            return Err(Error::BadJson {
                what: index_path.display().to_string(),
                reason: "not an image index".into(),
            });
        };
        let all: Vec<Root> = manifests
            .into_iter()
            .map(|d| Root {
                name: name_from_annotations(&d, &stem),
                descriptor: d,
                subject: None,
            })
            .collect();
        let roots = match &reference {
            None => all,
            Some(wanted) => select(name, all, wanted)?,
        };
        Ok(Layout {
            name: name.to_string(),
            fs,
            roots,
        })
    }
}

/// Matches a REF against the layout's ref names, as skopeo does, and also
/// against the normalised image name (so `nginx:1.25` finds
/// `docker.io/library/nginx:1.25`).
fn select(source: &str, all: Vec<Root>, wanted: &str) -> Result<Vec<Root>> {
    let wanted_ref = Reference::parse(wanted).ok();
    let matches = |r: &Root| {
        r.descriptor
            .annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
            == Some(wanted)
            || (wanted_ref.is_some() && r.name == wanted_ref)
    };
    let available: Vec<String> = all.iter().map(describe_root).collect();
    let chosen: Vec<Root> = all.into_iter().filter(matches).collect();
    if chosen.is_empty() {
        return Err(Error::ImageNotFound {
            source_name: source.to_string(),
            wanted: wanted.to_string(),
            available,
        });
    }
    Ok(chosen)
}

pub(crate) fn describe_root(r: &Root) -> String {
    match (&r.name, r.descriptor.annotations.get(ANNOTATION_REF_NAME)) {
        (Some(n), _) => n.to_string(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => r.descriptor.digest.to_string(),
    }
}

impl<F: Fs> Source for Layout<F> {
    fn name(&self) -> &str {
        &self.name
    }

    fn roots(&self) -> Result<Vec<Root>> {
        Ok(self.roots.clone())
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let digest = &blob.digest;
        match self.fs.open(&digest.layout_path())? {
            Some((r, _)) => Ok(r),
            None => Err(Error::missing_blob(&self.name, digest)),
        }
    }
}
