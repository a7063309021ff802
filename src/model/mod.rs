//! Values with no I/O: digests, image references, descriptors, platforms and
//! parsed manifests.
//!
//! Everything here is plain data that parses and prints itself. Nothing here
//! opens a file, talks to a registry or knows a bundle; the formats and the
//! orchestration above build on these values.

pub mod digest;
pub mod image;
pub mod inventory;
pub mod reference;

pub use digest::Digest;
pub use image::{Descriptor, Platform};
pub use reference::Reference;
