//! Parity is untrusted input: it is not signed, so it may only fill in
//! bytes that are missing or fail their own checks, and what it rebuilds
//! is checked like any other byte.
//!
//! [`self_check`] finds the bytes of a bundle that check out on their own:
//! each member whose content matches the manifest its envelope carries (and
//! the envelope too, when a key was given and its signature holds, or when
//! everything else does). [`guarded_rebuild`] then lets parity rebuild
//! only the rest, and calls the parity bad when its data contradicts bytes
//! that check out. Not for the Reed-Solomon arithmetic (`read.rs`) nor for
//! deciding what to do about a bad parity file (`check.rs`, `repair.rs`).

use std::collections::HashMap;
use std::path::Path;

use crate::bundle::sign::TrustedKeys;
use rayon::prelude::*;

use super::Parity;
use crate::bundle::format::{BundleManifest, ENVELOPE_NAME, INDEX_NAME, MAX_ENVELOPE};
use crate::bundle::format::{MAX_OCI_LAYOUT, OCI_LAYOUT_NAME};
use crate::bundle::index::BundleFile;
use crate::bundle::sign::decode_envelope;
use crate::bundle::store::{BundleBytes, Part};
use crate::error::Result;
use crate::integrity::VerifyingReader;
use crate::model::Digest;

/// Rebuilt pieces of a bundle: (offset, bytes).
pub(crate) type Patches = Vec<(u64, Vec<u8>)>;

/// What of a bundle checks out without help from parity.
#[derive(Debug, Default)]
pub(crate) struct Intact {
    /// Every member is the one the manifest names and checks out (and the
    /// signature, when a key was given): nothing is left to repair.
    pub whole: bool,
    /// Byte ranges, start..end, that check out; parity must not change them.
    ranges: Vec<(u64, u64)>,
    /// Digest of the envelope's payload, when the envelope decodes.
    pub payload_id: Option<Digest>,
    /// The first thing that failed, signature aside, for messages.
    pub problem: Option<String>,
    /// Why the signature failed, when a key was given and it did.
    pub bad_signature: Option<String>,
}

impl Intact {
    fn failed(problem: String) -> Intact {
        Intact {
            problem: Some(problem),
            ..Intact::default()
        }
    }

    /// Whether `start..end` lies wholly in bytes that check out.
    fn covers(&self, start: u64, end: u64) -> bool {
        self.ranges.iter().any(|&(s, e)| s <= start && end <= e)
    }
}

