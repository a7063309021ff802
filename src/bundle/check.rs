//! Checking a bundle's assembled bytes before anything is read from them:
//! each volume's checksum, or with parity every shard's hash, and the
//! rebuilding in memory of what the parity can repair.
//!
//! Parity is untrusted ([`super::parity::guard`]): it fills in only bytes
//! that fail their own checks, and a rebuilt bundle must check out before
//! it is used; parity that contradicts good bytes is named and set aside.
//!
//! Damage that remains is refused with the volumes it is in and what it
//! takes away ([`super::loss`]), unless the open is degraded (serve): then
//! the members are indexed from the signed manifest and the damage stays
//! unreadable ([`super::degraded`]). Not for writing anything to disk (that is
//! `airlock repair`, [`super::repair`] and `ops::repair`), nor for the
//! structure of what the bytes hold ([`super::index`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bundle::sign::TrustedKeys;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::assemble::{assemble, Assembled};
use super::degraded::open_degraded;
use super::format::LABEL_LEN;
use super::index::{BundleFile, Checksums};
use super::loss::{damaged_error, describe_loss};
use super::parity::guard::{self, Guarded, Rejected};
use super::parity::Parity;
use super::store::BundleBytes;
use super::volume::Label;
use crate::error::{Error, Result};
use crate::model::Digest;

/// How hard opening looks at the bytes before reading them.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Hash every volume (or every parity shard) first, so damage is found
    /// and named by volume before anything is read. `inspect` skips this.
    pub check: bool,
    /// Rebuild damage from parity in memory instead of failing.
    pub repair: bool,
    /// Damage beyond repair (a missing, truncated or damaged volume, with
    /// no parity or more loss than it covers) leaves the affected members
    /// unreadable instead of failing the open, as long as the signed
    /// manifest and the seek table can be read. Only `serve` asks for it.
    pub degraded: bool,
}

impl OpenOptions {
    pub const FULL: OpenOptions = OpenOptions {
        check: true,
        repair: true,
        degraded: false,
    };
}

/// A bundle's bytes, checked (and repaired in memory) as asked.
pub(crate) struct CheckedBytes {
    /// How to name the bundle in messages: the file, or the first volume.
    pub path: PathBuf,
    pub content: Content,
    pub notices: Vec<String>,
    pub claimed_id: Option<Digest>,
}

/// What opening hands on to indexing.
pub(crate) enum Content {
    /// Bytes to index, with what indexing still has to hash against the
    /// volume labels.
    Bytes(BundleBytes, Checksums),
    /// A degraded open: already indexed from the signed manifest's sizes,
    /// the damage left as gaps that fail the reads reaching them.
    Indexed(BundleFile),
}

/// Damage that neither the volumes nor the parity make good.
struct Unrepaired {
    a: Assembled,
    problems: Vec<String>,
    /// The ranges the error message describes the loss of.
    lost: Vec<(u64, u64)>,
    /// The ranges whose bytes are gone or wrong, as reads will meet them.
    unreadable: Vec<(u64, u64)>,
    hint: Option<String>,
}

impl Unrepaired {
    fn into_error(self, name: &Path) -> Error {
        let lost = describe_loss(name, self.a.bytes, &self.lost);
        damaged_error(name, self.problems, lost, self.hint)
    }
}

/// The outcome of checking: bytes fit to index, or damage left over.
type Checked = std::result::Result<(Assembled, Checksums), Box<Unrepaired>>;

/// Assembles, checks and (if asked) repairs a bundle's bytes.
pub(crate) fn open_bytes(path: &Path, options: OpenOptions) -> Result<CheckedBytes> {
    open_bytes_keyed(path, options, None)
}

/// [`open_bytes`] with the trusted key, when the user gave one: parity's
/// self-check then checks the signature before it parses the payload.
pub(crate) fn open_bytes_keyed(
    path: &Path,
    options: OpenOptions,
    key: Option<&TrustedKeys>,
) -> Result<CheckedBytes> {
    let mut a = assemble(path)?;
    let name = a.name();
    // Problems found on the way in make a full check worth it.
    let check = options.check || !a.problems.is_empty();
    let mut checksums = Checksums::Skip;
    if check {
        let parity = a.parity.take();
        let checked = match &parity {
            Some(parity) => check_with_parity(a, &name, parity, options.repair, key)?,
            None => check_checksums(a),
        };
        (a, checksums) = match checked {
            Ok(done) => done,
            Err(u) if options.degraded => return degraded(*u, &name, parity.is_some(), key),
            Err(u) => return Err(u.into_error(&name)),
        };
    }
    Ok(CheckedBytes {
        path: name,
        content: Content::Bytes(a.bytes, checksums),
        notices: a.notices,
        claimed_id: a.claimed_id,
    })
}

