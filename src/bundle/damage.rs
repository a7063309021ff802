//! Finding a bundle's bytes, checking them, and repairing them from parity.
//!
//! Opening a bundle assembles its volumes by their labels (not their file
//! names), checks each volume's checksum or, with parity, every shard's
//! hash, and rebuilds what parity can. Damage that remains is reported by
//! volume, with the images and blobs it takes away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::format::*;
use super::parity::Parity;
use super::reader::{BundleFile, OpenOptions};
use super::sign::Envelope;
use super::store::{BundleBytes, Part};
use super::volume::{self, locate, Label, Located, LABEL_LEN};
use crate::error::{Error, Result};
use crate::model::image::{self, Descriptor};
use crate::model::Digest;

pub(crate) struct Opened {
    /// How to name the bundle in messages: the file, or the first volume.
    pub path: PathBuf,
    pub bytes: BundleBytes,
    pub notices: Vec<String>,
    pub claimed_id: Option<Digest>,
}

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

/// Finds the files and places them, reading only labels and headers.
pub(crate) fn assemble(path: &Path) -> Result<Assembled> {
    let located = locate(path)?;
    let mut notices = Vec::new();
    let mut problems = Vec::new();
    let parity = match Parity::load(&located.parity) {
        Ok(p) => p,
        Err(why) => {
            notices.extend(
                why.into_iter()
                    .map(|w| format!("{w}; the parity cannot be used")),
            );
            None
        }
    };
    if let Some(p) = &parity {
        notices.extend(p.problems.iter().cloned());
    }
    let mut misplaced = Vec::new();
    let (parts, claimed_id) = if located.is_split() {
        let (parts, id) = place_volumes(
            &located,
            parity.as_ref(),
            &mut problems,
            &mut notices,
            &mut misplaced,
        )?;
        (parts, Some(id))
    } else {
        let target = &located.target;
        let expected = parity.as_ref().map(|p| p.layout.data_len);
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
        problems,
        notices,
        misplaced,
    })
}

