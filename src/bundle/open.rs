//! The typestate of a bundle read from disk: what has been checked is part
//! of its type.
//!
//! - [`Bundle<Opened>`]: the bytes are found and checked as asked (volumes,
//!   parity), the structure is indexed (seek table, frames, members) and the
//!   envelope is decoded; the payload is raw bytes, not yet a manifest.
//! - [`Bundle<Trusted>`]: the signature is checked over those raw payload
//!   bytes (or the user chose `--allow-unsigned`), and only then is the
//!   payload parsed into the [`BundleManifest`]. Hands out a [`Source`]
//!   (export reads through it, checking each digest as it streams).
//! - [`Bundle<Verified>`]: every member is checked ([`super::verify`]); the
//!   [`VerifyReport`] travels with it, so import need not verify again.
//!
//! Not for the checks themselves: they are in `check`, `index`, `sign` and
//! `verify`; this file only orders them.
//!
//! [`Source`]: crate::source::Source

use std::path::Path;

use crate::bundle::sign::TrustedKeys;

use super::check::{open_bytes_keyed, Content, OpenOptions};
use super::format::*;
use super::index::BundleFile;
use super::sign::{decode_envelope, SignedPayload};
use super::source::BundleSource;
use super::verify::{check_all, VerifyReport};
use crate::error::{Error, Result};
use crate::model::Digest;
use crate::progress::Progress;

/// Structure parsed, envelope decoded; nothing about the content trusted.
pub struct Opened;

/// The signature checked out over the raw payload (or the user explicitly
/// accepted an unsigned bundle), and the payload parsed as a manifest.
pub struct Trusted {
    manifest: BundleManifest,
    /// The key id that signed it, when one was checked.
    signed_by: Option<String>,
}

/// Trusted, and every member checked against the signed manifest.
pub struct Verified {
    manifest: BundleManifest,
    report: VerifyReport,
}

pub struct Bundle<S> {
    file: BundleFile,
    signed: SignedPayload,
    /// Digest of the signed manifest bytes: names this bundle.
    id: Digest,
    state: S,
}

impl BundleFile {
    /// Opens a bundle file, a volume set (by any volume, its `NAME`, or its
    /// directory), with parity found beside it, checking it all first.
    pub fn open(path: &Path) -> Result<BundleFile> {
        BundleFile::open_with(path, OpenOptions::FULL)
    }

    pub fn open_with(path: &Path, options: OpenOptions) -> Result<BundleFile> {
        BundleFile::open_keyed(path, options, None)
    }

    /// With `key`, parity's self-check verifies the signature before it
    /// parses the payload ([`super::parity::guard::self_check`]).
    fn open_keyed(
        path: &Path,
        options: OpenOptions,
        key: Option<&TrustedKeys>,
    ) -> Result<BundleFile> {
        let checked = open_bytes_keyed(path, options, key)?;
        let mut file = match checked.content {
            Content::Bytes(bytes, checksums) => {
                BundleFile::from_checked(checked.path, bytes, checksums)?
            }
            Content::Indexed(file) => file,
        };
        file.notices = checked.notices;
        file.claimed_id = checked.claimed_id;
        Ok(file)
    }
}

impl Bundle<Opened> {
    /// Opens a bundle, indexes it and decodes its envelope, checking every
    /// volume first (see [`OpenOptions::FULL`]).
    pub fn open(path: &Path) -> Result<Bundle<Opened>> {
        Bundle::open_with(path, OpenOptions::FULL)
    }

    /// Opens a bundle, checking its bytes as `options` ask. Does not check
    /// the signature and does not parse the payload as a manifest, unless
    /// parity reports damage: then its self-check parses the payload
    /// unchecked, so use [`Bundle::open_for_key`] when a key is trusted.
    pub fn open_with(path: &Path, options: OpenOptions) -> Result<Bundle<Opened>> {
        Bundle::open_keyed(path, options, None)
    }

    /// [`Bundle::open_with`] for a bundle that will be checked against
    /// `key`: if parity reports damage, the signature over the raw payload
    /// is checked before anything parses it (spec §10), so a hostile
    /// payload with a hostile parity file costs no more than without.
    /// The caller still calls [`Bundle::check_signature`].
    pub fn open_for_key(
        path: &Path,
        options: OpenOptions,
        key: &TrustedKeys,
    ) -> Result<Bundle<Opened>> {
        Bundle::open_keyed(path, options, Some(key))
    }

