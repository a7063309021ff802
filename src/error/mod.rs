//! The library's one error type.
//!
//! Every variant names the thing it is about (image, blob, member, file) and
//! [`Error::hint`] says what the user can do next. The CLI renders both; the
//! library never prints.
//!
//! A field that can hold input (names, paths, reasons quoting a file or a
//! registry) is interpolated through [`Shown`], so a message cannot carry
//! control characters from it; new variants must do the same.

pub mod registry;
mod shown;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::Digest;
pub use shown::{escape_controls, Shown};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on a named path.
    #[error("{op} {}: {}", Shown(path.display()), Shown(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid image reference {input:?}: {}", Shown(reason))]
    InvalidReference { input: String, reason: String },

    #[error("invalid source {spec:?}: {}", Shown(reason))]
    InvalidSource { spec: String, reason: String },

    #[error(
        "{}: content does not match its digest (expected {expected}, got {actual})",
        Shown(what)
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error(
        "{}: size is {actual} bytes, but {expected} were declared",
        Shown(what)
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{}: blob {digest} is missing{}", Shown(source_name), for_image(image))]
    MissingBlob {
        source_name: String,
        digest: Digest,
        image: Option<String>,
    },

    /// A delta bundle was asked for a blob it expects the far side to hold.
    #[error(
        "{}: blob {digest} ({size} bytes) is not carried by this delta bundle; its base {} should hold it{}",
        Shown(source_name),
        Shown(base),
        for_image(image)
    )]
    NotInDelta {
        source_name: String,
        digest: Digest,
        size: u64,
        /// The base the delta names for it (its name, or its digest).
        base: String,
        image: Option<String>,
    },

    #[error("{}: invalid JSON: {}", Shown(what), Shown(reason))]
    BadJson { what: String, reason: String },

    #[error("{}: {}", Shown(what), Shown(reason))]
    Unsupported { what: String, reason: String },

    #[error(
        "{}: no image matches {wanted:?}; it holds: {}",
        Shown(source_name),
        list(available)
    )]
    ImageNotFound {
        source_name: String,
        wanted: String,
        available: Vec<String>,
    },

    #[error(
        "{}: no platform matches {}; it has: {}",
        Shown(image),
        list(wanted),
        list(available)
    )]
    NoMatchingPlatform {
        image: String,
        wanted: Vec<String>,
        available: Vec<String>,
    },

    #[error("{}: not a valid archive: {}", Shown(path.display()), Shown(reason))]
    BadArchive { path: PathBuf, reason: String },

    /// The bundle is damaged, truncated or not a bundle at all.
    #[error("bundle {}: {}", Shown(path.display()), Shown(problem))]
    BadBundle { path: PathBuf, problem: String },

    /// Volumes missing, truncated or damaged, beyond any repair.
    #[error("bundle {} is damaged:\n{}{}", Shown(path.display()), bullets(problems), lost_of(lost))]
    Damaged {
        path: PathBuf,
        problems: Vec<String>,
        /// What the damage takes away: images, blobs.
        lost: Vec<String>,
        hint: String,
    },

    #[error("bundle {}: format version {found} is not supported (this airlock reads versions 1 to {supported})", Shown(path.display()))]
    UnsupportedVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    #[error("bundle {}: {problem}", Shown(path.display()))]
    Signature { path: PathBuf, problem: SigProblem },

    #[error("key {}: {}", Shown(path.display()), Shown(reason))]
    Key {
        path: PathBuf,
        reason: String,
        /// What to do, when the general advice on key files is not it.
        hint: Option<String>,
    },

    /// A mistake in how the command was called (exit status 2), found
    /// after parsing: a bad flag value, flags that do not go together.
    #[error("{}", Shown(.0))]
    Usage(String),

    /// An output this run will not write: it would replace files, or put
    /// binary data on a terminal.
    #[error("{}: {}", Shown(what), Shown(reason))]
    Refused {
        what: String,
        reason: String,
        hint: String,
    },
    /// A failure that is not the caller's mistake and that no other
    /// variant describes (exit status 1).
    #[error("{}", Shown(.0))]
    Failed(String),

    /// A registry refused or failed a request.
    #[error("{0}")]
    Registry(Box<registry::RegistryError>),

    /// Images an import could not push, each listed with its reason before
    /// this is shown.
    #[error("{failed} image(s) failed (listed above)")]
    ImagesFailed {
        failed: usize,
        /// Their failures were passing ones (a 5xx, a cut connection).
        retry_helps: bool,
    },

    /// An inventory file (docs/inventory.md) that this airlock cannot read.
    #[error("inventory {}: {}", Shown(path.display()), Shown(problem))]
    BadInventory { path: PathBuf, problem: String },
    /// A mistake in an image set file (docs/image-sets.md), at its line
    /// and field; also a filter of the set that selects nothing (exit 2).
    #[error("{}:{line}: {}: {}", Shown(file.display()), Shown(field), Shown(reason))]
    ImageSet {
        file: PathBuf,
        line: usize,
        /// The field's path, as `images[1].tags.include`.
        field: String,
        reason: String,
        hint: Option<String>,
    },

    /// Several independent failures, reported together at the end of a run.
    #[error("{} problem(s):\n{}", .0.len(), numbered(.0))]
    Many(Vec<Error>),
}

