//! The bundle: one file, a seekable zstd stream of a tar that is an OCI image
//! layout, led by a signed manifest. `docs/bundle-format.md` is the normative
//! description; this module implements it.
//!
//! Writing goes through [`BundleWriter`], a [`crate::sink::Sink`]; reading
//! through [`Bundle`], which must pass its signature check
//! (`Bundle<Unverified>` → `Bundle<Verified>`) before its content can be
//! exported or imported.

mod damage;
pub mod format;
mod frames;
pub mod parity;
mod reader;
pub mod sign;
pub mod store;
mod stream;
mod verify;
pub mod volume;
mod writer;

pub use damage::{repair, RepairReport};
pub use reader::{
    Bundle, BundleFile, BundleSource, Member, MemberReader, OpenOptions, Unverified, Verified,
};
pub use stream::{read_stream, verify_stream, Received, StreamVisitor};
pub use verify::{verify, VerifyReport};
pub use writer::{rfc3339, BundleWriter, Output, PackOptions};
