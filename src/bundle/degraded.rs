//! The degraded open `serve` asks for ([`super::check::OpenOptions`]):
//! damage nothing repairs (a missing, truncated or damaged volume, with no
//! parity or more loss than it covers) leaves the members it holds
//! unreadable instead of failing the open.
//!
//! The members are located from the signed manifest's names and sizes and
//! the seek table's frames, without reading a tar header ([`BundleFile`]'s
//! `from_sizes`, as the damage report does), so both must survive: the
//! signed manifest at the start of volume 1 and the seek table at the end
//! of the last. What is gone stays a gap in the [`BundleBytes`], so a read
//! that reaches it fails naming the volume; wrong bytes fail the digest
//! check every blob gets as it is read. The notices name each volume lost
//! and what it takes away ([`super::loss`]).
//!
//! Not for deciding that the damage is beyond repair ([`super::check`])
//! nor for trusting anything: the signature is still checked by the
//! typestate ([`super::open`]), and with a key given it is checked here
//! too before the payload is parsed.

use std::path::Path;

use super::index::BundleFile;
use super::loss::{read_manifest, taken_by};
use super::sign::TrustedKeys;
use super::store::{BundleBytes, Part};

/// Indexes a bundle whose `unreadable` ranges are lost, from its signed
/// manifest. `problems` are what was found on disk; those about a volume
/// a notice names anyway are left out. Gives the bundle and its notices,
/// or the bytes back when the manifest or the seek table cannot be read
/// (then the open fails as it always did).
pub(crate) fn open_degraded(
    path: &Path,
    bytes: BundleBytes,
    unreadable: &[(u64, u64)],
    problems: &[String],
    has_parity: bool,
    key: Option<&TrustedKeys>,
) -> Result<(BundleFile, Vec<String>), BundleBytes> {
    let lost_parts: Vec<LostPart> = bytes
        .parts()
        .iter()
        .filter_map(|part| LostPart::of(part, unreadable))
        .collect();
    let mut notices: Vec<String> = problems
        .iter()
        .filter(|problem| !lost_parts.iter().any(|p| problem.contains(&p.file)))
        .cloned()
        .collect();
    let (envelope_size, manifest, bytes) = read_manifest(path, bytes, key)?;
    let members = manifest.members(envelope_size);
    let file = BundleFile::from_sizes_or_back(path.to_path_buf(), bytes, &members)?;
    for part in lost_parts {
        let (lost, images) = taken_by(&file, &manifest, &part.ranges);
        let blobs = lost.iter().filter(|n| n.starts_with("blobs/")).count();
        notices.push(format!(
            "{} and {}: {}; the rest is served",
            part.state,
            if has_parity {
                "parity cannot rebuild it"
            } else {
                "there is no parity to rebuild it"
            },
            taken(blobs, lost.len(), &images)
        ));
    }
    Ok((file, notices))
}

/// A volume that lost bytes.
struct LostPart {
    /// What became of it, naming it.
    state: String,
    /// Its file, as problems found on disk name it.
    file: String,
    /// The ranges of it that are lost.
    ranges: Vec<(u64, u64)>,
}

impl LostPart {
    fn of(part: &Part, unreadable: &[(u64, u64)]) -> Option<LostPart> {
        let ranges: Vec<(u64, u64)> = unreadable
            .iter()
            .filter(|&&(s, e)| s < part.end() && part.start < e)
            .map(|&(s, e)| (s.max(part.start), e.min(part.end())))
            .collect();
        (!ranges.is_empty()).then(|| LostPart {
            state: state(part),
            file: part.path.display().to_string(),
            ranges,
        })
    }
}

/// What became of a volume: missing, truncated or damaged.
fn state(part: &Part) -> String {
    match part.file_len() {
        None => format!("{} is missing", part.describe()),
        Some(n) if n < part.len => format!(
            "{} is truncated (it has {n} of its {} bytes)",
            part.describe(),
            part.len
        ),
        Some(_) => format!("{} is damaged", part.describe()),
    }
}

/// "N blobs of images X, Y will fail", or what else the loss takes.
fn taken(blobs: usize, members: usize, images: &[String]) -> String {
    let what = match (blobs, members - blobs) {
        (_, 0) if blobs == 1 => "1 blob".to_string(),
        (_, 0) => format!("{blobs} blobs"),
        (0, _) => "the bundle's index".to_string(),
        _ => format!("{blobs} blob(s) and the bundle's index"),
    };
    match images.len() {
        _ if members == 0 => {
            "it holds no image content (only labels, padding or the seek table)".into()
        }
        0 => format!("{what} will fail"),
        1 => format!("{what} of image {} will fail", images[0]),
        _ => format!("{what} of images {} will fail", images.join(", ")),
    }
}
