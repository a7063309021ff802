//! `airlock serve`: trusted bundles merged into one [`View`], answered
//! over HTTP until SIGTERM.
//!
//! Opening is quick on purpose: the signature is checked at start, but no
//! full verification pass runs (that is `verify`'s job); each blob is
//! checked against its digest as it is sent. Not for HTTP itself
//! ([`crate::serve`]) nor for choosing whom to trust (the CLI does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::bundle::sign::TrustedKeys;
use crate::bundle::{Bundle, OpenOptions, Trusted};
use crate::error::Result;
use crate::serve::{self, Htpasswd, Naming, ServerOptions, View};

/// How serve opens bundles: volumes are placed by their labels and not
/// hashed; a missing or truncated volume makes opening check (and repair
/// from parity) anyway, and damage beyond the parity leaves only the blobs
/// it holds unreadable (degraded), as long as the signed manifest and the
/// seek table survive.
pub const OPEN: OpenOptions = OpenOptions {
    check: false,
    repair: true,
    degraded: true,
};

pub struct ServeRequest {
    /// Trusted bundles with the paths they were opened from, in the order
    /// given: a later one's tags win, and a delta's over its bases'.
    pub bundles: Vec<(PathBuf, Bundle<Trusted>)>,
    /// The keys they were checked with, to check a bundle reopened for
    /// repair; `None` with `--allow-unsigned`.
    pub keys: Option<TrustedKeys>,
    pub naming: Naming,
    pub listen: String,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub htpasswd: Option<PathBuf>,
    pub max_connections: usize,
}

/// Builds the view and serves; `ready` is told the view and the address
/// once the listener is bound.
pub fn serve(req: ServeRequest, ready: impl FnOnce(&View, SocketAddr)) -> Result<()> {
    let tls = match &req.tls {
        Some((cert, key)) => Some(serve::tls_config(cert, key)?),
        None => None,
    };
    let auth = req.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
    let view = Arc::new(View::build(req.bundles, req.keys, &req.naming)?);
    for w in &view.warnings {
        log::warn!("{w}");
    }
    let options = ServerOptions {
        listen: req.listen,
        tls,
        auth,
        max_connections: req.max_connections,
    };
    let shown = view.clone();
    serve::run(view, options, |addr| ready(&shown, addr))
}
