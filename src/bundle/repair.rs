//! The mechanism of `airlock repair`: rebuild a bundle's damaged or missing
//! volumes from its parity in memory, and say which files on disk must be
//! written again, moved aside or removed.
//!
//! Parity is untrusted: see [`plan_repair`].
//!
//! Nothing here writes a file but [`RepairPlan::write_volume`] and the
//! parity files [`RepairPlan::parity_files`] hands back uncommitted; the
//! order of the writes and the report are `ops::repair`'s. Not for
//! repairing in memory while reading (that is [`super::check`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bundle::sign::TrustedKeys;

use super::assemble::{assemble, Assembled};
use super::check::{open_bytes, shard_ranges, OpenOptions};
use super::loss::{damaged_error, describe_loss};
use super::parity::guard::{self, Guarded, Rejected};
use super::parity::{self, Parity};
use super::store::BundleBytes;
use super::volume;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// A bundle rebuilt in memory from its parity, with what is wrong on disk.
pub struct RepairPlan {
    a: Assembled,
    /// None for a bundle without parity: only names can be fixed.
    parity: Option<Parity>,
    shards_rebuilt: usize,
}

/// One volume (or the one bundle file) to write again, and why.
#[derive(Clone, Debug)]
pub struct VolumeFix {
    /// Where it belongs.
    pub target: PathBuf,
    pub why: String,
    start: u64,
    len: u64,
}

/// Rebuilds the bundle at `path` in memory from its parity. Refuses, with
/// the damage report, when there is no usable parity or the damage is
/// beyond it; nothing on disk is touched.
///
/// Parity is untrusted ([`super::parity::guard`]): it may change only bytes
/// that fail their own checks, and the rebuilt bundle must check out (every
/// member against the signed manifest, and the signature when `key` is
/// given) before the plan is handed out; parity that contradicts bytes that
/// check out is refused by name.
pub fn plan_repair(path: &Path, key: Option<&TrustedKeys>) -> Result<RepairPlan> {
    let mut a = assemble(path)?;
    let name = a.name();
    let Some(parity) = a.parity.take() else {
        return plan_without_parity(a, key);
    };
    let damaged = parity.damaged_shards(&a.bytes);
    let intact = guard::self_check(&name, guard::fresh(&a.bytes, &[])?, key);
    if damaged.is_empty() && intact.whole {
        return Ok(RepairPlan {
            a,
            parity: Some(parity),
            shards_rebuilt: 0,
        });
    }
    if damaged.is_empty() {
        let why = intact.problem.or(intact.bad_signature).unwrap_or_default();
        return Err(Error::bad_bundle(
            &name,
            format!("it fails its checks ({why}), and its parity finds nothing to rebuild; nothing was changed on disk"),
        ));
    }
    let bad_parity = |why: String| bad_parity_error(&name, &parity, why);
    let patches = {
        match guard::guarded_rebuild(&parity, &a.bytes, &damaged, &intact) {
            Guarded::Patches(patches) => patches,
            Guarded::Contradicts(why) => return Err(bad_parity(why)),
            Guarded::Lost(lost) => {
                let ranges = shard_ranges(&parity, &lost);
                let problems = vec![format!(
                    "{} of {} damaged shard(s) are beyond what the parity covers (or the parity is damaged)",
                    lost.len(),
                    damaged.len()
                )];
                return Err(damaged_error(
                    &name,
                    problems,
                    describe_loss(&name, a.bytes, &ranges),
                    Some(
                        "copy the volumes named again from the source media; nothing was changed on disk"
                            .into(),
                    ),
                ));
            }
        }
    };
    // The proof, before any file is written: the result checks out alone.
    guard::check_rebuilt(&name, &a.bytes, &patches, &intact, key).map_err(|r| match r {
        Rejected::Fails(why) => bad_parity(format!("the bundle it rebuilds fails its checks: {why}")),
        Rejected::Signature(why) => Error::bad_bundle(
            &name,
            format!("rebuilt from parity, every digest checks out but the signature does not ({why}); nothing was changed on disk"),
        ),
    })?;
    for (at, piece) in patches {
        a.bytes.patch(at, piece);
    }
    Ok(RepairPlan {
        a,
        parity: Some(parity),
        shards_rebuilt: damaged.len(),
    })
}

/// Without parity nothing can be rebuilt, but a bundle that checks out may
/// still have volumes under the wrong names (their labels say where each
/// belongs) or foreign files in the way: those are fixed. Anything else is
/// refused, naming the parity that is not there.
fn plan_without_parity(a: Assembled, key: Option<&TrustedKeys>) -> Result<RepairPlan> {
    let name = a.name();
    let intact = guard::self_check(&name, guard::fresh(&a.bytes, &[])?, key);
    if intact.whole {
        return Ok(RepairPlan {
            a,
            parity: None,
            shards_rebuilt: 0,
        });
    }
    let mut why = format!(
        "no usable parity was found beside it ({}), so there is nothing to repair from",
        volume::parity_path(&a.located.target, None).display()
    );
    for n in a.problems.iter().chain(&a.notices) {
        why.push_str(&format!("; {n}"));
    }
    if let Some(p) = intact.problem.or(intact.bad_signature) {
        why.push_str(&format!("; {p}"));
    }
    Err(Error::bad_bundle(&name, why))
}

