//! The merged view of every bundle `serve` was given: repositories, tags,
//! manifests, referrers, and where each blob lives.
//!
//! A blob is looked up across all the bundles, so a delta's expected blob
//! is served from the base that carries it. Manifests (small, and read
//! once at start, digest-checked) are held in memory; blobs stay in the
//! bundles and are streamed through a digest check (`blob.rs`).
//! Names are the ones `import` would give ([`Target`]); where two bundles
//! tag the same name, a delta wins over the bundles it was packed against
//! whatever the order given, and otherwise the one given later wins.
//!
//! Not for HTTP (`routes.rs`, `http.rs`) nor for opening or trusting a
//! bundle (the caller hands in trusted ones).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::bundle::sign::TrustedKeys;
use crate::bundle::{volume, Bundle, Trusted};
use crate::error::{Error, Result};
use crate::model::image::{media, Descriptor, Node, Parsed, MAX_MANIFEST_SIZE};
use crate::model::{Digest, Reference};
use crate::registry::Target;

/// A manifest or index, byte for byte, with its own media type.
pub struct Manifest {
    pub media_type: String,
    pub raw: Arc<[u8]>,
}

/// One repository as a client sees it.
#[derive(Default)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    pub manifests: HashSet<Digest>,
    pub blobs: HashSet<Digest>,
    /// Referrer descriptors (artifactType, annotations) by subject.
    pub referrers: HashMap<Digest, Vec<Descriptor>>,
}

/// One bundle given to `serve`.
pub(super) struct Slot {
    pub(super) path: PathBuf,
    pub(super) bundle: RwLock<Arc<Bundle<Trusted>>>,
    /// Parity files exist beside it: damage found while reading triggers
    /// one full check and an in-memory repair.
    pub(super) has_parity: bool,
    /// Set once a repair was tried: whether a repaired bundle replaced it.
    pub(super) repaired: Mutex<Option<bool>>,
    /// Volume byte ranges (start, end, name) for naming damage.
    pub(super) volumes: Vec<(u64, u64, String)>,
}

pub struct View {
    pub(super) slots: Vec<Slot>,
    pub(super) keys: Option<TrustedKeys>,
    /// Every bundle that holds a blob, in the order given, with its size.
    pub(super) blobs: HashMap<Digest, Vec<(usize, u64)>>,
    manifests: HashMap<Digest, Manifest>,
    repos: BTreeMap<String, Repo>,
    /// What building the view found (missing blobs, images skipped).
    pub warnings: Vec<String>,
}

/// How the names are made: `import`'s `--prefix`, `--map`, `--keep-registry`.
pub struct Naming {
    pub prefix: Option<String>,
    pub maps: Vec<String>,
    pub keep_registry: bool,
}

impl Naming {
    pub fn target(&self) -> Result<Target> {
        // The host is a placeholder: serve answers for whatever host it is
        // reached by; only the repository paths matter.
        Target::parse(
            "serve.invalid",
            self.prefix.as_deref(),
            &self.maps,
            self.keep_registry,
        )
    }
}

