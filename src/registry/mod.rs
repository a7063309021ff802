//! A blocking client for the OCI distribution API, shared by `pack` (pull)
//! and `import` (push).
//!
//! - [`Client`] talks to one registry: TLS and plain-HTTP settings, retries
//!   with backoff, and authentication (Basic, Bearer tokens cached per scope
//!   and renewed when they expire, docker `config.json` and its helpers).
//! - [`options::RegistryOptions`] holds what the user said on the command
//!   line; [`Registries`] hands out one client per registry host.
//!
//! It does not know about bundles or plans; sources and sinks use it.
//! Protocol notes: `../shared/PROTOCOL-NOTES.md`.

mod auth;
pub mod cache;
mod client;
mod commit;
pub mod journal;
pub mod options;
pub mod push;
mod sink;
mod source;
mod target;
mod tls;
mod upload;

pub use crate::error::registry::RegistryError;
pub use client::{read_limited, Client, Registries, MANIFEST_ACCEPT};
pub use options::RegistryOptions;
pub use sink::{BlobCounts, ImageOutcome, PushOptions, Pushed, RegistrySink};
pub use source::{is_referrer_tag, RegistryContext, RegistrySource};
pub use target::Target;
