//! Delta bundles (spec §16): the bases a delta is packed against or
//! checked with, what a plan leaves out because the bases hold it, and
//! the source that fills a delta's gaps from its base bundles for export.
//!
//! A base is a bundle (file, volume or volume set, opened and trusted as
//! every command opens one) or an inventory JSON file, told apart by their
//! first bytes: a bundle starts with a zstd frame. Not for the format's own
//! rules on a delta's manifest (`bundle::format` and `bundle::verify`
//! enforce those for every reader) nor for printing.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::bundle::format::{BaseKind, BaseRecord, BundleManifest, Delta, ExpectedBlob};
use crate::bundle::sign::TrustedKeys;
use crate::bundle::{Bundle, BundleSource, OpenOptions, Opened, Trusted, Verified, VerifyReport};
use crate::error::{Error, Result};
use crate::model::image::{media, Descriptor};
use crate::model::inventory::{Inventory, MAX_INVENTORY_SIZE as MAX_INVENTORY};
use crate::model::Digest;
use crate::plan::{Plan, PlannedBlob};
use crate::progress::Progress;
use crate::source::{Root, Source};

/// Whom to trust for base bundles: the command's own `--pub` keys, or
/// nobody with `--allow-unsigned`.
#[derive(Default)]
pub struct BaseTrust {
    pub keys: Option<TrustedKeys>,
    pub allow_unsigned: bool,
}

/// What `pack --against` is given.
#[derive(Default)]
pub struct Against {
    pub bases: Vec<PathBuf>,
    pub trust: BaseTrust,
}

/// One blob the bases hold.
#[derive(Clone, Copy, Debug)]
struct Held {
    size: u64,
    /// The first base that holds it.
    base: usize,
}

/// The bases, opened: what each is, and every blob they hold.
pub struct Bases {
    pub records: Vec<BaseRecord>,
    held: HashMap<Digest, Held>,
    /// Base bundles kept for their bytes (`export --with`), by position;
    /// `None` for an inventory, or when only the digests were needed.
    bundles: Vec<Option<Bundle<Verified>>>,
}

impl Bases {
    /// Opens every base. A bundle's signature is checked against
    /// `trust`; with `keep` it is also verified as `verify` would and kept
    /// for its bytes. A base that is itself a delta contributes the blobs
    /// it carries and those it expects.
    pub fn open(paths: &[PathBuf], trust: &BaseTrust, keep: bool) -> Result<Bases> {
        let mut bases = Bases {
            records: Vec::new(),
            held: HashMap::new(),
            bundles: Vec::new(),
        };
        for path in paths {
            let position = bases.records.len();
            if is_bundle(path) {
                let bundle = open_bundle(path, trust, keep)?;
                let m = bundle.manifest();
                let blobs: Vec<(Digest, u64)> = m
                    .blobs
                    .iter()
                    .map(|b| (b.digest.clone(), b.size))
                    .chain(m.expected().iter().map(|e| (e.digest.clone(), e.size)))
                    .collect();
                bases.records.push(BaseRecord {
                    kind: BaseKind::Bundle,
                    digest: bundle.id().clone(),
                    name: path.display().to_string(),
                });
                bases.add(position, blobs)?;
                bases.bundles.push(match keep {
                    true => Some(bundle.verify(&Progress::hidden())?),
                    false => None,
                });
            } else {
                let (digest, blobs) = read_inventory(path)?;
                bases.records.push(BaseRecord {
                    kind: BaseKind::Inventory,
                    digest,
                    name: path.display().to_string(),
                });
                bases.add(position, blobs)?;
                bases.bundles.push(None);
            }
        }
        Ok(bases)
    }

