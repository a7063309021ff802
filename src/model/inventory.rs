//! An inventory: what a place (a registry, or the bundles already sent)
//! holds, as the small versioned JSON document `airlock inventory` writes
//! and `pack --against`, `verify --with` and `diff` read (docs/inventory.md
//! is normative).
//!
//! Values only: parsing, checking and printing. Listing a registry or
//! opening bundles to build one is `ops::inventory`'s job; comparing two is
//! `ops::diff`'s.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Digest;
use crate::error::{Error, Result};

/// The `version` this build writes and the only one it reads.
pub const INVENTORY_VERSION: u64 = 1;

/// The `kind` of every inventory: tells the document from other JSON (a
/// `--json` report, a bundle manifest) before anything else is read.
pub const INVENTORY_KIND: &str = "airlock-inventory";

/// Inventory files are small (no manifest bytes in them); a larger file is
/// refused before it is parsed. 256 MiB holds some two million blobs.
pub const MAX_INVENTORY_SIZE: u64 = 256 << 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Inventory {
    pub version: u64,
    /// Always [`INVENTORY_KIND`].
    pub kind: String,
    /// RFC 3339, UTC: when the place was listed.
    pub created: String,
    /// What was listed.
    pub source: InventorySource,
    /// The images held, by name as `import` would give them, sorted.
    pub images: Vec<InventoryImage>,
    /// Every blob reachable from those images (manifests, indexes, configs,
    /// layers), each once, sorted by digest.
    pub blobs: Vec<InventoryBlob>,
}

/// The place an inventory describes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InventorySource {
    /// A registry's catalog, under `prefix` (empty for the whole registry).
    Registry { registry: String, prefix: String },
    /// The bundles named, in the order given.
    Bundles { bundles: Vec<InventoryBundle> },
}

/// One bundle an inventory was made from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryBundle {
    /// The bundle id (the digest of its signed manifest).
    pub id: Digest,
    /// The file (or first volume, or directory) as it was named.
    pub file: String,
    /// True for a delta bundle: its expected blobs are counted as held.
    #[serde(default)]
    pub delta: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct InventoryImage {
    /// `REPOSITORY:TAG` without a registry host; absent for an image held
    /// only by digest (a referrer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub digest: Digest,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryBlob {
    pub digest: Digest,
    pub size: u64,
}

impl Inventory {
    /// A new inventory: images sorted and each once, blobs sorted by digest
    /// and each once. Two sizes for one digest mean one of the sources lies.
    pub fn new(
        created: String,
        source: InventorySource,
        mut images: Vec<InventoryImage>,
        blobs: impl IntoIterator<Item = InventoryBlob>,
    ) -> Result<Inventory> {
        images.sort();
        images.dedup();
        let blobs = merge_blobs(blobs, "the inventory")?;
        if let Err(at) = total_size(&blobs) {
            return Err(Error::Failed(format!(
                "the inventory's blob sizes add up to more than {} bytes (at blob {at}): \
                 a manifest states a size no place holds",
                u64::MAX
            )));
        }
        Ok(Inventory {
            version: INVENTORY_VERSION,
            kind: INVENTORY_KIND.to_string(),
            created,
            source,
            images,
            blobs,
        })
    }

    /// Parses an inventory file's bytes. The `kind` and `version` are
    /// checked before anything else is interpreted; then the rules of
    /// docs/inventory.md (blobs sorted and each once, names `REPOSITORY:TAG`).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Inventory> {
        let bad = |problem: String| Error::BadInventory {
            path: path.to_path_buf(),
            problem,
        };
        if bytes.len() as u64 > MAX_INVENTORY_SIZE {
            return Err(bad(format!(
                "it has {} bytes, more than the {MAX_INVENTORY_SIZE} an inventory may have",
                bytes.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("it is not JSON: {e}")))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(INVENTORY_KIND) {
            return Err(bad(format!(
                "it is not an airlock inventory (no \"kind\": \"{INVENTORY_KIND}\")"
            )));
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(INVENTORY_VERSION) => {}
            Some(found) => {
                return Err(bad(format!(
                "version {found} is not supported (this airlock reads version {INVENTORY_VERSION})"
            )))
            }
            None => return Err(bad("it has no numeric \"version\"".into())),
        }
        let inv: Inventory =
            serde_json::from_value(value).map_err(|e| bad(format!("it is malformed: {e}")))?;
        inv.check().map_err(bad)?;
        Ok(inv)
    }

    /// The document as written: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("an inventory serialises");
        out.push(b'\n');
        out
    }

    /// Blob sizes by digest.
    pub fn blob_sizes(&self) -> BTreeMap<&Digest, u64> {
        self.blobs.iter().map(|b| (&b.digest, b.size)).collect()
    }

