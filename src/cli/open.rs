//! The one place the CLI opens bundles and decides whom to trust: the
//! public keys from `--pub` (any one of them may have signed), or none
//! with `--allow-unsigned`.
//!
//! Not for the checks themselves (`airlock::bundle` does them) nor for
//! reading streams (`verify -` and `import -` pass standard input on).

use std::path::Path;

use airlock::bundle::sign::{self, TrustedKeys};
use airlock::bundle::{Bundle, OpenOptions, Opened, Trusted};
use airlock::error::Shown;
use airlock::ops;
use airlock::Result;

use super::args::TrustArgs;
use super::render;

pub fn trusted(path: &Path, trust: &TrustArgs) -> Result<Bundle<Trusted>> {
    trusted_with(path, trust, OpenOptions::FULL, false)
}

/// Opens (checking volumes and parity, repairing if allowed) and checks the
/// signature; the key goes in with the open, so that parity's self-check
/// checks the signature before it parses anything. Notices about volumes go
/// to stderr unless `quiet`.
pub fn trusted_with(
    path: &Path,
    trust: &TrustArgs,
    options: OpenOptions,
    quiet: bool,
) -> Result<Bundle<Trusted>> {
    let key = stream_key(trust)?;
    log::info!("opening bundle {}", Shown(path.display()));
    let bundle = match &key {
        Some(key) => Bundle::<Opened>::open_for_key(path, options, key)?,
        None => Bundle::<Opened>::open_with(path, options)?,
    };
    if !quiet {
        render::notices(bundle.file().notices());
    }
    match &key {
        Some(key) => bundle.check_signature(key),
        None => bundle.without_signature_check(),
    }
}

/// For `inspect`: structure only, no signature check; notices go to stderr.
pub fn untrusted(path: &Path) -> Result<Bundle<Opened>> {
    log::info!("opening bundle {} (structure only)", Shown(path.display()));
    let bundle = ops::inspect::open(path)?;
    render::notices(bundle.file().notices());
    Ok(bundle)
}

/// Whom to trust for `--with` base bundles: the command's own `--pub`
/// keys, or nobody with `--allow-unsigned`.
pub fn base_trust(trust: &TrustArgs) -> Result<ops::delta::BaseTrust> {
    Ok(ops::delta::BaseTrust {
        keys: public_keys(&trust.public_keys)?,
        allow_unsigned: trust.allow_unsigned,
    })
}

/// The trusted keys from `--pub`, if any (for a stream, they are checked
/// as the stream arrives).
pub fn stream_key(trust: &TrustArgs) -> Result<Option<TrustedKeys>> {
    public_keys(&trust.public_keys)
}

/// Every `--pub` key, loaded; `None` when none was given.
pub fn public_keys(paths: &[std::path::PathBuf]) -> Result<Option<TrustedKeys>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let keys = paths
        .iter()
        .map(|p| sign::load_public(p))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TrustedKeys::new(keys)))
}