impl View {
    /// Builds the view: reads and checks every image's manifests, and
    /// indexes every blob of every bundle.
    pub fn build(
        bundles: Vec<(PathBuf, Bundle<Trusted>)>,
        keys: Option<TrustedKeys>,
        naming: &Naming,
    ) -> Result<View> {
        let target = naming.target()?;
        let mut view = View {
            slots: Vec::new(),
            keys,
            blobs: HashMap::new(),
            manifests: HashMap::new(),
            repos: BTreeMap::new(),
            warnings: Vec::new(),
        };
        for (i, (path, bundle)) in bundles.into_iter().enumerate() {
            let m = bundle.manifest();
            for b in &m.blobs {
                view.blobs
                    .entry(b.digest.clone())
                    .or_default()
                    .push((i, b.size));
            }
            let has_parity = volume::locate(&path)
                .map(|l| !l.parity.is_empty())
                .unwrap_or(false);
            view.slots.push(Slot {
                volumes: volume_ranges(&path),
                path,
                bundle: RwLock::new(Arc::new(bundle)),
                has_parity,
                repaired: Mutex::new(None),
            });
        }
        // Named images by digest, for placing unnamed referrers (as import).
        let mut named: HashMap<Digest, Reference> = HashMap::new();
        let mut images = Vec::new();
        for i in tag_order(&view.given_bases()) {
            let bundle = view.slots[i].bundle.read().expect("not poisoned").clone();
            for record in &bundle.manifest().images {
                let name = record.name.as_deref().map(Reference::parse).transpose()?;
                if let Some(n) = &name {
                    named.insert(record.digest.clone(), n.clone());
                }
                let root = Descriptor::new(
                    record.media_type.clone(),
                    record.digest.clone(),
                    record.size,
                );
                images.push((name, root, record.subject.clone()));
            }
        }
        target.refuse_shared_tags(
            images
                .iter()
                .filter_map(|(name, root, _)| Some((name.as_ref()?, &root.digest))),
        )?;
        for (name, root, subject) in images {
            let repo = match (&name, &subject) {
                (Some(n), _) => target.repository(n),
                (None, Some(s)) => named
                    .get(s)
                    .map(|n| target.repository(n))
                    .unwrap_or_else(|| target.untagged()),
                (None, None) => target.untagged(),
            };
            let label = name
                .as_ref()
                .map_or_else(|| root.digest.to_string(), |n| n.to_string());
            if let Err(e) = view.add_image(&repo, &root, 0, &label) {
                view.warnings
                    .push(format!("image {label} is not served: {e}"));
                continue;
            }
            if let Some(tag) = name.as_ref().and_then(|n| n.tag.clone()) {
                let r = view.repos.entry(repo).or_default();
                r.tags.insert(tag, root.digest.clone());
            }
        }
        Ok(view)
    }

    /// For each bundle, the bundles given that it is a delta against.
    fn given_bases(&self) -> Vec<Vec<usize>> {
        let bundles: Vec<_> = self
            .slots
            .iter()
            .map(|s| s.bundle.read().expect("not poisoned").clone())
            .collect();
        bundles
            .iter()
            .map(|b| {
                let bases = b.manifest().delta.as_ref().map_or(&[][..], |d| &d.bases);
                (0..bundles.len())
                    .filter(|&j| bases.iter().any(|r| r.digest == *bundles[j].id()))
                    .collect()
            })
            .collect()
    }

