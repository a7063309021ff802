//! `airlock inventory`: what a registry (under a prefix) or a set of
//! bundles holds, as an [`Inventory`] (docs/inventory.md).
//!
//! A registry is listed through its catalog and tag lists, then each tag
//! is walked by the one [`Plan`] over a [`RegistrySource`]: manifests and
//! indexes only, never a config or a layer (their sizes come from the
//! manifests). Bundles are read from their signed manifests, which the
//! caller has trusted already. Not for opening bundles or deciding whom to
//! trust (the CLI does), nor for printing.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::atomic::AtomicFile;
use crate::bundle::format::BundleManifest;
use crate::error::{Error, Result};
use crate::model::inventory::{
    Inventory, InventoryBlob, InventoryBundle, InventoryImage, InventorySource,
};
use crate::model::{Digest, Reference};
use crate::plan::Plan;
use crate::registry::cache::BlobCache;
use crate::registry::{Registries, RegistryContext, RegistryOptions, RegistrySource};
use crate::source::Source;

/// `docker://REGISTRY[/PREFIX]`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPlace {
    pub host: String,
    /// Whole path components, without slashes at either end; empty for
    /// the whole registry.
    pub prefix: String,
}

impl RegistryPlace {
    pub fn parse(spec: &str) -> Result<RegistryPlace> {
        let rest = spec.strip_prefix("docker://").unwrap_or(spec);
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        let probe = if prefix.is_empty() { "x" } else { &prefix };
        match Reference::parse(&format!("{host}/{probe}")) {
            Ok(r) if !host.is_empty() && r.registry == host => Ok(RegistryPlace {
                host: host.to_string(),
                prefix,
            }),
            _ => Err(Error::Usage(format!(
                "{spec:?} is not docker://REGISTRY[/PREFIX] (e.g. docker://registry.local:5000/mirror)"
            ))),
        }
    }

    /// The name an image of `repository` gets: the path under the prefix
    /// (as `import --to REGISTRY/PREFIX` would have been given it), or
    /// `None` when the repository is not under the prefix. A repository
    /// whose path is the prefix itself keeps its whole path.
    pub fn name_under(&self, repository: &str) -> Option<String> {
        if self.prefix.is_empty() || repository == self.prefix {
            return Some(repository.to_string());
        }
        repository
            .strip_prefix(&self.prefix)?
            .strip_prefix('/')
            .map(String::from)
    }
}

pub struct RegistryRequest {
    pub place: RegistryPlace,
    pub registry: RegistryOptions,
    /// RFC 3339, UTC.
    pub created: String,
}

