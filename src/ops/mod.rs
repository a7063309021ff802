//! The operations behind each command, as library calls: orchestration
//! only. Each is a short straight line over the traits (a `Source`, the
//! `Plan`, `copy` into a `Sink`) plus the rules a request must satisfy.
//!
//! Not for parsing flags or printing: they take request values, return
//! reports, and leave rendering to the CLI. Not for format details either;
//! those live in `oci/`, `docker_archive/`, `registry/` and `bundle/`.

pub mod cache;
pub mod copy;
pub mod delta;
pub mod diff;
pub mod export;
pub mod imageset;
pub mod import;
pub mod inspect;
pub mod inventory;
pub mod keygen;
pub mod login;
pub mod pack;
pub mod repair;
pub mod serve;
pub mod stdio;
pub mod transport;

pub use export::{export, export_with, ExportTarget};
pub use inspect::{inspect, ImageInfo, Inspection};
pub use pack::{pack, read_source_list, PackRequest, PackSummary};
