//! `keygen`: create an ed25519 signing key and its public key, as two files.
//!
//! Not for the key format or signing itself (`bundle::sign`), nor for
//! printing the key id (the CLI does).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::bundle::sign;
use crate::error::{Error, Result};

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyFiles {
    /// The id bundles signed with this key will name.
    pub key_id: String,
    pub private: PathBuf,
    pub public: PathBuf,
}

/// Writes the private key to `output` (mode 0600), encrypted with
/// `passphrase` when given, and the public key to `output.pub`. Refuses to
/// replace either file unless `force`; each file appears only once it is
/// complete.
pub fn keygen(output: &Path, force: bool, passphrase: Option<&str>) -> Result<KeyFiles> {
    let public = PathBuf::from(format!("{}.pub", output.display()));
    for p in [output, public.as_path()] {
        if p.exists() && !force {
            // Exit 1, not 2: the command is right, the file system is in
            // the way (as for `zstd` and `cp -n`).
            return Err(Error::Failed(format!(
                "{} exists; pass --force to overwrite it",
                p.display()
            )));
        }
    }
    let key = sign::generate()?;
    let pem = match passphrase {
        Some(p) => zeroize::Zeroizing::new(sign::encrypted_private_pem(&key, p)?),
        None => zeroize::Zeroizing::new(sign::private_pem(&key)),
    };
    let mut private = AtomicFile::create(output)?;
    {
        use std::os::unix::fs::PermissionsExt;
        private
            .file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("set permissions of", output, e))?;
    }
    private
        .write_all(pem.as_bytes())
        .map_err(|e| Error::io("write", output, e))?;
    private.commit()?;
    AtomicFile::write(&public, sign::public_pem(&key.verifying_key()).as_bytes())?;
    Ok(KeyFiles {
        key_id: sign::key_id(&key.verifying_key()),
        private: output.to_path_buf(),
        public,
    })
}