/// Lists every repository under the prefix, every tag of each, and every
/// blob those tags reach. Any failure fails the whole inventory: one that
/// left out a repository would claim the registry lacks what it holds.
pub fn of_registry(req: RegistryRequest) -> Result<Inventory> {
    let RegistryRequest {
        place,
        mut registry,
        created,
    } = req;
    registry.scope_login([place.host.as_str()])?;
    let jobs = registry.jobs.max(1);
    // The plan's source needs a cache; nothing is downloaded into it (only
    // manifests are read, and those are kept in memory).
    let scratch = tempfile::Builder::new()
        .prefix("airlock-inventory")
        .tempdir()
        .map_err(|e| Error::io("create a temporary directory in", std::env::temp_dir(), e))?;
    let ctx = RegistryContext {
        registries: Arc::new(Registries::new(registry)),
        cache: Arc::new(BlobCache::open(scratch.path())?),
        referrers: false,
    };
    let client = ctx.registries.client(&place.host)?;
    let repositories: Vec<String> = catalog(&client)?
        .into_iter()
        .filter(|r| place.name_under(r).is_some())
        .collect();
    if repositories.is_empty() {
        // Not an error (a new mirror holds nothing yet), but an inventory
        // that says "nothing" makes the next delta whole: say why.
        log::warn!(
            "registry {} lists no repository{}; the inventory is empty",
            place.host,
            match place.prefix.is_empty() {
                true => String::new(),
                false => format!(" under {}", place.prefix),
            }
        );
    }
    let tag_lists = on_pool(&repositories, jobs, |repo| {
        client
            .paginate(
                &format!("/v2/{repo}/tags/list"),
                &format!("repository:{repo}:pull"),
                "tags",
            )
            .map_err(Error::from)
    });
    let mut problems = Vec::new();
    let mut work = Vec::new();
    for (repo, tags) in repositories.iter().zip(tag_lists) {
        match tags {
            Ok(tags) => work.extend(tags.into_iter().map(|t| (repo.clone(), t))),
            Err(e) => problems.push(e),
        }
    }
    Error::many(problems)?;
    let seen = Mutex::new(HashSet::new());
    let walked = on_pool(&work, jobs, |(repo, tag)| {
        walk_tag(&place, &ctx, &seen, repo, tag)
    });
    let mut images = Vec::new();
    let mut blobs = Vec::new();
    let mut problems = Vec::new();
    for ((repo, _), w) in work.iter().zip(walked) {
        match w {
            Ok((image, b)) => {
                images.push((*repo == place.prefix, image));
                blobs.extend(b);
            }
            Err(e) => problems.push(e),
        }
    }
    Error::many(problems)?;
    // The repository at the prefix itself keeps its whole path, which one
    // under the prefix may be named too (`mirror:1` for both `mirror` and
    // `mirror/mirror` under `mirror`). A name is listed once: the one
    // under the prefix, which `import --to REGISTRY/PREFIX` made. The
    // other's blobs stay listed (the registry holds them).
    let under: HashSet<String> = images
        .iter()
        .filter(|(at_prefix, _)| !at_prefix)
        .filter_map(|(_, i)| i.name.clone())
        .collect();
    let images = images
        .into_iter()
        .filter(|(at_prefix, i)| !at_prefix || i.name.as_ref().is_none_or(|n| !under.contains(n)))
        .map(|(_, i)| i)
        .collect();
    let source = InventorySource::Registry {
        registry: place.host.clone(),
        prefix: place.prefix.clone(),
    };
    Inventory::new(created, source, images, blobs)
}

/// The registry's whole catalog. No `n` is sent: a registry refuses an
/// `n` above its own page limit (distribution: `PAGINATION_NUMBER_INVALID`
/// when `catalog.maxentries` is lower), and without one it sends pages of
/// its own size, each with a `Link` to the next.
fn catalog(client: &crate::registry::Client) -> Result<Vec<String>> {
    Ok(client.paginate("/v2/_catalog", "registry:catalog:*", "repositories")?)
}

/// One tag: its manifest digest and every blob it reaches, read by the
/// plan (manifests and indexes fetched, checked against their digests).
/// A root already in `walked` (another tag of the same image) is not
/// walked again: its blobs are listed once already.
fn walk_tag(
    place: &RegistryPlace,
    ctx: &RegistryContext,
    walked: &Mutex<HashSet<Digest>>,
    repo: &str,
    tag: &str,
) -> Result<(InventoryImage, Vec<InventoryBlob>)> {
    let reference = Reference::parse(&format!("{}/{repo}:{tag}", place.host))?;
    let source = RegistrySource::image(&format!("docker://{reference}"), &reference, ctx)?;
    let name = place.name_under(repo).map(|path| format!("{path}:{tag}"));
    let root = match source.roots()?.first() {
        Some(r) => r.descriptor.digest.clone(),
        None => return Err(Error::Failed(format!("{reference}: no manifest was read"))),
    };
    if walked.lock().expect("not poisoned").contains(&root) {
        return Ok((InventoryImage { name, digest: root }, Vec::new()));
    }
    let mut plan = Plan::default();
    plan.add_source(0, &source, &[])?;
    let blobs = plan
        .blobs
        .iter()
        .map(|b| InventoryBlob {
            digest: b.descriptor.digest.clone(),
            size: b.descriptor.size,
        })
        .collect();
    walked.lock().expect("not poisoned").insert(root.clone());
    Ok((InventoryImage { name, digest: root }, blobs))
}