    /// What a reader refuses beyond the shape: unsorted or repeated blobs,
    /// names that are not `REPOSITORY:TAG` or that are listed twice.
    fn check(&self) -> std::result::Result<(), String> {
        if let Some(w) = self.blobs.windows(2).find(|w| w[0].digest >= w[1].digest) {
            return Err(format!(
                "the blobs are not sorted by digest, each once (at {})",
                w[1].digest
            ));
        }
        // Every consumer adds sizes up (diff, pack --against, the summary);
        // a total past u64 would panic or wrap there.
        if let Err(at) = total_size(&self.blobs) {
            return Err(format!(
                "the blob sizes add up to more than {} bytes (at {at})",
                u64::MAX
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for name in self.images.iter().filter_map(|i| i.name.as_deref()) {
            check_name(name).map_err(|why| format!("image name {name:?} {why}"))?;
            if !names.insert(name) {
                return Err(format!("image name {name:?} is listed twice"));
            }
        }
        Ok(())
    }
}

/// The sum of the blobs' sizes, or the digest at which it overflows.
fn total_size(blobs: &[InventoryBlob]) -> std::result::Result<u64, &Digest> {
    blobs
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.size).ok_or(&b.digest))
}

/// `REPOSITORY:TAG`, no digest. Whether the first component is a host
/// cannot be told (`import --keep-registry` makes `docker.io/library/x`
/// a repository path), so it is not judged.
fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    match name.rsplit_once(':') {
        Some((repo, tag))
            if !repo.is_empty() && !tag.is_empty() && !tag.contains('/') && !name.contains('@') =>
        {
            Ok(())
        }
        _ => Err("is not REPOSITORY:TAG"),
    }
}

/// Sorts blobs by digest, each once; two sizes for one digest are refused.
pub fn merge_blobs(
    blobs: impl IntoIterator<Item = InventoryBlob>,
    what: &str,
) -> Result<Vec<InventoryBlob>> {
    let mut by_digest: BTreeMap<Digest, u64> = BTreeMap::new();
    for b in blobs {
        match by_digest.get(&b.digest) {
            Some(&size) if size != b.size => {
                return Err(Error::SizeMismatch {
                    what: format!("{what}: blob {}", b.digest),
                    expected: size,
                    actual: b.size,
                })
            }
            Some(_) => {}
            None => {
                by_digest.insert(b.digest, b.size);
            }
        }
    }
    Ok(by_digest
        .into_iter()
        .map(|(digest, size)| InventoryBlob { digest, size })
        .collect())
}

/// True when `bytes` look like an inventory rather than a bundle: JSON
/// starts with `{`, a bundle with a zstd or skippable frame.
pub fn looks_like_inventory(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn sample() -> Inventory {
        Inventory::new(
            "2026-12-01T00:00:00Z".into(),
            InventorySource::Registry {
                registry: "reg.local:5000".into(),
                prefix: "mirror".into(),
            },
            vec![InventoryImage {
                name: Some("team/app:1".into()),
                digest: d('a'),
            }],
            vec![
                InventoryBlob {
                    digest: d('b'),
                    size: 2,
                },
                InventoryBlob {
                    digest: d('a'),
                    size: 1,
                },
                InventoryBlob {
                    digest: d('b'),
                    size: 2,
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_sorted_and_deduplicated() {
        let inv = sample();
        assert_eq!(inv.blobs.len(), 2);
        assert_eq!(inv.blobs[0].digest, d('a'));
        let back = Inventory::parse(Path::new("i.json"), &inv.to_bytes()).unwrap();
        assert_eq!(back, inv);
        // Members a later version 1 writer may add are ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&inv.to_bytes()).unwrap();
        v["note"] = "later".into();
        v["blobs"][0]["media_type"] = "x".into();
        let later = Inventory::parse(Path::new("i.json"), &serde_json::to_vec(&v).unwrap());
        assert_eq!(later.unwrap(), inv);
        assert!(looks_like_inventory(&inv.to_bytes()));
        assert!(!looks_like_inventory(&[0x28, 0xb5, 0x2f, 0xfd]));
    }

    #[test]
    fn refuses_two_sizes_for_one_blob() {
        let blobs = [(d('a'), 1), (d('a'), 2)].map(|(digest, size)| InventoryBlob { digest, size });
        assert!(merge_blobs(blobs, "x").is_err());
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        let p = Path::new("i.json");
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        let reparse = |v: &serde_json::Value| {
            Inventory::parse(p, &serde_json::to_vec(v).unwrap())
                .unwrap_err()
                .to_string()
        };
        let mut other = v.clone();
        other["version"] = 2.into();
        assert!(reparse(&other).contains("version 2 is not supported"));
        let mut other = v.clone();
        other["kind"] = "something".into();
        assert!(reparse(&other).contains("not an airlock inventory"));
        let mut other = v.clone();
        other["images"][0]["name"] = "team/app@sha256:0".into();
        assert!(reparse(&other).contains("is not REPOSITORY:TAG"));
        let mut other = v.clone();
        let twice = other["images"][0].clone();
        other["images"].as_array_mut().unwrap().push(twice);
        assert!(reparse(&other).contains("listed twice"));
        v["blobs"].as_array_mut().unwrap().reverse();
        assert!(reparse(&v).contains("not sorted"));
        assert!(Inventory::parse(p, b"{\"kind\":")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
    }
}