    /// Records the blobs of base `position`; one digest with two sizes in
    /// two bases means one of them lies.
    fn add(&mut self, position: usize, blobs: Vec<(Digest, u64)>) -> Result<()> {
        for (digest, size) in blobs {
            match self.held.get(&digest) {
                Some(h) if h.size != size => {
                    return Err(Error::SizeMismatch {
                        what: format!(
                            "blob {digest}: base {} holds it, and so does base {}",
                            self.records[h.base].label(),
                            self.records[position].label()
                        ),
                        expected: h.size,
                        actual: size,
                    })
                }
                Some(_) => {}
                None => {
                    self.held.insert(
                        digest,
                        Held {
                            size,
                            base: position,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The base bundles opened for their bytes.
    pub fn bundles(&self) -> impl Iterator<Item = &Bundle<Verified>> {
        self.bundles.iter().flatten()
    }

    /// The labels of every base, for reports.
    pub fn labels(&self) -> Vec<String> {
        self.records.iter().map(BaseRecord::label).collect()
    }
}

/// A bundle starts with a zstd frame (a volume with its label, a
/// skippable frame); a directory or a missing `NAME` is a volume set.
/// Anything else is read as an inventory.
fn is_bundle(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return true;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return true;
    }
    let mut head = [0u8; 4];
    if f.read_exact(&mut head).is_err() {
        return false;
    }
    let magic = u32::from_le_bytes(head);
    magic == 0xFD2F_B528 || magic & 0xFFFF_FFF0 == 0x184D_2A50
}

/// Opens a base bundle and checks its signature as the command's own
/// bundle would be. With `whole` its bytes will be read, so every volume
/// is hashed first, as `verify` does; otherwise only its signed manifest
/// is used, and only the structure is read first, as `inspect` does
/// (unless that much fails).
fn open_bundle(path: &Path, trust: &BaseTrust, whole: bool) -> Result<Bundle<Trusted>> {
    if trust.keys.is_none() && !trust.allow_unsigned {
        return Err(Error::Usage(format!(
            "base bundle {} must be checked: pass --pub KEY (its signer's public key), or --allow-unsigned",
            path.display()
        )));
    }
    let open = |options: OpenOptions| match &trust.keys {
        Some(keys) => Bundle::<Opened>::open_for_key(path, options, keys),
        None => Bundle::<Opened>::open_with(path, options),
    };
    let quick = OpenOptions {
        check: false,
        repair: true,
        degraded: false,
    };
    let opened = match whole {
        true => open(OpenOptions::FULL)?,
        false => match open(quick) {
            Err(Error::BadBundle { .. }) => open(OpenOptions::FULL)?,
            other => other?,
        },
    };
    match &trust.keys {
        Some(keys) => opened.check_signature(keys),
        None => opened.without_signature_check(),
    }
}

/// An inventory's blobs and the digest of its bytes. A file that is not
/// JSON is named as neither format; one that is JSON is read by the
/// inventory's own parser, with every rule of docs/inventory.md.
fn read_inventory(path: &Path) -> Result<(Digest, Vec<(Digest, u64)>)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open base", path, e))?;
    let mut raw = Vec::new();
    f.take(MAX_INVENTORY + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io("read base", path, e))?;
    let refuse = |reason: String| {
        Error::Refused {
        what: path.display().to_string(),
        reason,
        hint: "give a bundle sent before (a file, a volume or the directory of its volumes) or an inventory written by `airlock inventory`".into(),
    }
    };
    if raw.len() as u64 > MAX_INVENTORY {
        return Err(refuse(format!(
            "it is not a bundle, and larger than the {MAX_INVENTORY} bytes an inventory may have"
        )));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&raw) {
        return Err(refuse(format!(
            "it is neither a bundle (no zstd frame at its start) nor an inventory ({e})"
        )));
    }
    let inventory = Inventory::parse(path, &raw)?;
    let blobs = inventory
        .blobs
        .into_iter()
        .map(|b| (b.digest, b.size))
        .collect();
    Ok((Digest::of(&raw), blobs))
}

fn is_manifest_blob(b: &PlannedBlob) -> bool {
    b.inline.is_some()
        || media::is_manifest(&b.descriptor.media_type)
        || media::is_index(&b.descriptor.media_type)
}

/// Takes out of `plan` every config and layer the bases hold, and returns
/// the delta that lists them. Manifests and indexes stay, so the delta
/// describes every image whole. A blob the bases hold at another size is
/// an error naming both.
pub fn leave_out(plan: &mut Plan, bases: &Bases) -> Result<Delta> {
    let mut problems = Vec::new();
    for b in plan.blobs.iter().filter(|b| !is_manifest_blob(b)) {
        if let Some(h) = bases.held.get(&b.descriptor.digest) {
            if h.size != b.descriptor.size {
                problems.push(Error::SizeMismatch {
                    what: format!(
                        "{}, as base {} lists it",
                        b.label(),
                        bases.records[h.base].label()
                    ),
                    expected: b.descriptor.size,
                    actual: h.size,
                });
            }
        }
    }
    Error::many(problems)?;
    let taken =
        plan.take_blobs(|b| !is_manifest_blob(b) && bases.held.contains_key(&b.descriptor.digest));
    let expected = taken
        .into_iter()
        .map(|b| ExpectedBlob {
            base: bases.held[&b.descriptor.digest].base,
            digest: b.descriptor.digest,
            size: b.descriptor.size,
            media_type: b.descriptor.media_type,
        })
        .collect();
    Ok(Delta {
        bases: bases.records.clone(),
        expected,
    })
}

/// Opens the `--against` bases and leaves out of `plan` what they hold;
/// `None` without bases (a whole bundle).
pub fn against(plan: &mut Plan, against: &Against) -> Result<Option<Delta>> {
    if against.bases.is_empty() {
        return Ok(None);
    }
    let bases = Bases::open(&against.bases, &against.trust, false)?;
    leave_out(plan, &bases).map(Some)
}

/// `verify DELTA --with BASE…`: every expected blob is held by some base,
/// at its size. Fails naming each missing blob, its size and the base the
/// delta said holds it; returns the labels of the bases given.
pub fn check_supplied(report: &VerifyReport, name: &str, bases: &Bases) -> Result<Vec<String>> {
    let Some(delta) = &report.delta else {
        return Err(Error::Usage(format!(
            "{name} is a whole bundle, not a delta: it has nothing for --with to supply"
        )));
    };
    let named = Delta {
        bases: delta.bases.clone(),
        expected: Vec::new(),
    };
    let mut problems = Vec::new();
    for e in &delta.expected {
        match bases.held.get(&e.digest) {
            Some(h) if h.size == e.size => {}
            Some(h) => problems.push(Error::SizeMismatch {
                what: format!(
                    "{name}: expected blob {} as base {} holds it",
                    e.digest,
                    bases.records[h.base].label()
                ),
                expected: e.size,
                actual: h.size,
            }),
            None => problems.push(Error::NotInDelta {
                source_name: name.to_string(),
                digest: e.digest.clone(),
                size: e.size,
                base: named.base_of(e),
                image: None,
            }),
        }
    }
    Error::many(problems)?;
    Ok(bases.labels())
}

/// A delta's content with its gaps filled from base bundles, for export:
/// a blob the delta carries comes from it, an expected one from the first
/// base bundle that carries it. Anything else is the delta's own error,
/// which names the base that should hold it.
pub struct WithBases<'a> {
    delta: BundleSource<'a>,
    carried: HashSet<&'a Digest>,
    bases: Vec<BundleSource<'a>>,
    carriers: HashMap<&'a Digest, usize>,
}

impl<'a> WithBases<'a> {
    pub fn new(delta: &'a Bundle<Verified>, bases: &'a Bases) -> Result<WithBases<'a>> {
        if let Some(r) = bases.records.iter().find(|r| r.kind == BaseKind::Inventory) {
            return Err(Error::Refused {
                what: r.name.clone(),
                reason: "an inventory lists blobs but holds none of their bytes".into(),
                hint: "give the base bundles themselves with --with (those the delta was packed against, or any that carry its expected blobs)".into(),
            });
        }
        let mut carriers = HashMap::new();
        let mut sources = Vec::new();
        for (i, b) in bases.bundles().enumerate() {
            for blob in &b.manifest().blobs {
                carriers.entry(&blob.digest).or_insert(i);
            }
            sources.push(b.source());
        }
        Ok(WithBases {
            delta: delta.source(),
            carried: delta.manifest().blobs.iter().map(|b| &b.digest).collect(),
            bases: sources,
            carriers,
        })
    }
}

impl Source for WithBases<'_> {
    fn name(&self) -> &str {
        self.delta.name()
    }

    fn roots(&self) -> Result<Vec<Root>> {
        self.delta.roots()
    }

    fn open_blob(&self, blob: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        if self.carried.contains(&blob.digest) {
            return self.delta.open_blob(blob);
        }
        match self.carriers.get(&blob.digest) {
            Some(&i) => self.bases[i].open_blob(blob),
            None => self.delta.open_blob(blob),
        }
    }
}

/// Every blob of `plan` that no bundle can supply, as the errors the
/// delta's source gives for them (naming the base that should hold each),
/// before anything is written.
pub fn unsupplied(plan: &Plan, delta: &BundleManifest, source: &dyn Source) -> Result<()> {
    let carried: HashSet<&Digest> = delta.blobs.iter().map(|b| &b.digest).collect();
    let problems: Vec<Error> = plan
        .blobs
        .iter()
        .filter(|b| b.inline.is_none() && !carried.contains(&b.descriptor.digest))
        .filter_map(|b| {
            source
                .open_blob(&b.descriptor)
                .err()
                .map(|e| e.needed_by(&b.needed_by))
        })
        .collect();
    Error::many(problems)
}