/// Runs `f` over `items` on `jobs` threads; the results keep the items'
/// order.
fn on_pool<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let next = Mutex::new(items.iter().enumerate());
    let results: Mutex<Vec<Option<Result<R>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(items.len()).max(1) {
            scope.spawn(|| loop {
                let Some((i, item)) = next.lock().expect("not poisoned").next() else {
                    break;
                };
                let r = f(item);
                results.lock().expect("not poisoned")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// A bundle the caller opened and trusted (its signature checked, or
/// accepted unsigned on request).
pub struct TrustedBundle<'a> {
    /// As the user named it.
    pub file: String,
    pub id: Digest,
    pub manifest: &'a BundleManifest,
}

/// What `bundles` carried: every image, named as `import` names it by
/// default (the source registry's host dropped; a name in several
/// bundles at its digest in the last), and every blob; a delta bundle's
/// expected blobs too (the far side holds them once it imported the
/// delta).
pub fn of_bundles(bundles: &[TrustedBundle], created: String) -> Result<Inventory> {
    // A name carried by several bundles ends at its digest in the last
    // one: the tag the far side has once it imported them in this order.
    let mut named: BTreeMap<String, Digest> = BTreeMap::new();
    let mut unnamed = Vec::new();
    let mut blobs = Vec::new();
    let mut listed = Vec::new();
    for b in bundles {
        for record in &b.manifest.images {
            match record
                .name
                .as_deref()
                .map(import_name)
                .transpose()?
                .flatten()
            {
                Some(name) => {
                    named.insert(name, record.digest.clone());
                }
                None => unnamed.push(record.digest.clone()),
            }
        }
        blobs.extend(b.manifest.blobs.iter().map(|r| InventoryBlob {
            digest: r.digest.clone(),
            size: r.size,
        }));
        if let Some(delta) = &b.manifest.delta {
            blobs.extend(delta.expected.iter().map(|e| InventoryBlob {
                digest: e.digest.clone(),
                size: e.size,
            }));
        }
        listed.push(InventoryBundle {
            id: b.id.clone(),
            file: b.file.clone(),
            delta: b.manifest.delta.is_some(),
        });
    }
    let images = named
        .into_iter()
        .map(|(name, digest)| InventoryImage {
            name: Some(name),
            digest,
        })
        .chain(
            unnamed
                .into_iter()
                .map(|digest| InventoryImage { name: None, digest }),
        )
        .collect();
    let source = InventorySource::Bundles { bundles: listed };
    Inventory::new(created, source, images, blobs)
}

/// `REPOSITORY:TAG` as `import` pushes a bundle's image by default; `None`
/// for an image with no tag (pushed by digest only).
fn import_name(stored: &str) -> Result<Option<String>> {
    let r = Reference::parse(stored)?;
    Ok(r.tag.map(|t| format!("{}:{t}", r.repository)))
}

/// Where `-o` goes: standard output, or a file replaced only with `force`
/// (checked before any work, so a refusal costs nothing).
pub fn check_output(output: &Path, force: bool) -> Result<()> {
    if output == Path::new("-") {
        return Ok(());
    }
    super::stdio::check_output_file(output, force, ("-o FILE", "-o -"))
}

/// Writes the inventory to `output` atomically: a reader never sees half
/// of one. `-` is the caller's to print.
pub fn write(inventory: &Inventory, output: &Path) -> Result<()> {
    AtomicFile::write(output, &inventory.to_bytes())
}

/// Reads an inventory file, bounded in size.
pub fn read(path: &Path) -> Result<Inventory> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut bytes = Vec::new();
    file.take(crate::model::inventory::MAX_INVENTORY_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    Inventory::parse(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_and_names_under_a_prefix() {
        let p = RegistryPlace::parse("docker://reg.local:5000/mirror/").unwrap();
        assert_eq!(p.host, "reg.local:5000");
        assert_eq!(p.prefix, "mirror");
        assert_eq!(p.name_under("mirror/team/app").as_deref(), Some("team/app"));
        assert_eq!(p.name_under("mirror").as_deref(), Some("mirror"));
        assert_eq!(p.name_under("mirrored/app"), None);
        assert_eq!(p.name_under("other/app"), None);
        let whole = RegistryPlace::parse("docker://reg.local").unwrap();
        assert_eq!(whole.name_under("a/b").as_deref(), Some("a/b"));
        assert!(RegistryPlace::parse("docker://").is_err());
        assert!(RegistryPlace::parse("docker://reg/UPPER").is_err());
    }

    #[test]
    fn import_names_drop_the_host() {
        assert_eq!(
            import_name("reg.local:5000/team/app:1").unwrap().as_deref(),
            Some("team/app:1")
        );
        assert_eq!(
            import_name("docker.io/library/nginx:1.25")
                .unwrap()
                .as_deref(),
            Some("library/nginx:1.25")
        );
        let by_digest = format!("reg.local/app@sha256:{}", "a".repeat(64));
        assert_eq!(import_name(&by_digest).unwrap(), None);
    }

    #[test]
    fn a_delta_bundle_counts_its_expected_blobs_as_held() {
        use crate::bundle::format::{
            BaseKind, BaseRecord, BlobRecord, Delta, ExpectedBlob, ImageRecord,
        };
        let d = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let blob = |c: char, size: u64| BlobRecord {
            digest: d(c),
            size,
            media_type: String::new(),
        };
        let image = |name: Option<&str>, c: char| ImageRecord {
            name: name.map(String::from),
            source: "docker://reg.example/app:2".into(),
            media_type: crate::model::image::media::OCI_MANIFEST.into(),
            digest: d(c),
            size: 1,
            source_digest: None,
            subject: None,
        };
        let manifest = BundleManifest {
            format_version: crate::bundle::format::DELTA_FORMAT_VERSION,
            tool: "airlock test".into(),
            created: "2026-12-01T00:00:00Z".into(),
            index: blob('0', 9),
            images: vec![image(Some("reg.example/app:2"), '1'), image(None, '2')],
            blobs: vec![blob('1', 1), blob('2', 1), blob('3', 5)],
            delta: Some(Delta {
                bases: vec![BaseRecord {
                    kind: BaseKind::Bundle,
                    digest: d('5'),
                    name: "week1.airlock".into(),
                }],
                expected: vec![ExpectedBlob {
                    digest: d('4'),
                    size: 1000,
                    media_type: String::new(),
                    base: 0,
                }],
            }),
        };
        let listed = [TrustedBundle {
            file: "delta.airlock".into(),
            id: d('6'),
            manifest: &manifest,
        }];
        let inv = of_bundles(&listed, "2026-12-02T00:00:00Z".into()).unwrap();
        let names: Vec<Option<&str>> = inv.images.iter().map(|i| i.name.as_deref()).collect();
        assert_eq!(names, [None, Some("app:2")]);
        let blobs: Vec<(Digest, u64)> = inv
            .blobs
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect();
        // Carried and expected, sorted; the index.json member is no blob.
        assert_eq!(
            blobs,
            [(d('1'), 1), (d('2'), 1), (d('3'), 5), (d('4'), 1000)]
        );
        match &inv.source {
            InventorySource::Bundles { bundles } => {
                assert!(bundles[0].delta);
                assert_eq!(bundles[0].id, d('6'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_pool_keeps_the_order() {
        let items: Vec<u32> = (0..50).collect();
        let out = on_pool(&items, 4, |i| Ok(i * 2));
        let out: Vec<u32> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(on_pool(&Vec::<u32>::new(), 4, |i| Ok(*i)).is_empty());
    }
}
