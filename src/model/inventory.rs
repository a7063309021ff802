//! An inventory: what a place (a registry, or the bundles already sent)
//! holds, as the small versioned JSON document `airlock inventory` writes
//! and `pack --against`, `verify --with` and `diff` read (docs/inventory.md).
//!
//! Values only: parsing and printing. Listing a registry or opening bundles
//! to build one is `ops::inventory`'s job.

use serde::{Deserialize, Serialize};

use super::Digest;

/// The `version` this build writes and the only one it reads.
pub const INVENTORY_VERSION: u64 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Inventory {
    pub version: u64,
    /// The images held, by name as `import` would give them.
    pub images: Vec<InventoryImage>,
    /// Every blob reachable from those images (manifests, indexes, configs,
    /// layers), each once.
    pub blobs: Vec<InventoryBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
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
