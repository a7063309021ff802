//! Finding a bundle's files and placing them: one file, or volumes placed by
//! their labels (not their file names) into one [`BundleBytes`] range, with
//! the parity found beside them.
//!
//! Reads only labels, lengths and (for a lost length) the seek table of the
//! last volume. Not for checking content (checksums, shards: that is
//! [`super::check`]) nor for reading members ([`super::index`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::loss::damaged_error;
use super::parity::Parity;
use super::seek::seek_table_at_end;
use super::store::{BundleBytes, Part};
use super::volume::{self, locate, Label, Located};
use crate::error::{Error, Result};
use crate::model::Digest;

/// One volume slot of a set, as found on disk.
struct Slot {
    path: PathBuf,
    label: Option<Label>,
}

/// Everything known about a bundle on disk before its content is read.
pub(crate) struct Assembled {
    pub located: Located,
    pub parity: Option<Parity>,
    pub bytes: BundleBytes,
    pub claimed_id: Option<Digest>,
    /// Per-volume problems found without reading content.
    pub problems: Vec<String>,
    pub notices: Vec<String>,
    /// Files in the way of a volume's proper name (foreign or misnamed).
    pub misplaced: Vec<PathBuf>,
}

impl Assembled {
    pub fn name(&self) -> PathBuf {
        if self.located.is_split() {
            volume::volume_path(&self.located.target, 1)
        } else {
            self.located.target.clone()
        }
    }
}

/// What placing a set's volumes found, beside the parts themselves.
#[derive(Default)]
struct Findings {
    problems: Vec<String>,
    notices: Vec<String>,
    misplaced: Vec<PathBuf>,
}

/// Finds the files and places them, reading only labels and headers.
pub(crate) fn assemble(path: &Path) -> Result<Assembled> {
    let located = locate(path)?;
    let mut found = Findings::default();
    let parity = match Parity::load(&located.parity) {
        Ok(p) => p,
        Err(why) => {
            found.notices.extend(
                why.into_iter()
                    .map(|w| format!("{w}; the parity cannot be used")),
            );
            None
        }
    };
    if let Some(p) = &parity {
        found.notices.extend(p.problems.iter().cloned());
    }
    let (parts, claimed_id) = if located.is_split() {
        let (parts, id) = place_volumes(&located, parity.as_ref(), &mut found)?;
        (parts, Some(id))
    } else {
        let part = place_single(&located.target, parity.as_ref(), &mut found.problems)?;
        (vec![part], parity.as_ref().map(|p| p.bundle_id.clone()))
    };
    if let (Some(p), Some(id)) = (&parity, &claimed_id) {
        if p.bundle_id != *id {
            return Err(Error::bad_bundle(
                path,
                format!(
                    "the parity files belong to bundle {}, the volumes to {}",
                    p.bundle_id.short(),
                    id.short()
                ),
            ));
        }
    }
    Ok(Assembled {
        located,
        parity,
        bytes: BundleBytes::new(parts),
        claimed_id,
        problems: found.problems,
        notices: found.notices,
        misplaced: found.misplaced,
    })
}

/// A one-file bundle; with parity, its length is known and checked.
fn place_single(
    target: &Path,
    parity: Option<&Parity>,
    problems: &mut Vec<String>,
) -> Result<Part> {
    let expected = parity.map(|p| p.layout.data_len);
    let part = Part::open(target, 0, 0, expected)?;
    match part.file_len() {
        None if parity.is_none() => {
            return Err(Error::io(
                "open bundle",
                target,
                std::io::ErrorKind::NotFound.into(),
            ))
        }
        None => problems.push(format!("{} is missing", target.display())),
        Some(n) if n < part.len => problems.push(format!(
            "{} is truncated: it has {n} of its {} bytes",
            target.display(),
            part.len
        )),
        Some(n) if n > part.len => problems.push(format!(
            "{} has {} bytes more than the parity says it should",
            target.display(),
            n - part.len
        )),
        _ => {}
    }
    Ok(part)
}

/// A file without a readable label: its number by name, its path, why.
type Unlabeled = (u32, PathBuf, String);

type Labels<'a> = Vec<(u32, &'a PathBuf, std::result::Result<Label, String>)>;

/// Orders a set's volumes by their labels and finds what is missing.
fn place_volumes(
    located: &Located,
    parity: Option<&Parity>,
    found: &mut Findings,
) -> Result<(Vec<Part>, Digest)> {
    let first = volume::volume_path(&located.target, 1);
    let labels: Labels = located
        .volumes
        .iter()
        .map(|(&n, p)| (n, p, volume::read_label(p)))
        .collect();
    let id = owner(&first, &labels, parity)?;
    let (mut slots, unlabeled) = slot_labeled(&labels, &id, found);
    let count = match parity {
        Some(p) => p.volume_lengths.len() as u32,
        None => slots
            .values()
            .filter_map(|s| s.label.as_ref().map(|l| l.count))
            .max()
            .unwrap_or(0),
    };
    for (n, path, why) in unlabeled {
        if n >= 1 && n <= count && !slots.contains_key(&n) {
            found
                .problems
                .push(format!("volume {n} ({}): {why}", path.display()));
            slots.insert(n, Slot { path, label: None });
        } else {
            found.problems.push(format!("{}: {why}", path.display()));
        }
    }
    if let Some(extra) = slots.keys().find(|&&n| n > count || n == 0) {
        found.problems.push(format!(
            "a file claims to be volume {extra}, but the set has {count}"
        ));
    }
    let lengths = volume_lengths(&slots, count, parity);
    let parts = place_parts(located, &first, &slots, &lengths, &mut found.problems)?;
    Ok((parts, id))
}

