//! The bundle: one file, a seekable zstd stream of a tar that is an OCI image
//! layout, led by a signed manifest. `docs/bundle-format.md` is the normative
//! description; this module implements it. Not for other formats: a bundle
//! is read through [`crate::source::Source`] and written through
//! [`crate::sink::Sink`] like any of them.
//!
//! Reading goes through the typestate in `open.rs`, which carries what was
//! checked: [`Bundle<Opened>`] (bytes found and checked, structure indexed,
//! envelope decoded) → [`Bundle<Trusted>`] (signature checked over the raw
//! payload, then the payload parsed) → [`Bundle<Verified>`] (every member
//! checked). Only a trusted bundle hands out a [`BundleSource`]; `inspect`
//! reads an opened one's [`Claims`], which say so.
//!
//! The files, bottom up:
//! - `format.rs`: every spec constant, structure and reader limit.
//! - `tar.rs`: the one ustar codec (writer, file reader, stream reader).
//! - `sign.rs`: keys, and the DSSE envelope, decoded in one place.
//! - `store.rs`: the bytes of a bundle, mapped volumes plus rebuilt patches.
//! - `volume.rs`, `parity.rs`: volume labels and sets; Reed-Solomon parity.
//! - `assemble.rs`: volumes placed by their labels into one byte range.
//! - `loss.rs`: the damage report (what a damaged range takes away).
//! - `check.rs`: volume checksums or parity shards checked, repaired in memory.
//! - `degraded.rs`: serve's open despite damage beyond repair (members indexed
//!   from the signed manifest, the damage left unreadable).
//! - `zframe.rs`: one zstd frame walked and checked (§5), for both readers.
//! - `seek.rs`, `index.rs`: seek table → frames → members; member readers.
//! - `source.rs`: a bundle's content as a `Source`.
//! - `verify.rs`: the full offline check behind `Bundle<Verified>`.
//! - `open.rs`: the typestate.
//! - `stream.rs`, `stream_frames.rs`: reading once, in order, from a pipe.
//! - `repair.rs`: the mechanism of `airlock repair` (`ops::repair` writes).
//! - `frames.rs`, `writer.rs`: the writer, a `Sink`.

mod assemble;
mod check;
mod degraded;
pub mod format;
mod frames;
mod index;
mod loss;
mod member;
mod open;
pub mod parity;
mod repair;
mod seek;
pub mod sign;
mod source;
pub mod store;
mod stream;
mod stream_frames;
mod tar;
mod verify;
pub mod volume;
mod writer;
mod zframe;

pub use check::OpenOptions;
pub use index::{BundleFile, Member};
pub use member::MemberReader;
pub use open::{Bundle, Claims, Opened, Trusted, Verified};
pub use repair::{check_repaired, plan_repair, RepairPlan, VolumeFix};
pub use source::BundleSource;
pub use stream::{read_stream, verify_stream, Received, StreamVisitor};
pub use verify::{DeltaReport, VerifyReport};
pub use writer::{existing_outputs, rfc3339, sweep_partials, BundleWriter, Output, PackOptions};