/// Orders a set's volumes by their labels and finds what is missing.
fn place_volumes(
    located: &Located,
    parity: Option<&Parity>,
    problems: &mut Vec<String>,
    notices: &mut Vec<String>,
    misplaced: &mut Vec<PathBuf>,
) -> Result<(Vec<Part>, Digest)> {
    let first = volume::volume_path(&located.target, 1);
    let labels: Vec<(u32, &PathBuf, std::result::Result<Label, String>)> = located
        .volumes
        .iter()
        .map(|(&n, p)| (n, p, volume::read_label(p)))
        .collect();
    // Whose set this is: the parity's bundle, or else the most common label.
    let id = match parity {
        Some(p) => p.bundle_id.clone(),
        None => {
            let mut votes: BTreeMap<&Digest, usize> = BTreeMap::new();
            for (_, _, l) in &labels {
                if let Ok(l) = l {
                    *votes.entry(&l.bundle_id).or_default() += 1;
                }
            }
            let Some(best) = votes
                .iter()
                .max_by_key(|(_, &v)| v)
                .map(|(d, _)| (*d).clone())
            else {
                return Err(Error::bad_bundle(
                    &first,
                    "no volume of the set has a readable label",
                ));
            };
            best
        }
    };
    let mut slots: BTreeMap<u32, Slot> = BTreeMap::new();
    let mut unlabeled = Vec::new();
    for (n, path, label) in &labels {
        match label {
            Ok(l) if l.bundle_id != id => {
                problems.push(format!(
                    "{} belongs to another bundle ({}, volume {} of {}), not to {}",
                    path.display(),
                    l.bundle_id.short(),
                    l.number,
                    l.count,
                    id.short()
                ));
                misplaced.push((*path).clone());
            }
            Ok(l) => {
                if let Some(other) = slots.get(&l.number) {
                    problems.push(format!(
                        "{} and {} both say they are volume {}",
                        other.path.display(),
                        path.display(),
                        l.number
                    ));
                    continue;
                }
                if l.number != *n {
                    notices.push(format!(
                        "{} holds volume {}: the files are named out of order",
                        path.display(),
                        l.number
                    ));
                    misplaced.push((*path).clone());
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
            problems.push(format!("volume {n} ({}): {why}", path.display()));
            slots.insert(n, Slot { path, label: None });
        } else {
            problems.push(format!("{}: {why}", path.display()));
        }
    }
    if let Some(extra) = slots.keys().find(|&&n| n > count || n == 0) {
        problems.push(format!(
            "a file claims to be volume {extra}, but the set has {count}"
        ));
    }
    // Each volume's length: from the parity, its label, or the seek table.
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
                &first,
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
    Ok((parts, id))
}

/// Volume lengths recovered from the seek table in the last volume: each
/// label is an entry there, so the table says where every volume starts.
fn lengths_from_seek_table(last: &Path, count: u32) -> Option<Vec<u64>> {
    let part = Part::open(last, count, 0, None).ok()?;
    let bytes = BundleBytes::new(vec![part]);
    let (table, table_len) = super::reader::seek_table_at_end(&bytes).ok()?;
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

/// Assembles, checks and (if asked) repairs a bundle's bytes.
pub(crate) fn open_bytes(path: &Path, options: OpenOptions) -> Result<Opened> {
    let mut a = assemble(path)?;
    let name = a.name();
    // Problems found on the way in make a full check worth it.
    let check = options.check || !a.problems.is_empty();
    if !check {
        return Ok(Opened {
            path: name,
            bytes: a.bytes,
            notices: a.notices,
            claimed_id: a.claimed_id,
        });
    }
    match a.parity.take() {
        Some(parity) => {
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
            } else {
                let by_part = shards_by_part(&a.bytes, &parity, &damaged);
                if !options.repair {
                    let mut problems = a.problems;
                    problems.extend(
                        by_part
                            .iter()
                            .filter(|(&part, _)| a.bytes.parts()[part].file_len().is_some())
                            .map(|(&part, n)| {
                                format!(
                                    "{}: {n} damaged shard(s)",
                                    a.bytes.parts()[part].describe()
                                )
                            }),
                    );
                    let ranges = shard_ranges(&parity, &damaged);
                    let lost = describe_loss(&name, a.bytes, &ranges);
                    return Err(damaged_error(
                        &name,
                        problems,
                        lost,
                        Some("the parity can repair this: run `airlock repair`, or verify without --no-repair".into()),
                    ));
                }
                let lost = parity.repair(&mut a.bytes, &damaged);
                if !lost.is_empty() {
                    let mut problems = a.problems;
                    problems.push(format!(
                        "{} damaged shard(s) of {}; parity rebuilt {} but not {} (too much damage in their stripes)",
                        damaged.len(),
                        parity.layout.originals,
                        damaged.len() - lost.len(),
                        lost.len()
                    ));
                    let ranges = shard_ranges(&parity, &lost);
                    let lost = describe_loss(&name, a.bytes, &ranges);
                    return Err(damaged_error(
                        &name,
                        problems,
                        lost,
                        Some(format!(
                            "the damage is beyond what the parity covers ({} recovery shards per {} data shards); copy the volumes named again from the source media",
                            parity.layout.recovery,
                            parity.layout.width(0)
                        )),
                    ));
                }
                for part in a.bytes.parts() {
                    let rebuilt = a.bytes.rebuilt_bytes(part);
                    if rebuilt > 0 {
                        a.notices.push(format!(
                            "repaired {} from parity: {rebuilt} bytes rebuilt in memory",
                            part.describe()
                        ));
                    }
                }
            }
        }
        None => {
            // No parity: each volume's own checksum names the damage.
            let damaged = checksum_failures(&a.bytes, a.located.is_split());
            let mut problems = a.problems;
            problems.extend(damaged.iter().map(|&i| {
                format!(
                    "{} is damaged: its checksum does not match its label",
                    a.bytes.parts()[i].describe()
                )
            }));
            if !problems.is_empty() {
                let mut ranges: Vec<(u64, u64)> = damaged
                    .iter()
                    .map(|&i| {
                        let p = &a.bytes.parts()[i];
                        (p.start, p.end())
                    })
                    .collect();
                for p in a.bytes.parts() {
                    match p.file_len() {
                        None => ranges.push((p.start, p.end())),
                        Some(n) if n < p.len => ranges.push((p.start + n, p.end())),
                        _ => {}
                    }
                }
                let lost = describe_loss(&name, a.bytes, &ranges);
                return Err(damaged_error(&name, problems, lost, None));
            }
        }
    }
    Ok(Opened {
        path: name,
        bytes: a.bytes,
        notices: a.notices,
        claimed_id: a.claimed_id,
    })
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

fn shard_ranges(parity: &Parity, shards: &[u64]) -> Vec<(u64, u64)> {
    shards
        .iter()
        .map(|&i| {
            let (start, len) = parity.layout.range(i);
            (start, start + len as u64)
        })
        .collect()
}

pub(crate) fn damaged_error(
    path: &Path,
    problems: Vec<String>,
    lost: Vec<String>,
    hint: Option<String>,
) -> Error {
    Error::Damaged {
        path: path.to_path_buf(),
        problems,
        lost,
        hint: hint.unwrap_or_else(|| {
            "copy the volumes named again from the source media; bundles packed with --parity can be repaired (`airlock repair`)".into()
        }),
    }
}

/// Says what the damaged byte ranges take away: images and blobs, found
/// through the signed manifest and the seek table, whichever survive.
fn describe_loss(path: &Path, bytes: BundleBytes, ranges: &[(u64, u64)]) -> Vec<String> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let hits = |(a, b): (u64, u64)| ranges.iter().any(|&(s, e)| s < b && a < e);
    let Some((envelope_size, manifest, bytes)) = read_manifest(path, bytes) else {
        return vec![
            "the signed manifest at the start of the first volume, or the seek table at the end of the last, is lost, so no content can be identified".into(),
        ];
    };
    let members = manifest.members(envelope_size);
    let Ok(file) = BundleFile::from_sizes(path.to_path_buf(), bytes, &members) else {
        return vec!["the seek table does not match the signed manifest; which content is lost cannot be told".into()];
    };
    let lost: BTreeSet<String> = file
        .members()
        .iter()
        .filter(|m| hits(file.member_range(m)))
        .map(|m| m.name.clone())
        .collect();
    if lost.is_empty() {
        return vec!["no image content: only bundle structure (labels, padding or the seek table) is damaged".into()];
    }
    // An image is lost when any blob it reaches is.
    let mut images = Vec::new();
    for record in &manifest.images {
        let root = Descriptor::new(
            record.media_type.clone(),
            record.digest.clone(),
            record.size,
        );
        if reaches_lost(&file, &root, &lost, 0) {
            images.push(
                record
                    .name
                    .clone()
                    .unwrap_or_else(|| record.digest.to_string()),
            );
        }
    }
    let mut out = Vec::new();
    if !images.is_empty() {
        out.push(format!("images: {}", images.join(", ")));
    }
    let blobs: Vec<&str> = lost
        .iter()
        .map(|n| n.strip_prefix("blobs/sha256/").unwrap_or(n))
        .collect();
    let shown: Vec<String> = blobs
        .iter()
        .take(8)
        .map(|h| format!("sha256:{}", &h[..h.len().min(12)]))
        .collect();
    out.push(format!(
        "blobs: {}{}",
        shown.join(", "),
        if blobs.len() > 8 {
            format!(" and {} more", blobs.len() - 8)
        } else {
            String::new()
        }
    ));
    out
}

/// The envelope's size and the bundle manifest, if the first member and
/// the seek table can be read; the bytes come back for further use.
fn read_manifest(path: &Path, bytes: BundleBytes) -> Option<(u64, BundleManifest, BundleBytes)> {
    let probe = BundleFile::from_sizes(path.to_path_buf(), bytes, &[]).ok()?;
    let size = probe.first_member_size();
    let bytes = probe.into_bytes();
    let size = size.ok()?;
    let file = BundleFile::from_sizes(
        path.to_path_buf(),
        bytes,
        &[(ENVELOPE_NAME.to_string(), size)],
    )
    .ok()?;
    let manifest = file
        .read_member(&file.members()[0], MAX_ENVELOPE)
        .ok()
        .and_then(|raw| serde_json::from_slice::<Envelope>(&raw).ok())
        .and_then(|e| e.payload_bytes().ok())
        .and_then(|payload| super::reader::parse_manifest(path, &payload).ok());
    let bytes = file.into_bytes();
    Some((size, manifest?, bytes))
}

fn reaches_lost(file: &BundleFile, d: &Descriptor, lost: &BTreeSet<String>, depth: usize) -> bool {
    let name = d.digest.layout_path();
    if lost.contains(&name) {
        return true;
    }
    if depth > 8
        || !(image::media::is_index(&d.media_type) || image::media::is_manifest(&d.media_type))
    {
        return false;
    }
    let Some(m) = file.member(&name) else {
        return false;
    };
    let Ok(raw) = file.read_member(m, image::MAX_MANIFEST_SIZE) else {
        return true;
    };
    let Ok(node) = image::Node::parse(d.clone(), raw.into(), &name) else {
        return true;
    };
    node.children()
        .into_iter()
        .any(|c| reaches_lost(file, c, lost, depth + 1))
}

/// What `airlock repair` did.
#[derive(Debug, serde::Serialize)]
pub struct RepairReport {
    /// Files written again, each with the reason.
    pub rewritten: Vec<String>,
    /// Files moved out of the way or removed.
    pub moved: Vec<String>,
    /// Data shards rebuilt from parity.
    pub shards_rebuilt: usize,
}

/// Rebuilds a bundle's damaged or missing volumes (and parity files) on
/// disk from its parity, then checks the result from scratch.
pub fn repair(path: &Path) -> Result<RepairReport> {
    let mut a = assemble(path)?;
    let name = a.name();
    let Some(parity) = a.parity.take() else {
        let mut why = format!(
            "no usable parity was found beside it ({}), so there is nothing to repair from",
            volume::parity_path(&a.located.target, None).display()
        );
        for n in &a.notices {
            why.push_str(&format!("; {n}"));
        }
        return Err(Error::bad_bundle(&name, why));
    };
    let damaged = parity.damaged_shards(&a.bytes);
    let lost = parity.repair(&mut a.bytes, &damaged);
    if !lost.is_empty() {
        let ranges = shard_ranges(&parity, &lost);
        let problems = vec![format!(
            "{} of {} damaged shard(s) are beyond what the parity covers",
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
    let mut report = RepairReport {
        rewritten: Vec::new(),
        moved: Vec::new(),
        shards_rebuilt: damaged.len(),
    };
    // Foreign files squat on volume names: keep them, out of the way.
    for p in &a.misplaced {
        let ours = volume::read_label(p).is_ok_and(|l| Some(&l.bundle_id) == a.claimed_id.as_ref());
        if !ours {
            let aside = PathBuf::from(format!("{}.foreign", p.display()));
            std::fs::rename(p, &aside).map_err(|e| Error::io("move aside", p, e))?;
            report.moved.push(format!(
                "{} → {} (another bundle's)",
                p.display(),
                aside.display()
            ));
        }
    }
    let split = a.located.is_split();
    for part in a.bytes.parts() {
        let proper = if split {
            volume::volume_path(&a.located.target, part.number)
        } else {
            a.located.target.clone()
        };
        let why = if part.file_len().is_none() {
            Some("it was missing".to_string())
        } else if a.bytes.rebuilt_bytes(part) > 0 {
            Some("it was damaged".to_string())
        } else if part.file_len() != Some(part.len) {
            Some("it had the wrong length".to_string())
        } else if part.path != proper {
            Some(format!("it was found as {}", part.path.display()))
        } else {
            None
        };
        let Some(why) = why else { continue };
        write_range(&a.bytes, part.start, part.len, &proper)?;
        report
            .rewritten
            .push(format!("{} ({why})", proper.display()));
    }
    // Stray copies of our volumes under numbers past the set.
    let count = a.bytes.parts().len() as u32;
    for (&n, p) in &a.located.volumes {
        if split && n > count && p.exists() {
            std::fs::remove_file(p).map_err(|e| Error::io("remove", p, e))?;
            report.moved.push(format!(
                "{} removed (a copy of another volume)",
                p.display()
            ));
        }
    }
    // Parity: written again whole when any of it is damaged or missing.
    if parity.damaged_recovery() > 0 || !parity.problems.is_empty() {
        let id = parity.bundle_id.clone();
        let files = super::parity::encode(
            &a.bytes,
            &parity.layout,
            &id,
            &parity.volume_lengths,
            &a.located.target,
            parity.split(),
        )?;
        for f in files {
            report
                .rewritten
                .push(format!("{} (parity rebuilt)", f.target().display()));
            f.commit()?;
        }
    }
    drop(a);
    // The proof: everything checks out without help from the parity.
    open_bytes(
        path,
        OpenOptions {
            check: true,
            repair: false,
        },
    )?;
    Ok(report)
}

/// Writes `len` bytes of the bundle from `start` to `target`, atomically.
fn write_range(bytes: &BundleBytes, start: u64, len: u64, target: &Path) -> Result<()> {
    use std::io::Write;
    let mut out = crate::atomic::AtomicFile::create(target)?;
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