/// Why a bundle's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigProblem {
    Unsigned,
    WrongKey {
        signed_by: Vec<String>,
        expected: String,
    },
    Invalid {
        key_id: String,
    },
}

impl fmt::Display for SigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigProblem::Unsigned => write!(f, "the bundle is not signed"),
            SigProblem::WrongKey {
                signed_by,
                expected,
            } => write!(
                f,
                "signed by key {}, not by the trusted key {}",
                list(signed_by),
                Shown(expected)
            ),
            SigProblem::Invalid { key_id } => write!(
                f,
                "the signature by key {} does not match the bundle manifest (the manifest was altered)",
                Shown(key_id)
            ),
        }
    }
}

fn for_image(image: &Option<String>) -> String {
    image
        .as_ref()
        .map(|i| format!(" (needed by {})", Shown(i)))
        .unwrap_or_default()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(nothing)".to_string()
    } else {
        let shown: Vec<String> = items.iter().map(|i| Shown(i).to_string()).collect();
        shown.join(", ")
    }
}

fn numbered(errors: &[Error]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("  {}. {e}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// Wraps an I/O error with the operation and the path it concerns.
    ///
    /// An integrity failure raised inside a reader (see
    /// `integrity::VerifyingReader`) travels through `io::Error`; it is
    /// unwrapped here so the user sees the digest problem, not "I/O error".
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        match unwrap_integrity(source) {
            Ok(e) => e,
            Err(source) => Error::Io {
                op,
                path: path.as_ref().to_path_buf(),
                source,
            },
        }
    }

    /// A source that does not hold a blob it was asked for.
    pub fn missing_blob(source_name: impl Into<String>, digest: &Digest) -> Error {
        Error::MissingBlob {
            source_name: source_name.into(),
            digest: digest.clone(),
            image: None,
        }
    }

    /// Names the image that needed a missing blob, if none is named yet.
    pub fn needed_by(self, image: &str) -> Error {
        match self {
            Error::MissingBlob {
                source_name,
                digest,
                image: None,
            } => Error::MissingBlob {
                source_name,
                digest,
                image: Some(image.to_string()),
            },
            Error::NotInDelta {
                source_name,
                digest,
                size,
                base,
                image: None,
            } => Error::NotInDelta {
                source_name,
                digest,
                size,
                base,
                image: Some(image.to_string()),
            },
            e => e,
        }
    }

    pub fn bad_bundle(path: impl AsRef<Path>, problem: impl Into<String>) -> Error {
        Error::BadBundle {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// What the user can do next, when there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Io { source, path, .. } => match source.kind() {
                io::ErrorKind::NotFound => format!("check that {} exists", path.display()),
                io::ErrorKind::PermissionDenied => {
                    format!("check the permissions of {}", path.display())
                }
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => format!(
                    "the disk holding {} is full: free space or write the output elsewhere",
                    path.display()
                ),
                _ => return None,
            },
            Error::InvalidReference { .. } => {
                "references look like [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:HEX], in lower case".into()
            }
            Error::InvalidSource { .. } => {
                "sources are oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF] or docker://REF (a bare REF is a registry image)".into()
            }
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                "the content is corrupt or was altered; fetch or copy it again from a good copy".into()
            }
            Error::NotInDelta { .. } => {
                "give the base bundle with --with BASE, or import into a registry that holds the base".into()
            }
            Error::MissingBlob { .. } => {
                "the source is incomplete; copy it again (skopeo copy --all) or pack from the registry".into()
            }
            Error::ImageNotFound { .. } => "name one of the images listed".into(),
            Error::NoMatchingPlatform { .. } => {
                "pass --platform with one of the platforms listed, or none to keep them all".into()
            }
            Error::BadBundle { .. } => {
                "the bundle is damaged or incomplete; copy it again from the source media".into()
            }
            Error::Damaged { hint, .. } | Error::Refused { hint, .. } => hint.clone(),
            Error::UnsupportedVersion { .. } => {
                "use the airlock release that wrote the bundle, or a newer one".into()
            }
            Error::Signature { problem, .. } => match problem {
                SigProblem::Unsigned => {
                    "pack with --key to sign, or pass --allow-unsigned to accept an unauthenticated bundle".into()
                }
                SigProblem::WrongKey { .. } => {
                    "pass the public key that belongs to the signer with --pub".into()
                }
                SigProblem::Invalid { .. } => {
                    "do not use this bundle; obtain it again from its producer".into()
                }
            },
            Error::Registry(e) => e.hint(),
            Error::ImagesFailed { retry_helps: true, .. } => {
                "run the same command again to retry them; what went in is not sent again".into()
            }
            Error::ImagesFailed { .. } => {
                "each image's reason says what to change before it can go in".into()
            }
            Error::BadInventory { .. } => {
                "make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)".into()
            }
            Error::ImageSet { hint: Some(h), .. } => h.clone(),
            Error::ImageSet { .. } => "docs/image-sets.md lists every field of an image set".into(),
            Error::Key { hint: Some(h), .. } => h.clone(),
            Error::Key { hint: None, .. } => {
                "keys are PKCS#8 PEM ed25519 files, as written by `airlock keygen`".into()
            }
            _ => return None,
        })
    }

    /// A stable, snake_case name for the variant: the `kind` of the CLI's
    /// JSON errors (docs/json.md lists them), for scripts to branch on
    /// without parsing messages. A new variant needs its own name here.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::InvalidReference { .. } => "invalid_reference",
            Error::InvalidSource { .. } => "invalid_source",
            Error::DigestMismatch { .. } => "digest_mismatch",
            Error::SizeMismatch { .. } => "size_mismatch",
            Error::MissingBlob { .. } => "missing_blob",
            Error::NotInDelta { .. } => "not_in_delta",
            Error::BadJson { .. } => "bad_json",
            Error::Unsupported { .. } => "unsupported",
            Error::ImageNotFound { .. } => "image_not_found",
            Error::NoMatchingPlatform { .. } => "no_matching_platform",
            Error::BadArchive { .. } => "bad_archive",
            Error::BadBundle { .. } => "bad_bundle",
            Error::Damaged { .. } => "damaged",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Signature { .. } => "signature",
            Error::Key { .. } => "key",
            Error::Usage(_) => "usage",
            Error::Refused { .. } => "refused",
            Error::Failed(_) => "failed",
            Error::Registry(_) => "registry",
            Error::ImagesFailed { .. } => "images_failed",
            Error::BadInventory { .. } => "bad_inventory",
            Error::Many(_) => "many",
            Error::ImageSet { .. } => "image_set",
        }
    }

    /// A mistake in how the command was called, not a failure of the work:
    /// the CLI exits 2 for these, as for clap's own.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_) | Error::InvalidSource { .. } | Error::ImageSet { .. } => true,
            Error::Many(all) => all.iter().all(Error::is_usage),
            _ => false,
        }
    }

    /// The errors inside, one level deep; `Many` is flattened.
    pub fn flatten(self) -> Vec<Error> {
        match self {
            Error::Many(v) => v.into_iter().flat_map(Error::flatten).collect(),
            e => vec![e],
        }
    }

    /// Combine several errors; one stays itself.
    pub fn many(mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().expect("one element")),
            _ => Err(Error::Many(errors)),
        }
    }
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {}", Shown(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lost_of(lost: &[String]) -> String {
    if lost.is_empty() {
        String::new()
    } else {
        format!("\nlost with it:\n{}", bullets(lost))
    }
}

/// A typed error smuggled through `io::Error` by a reader.
#[derive(Debug)]
pub(crate) struct Integrity(pub Box<Error>);

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Integrity {}

pub(crate) fn into_io(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Integrity(Box::new(e)))
}

fn unwrap_integrity(e: io::Error) -> std::result::Result<Error, io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<Integrity>()) {
        let inner = e.into_inner().expect("checked above");
        let integrity = inner.downcast::<Integrity>().expect("checked above");
        Ok(*integrity.0)
    } else {
        Err(e)
    }
}