/// Damage beyond repair, for a degraded open: indexed from the signed
/// manifest if it and the seek table survive, refused as usual if not.
fn degraded(
    u: Unrepaired,
    name: &Path,
    has_parity: bool,
    key: Option<&TrustedKeys>,
) -> Result<CheckedBytes> {
    let Unrepaired {
        mut a,
        problems,
        lost,
        unreadable,
        hint,
    } = u;
    // What was found on disk, without the parity's tally: nothing is
    // rebuilt in a degraded open.
    let found = a.problems.clone();
    match open_degraded(name, a.bytes, &unreadable, &found, has_parity, key) {
        Ok((file, notices)) => {
            a.notices.extend(notices);
            Ok(CheckedBytes {
                path: name.to_path_buf(),
                content: Content::Indexed(file),
                notices: a.notices,
                claimed_id: a.claimed_id,
            })
        }
        Err(bytes) => {
            a.bytes = bytes;
            Err(Unrepaired {
                a,
                problems,
                lost,
                unreadable,
                hint,
            }
            .into_error(name))
        }
    }
}

/// Finds damaged shards by their hashes and rebuilds them if `repair`.
/// Parity is a hint, not a source of truth: bytes that check out on their
/// own are not its to change, and what it rebuilds must check out too.
/// Shards matching the parity's hashes say nothing of the labels, so the
/// volumes are left to indexing to hash.
fn check_with_parity(
    mut a: Assembled,
    name: &Path,
    parity: &Parity,
    repair: bool,
    key: Option<&TrustedKeys>,
) -> Result<Checked> {
    let damaged = parity.damaged_shards(&a.bytes);
    let bad_recovery = parity.damaged_recovery();
    if bad_recovery > 0 {
        a.notices.push(format!(
            "{bad_recovery} of {} recovery shards are damaged or missing; `airlock repair` rewrites them",
            parity.layout.recovery_total()
        ));
    }
    if damaged.is_empty() {
        a.notices
            .extend(a.problems.drain(..).map(|p| format!("{p} (harmless)")));
        return Ok(Ok((a, Checksums::Check)));
    }
    let intact = guard::self_check(name, guard::fresh(&a.bytes, &[])?, key);
    if intact.whole {
        a.notices.push(format!(
            "parity {} is damaged or forged and was not used: it calls {} data shard(s) damaged, but every member checks out against the bundle's manifest",
            guard::names(parity),
            damaged.len()
        ));
        a.notices
            .extend(a.problems.drain(..).map(|p| format!("{p} (harmless)")));
        return Ok(Ok((a, Checksums::Check)));
    }
    if !repair {
        return Err(repairable_error(a, name, parity, &damaged));
    }
    let unused = |why: String| {
        format!(
            "parity {} is damaged or forged and was not used: {why}",
            guard::names(parity)
        )
    };
    let patches = match guard::guarded_rebuild(parity, &a.bytes, &damaged, &intact) {
        Guarded::Lost(lost) => return Ok(Err(beyond_parity(a, parity, &damaged, &lost))),
        Guarded::Contradicts(why) => {
            a.notices.push(unused(why));
            return Ok(check_checksums(a));
        }
        Guarded::Patches(patches) => patches,
    };
    if let Err(Rejected::Fails(why) | Rejected::Signature(why)) =
        guard::check_rebuilt(name, &a.bytes, &patches, &intact, key)
    {
        a.notices.push(unused(format!(
            "the bundle it rebuilds fails its checks: {why}"
        )));
        return Ok(check_checksums(a));
    }
    for (at, piece) in patches {
        a.bytes.patch(at, piece);
    }
    // What was found on disk (a foreign volume in a slot, a truncated
    // one) stays named: the rebuild hides it from the reader, not the user.
    a.notices.append(&mut a.problems);
    for part in a.bytes.parts() {
        let rebuilt = a.bytes.rebuilt_bytes(part);
        if rebuilt > 0 {
            a.notices.push(format!(
                "repaired {} from parity: {rebuilt} bytes rebuilt in memory",
                part.describe()
            ));
        }
    }
    Ok(Ok((a, Checksums::Check)))
}

/// Damage the parity could repair, reported instead (`--no-repair`).
fn repairable_error(a: Assembled, name: &Path, parity: &Parity, damaged: &[u64]) -> Error {
    let by_part = shards_by_part(&a.bytes, parity, damaged);
    let mut problems = a.problems;
    problems.extend(
        by_part
            .iter()
            .filter(|(&part, _)| a.bytes.parts()[part].file_len().is_some())
            .map(|(&part, n)| {
                format!("{}: {n} damaged shard(s)", a.bytes.parts()[part].describe())
            }),
    );
    let ranges = shard_ranges(parity, damaged);
    let lost = describe_loss(name, a.bytes, &ranges);
    damaged_error(
        name,
        problems,
        lost,
        Some(
            "the parity can repair this: run `airlock repair`, or verify without --no-repair"
                .into(),
        ),
    )
}

