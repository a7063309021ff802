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

mod atomic;
pub mod bundle;
mod docker_archive;
pub mod error;
mod fs;
mod integrity;
mod lock;
pub mod model;
mod oci;
pub mod ops;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod serve;
pub mod sink;
pub mod source;
mod tar_out;

pub use error::{Error, Result};
