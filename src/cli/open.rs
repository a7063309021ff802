//! The one place the CLI opens bundles and decides whom to trust: the
//! public key from `--pub`, or none with `--allow-unsigned`.
//!
//! Not for the checks themselves (`airlock::bundle` does them) nor for
//! reading streams (`verify -` and `import -` pass standard input on).

use std::path::Path;

use ed25519_dalek::VerifyingKey;

use airlock::bundle::{sign, Bundle, OpenOptions, Opened, Trusted};
use airlock::ops;
use airlock::Result;

use super::args::TrustArgs;
use super::render;

/// A bundle whose signature was checked (or waived), and the signer's key id.
pub type TrustedBundle = (Bundle<Trusted>, Option<String>);

pub fn trusted(path: &Path, trust: &TrustArgs) -> Result<TrustedBundle> {
    trusted_with(path, trust, OpenOptions::FULL, false)
}

/// Opens (checking volumes and parity, repairing if allowed) and checks the
/// signature. Notices about volumes go to stderr unless `quiet`.
pub fn trusted_with(
    path: &Path,
    trust: &TrustArgs,
    options: OpenOptions,
    quiet: bool,
) -> Result<TrustedBundle> {
    let bundle = Bundle::<Opened>::open_with(path, options)?;
    if !quiet {
        render::notices(bundle.file().notices());
    }
    match &trust.public_key {
        Some(key_path) => {
            let key = sign::load_public(key_path)?;
            Ok((bundle.check_signature(&key)?, Some(sign::key_id(&key))))
        }
        None => Ok((bundle.without_signature_check()?, None)),
    }
}

/// For `inspect`: structure only, no signature check; notices go to stderr.
pub fn untrusted(path: &Path) -> Result<Bundle<Opened>> {
    let bundle = ops::inspect::open(path)?;
    render::notices(bundle.file().notices());
    Ok(bundle)
}

/// The key for a bundle read as a stream, which is checked as it arrives.
pub fn stream_key(trust: &TrustArgs) -> Result<Option<VerifyingKey>> {
    trust
        .public_key
        .as_deref()
        .map(sign::load_public)
        .transpose()
}
