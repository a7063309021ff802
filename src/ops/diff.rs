//! `airlock diff A B`: what B holds that A does not, image by image, and
//! what a delta from A to B would carry.
//!
//! Both sides are [`Inventory`] values: an inventory file as read, a bundle
//! as `ops::inventory::of_bundles` describes it. Which a path is, is told
//! by its content ([`Input::classify`]), not its name. Not for opening or
//! trusting bundles (the CLI does), nor for printing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::inventory::{looks_like_inventory, Inventory};
use crate::model::Digest;

/// What a `diff` argument is.
pub enum Input {
    Inventory(Box<Inventory>),
    /// A bundle file, its first volume or the directory of its volumes.
    Bundle(PathBuf),
}

impl Input {
    /// An inventory is a JSON object; anything else (a zstd frame, a volume
    /// label, a directory of volumes) is taken for a bundle, whose opening
    /// then says what is wrong with it.
    pub fn classify(path: &Path) -> Result<Input> {
        if path == Path::new("-") {
            return Err(Error::Usage(
                "diff reads files, not standard input: name a bundle or an inventory file".into(),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::io("open", path, e))?;
        if meta.is_file() {
            use std::io::Read;
            let mut head = [0u8; 64];
            let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            let n = f.read(&mut head).map_err(|e| Error::io("read", path, e))?;
            if looks_like_inventory(&head[..n]) {
                return Ok(Input::Inventory(Box::new(super::inventory::read(path)?)));
            }
        }
        Ok(Input::Bundle(path.to_path_buf()))
    }
}

/// One side, named for the report.
pub struct Side {
    /// As the user named it.
    pub name: String,
    pub inventory: Inventory,
}

/// What `diff` found; `diff --json` prints it (docs/json.md).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Diff {
    pub a: String,
    pub b: String,
    /// In B, not in A: a name A lacks (or, unnamed, a digest A lacks).
    pub added: Vec<DiffImage>,
    /// In A, not in B.
    pub removed: Vec<DiffImage>,
    /// A name in both, at another digest in B: a tag that moved.
    pub changed: Vec<ChangedImage>,
    pub unchanged_count: usize,
    /// Blobs of B that A lacks, manifests and indexes included: what a
    /// delta from A to B carries, besides the manifests of B that A holds
    /// (a delta always carries every manifest).
    pub delta_blob_count: usize,
    pub delta_bytes: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DiffImage {
    /// Absent for an image held by digest only (a referrer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub digest: Digest,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ChangedImage {
    pub name: String,
    /// The digest in A.
    pub from: Digest,
    /// The digest in B.
    pub to: Digest,
}

impl Diff {
    /// True when A and B hold the same images.
    pub fn same_images(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two sides. Named images are matched by name; unnamed ones by
/// digest (they have nothing else).
pub fn diff(a: &Side, b: &Side) -> Diff {
    let (a_named, a_unnamed) = split(&a.inventory);
    let (b_named, b_unnamed) = split(&b.inventory);
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged_count = 0;
    for (name, to) in &b_named {
        match a_named.get(name) {
            None => added.push(DiffImage {
                name: Some(name.to_string()),
                digest: (*to).clone(),
            }),
            Some(from) if from != to => changed.push(ChangedImage {
                name: name.to_string(),
                from: (*from).clone(),
                to: (*to).clone(),
            }),
            Some(_) => unchanged_count += 1,
        }
    }
    for (name, digest) in &a_named {
        if !b_named.contains_key(name) {
            removed.push(DiffImage {
                name: Some(name.to_string()),
                digest: (*digest).clone(),
            });
        }
    }
    let unnamed = |d: &&Digest| DiffImage {
        name: None,
        digest: (*d).clone(),
    };
    added.extend(b_unnamed.difference(&a_unnamed).map(unnamed));
    removed.extend(a_unnamed.difference(&b_unnamed).map(unnamed));
    unchanged_count += b_unnamed.intersection(&a_unnamed).count();
    let held = a.inventory.blob_sizes();
    let missing: Vec<u64> = b
        .inventory
        .blobs
        .iter()
        .filter(|blob| !held.contains_key(&blob.digest))
        .map(|blob| blob.size)
        .collect();
    Diff {
        a: a.name.clone(),
        b: b.name.clone(),
        added,
        removed,
        changed,
        unchanged_count,
        delta_blob_count: missing.len(),
        delta_bytes: missing.iter().sum(),
    }
}

type Named<'a> = BTreeMap<&'a str, &'a Digest>;

fn split(inv: &Inventory) -> (Named<'_>, BTreeSet<&Digest>) {
    let mut named = BTreeMap::new();
    let mut unnamed = BTreeSet::new();
    for image in &inv.images {
        match &image.name {
            Some(n) => {
                named.insert(n.as_str(), &image.digest);
            }
            None => {
                unnamed.insert(&image.digest);
            }
        }
    }
    (named, unnamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory::{InventoryBlob, InventoryImage, InventorySource};

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn side(name: &str, images: &[(Option<&str>, char)], blobs: &[(char, u64)]) -> Side {
        let images = images
            .iter()
            .map(|(n, c)| InventoryImage {
                name: n.map(String::from),
                digest: d(*c),
            })
            .collect();
        let blobs = blobs.iter().map(|(c, size)| InventoryBlob {
            digest: d(*c),
            size: *size,
        });
        let source = InventorySource::Bundles { bundles: vec![] };
        Side {
            name: name.into(),
            inventory: Inventory::new("t".into(), source, images, blobs).unwrap(),
        }
    }

    #[test]
    fn added_removed_moved_and_bytes() {
        let a = side(
            "a",
            &[
                (Some("app:1"), '1'),
                (Some("app:old"), '2'),
                (Some("app:latest"), '1'),
                (None, '9'),
            ],
            &[('1', 10), ('2', 20), ('c', 100)],
        );
        let b = side(
            "b",
            &[
                (Some("app:1"), '1'),
                (Some("app:2"), '3'),
                (Some("app:latest"), '3'),
                (None, '8'),
            ],
            &[('1', 10), ('3', 30), ('c', 100), ('e', 1000)],
        );
        let diff = diff(&a, &b);
        let names =
            |v: &[DiffImage]| -> Vec<Option<String>> { v.iter().map(|i| i.name.clone()).collect() };
        assert_eq!(names(&diff.added), [Some("app:2".to_string()), None]);
        assert_eq!(diff.added[1].digest, d('8'));
        assert_eq!(names(&diff.removed), [Some("app:old".to_string()), None]);
        assert_eq!(
            diff.changed,
            [ChangedImage {
                name: "app:latest".into(),
                from: d('1'),
                to: d('3')
            }]
        );
        assert_eq!(diff.unchanged_count, 1);
        assert_eq!((diff.delta_blob_count, diff.delta_bytes), (2, 1030));
        assert!(!diff.same_images());
    }

    #[test]
    fn a_side_against_itself_is_the_same() {
        let a = side("a", &[(Some("app:1"), '1')], &[('1', 10)]);
        let diff = diff(&a, &a);
        assert!(diff.same_images());
        assert_eq!(
            (
                diff.unchanged_count,
                diff.delta_blob_count,
                diff.delta_bytes
            ),
            (1, 0, 0)
        );
    }
}