    fn open_keyed(
        path: &Path,
        options: OpenOptions,
        key: Option<&TrustedKeys>,
    ) -> Result<Bundle<Opened>> {
        let file = BundleFile::open_keyed(path, options, key)?;
        let path = file.path().to_path_buf();
        let bad = |p: String| Error::bad_bundle(&path, p);
        let first = file
            .members()
            .first()
            .filter(|m| m.name == ENVELOPE_NAME)
            .ok_or_else(|| bad(format!("the first member must be {ENVELOPE_NAME}")))?;
        let raw = file.read_member(first, MAX_ENVELOPE)?;
        let signed = decode_envelope(&raw).map_err(bad)?;
        let id = Digest::of(signed.payload());
        if let Some(claimed) = file.claimed_id().filter(|&c| *c != id) {
            return Err(bad(format!(
                "its volume labels or parity name bundle {}, but its signed manifest is {}: the files come from different bundles",
                claimed.short(),
                id.short()
            )));
        }
        Ok(Bundle {
            file,
            signed,
            id,
            state: Opened,
        })
    }

    /// Checks the signature over the raw payload against a trusted public
    /// key, then parses the payload as the bundle manifest.
    pub fn check_signature(self, key: &TrustedKeys) -> Result<Bundle<Trusted>> {
        self.signed
            .verify(key)
            .map_err(|problem| Error::Signature {
                path: self.file.path().to_path_buf(),
                problem,
            })?;
        self.trust(key.signer())
    }

    /// Accepts the bundle without a signature check (`--allow-unsigned`)
    /// and parses the payload as the bundle manifest.
    pub fn without_signature_check(self) -> Result<Bundle<Trusted>> {
        self.trust(None)
    }

    /// What the bundle claims about itself, for `inspect`: the payload
    /// parsed as a manifest (bounded by [`MAX_ENVELOPE`]), with NOTHING
    /// checked: not the signature, not a single digest. Never use it to
    /// decide what to export or import.
    pub fn read_claims(&self) -> Result<Claims<'_>> {
        Ok(Claims {
            file: &self.file,
            manifest: BundleManifest::from_payload(self.file.path(), self.signed.payload())?,
        })
    }

    fn trust(self, signed_by: Option<String>) -> Result<Bundle<Trusted>> {
        let manifest = BundleManifest::from_payload(self.file.path(), self.signed.payload())?;
        Ok(Bundle {
            file: self.file,
            signed: self.signed,
            id: self.id,
            state: Trusted {
                manifest,
                signed_by,
            },
        })
    }
}

impl Bundle<Trusted> {
    pub fn manifest(&self) -> &BundleManifest {
        &self.state.manifest
    }

    /// The bundle's images and blobs as a [`crate::source::Source`], for
    /// `export`. Reading through it is unverified like any source; callers
    /// verify as they read (the plan and copy code does).
    pub fn source(&self) -> BundleSource<'_> {
        BundleSource::new(&self.file, &self.state.manifest)
    }

    /// Checks everything: members against the signed manifest, index.json,
    /// every image's manifests, every blob's digest; all problems reported
    /// together.
    pub fn verify(self, progress: &Progress) -> Result<Bundle<Verified>> {
        let mut report = check_all(&self.file, &self.state.manifest, progress)?;
        report.signed_by = self.state.signed_by;
        Ok(Bundle {
            file: self.file,
            signed: self.signed,
            id: self.id,
            state: Verified {
                manifest: self.state.manifest,
                report,
            },
        })
    }
}

impl Bundle<Verified> {
    pub fn manifest(&self) -> &BundleManifest {
        &self.state.manifest
    }

    /// The bundle's images and blobs as a [`crate::source::Source`], for
    /// `import`; every blob was checked, and readers check again as they go.
    pub fn source(&self) -> BundleSource<'_> {
        BundleSource::new(&self.file, &self.state.manifest)
    }

    /// What verification found.
    pub fn report(&self) -> &VerifyReport {
        &self.state.report
    }

    pub fn into_report(self) -> VerifyReport {
        self.state.report
    }
}

impl<S> Bundle<S> {
    /// The digest of the signed bundle manifest: two bundles with the same
    /// id hold the same images and blobs.
    pub fn id(&self) -> &Digest {
        &self.id
    }

    pub fn file(&self) -> &BundleFile {
        &self.file
    }

    /// Key ids the envelope names; checked only on a bundle trusted with a
    /// key ([`Bundle::check_signature`]), claims otherwise.
    pub fn signer_ids(&self) -> Vec<String> {
        self.signed.key_ids()
    }
}

/// What an unchecked bundle claims: its manifest as written, and a way to
/// read the manifests it names. Nothing in it is checked.
pub struct Claims<'a> {
    file: &'a BundleFile,
    manifest: BundleManifest,
}

impl Claims<'_> {
    /// The bundle manifest as the payload says it; the signature over it
    /// is not checked.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// The bundle's content as a source, for describing it (`inspect`).
    /// Digests are checked as the plan reads, but the list of images is
    /// an unchecked claim.
    pub fn unchecked_source(&self) -> BundleSource<'_> {
        BundleSource::new(self.file, &self.manifest)
    }
}
