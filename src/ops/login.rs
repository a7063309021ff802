//! `airlock login` and `airlock logout`, as `skopeo login/logout` do them:
//! login checks the credentials with the registry (`GET /v2/` and the auth
//! handshake it asks for) and only then stores them in the containers auth
//! file, created 0600, every other entry kept; logout removes a registry's
//! entry (or all of them).
//!
//! Not here: reading credentials for a command (`registry::credentials`),
//! or asking for a password (the CLI).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::registry::credentials::{login_file, same_registry};
use crate::registry::{Client, RegistryOptions};

/// Checks `username`/`password` with `registry`, then stores them; returns
/// the auth file written. Refused credentials store nothing.
pub fn login(
    opts: &RegistryOptions,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<PathBuf> {
    let opts = RegistryOptions {
        username: Some(username.to_string()),
        password: Some(password.to_string()),
        login_registry: Some(registry.to_string()),
        ..opts.clone()
    };
    let client = Client::new(&opts, registry)?;
    client.ping().map_err(|e| Error::Registry(Box::new(e)))?;
    let file = auth_file(opts.authfile.as_deref())?;
    let mut config = read(&file)?;
    let auths = auths(&mut config, &file)?;
    // One entry per registry: an older one under another spelling goes.
    auths.retain(|k, _| !same_registry(k, registry));
    let auth = B64.encode(format!("{username}:{password}"));
    auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    write(&file, &config)?;
    Ok(file)
}

/// What a logout removed.
#[derive(Debug)]
pub struct LoggedOut {
    pub file: PathBuf,
    /// The entries removed (their keys in the file).
    pub removed: Vec<String>,
}

/// Removes the entries of `registry` (every entry with `None`) from the
/// auth file. A registry with no entry is an error, as with skopeo.
pub fn logout(authfile: Option<&Path>, registry: Option<&str>) -> Result<LoggedOut> {
    let file = auth_file(authfile)?;
    let mut config = read(&file)?;
    let auths = auths(&mut config, &file)?;
    let removed: Vec<String> = auths
        .keys()
        .filter(|k| registry.is_none_or(|r| same_registry(k, r)))
        .cloned()
        .collect();
    if let (Some(r), true) = (registry, removed.is_empty()) {
        return Err(Error::Failed(format!(
            "not logged in to {r}: {} holds no credentials for it (credentials in docker's \
             config.json are docker's to remove: `docker logout {r}`)",
            file.display()
        )));
    }
    for k in &removed {
        auths.remove(k);
    }
    if !removed.is_empty() {
        write(&file, &config)?;
    }
    Ok(LoggedOut { file, removed })
}

fn auth_file(authfile: Option<&Path>) -> Result<PathBuf> {
    login_file(authfile).ok_or_else(|| {
        Error::Usage(
            "no home directory to keep the auth file in: pass --authfile FILE or set \
             REGISTRY_AUTH_FILE"
                .into(),
        )
    })
}

/// The auth file as JSON; an empty object if it does not exist.
fn read(file: &Path) -> Result<Value> {
    match std::fs::read(file) {
        Ok(raw) if raw.iter().all(u8::is_ascii_whitespace) => Ok(Value::Object(Map::new())),
        Ok(raw) => serde_json::from_slice(&raw).map_err(|e| {
            Error::Failed(format!(
                "{} is not valid JSON ({e}); fix or remove it, or pass --authfile FILE",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(e) => Err(Error::io("read", file, e)),
    }
}

/// The `auths` object of an auth file, made if missing.
fn auths<'c>(config: &'c mut Value, file: &Path) -> Result<&'c mut Map<String, Value>> {
    let shape = || {
        Error::Failed(format!(
            "{} is not an auth file (a JSON object with an \"auths\" object); fix or remove \
             it, or pass --authfile FILE",
            file.display()
        ))
    };
    let top = config.as_object_mut().ok_or_else(shape)?;
    top.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(shape)
}

/// Writes the auth file atomically, 0600 (it holds passwords), its
/// directory made 0700 if missing.
fn write(file: &Path, config: &Value) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
    }
    let mut out = AtomicFile::create(file)?;
    out.temp_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("set permissions of", file, e))?;
    let mut text = serde_json::to_vec_pretty(config).expect("a JSON value serializes");
    text.push(b'\n');
    out.file()
        .write_all(&text)
        .map_err(|e| Error::io("write", file, e))?;
    out.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_keeps_other_entries_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/auth.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"auths":{"a.example":{"auth":"eDp5"},"b.example:5000":{"auth":"eDp5"}},"credHelpers":{"c":"x"}}"#,
        )
        .unwrap();
        let out = logout(Some(&file), Some("a.example")).unwrap();
        assert_eq!(out.removed, ["a.example"]);
        let left: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            left,
            serde_json::json!({"auths":{"b.example:5000":{"auth":"eDp5"}},"credHelpers":{"c":"x"}})
        );
        let err = logout(Some(&file), Some("a.example"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("not logged in to a.example: "), "{err}");
        assert_eq!(
            logout(Some(&file), None).unwrap().removed,
            ["b.example:5000"]
        );
        let mode = std::fs::metadata(&file).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }
}
