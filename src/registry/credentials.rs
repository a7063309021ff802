//! Where a registry's credentials come from, first match wins:
//! 1. the command line (for the one registry they were given for);
//! 2. the containers auth file, as `containers-auth.json(5)` orders it:
//!    `--authfile FILE` if given, else `$REGISTRY_AUTH_FILE` (either one
//!    alone), else `$XDG_RUNTIME_DIR/containers/auth.json` and then
//!    `~/.config/containers/auth.json`;
//! 3. docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`).
//!
//! The auth file before docker's config, as skopeo and podman read them.
//! Each file has the same shape: a `credHelpers` entry for the registry,
//! else the `credsStore` helper, else `auths` (base64 `auth`, or
//! `username`/`password`, or `identitytoken`). `airlock login` writes the
//! first auth file ([`login_file`], see `ops::login`).
//! A helper is run as docker runs it: `docker-credential-NAME get` with the
//! server URL on standard input, answering `{"Username","Secret"}` (a
//! username of `<token>` means an identity token).
//!
//! Failures are reported, never swallowed: a config.json that does not
//! parse (the file and the parse error), a helper that is not on PATH or
//! that fails (its exit status and the first line of its stderr). The
//! client looks credentials up only when a registry asks for them (a 401),
//! so a broken helper for one registry does not stop anonymous pulls from
//! another.
//!
//! Not here: verifying credentials (`ops::login`), or sending them
//! ([`super::client`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use super::auth::Credentials;
use super::options::RegistryOptions;

/// Credentials found for a registry, and where (for messages).
#[derive(Debug, Clone)]
pub struct Found {
    pub credentials: Credentials,
    /// The user they log in as (`<token>` for an identity token).
    pub user: String,
    /// `--username`, the config file, or the helper that gave them.
    pub from: String,
}

/// The outcome of a lookup that did not fail.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Found),
    /// Nothing for this registry; `looked_in` says where airlock looked.
    Nothing {
        looked_in: String,
    },
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The containers auth files read, in order (see the module doc).
pub fn auth_files(authfile: Option<&Path>) -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    // A file the user named replaces the default ones.
    if let Some(f) = authfile {
        return vec![f.to_path_buf()];
    }
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(f)];
    }
    let mut files: Vec<PathBuf> = env("XDG_RUNTIME_DIR")
        .map(|run| PathBuf::from(run).join("containers/auth.json"))
        .into_iter()
        .collect();
    files.extend(dirs::home_dir().map(|h| h.join(".config/containers/auth.json")));
    files
}

/// The auth file `airlock login` writes and `logout` edits: the first
/// of [`auth_files`] (`~/.config/containers/auth.json` when neither
/// `--authfile`, `REGISTRY_AUTH_FILE` nor `XDG_RUNTIME_DIR` is set).
pub fn login_file(authfile: Option<&Path>) -> Option<PathBuf> {
    auth_files(authfile).into_iter().next()
}

/// The docker config file airlock reads.
pub fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => dirs::home_dir().map(|h| h.join(".docker/config.json")),
    }
}

/// The registry's credentials; an error names the file or helper that
/// failed.
pub fn lookup(opts: &RegistryOptions, registry: &str) -> Result<Lookup, String> {
    let mine = opts.login_registry.as_deref() == Some(registry);
    if let (Some(u), Some(p), true) = (&opts.username, &opts.password, mine) {
        return Ok(Lookup::Found(Found {
            credentials: Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            },
            user: u.clone(),
            from: "--username".into(),
        }));
    }
    let mut files = auth_files(opts.authfile.as_deref());
    files.extend(config_path());
    let mut looked_in = Vec::new();
    for path in &files {
        let shown = path.display().to_string();
        match read_config(path)? {
            None => looked_in.push(format!("{shown}, which does not exist")),
            Some(config) => match from_config(&config, &shown, registry)? {
                Some(found) => return Ok(Lookup::Found(found)),
                None => looked_in.push(shown),
            },
        }
    }
    if looked_in.is_empty() {
        looked_in.push("the docker config (no home directory to find it in)".into());
    }
    Ok(Lookup::Nothing {
        looked_in: looked_in.join(", or "),
    })
}

/// A config or auth file, `None` if it does not exist; a file that cannot
/// be read or parsed is an error naming it.
fn read_config(path: &Path) -> Result<Option<DockerConfig>, String> {
    let shown = path.display();
    let raw = match std::fs::read(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|e| format!("{shown} is not valid JSON ({e})"))
}

/// The registry's credentials in one file: its helper, else its `auths`.
fn from_config(
    config: &DockerConfig,
    shown: &str,
    registry: &str,
) -> Result<Option<Found>, String> {
    let helper = config
        .cred_helpers
        .iter()
        .find(|(k, _)| same_registry(k, registry))
        .map(|(_, h)| (h.clone(), "credHelpers"))
        .or_else(|| {
            config
                .creds_store
                .clone()
                .filter(|s| !s.is_empty())
                .map(|s| (s, "credsStore"))
        });
    if let Some((name, key)) = helper {
        let from = format!("docker-credential-{name} ({key} in {shown})");
        if let Some(found) = run_helper(&name, registry, &from)? {
            return Ok(Some(found));
        }
    }
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| same_registry(k, registry))
        .map(|(_, e)| e);
    Ok(entry.map(|e| from_entry(e, shown)).transpose()?.flatten())
}