/// Whose set this is: the parity's bundle, or else the most common label.
fn owner(first: &Path, labels: &Labels, parity: Option<&Parity>) -> Result<Digest> {
    if let Some(p) = parity {
        return Ok(p.bundle_id.clone());
    }
    let mut votes: BTreeMap<&Digest, usize> = BTreeMap::new();
    for (_, _, l) in labels {
        if let Ok(l) = l {
            *votes.entry(&l.bundle_id).or_default() += 1;
        }
    }
    votes
        .iter()
        .max_by_key(|(_, &v)| v)
        .map(|(d, _)| (*d).clone())
        .ok_or_else(|| Error::bad_bundle(first, "no volume of the set has a readable label"))
}

/// Slots the volumes whose labels name this bundle; returns them and the
/// files without a readable label (number by name, path, why).
fn slot_labeled(
    labels: &Labels,
    id: &Digest,
    found: &mut Findings,
) -> (BTreeMap<u32, Slot>, Vec<Unlabeled>) {
    let mut slots: BTreeMap<u32, Slot> = BTreeMap::new();
    let mut unlabeled = Vec::new();
    for (n, path, label) in labels {
        match label {
            Ok(l) if l.bundle_id != *id => {
                found.problems.push(format!(
                    "{} belongs to another bundle ({}, volume {} of {}), not to {}",
                    path.display(),
                    l.bundle_id.short(),
                    l.number,
                    l.count,
                    id.short()
                ));
                found.misplaced.push((*path).clone());
            }
            Ok(l) => {
                if let Some(other) = slots.get(&l.number) {
                    found.problems.push(format!(
                        "{} and {} both say they are volume {}",
                        other.path.display(),
                        path.display(),
                        l.number
                    ));
                    continue;
                }
                if l.number != *n {
                    found.notices.push(format!(
                        "{} holds volume {}: the files are named out of order",
                        path.display(),
                        l.number
                    ));
                    found.misplaced.push((*path).clone());
                }
                slots.insert(
                    l.number,
                    Slot {
                        path: (*path).clone(),
                        label: Some(l.clone()),
                    },
                );
            }
            Err(why) => unlabeled.push((*n, (*path).clone(), why.clone())),
        }
    }
    (slots, unlabeled)
}

/// Each volume's length: from the parity, its label, or the seek table.
fn volume_lengths(
    slots: &BTreeMap<u32, Slot>,
    count: u32,
    parity: Option<&Parity>,
) -> Vec<Option<u64>> {
    let mut lengths: Vec<Option<u64>> = (1..=count)
        .map(|n| match parity {
            Some(p) => p.volume_lengths.get(n as usize - 1).copied(),
            None => slots
                .get(&n)
                .and_then(|s| s.label.as_ref())
                .map(|l| l.length),
        })
        .collect();
    if lengths.iter().any(Option::is_none) {
        if let Some(from_table) = slots
            .get(&count)
            .and_then(|s| lengths_from_seek_table(&s.path, count))
        {
            for (l, t) in lengths.iter_mut().zip(from_table) {
                l.get_or_insert(t);
            }
        }
    }
    lengths
}

/// Lays the volumes end to end; a missing one becomes a gap of its length.
fn place_parts(
    located: &Located,
    first: &Path,
    slots: &BTreeMap<u32, Slot>,
    lengths: &[Option<u64>],
    problems: &mut Vec<String>,
) -> Result<Vec<Part>> {
    let count = lengths.len() as u32;
    let mut parts = Vec::new();
    let mut start = 0u64;
    for n in 1..=count {
        let proper = volume::volume_path(&located.target, n);
        let Some(len) = lengths[n as usize - 1] else {
            // Without its length nothing after it can be placed.
            for m in n..=count {
                if !slots.contains_key(&m) {
                    problems.push(format!(
                        "volume {m} of {count} ({}) is missing",
                        volume::volume_path(&located.target, m).display()
                    ));
                }
            }
            return Err(damaged_error(
                first,
                std::mem::take(problems),
                Vec::new(),
                None,
            ));
        };
        let part = match slots.get(&n) {
            Some(slot) => {
                let part = Part::open(&slot.path, n, start, Some(len))?;
                match part.file_len() {
                    Some(have) if have < len => problems.push(format!(
                        "volume {n} ({}) is truncated: it has {have} of its {len} bytes",
                        slot.path.display()
                    )),
                    Some(have) if have > len => problems.push(format!(
                        "volume {n} ({}) has {} bytes more than its label says",
                        slot.path.display(),
                        have - len
                    )),
                    _ => {}
                }
                part
            }
            None => {
                problems.push(format!(
                    "volume {n} of {count} ({}) is missing",
                    proper.display()
                ));
                Part::missing(&proper, n, start, len)
            }
        };
        start = part.end();
        parts.push(part);
    }
    Ok(parts)
}

/// Volume lengths recovered from the seek table in the last volume: each
/// label is an entry there, so the table says where every volume starts.
fn lengths_from_seek_table(last: &Path, count: u32) -> Option<Vec<u64>> {
    let part = Part::open(last, count, 0, None).ok()?;
    let bytes = BundleBytes::new(vec![part]);
    let (table, table_len) = seek_table_at_end(&bytes).ok()?;
    let mut starts = Vec::new();
    for i in 0..table.num_frames() {
        if table.frame_size_decomp(i).ok()? == 0 {
            starts.push(table.frame_start_comp(i).ok()?);
        }
    }
    let total = table.size_comp() + table_len;
    if starts.len() != count as usize {
        return None;
    }
    starts.push(total);
    Some(starts.windows(2).map(|w| w[1] - w[0]).collect())
}
