//! `airlock serve`: a read-only OCI distribution registry straight from
//! bundles, with no unpacking and no temporary space.
//!
//! - `view.rs`: the bundles merged into one view (repositories, tags,
//!   manifests, referrers, where each blob lives).
//! - `blob.rs`: blobs read out of the bundles through their digest check,
//!   with repair from parity and fall-over to another bundle.
//! - `routes.rs`: what each API path answers.
//! - `http.rs`: the HTTP/1.1 subset a registry needs.
//! - `server.rs`: listener, TLS, Basic auth, a thread per connection, the
//!   access log, the stop on SIGTERM.
//!
//! Not for opening or trusting bundles (`ops::serve` hands in trusted
//! ones), nor for writing anything: serve never changes a file.

mod blob;
mod http;
mod routes;
mod server;
mod view;

pub use server::{run, tls_config, Htpasswd, ServerOptions};
pub use view::{Naming, View};