/// An `auths` entry's credentials; `None` for an entry without any.
fn from_entry(e: &AuthEntry, file: &str) -> Result<Option<Found>, String> {
    if let Some(t) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Found {
            credentials: Credentials::IdentityToken(t.clone()),
            user: "<token>".into(),
            from: file.into(),
        }));
    }
    let (user, password) = match (&e.auth, &e.username, &e.password) {
        (Some(a), _, _) if !a.is_empty() => {
            let bad = || format!("{file}: an `auth` value is not base64 of USER:PASSWORD");
            let decoded = B64.decode(a.trim()).map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (u, p) = text.split_once(':').ok_or_else(bad)?;
            (u.to_string(), p.to_string())
        }
        (_, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Found {
        credentials: Credentials::Basic {
            username: user.clone(),
            password,
        },
        user,
        from: file.into(),
    }))
}

/// Whether a config key (`host:port`, `https://host/v1/`, …) names this
/// registry; Docker Hub goes by several names.
pub(crate) fn same_registry(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    let hub = |h: &str| {
        matches!(
            h,
            "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
        )
    };
    host.eq_ignore_ascii_case(registry) || (hub(host) && hub(registry))
}

/// Runs `docker-credential-NAME get` for `registry`; `None` when it has
/// nothing for it.
fn run_helper(name: &str, registry: &str, from: &str) -> Result<Option<Found>, String> {
    let program = format!("docker-credential-{name}");
    let server = if registry == crate::model::reference::DEFAULT_REGISTRY {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    // The server URL goes in through a file, written before the helper
    // starts: a helper that exits without reading its input cannot make
    // our write fail (or raise SIGPIPE).
    let input = (|| -> std::io::Result<std::fs::File> {
        use std::io::{Seek, Write};
        let mut f = tempfile::tempfile()?;
        f.write_all(server.as_bytes())?;
        f.rewind()?;
        Ok(f)
    })()
    .map_err(|e| format!("cannot prepare the input of {program}: {e}"))?;
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("the credential helper {from} is not on PATH")
            }
            _ => format!("cannot run the credential helper {from}: {e}"),
        })?;
    let out = wait_for_helper(child, from)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // docker's helpers say so on stdout when they hold nothing.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "the credential helper {from} failed ({}): {first}",
            out.status
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("the credential helper {from} answered something that is not its JSON ({e})")
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    let credentials = if answer.username == "<token>" {
        Credentials::IdentityToken(answer.secret)
    } else {
        Credentials::Basic {
            username: answer.username.clone(),
            password: answer.secret,
        }
    };
    Ok(Some(Found {
        credentials,
        user: answer.username,
        from: from.into(),
    }))
}

/// How long a credential helper may take before it is stopped: one that
/// waits for a keyring to unlock, or hangs, must not hang the run.
/// `AIRLOCK_CREDENTIAL_HELPER_TIMEOUT` (seconds) overrides it.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for a helper's answer for at most [`HELPER_TIMEOUT`], reading its
/// output as it comes (a helper that writes much must not block on a full
/// pipe); kills it when it takes longer.
fn wait_for_helper(mut child: Child, from: &str) -> Result<Output, String> {
    let limit = std::env::var("AIRLOCK_CREDENTIAL_HELPER_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(HELPER_TIMEOUT, Duration::from_secs);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                // At most 1 MiB: an answer is a few hundred bytes.
                let _ = p.by_ref().take(1 << 20).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the credential helper {from} did not answer within {} s and was stopped",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for the credential helper {from}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_name_registries_with_or_without_scheme_and_path() {
        assert!(same_registry("reg.example:5000", "reg.example:5000"));
        assert!(same_registry(
            "https://reg.example:5000/v2/",
            "reg.example:5000"
        ));
        assert!(!same_registry("reg.example", "reg.example:5000"));
        assert!(same_registry("https://index.docker.io/v1/", "docker.io"));
    }

    #[test]
    fn reads_auth_entries_and_refuses_bad_base64() {
        let e = AuthEntry {
            auth: Some(B64.encode("alice:pw:with:colons")),
            ..Default::default()
        };
        let f = from_entry(&e, "c.json").unwrap().unwrap();
        assert_eq!(f.user, "alice");
        assert!(
            matches!(f.credentials, Credentials::Basic { password, .. } if password == "pw:with:colons")
        );
        let bad = AuthEntry {
            auth: Some("%%%".into()),
            ..Default::default()
        };
        assert_eq!(
            from_entry(&bad, "c.json").unwrap_err(),
            "c.json: an `auth` value is not base64 of USER:PASSWORD"
        );
        assert!(from_entry(&AuthEntry::default(), "c.json")
            .unwrap()
            .is_none());
    }
}