    /// Walks one manifest or index into `repo`.
    fn add_image(&mut self, repo: &str, d: &Descriptor, depth: usize, label: &str) -> Result<()> {
        if depth > crate::plan::MAX_DEPTH {
            return Err(Error::Unsupported {
                what: label.to_string(),
                reason: "indexes nest too deeply".into(),
            });
        }
        // The media type goes out as `Content-Type`: a line break in it
        // would let a bundle write any header.
        if !d
            .media_type
            .bytes()
            .all(|c| c == b' ' || c.is_ascii_graphic())
        {
            return Err(Error::Unsupported {
                what: format!("{} of {label}", d.digest),
                reason: format!(
                    "its media type {:?} is not one an HTTP header can carry",
                    d.media_type
                ),
            });
        }
        let raw = match self.manifests.get(&d.digest) {
            Some(m) => m.raw.clone(),
            None => {
                let raw: Arc<[u8]> = self.read_small(&d.digest, MAX_MANIFEST_SIZE, label)?.into();
                self.manifests.insert(
                    d.digest.clone(),
                    Manifest {
                        media_type: d.media_type.clone(),
                        raw: raw.clone(),
                    },
                );
                raw
            }
        };
        let node = Node::parse(d.clone(), raw.clone(), label)?;
        let r = self.repos.entry(repo.to_string()).or_default();
        r.manifests.insert(d.digest.clone());
        if let Some((subject, referrer)) = referrer_of(d, &raw) {
            let list = r.referrers.entry(subject).or_default();
            if !list.iter().any(|x| x.digest == referrer.digest) {
                list.push(referrer);
            }
        }
        match &node.parsed {
            Parsed::Manifest { .. } => {
                for child in node.children() {
                    if !self.blobs.contains_key(&child.digest) {
                        self.warnings.push(format!(
                            "blob {} of {label} is in none of the bundles given (a delta's base missing?); it answers 404",
                            child.digest
                        ));
                    }
                    r.blobs.insert(child.digest.clone());
                }
            }
            Parsed::Index { manifests } => {
                for child in manifests.clone() {
                    if media::is_index(&child.media_type) || media::is_manifest(&child.media_type) {
                        self.add_image(repo, &child, depth + 1, label)?;
                    } else {
                        self.repos
                            .entry(repo.to_string())
                            .or_default()
                            .blobs
                            .insert(child.digest.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// A small blob, read whole and checked against its digest.
    fn read_small(&self, digest: &Digest, limit: u64, label: &str) -> Result<Vec<u8>> {
        let &(slot, size) = self
            .blobs
            .get(digest)
            .and_then(|v| v.first())
            .ok_or_else(|| Error::missing_blob(label, digest))?;
        if size > limit {
            return Err(Error::Unsupported {
                what: format!("{digest} of {label}"),
                reason: format!("it has {size} bytes, more than the {limit} a manifest may"),
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        self.read_checked(slot, digest, size, &mut |chunk| {
            out.extend_from_slice(chunk);
            true
        })
        .map_err(Error::Failed)?;
        Ok(out)
    }

    pub fn repos(&self) -> &BTreeMap<String, Repo> {
        &self.repos
    }

    pub fn manifest(&self, digest: &Digest) -> Option<&Manifest> {
        self.manifests.get(digest)
    }

    /// Size of a blob, and the first bundle that holds it.
    pub fn blob(&self, digest: &Digest) -> Option<(usize, u64)> {
        self.blobs.get(digest).and_then(|v| v.first()).copied()
    }

    pub fn bundle_count(&self) -> usize {
        self.slots.len()
    }

    /// Images (tags) served, for the start-up line.
    pub fn tag_count(&self) -> usize {
        self.repos.values().map(|r| r.tags.len()).sum()
    }
}

/// The order the bundles' tags are taken in (the last one taken wins):
/// as given, except that a delta comes after every bundle given that it
/// was packed against, since its tags are newer whatever the order on the
/// command line. A cycle (only crafted bundles make one) falls back to
/// the order given.
fn tag_order(bases: &[Vec<usize>]) -> Vec<usize> {
    let n = bases.len();
    let mut taken = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = |i: usize| !taken[i] && bases[i].iter().all(|&b| taken[b] || b == i);
        let next = (0..n)
            .find(|&i| ready(i))
            .or_else(|| (0..n).find(|&i| !taken[i]))
            .expect("a bundle is left");
        taken[next] = true;
        order.push(next);
    }
    order
}

/// For a manifest with a `subject`: the subject and the descriptor the
/// referrers API lists (artifactType, else the config's media type, and
/// the manifest's annotations).
fn referrer_of(d: &Descriptor, raw: &[u8]) -> Option<(Digest, Descriptor)> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let subject: Digest = v.get("subject")?.get("digest")?.as_str()?.parse().ok()?;
    let mut out = Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size);
    out.artifact_type = v
        .get("artifactType")
        .and_then(|a| a.as_str())
        .or_else(|| v.get("config")?.get("mediaType")?.as_str())
        .map(String::from);
    if let Some(a) = v.get("annotations").and_then(|a| a.as_object()) {
        out.annotations = a
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
    }
    Some((subject, out))
}

/// Byte ranges of a split bundle's volumes, from their files' sizes (one
/// range for an unsplit bundle); a missing volume ends the list.
fn volume_ranges(path: &Path) -> Vec<(u64, u64, String)> {
    let Ok(located) = volume::locate(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = 0;
    for (number, file) in &located.volumes {
        let Ok(meta) = std::fs::metadata(file) else {
            out.push((
                at,
                u64::MAX,
                format!("volume {number} ({})", file.display()),
            ));
            break;
        };
        out.push((
            at,
            at + meta.len(),
            format!("volume {number} ({})", file.display()),
        ));
        at += meta.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::tag_order;

    #[test]
    fn a_delta_is_taken_after_its_bases_and_the_rest_as_given() {
        assert_eq!(tag_order(&[vec![], vec![0]]), [0, 1]);
        // delta first, then its base: the delta is taken last.
        assert_eq!(tag_order(&[vec![1], vec![]]), [1, 0]);
        // a chain given backwards, and an unrelated bundle keeping its place.
        assert_eq!(tag_order(&[vec![1], vec![2], vec![]]), [2, 1, 0]);
        assert_eq!(tag_order(&[vec![], vec![0], vec![]]), [0, 1, 2]);
        assert_eq!(tag_order(&[vec![1], vec![0]]), [0, 1]);
    }
}