/// The bundle's bytes mapped again from its files, with `patches` applied:
/// a second view to check, so the caller keeps its own.
pub(crate) fn fresh(bytes: &BundleBytes, patches: &[(u64, Vec<u8>)]) -> Result<BundleBytes> {
    let parts = bytes
        .parts()
        .iter()
        .map(|p| Part::open(&p.path, p.number, p.start, Some(p.len)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = BundleBytes::new(parts);
    for (at, piece) in patches {
        out.patch(*at, piece.clone());
    }
    Ok(out)
}

/// Checks every member of `bytes` against the manifest its envelope
/// carries, in parallel, and the signature when `key` is given: first, so
/// a payload that fails it is never parsed (then nothing is intact).
/// Without a key (`--allow-unsigned`) the payload is parsed unchecked, as
/// the user asked.
pub(crate) fn self_check(path: &Path, bytes: BundleBytes, key: Option<&TrustedKeys>) -> Intact {
    let len = bytes.len();
    let file = match BundleFile::from_bytes(path.to_path_buf(), bytes) {
        Ok(f) => f,
        Err(e) => return Intact::failed(e.to_string()),
    };
    let Some(envelope) = file.members().first().filter(|m| m.name == ENVELOPE_NAME) else {
        return Intact::failed(format!("the first member is not {ENVELOPE_NAME}"));
    };
    let signed = match file
        .read_member(envelope, MAX_ENVELOPE)
        .map(|raw| decode_envelope(&raw))
    {
        Ok(Ok(s)) => s,
        Ok(Err(why)) => return Intact::failed(format!("{ENVELOPE_NAME}: {why}")),
        Err(e) => return Intact::failed(e.to_string()),
    };
    let payload_id = Some(Digest::of(signed.payload()));
    let signature = key.map(|k| signed.verify(k).map_err(|p| p.to_string()));
    // Spec §10: with a key, the signature comes before the parse. An
    // unsigned payload may be up to 64 MiB of hostile JSON; nothing of it
    // is trusted, so no range is protected and parity's result must pass
    // the signature itself ([`check_rebuilt`]).
    if let Some(Err(why)) = &signature {
        return Intact {
            payload_id,
            bad_signature: Some(why.clone()),
            ..Intact::default()
        };
    }
    let manifest = match BundleManifest::from_payload(path, signed.payload()) {
        Ok(m) => m,
        Err(e) => {
            return Intact {
                payload_id,
                ..Intact::failed(e.to_string())
            }
        }
    };
    let expected = manifest.members(envelope.size);
    let wanted: HashMap<&str, (Option<&Digest>, u64)> = expected
        .iter()
        .zip(
            [None, None, Some(&manifest.index.digest)]
                .into_iter()
                .chain(manifest.blobs.iter().map(|b| Some(&b.digest))),
        )
        .map(|((name, size), digest)| (name.as_str(), (digest, *size)))
        .collect();
    let checked: Vec<(usize, std::result::Result<(), String>)> = (1..file.members().len())
        .into_par_iter()
        .with_max_len(1)
        .map(|i| (i, check_member(&file, i, &wanted)))
        .collect();
    let mut out = Intact {
        payload_id,
        ..Intact::default()
    };
    for (i, result) in checked {
        match result {
            Ok(()) => out.ranges.push(file.member_range(&file.members()[i])),
            Err(why) => {
                out.problem.get_or_insert(why);
            }
        }
    }
    let in_order = file.members().len() == expected.len()
        && file
            .members()
            .iter()
            .zip(&expected)
            .all(|(m, (name, size))| &m.name == name && m.size == *size);
    if !in_order {
        out.problem
            .get_or_insert("the members are not the ones the manifest names".into());
    }
    out.whole = out.problem.is_none();
    if out.whole {
        out.ranges = vec![(0, len)];
    } else if matches!(signature, Some(Ok(()))) {
        out.ranges.push(file.member_range(envelope));
    }
    out
}

/// Member `i` against what the manifest says it holds.
fn check_member(
    file: &BundleFile,
    i: usize,
    wanted: &HashMap<&str, (Option<&Digest>, u64)>,
) -> std::result::Result<(), String> {
    let m = &file.members()[i];
    let Some(&(digest, size)) = wanted.get(m.name.as_str()) else {
        return Err(format!("member {} is not in the manifest", m.name));
    };
    if m.size != size {
        return Err(format!("member {} has the wrong size", m.name));
    }
    let reader = file.open_member(m).map_err(|e| e.to_string())?;
    match digest {
        Some(d) => {
            let mut v = VerifyingReader::new(reader, d.clone(), size, format!("member {}", m.name));
            std::io::copy(&mut v, &mut std::io::sink()).map_err(|e| e.to_string())?;
        }
        None if m.name == OCI_LAYOUT_NAME => {
            let raw = file
                .read_member(m, MAX_OCI_LAYOUT)
                .map_err(|e| e.to_string())?;
            if raw != crate::oci::OCI_LAYOUT {
                return Err(format!("member {OCI_LAYOUT_NAME} is not the expected one"));
            }
        }
        None => {
            debug_assert_ne!(m.name, INDEX_NAME);
            let mut r = reader;
            std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// What parity may do with a bundle's damaged shards.
pub(crate) enum Guarded {
    /// The rebuilt pieces; none changes a byte that checks out.
    Patches(Patches),
    /// Shards it could not rebuild (too much damage, or bad recovery data).
    Lost(Vec<u64>),
    /// The parity's data contradicts bytes that check out: it is damaged or
    /// forged, and must not be used.
    Contradicts(String),
}

/// Rebuilds the damaged shards, refusing any that would change bytes that
/// check out on their own.
pub(crate) fn guarded_rebuild(
    parity: &Parity,
    bytes: &BundleBytes,
    damaged: &[u64],
    intact: &Intact,
) -> Guarded {
    let layout = &parity.layout;
    let inside = damaged
        .iter()
        .filter(|&&i| {
            let (start, len) = layout.range(i);
            intact.covers(start, start + len as u64)
        })
        .count();
    if intact.whole || inside > 0 {
        return Guarded::Contradicts(format!(
            "it calls {} data shard(s) damaged whose bytes check out against the bundle's manifest",
            if intact.whole { damaged.len() } else { inside }
        ));
    }
    let (patches, lost) = parity.rebuild(bytes, damaged);
    if !lost.is_empty() {
        return Guarded::Lost(lost);
    }
    for (at, piece) in &patches {
        let end = at + piece.len() as u64;
        for &(s, e) in intact.ranges.iter().filter(|&&(s, e)| s < end && *at < e) {
            let (lo, hi) = (s.max(*at), e.min(end));
            let same = bytes
                .read(lo, (hi - lo) as usize)
                .is_ok_and(|old| old[..] == piece[(lo - at) as usize..(hi - at) as usize]);
            if !same {
                return Guarded::Contradicts(format!(
                    "the shard it rebuilds at byte {at} would change bytes {lo}..{hi}, which check out against the bundle's manifest"
                ));
            }
        }
    }
    Guarded::Patches(patches)
}

/// Why a rebuilt bundle is not accepted.
pub(crate) enum Rejected {
    /// It fails a check the parity is to blame for: structure, a digest,
    /// another signed manifest.
    Fails(String),
    /// Every digest checks out but the signature does not hold under the
    /// key given: the wrong key, or an envelope nobody can repair.
    Signature(String),
}

/// Checks a bundle rebuilt from parity as if nothing had helped: every
/// member against its manifest, the signature when `key` is given, and
/// the same signed manifest as before when the old envelope decoded.
pub(crate) fn check_rebuilt(
    path: &Path,
    bytes: &BundleBytes,
    patches: &[(u64, Vec<u8>)],
    before: &Intact,
    key: Option<&TrustedKeys>,
) -> std::result::Result<(), Rejected> {
    let view = fresh(bytes, patches).map_err(|e| Rejected::Fails(e.to_string()))?;
    let after = self_check(path, view, key);
    if let Some(why) = after.problem {
        return Err(Rejected::Fails(why));
    }
    if let (Some(b), Some(a)) = (&before.payload_id, &after.payload_id) {
        if a != b {
            return Err(Rejected::Fails(format!(
                "it would replace the bundle manifest {} with {}",
                b.short(),
                a.short()
            )));
        }
    }
    match after.bad_signature {
        Some(why) => Err(Rejected::Signature(why)),
        None => Ok(()),
    }
}

/// How to name parity files in a message.
pub(crate) fn names(parity: &Parity) -> String {
    let paths: Vec<String> = parity
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    paths.join(", ")
}