/// Damage beyond what the parity rebuilds. Nothing is rebuilt, so every
/// damaged shard stays unreadable.
fn beyond_parity(a: Assembled, parity: &Parity, damaged: &[u64], lost: &[u64]) -> Box<Unrepaired> {
    let mut problems = a.problems.clone();
    problems.push(format!(
        "{} damaged shard(s) of {}; parity rebuilt {} but not {} (too much damage in their stripes, or damaged parity)",
        damaged.len(),
        parity.layout.originals,
        damaged.len() - lost.len(),
        lost.len()
    ));
    // A damaged shard that meets a gap is blamed on the gap (as in
    // `shards_by_part`): the bytes a neighbouring volume holds of it are
    // left to the digest checks, not called lost.
    let mut unreadable = gaps(&a.bytes);
    let meets_gap = |&(s, e): &(u64, u64)| unreadable.iter().any(|&(gs, ge)| gs < e && s < ge);
    let damaged_elsewhere: Vec<(u64, u64)> = shard_ranges(parity, damaged)
        .into_iter()
        .filter(|r| !meets_gap(r))
        .collect();
    unreadable.extend(damaged_elsewhere);
    Box::new(Unrepaired {
        lost: shard_ranges(parity, lost),
        unreadable,
        hint: Some(format!(
            "the damage is beyond what the parity covers ({} recovery shards per {} data shards); copy the volumes named again from the source media",
            parity.layout.recovery,
            parity.layout.width(0)
        )),
        a,
        problems,
    })
}

/// Without parity: each volume's own checksum names the damage. A set of
/// volume files is hashed here, one file bundle by indexing (its labels
/// are found in the seek table).
fn check_checksums(a: Assembled) -> Checked {
    let split = a.located.is_split();
    let damaged = checksum_failures(&a.bytes, split);
    let checksums = if split {
        Checksums::Checked
    } else {
        Checksums::Check
    };
    let mut problems = a.problems.clone();
    problems.extend(damaged.iter().map(|&i| {
        format!(
            "{} is damaged: its checksum does not match its label",
            a.bytes.parts()[i].describe()
        )
    }));
    if problems.is_empty() {
        return Ok((a, checksums));
    }
    let mut ranges: Vec<(u64, u64)> = damaged
        .iter()
        .map(|&i| {
            let p = &a.bytes.parts()[i];
            (p.start, p.end())
        })
        .collect();
    ranges.extend(gaps(&a.bytes));
    Err(Box::new(Unrepaired {
        a,
        problems,
        unreadable: ranges.clone(),
        lost: ranges,
        hint: None,
    }))
}

/// The ranges no file holds: missing volumes, and the ends of truncated ones.
fn gaps(bytes: &BundleBytes) -> Vec<(u64, u64)> {
    bytes
        .parts()
        .iter()
        .filter_map(|p| match p.file_len() {
            None => Some((p.start, p.end())),
            Some(n) if n < p.len => Some((p.start + n, p.end())),
            _ => None,
        })
        .collect()
}

/// Volumes whose bytes after the label do not match the label's checksum.
fn checksum_failures(bytes: &BundleBytes, split: bool) -> Vec<usize> {
    if !split {
        return Vec::new();
    }
    (0..bytes.parts().len())
        .into_par_iter()
        .filter(|&i| {
            let part = &bytes.parts()[i];
            let Ok(raw) = bytes.read(part.start, LABEL_LEN) else {
                return false; // missing or truncated: reported already
            };
            let Ok(label) = Label::decode(&raw) else {
                return false; // reported already
            };
            let mut hash = Sha256::new();
            let mut at = part.start + LABEL_LEN as u64;
            while at < part.end() {
                let n = (part.end() - at).min(4 << 20) as usize;
                match bytes.read(at, n) {
                    Ok(chunk) => hash.update(&chunk),
                    Err(_) => return false,
                }
                bytes.release(at, n);
                at += n as u64;
            }
            let sum: [u8; 32] = hash.finalize().into();
            sum != label.checksum
        })
        .collect()
}

/// How many damaged shards fall in each part, by part index. A shard that
/// straddles two volumes is blamed on the one missing bytes, if either is.
fn shards_by_part(bytes: &BundleBytes, parity: &Parity, shards: &[u64]) -> BTreeMap<usize, usize> {
    let mut out = BTreeMap::new();
    for &i in shards {
        let (start, len) = parity.layout.range(i);
        let end = start + len as u64;
        let parts: Vec<usize> = (bytes.part_at(start)..=bytes.part_at(end - 1)).collect();
        let short: Vec<usize> = parts
            .iter()
            .copied()
            .filter(|&p| !bytes.holds(p, start, end))
            .collect();
        for p in if short.is_empty() { parts } else { short } {
            *out.entry(p).or_default() += 1;
        }
    }
    out
}

pub(crate) fn shard_ranges(parity: &Parity, shards: &[u64]) -> Vec<(u64, u64)> {
    shards
        .iter()
        .map(|&i| {
            let (start, len) = parity.layout.range(i);
            (start, start + len as u64)
        })
        .collect()
}
