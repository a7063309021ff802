//! The OCI distribution API, both ways: the registry as a source
//! ([`RegistrySource`], pulling through `cache`) and as a sink
//! ([`RegistrySink`], pushing), over one blocking client.
//!
//! - [`Client`] talks to one registry: TLS and plain-HTTP settings, retries
//!   with backoff within one budget per run (`retry`), failures of the whole
//!   registry told from those of one request, and authentication (Basic,
//!   Bearer tokens cached per scope and renewed when they expire, the
//!   containers auth file and docker's `config.json` and their helpers,
//!   read by `credentials`), and the request logs of `-v`/`-vv`.
//! - [`options::RegistryOptions`] holds what the user said on the command
//!   line; [`Registries`] hands out one client per registry host;
//!   [`Target`] says where each pushed image goes.
//!
//! # Push ordering
//!
//! A registry refuses a manifest whose blobs it lacks, and an index whose
//! manifests it lacks; a tag must only name something complete. So the sink
//! places blobs first (layers and configs, several at once), then commits
//! manifests by digest, then indexes, then tags, then the referrers
//! fallback index. Each blob, in each repository that needs it: HEAD (skip
//! what is there), mount from a repository that has it, else upload
//! (monolithic or chunked, the last piece sent only after the digest
//! checked out), then commit. The `journal` records what the registry
//! confirmed, as a hint: a re-run asks the registry before it skips a blob
//! or a manifest or continues an upload. Credentials go only to the
//! registry's own origin. Blob data is never resent blindly (see `push`).
//! The reasons at length: `src/registry/README.md`.
//!
//! Not here: bundles, the plan, or verifying a source; [`crate::sink::copy`]
//! hands the sink verified readers. Protocol notes:
//! `../shared/PROTOCOL-NOTES.md`.

mod auth;
pub(crate) mod cache;
mod client;
mod commit;
pub(crate) mod credentials;
mod expected;
pub(crate) mod journal;
pub mod options;
mod origin;
pub(crate) mod push;
mod retry;
mod sink;
mod source;
mod target;
mod tls;
mod upload;

pub use crate::error::registry::RegistryError;
pub use client::{read_limited, Client, Registries, MANIFEST_ACCEPT};
pub use commit::ImageOutcome;
pub use expected::ExpectedBlob;
pub use options::RegistryOptions;
pub use sink::{BlobCounts, PushOptions, Pushed, RegistrySink};
pub use source::{is_referrer_tag, RegistryContext, RegistrySource};
pub use target::Target;