/// Parity that contradicts the bundle, or rebuilds one that fails: named,
/// and nothing written.
fn bad_parity_error(name: &Path, parity: &Parity, why: String) -> Error {
    Error::Damaged {
        path: name.to_path_buf(),
        problems: vec![format!(
            "parity {} is damaged or forged: {why}",
            guard::names(parity)
        )],
        lost: Vec::new(),
        hint: "nothing was changed on disk; do not trust this parity: copy it again from the source media, or verify the bundle without it".into(),
    }
}

impl RepairPlan {
    /// Whether the bundle has usable parity.
    pub fn has_parity(&self) -> bool {
        self.parity.is_some()
    }

    /// Data shards rebuilt from parity.
    pub fn shards_rebuilt(&self) -> usize {
        self.shards_rebuilt
    }

    /// Files squatting on a volume's name that belong to another bundle:
    /// to be kept, but moved out of the way.
    pub fn foreign_files(&self) -> Vec<PathBuf> {
        let ours = self.a.claimed_id.as_ref();
        self.a
            .misplaced
            .iter()
            .filter(|p| !volume::read_label(p).is_ok_and(|l| Some(&l.bundle_id) == ours))
            .cloned()
            .collect()
    }

    /// The volumes to write again: missing, damaged, of the wrong length,
    /// or found under another name.
    pub fn volume_fixes(&self) -> Vec<VolumeFix> {
        let split = self.a.located.is_split();
        let mut fixes = Vec::new();
        for part in self.a.bytes.parts() {
            let proper = if split {
                volume::volume_path(&self.a.located.target, part.number)
            } else {
                self.a.located.target.clone()
            };
            let why = if part.file_len().is_none() {
                "it was missing".to_string()
            } else if self.a.bytes.rebuilt_bytes(part) > 0 {
                "it was damaged".to_string()
            } else if part.file_len() != Some(part.len) {
                "it had the wrong length".to_string()
            } else if part.path != proper {
                format!("it was found as {}", part.path.display())
            } else {
                continue;
            };
            fixes.push(VolumeFix {
                target: proper,
                why,
                start: part.start,
                len: part.len,
            });
        }
        fixes
    }

    /// Writes one volume from the repaired bytes, atomically.
    pub fn write_volume(&self, fix: &VolumeFix) -> Result<()> {
        write_range(&self.a.bytes, fix.start, fix.len, &fix.target)
    }

    /// Stray copies of our volumes under numbers past the set, as they are
    /// on disk now (call after moving foreign files aside).
    pub fn stray_copies(&self) -> Vec<PathBuf> {
        let count = self.a.bytes.parts().len() as u32;
        let split = self.a.located.is_split();
        self.a
            .located
            .volumes
            .iter()
            .filter(|(&n, p)| split && n > count && p.exists())
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The parity files, encoded again whole, when any of them is damaged
    /// or missing; uncommitted, so the caller decides when they replace
    /// the old ones. `None` when the parity is intact.
    pub fn parity_files(&self) -> Result<Option<Vec<AtomicFile>>> {
        let Some(p) = &self.parity else {
            return Ok(None);
        };
        if p.damaged_recovery() == 0 && p.problems.is_empty() {
            return Ok(None);
        }
        let files = parity::encode(
            &self.a.bytes,
            &p.layout,
            &p.bundle_id,
            &p.volume_lengths,
            &self.a.located.target,
            p.split(),
        )?;
        Ok(Some(files))
    }
}

/// Checks a repaired bundle from scratch, without help from the parity.
pub fn check_repaired(path: &Path) -> Result<()> {
    open_bytes(
        path,
        OpenOptions {
            check: true,
            repair: false,
            degraded: false,
        },
    )?;
    Ok(())
}

/// Writes `len` bytes of the bundle from `start` to `target`, atomically.
fn write_range(bytes: &BundleBytes, start: u64, len: u64, target: &Path) -> Result<()> {
    let mut out = AtomicFile::create(target)?;
    let mut at = start;
    while at < start + len {
        let n = (start + len - at).min(4 << 20) as usize;
        let chunk = bytes
            .read(at, n)
            .map_err(|gap| Error::bad_bundle(target, bytes.describe_gap(gap)))?;
        out.write_all(&chunk)
            .map_err(|e| Error::io("write", target, e))?;
        at += n as u64;
    }
    out.commit()
}
