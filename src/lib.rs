//! airlock carries container images across an air gap.
//!
//! `pack` reads images from OCI layouts, `oci-archive` and `docker save`
//! tars into one signed, seekable bundle; `verify`, `inspect` and `export`
//! work on that bundle offline.
//!
//! The data path is the same for every format: a [`source::Source`] lists
//! images and hands out blobs, [`plan::Plan`] walks and checks the manifests
//! once, and [`sink::copy`] streams each blob through a digest check into a
//! [`sink::Sink`] (a bundle, an OCI directory or a docker archive).
//!
//! ```no_run
//! use airlock::ops;
//! let bundle = airlock::bundle::Bundle::open("images.airlock".as_ref())?;
//! let report = ops::inspect(&bundle)?;
//! println!("{} images", report.images.len());
//! # Ok::<(), airlock::Error>(())
//! ```

pub mod atomic;
pub mod bundle;
pub mod docker_archive;
pub mod error;
pub mod fs;
pub mod integrity;
pub mod model;
pub mod oci;
pub mod ops;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod sink;
pub mod source;

pub use error::{Error, Result};
