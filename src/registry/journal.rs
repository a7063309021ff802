//! What an import has done so far, so a re-run continues where it stopped.
//!
//! One JSON file per bundle and target, replaced atomically after every
//! change. It records only what the registry confirmed: a blob after its
//! 201 (or the HEAD or mount that showed it there), a manifest after its
//! 201, an upload's Location and offset after the 202 that returned them.
//! A re-run asks the registry before it builds on an upload or a manifest
//! entry (`GET <Location>`, a HEAD), so a registry that lost data (or a
//! journal copied elsewhere) is not trusted blindly; a blob entry is not
//! asked about again, and a registry that lost the blob refuses the
//! manifest that needs it.
//!
//! Not here: deciding what to send ([`super::RegistrySink`]); a dry run keeps no
//! journal ([`Journal::none`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::model::Digest;

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// `repo@digest` of blobs the registry holds.
    blobs: BTreeMap<String, bool>,
    /// `repo@digest` (or `repo:tag`) of manifests the registry holds.
    manifests: BTreeMap<String, Digest>,
    /// Uploads in flight: `repo@digest` → session and confirmed offset.
    uploads: BTreeMap<String, Upload>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Upload {
    pub location: String,
    pub offset: u64,
}

pub struct Journal {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn key(repo: &str, d: &Digest) -> String {
    format!("{repo}@{d}")
}

impl Journal {
    /// `$XDG_STATE_HOME/airlock`, else `~/.local/state/airlock`.
    pub fn default_dir() -> PathBuf {
        dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
            .unwrap_or_else(std::env::temp_dir)
            .join("airlock")
    }

    /// Opens (or starts) the journal of importing `bundle` into `target`.
    pub fn open(dir: &Path, bundle: &Digest, target: &str) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create state directory", dir, e))?;
        let id = Digest::of(format!("{bundle} {target}").as_bytes());
        let path = dir.join(format!("import-{}.json", &id.hex()[..32]));
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::BadJson {
                what: path.display().to_string(),
                reason: format!("{e} (delete the file to start this import afresh)"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        Ok(Journal {
            path: Some(path),
            state: Mutex::new(state),
        })
    }

    /// A journal that remembers nothing (for `--dry-run`).
    pub fn none() -> Journal {
        Journal {
            path: None,
            state: Mutex::new(State::default()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn save(&self, state: &State) -> Result<()> {
        match &self.path {
            Some(p) => AtomicFile::write(
                p,
                &serde_json::to_vec_pretty(state).expect("JSON values serialise"),
            ),
            None => Ok(()),
        }
    }

    fn change(&self, f: impl FnOnce(&mut State)) -> Result<()> {
        let mut s = self.state.lock().expect("not poisoned");
        f(&mut s);
        self.save(&s)
    }

    pub fn has_blob(&self, repo: &str, d: &Digest) -> bool {
        self.state
            .lock()
            .expect("not poisoned")
            .blobs
            .contains_key(&key(repo, d))
    }

    pub fn blob_done(&self, repo: &str, d: &Digest) -> Result<()> {
        let k = key(repo, d);
        self.change(|s| {
            s.uploads.remove(&k);
            s.blobs.insert(k, true);
        })
    }

    pub fn upload(&self, repo: &str, d: &Digest) -> Option<Upload> {
        self.state
            .lock()
            .expect("not poisoned")
            .uploads
            .get(&key(repo, d))
            .cloned()
    }

    pub fn upload_progress(
        &self,
        repo: &str,
        d: &Digest,
        location: &str,
        offset: u64,
    ) -> Result<()> {
        let k = key(repo, d);
        let u = Upload {
            location: location.to_string(),
            offset,
        };
        self.change(|s| {
            s.uploads.insert(k, u);
        })
    }

    pub fn forget_upload(&self, repo: &str, d: &Digest) -> Result<()> {
        let k = key(repo, d);
        self.change(|s| {
            s.uploads.remove(&k);
        })
    }

    pub fn has_manifest(&self, repo_ref: &str, d: &Digest) -> bool {
        self.state
            .lock()
            .expect("not poisoned")
            .manifests
            .get(repo_ref)
            == Some(d)
    }

    pub fn manifest_done(&self, repo_ref: &str, d: &Digest) -> Result<()> {
        let (k, d) = (repo_ref.to_string(), d.clone());
        self.change(|s| {
            s.manifests.insert(k, d);
        })
    }
}
