//! `docker save` tars as a source (the legacy layout and the Engine 25+
//! OCI layout, plain, gzip or zstd) and as a sink (a tar `docker load`
//! accepts). Not for the OCI layout itself, which both sides reuse from
//! [`crate::oci`].

mod sink;
mod source;

pub use sink::{sweep_partials, DockerArchiveSink};
pub(crate) use source::DockerArchive;
