//! The flag groups several commands share (registry access, trust,
//! platforms, output) and the parsers of flag values, so `args.rs` keeps
//! the commands themselves.
//!
//! Not for rules between flags beyond what clap states; those live in
//! `airlock::ops`.

use std::path::PathBuf;

use clap::Args;

use airlock::model::{Platform, Reference};
use airlock::registry::RegistryOptions;
use airlock::{Error, Result};

use super::size::{parse_media_size, parse_size};

/// `-j N`: at least one worker.
pub(super) fn jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a number of workers")),
    }
}

/// Smaller chunks do not save memory worth having, and each costs a
/// request: 100 bytes would be 10 000 PATCHes per MiB.
const MIN_CHUNK: u64 = 1 << 20;

/// `--chunk-size`: a binary size of at least 1 MiB.
pub(super) fn chunk_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < MIN_CHUNK {
        return Err(format!("{s:?} is less than the smallest chunk, 1M"));
    }
    Ok(n)
}

/// `cache prune --max-size`: a media size, or 0 to empty the cache.
pub(super) fn cache_size(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" => Ok(0),
        _ => parse_media_size(s),
    }
}

/// `--catalog HOST[:PORT]`: the distribution API lists a whole registry,
/// never a namespace, so a path after the host is refused rather than
/// glued into a wrong URL.
pub(super) fn catalog_host(s: &str) -> Result<String, String> {
    if let Some((_, rest)) = s.split_once("://") {
        return Err(format!(
            "{s:?}: give the registry as HOST[:PORT], without a scheme (e.g. {})",
            rest.split('/').next().unwrap_or(rest)
        ));
    }
    if let Some((host, path)) = s.split_once('/') {
        return Err(format!(
            "{s:?}: a registry's catalog lists every repository of {host}; it cannot be \
             limited to {path:?}. Pass --catalog {host}, or --all-tags {host}/REPO for \
             each repository under {path}"
        ));
    }
    if s.is_empty() {
        return Err("the registry is empty".into());
    }
    Ok(s.to_string())
}

/// `--all-tags REGISTRY/REPO`: a valid repository name, checked before
/// anything is opened.
pub(super) fn repository(s: &str) -> Result<String, String> {
    match Reference::parse(s) {
        Ok(_) => Ok(s.to_string()),
        Err(Error::InvalidReference { reason, .. }) => {
            Err(format!("{s:?} is not a repository name: {reason}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Args)]
pub struct PlatformArgs {
    /// Keep only os/arch[/variant]; repeat for several [default: all].
    /// Compared as containerd normalises them: linux/arm64 is
    /// linux/arm64/v8 and linux/aarch64; linux/amd64 is linux/x86_64.
    #[arg(long = "platform", value_name = "PLATFORM")]
    pub platforms: Vec<String>,
}

impl PlatformArgs {
    pub fn parse(&self) -> Result<Vec<Platform>> {
        self.platforms.iter().map(|p| Platform::parse(p)).collect()
    }
}

/// How to reach registries. Host lists take `host` or `host:port`.
#[derive(Args)]
pub struct RegistryArgs {
    /// Log in as this user (with --password-stdin) to the one registry the
    /// command targets: import's --to registry, or the registry all of
    /// pack's sources share (pack refuses it for sources on several
    /// registries; use `airlock login` for each). Every other registry gets
    /// the containers auth file, then docker's config.json and credential
    /// helpers, or nothing; a URL off a registry's own origin (an upload
    /// Location, a redirect) gets no credentials at all.
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) for --username from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Trust this CA certificate (PEM) for every registry, beside the
    /// system's and certs.d's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Look for HOST:PORT/ca.crt and client.cert/client.key here instead of
    /// /etc/docker/certs.d and /etc/containers/certs.d; repeatable.
    #[arg(long = "certs-dir", value_name = "DIR")]
    pub certs_dirs: Vec<PathBuf>,
    /// Read credentials from this containers auth file instead of
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json and
    /// ~/.config/containers/auth.json (docker's config.json is still read
    /// after it).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Do not verify TLS certificates: bare, of every registry of the
    /// command; --insecure=HOST, of that host only (repeatable).
    #[arg(
        long = "insecure",
        value_name = "HOST",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = airlock::registry::options::EVERY
    )]
    pub insecure: Vec<String>,
    /// Speak plain HTTP: bare, to every registry of the command;
    /// --plain-http=HOST, to that host only (repeatable). Loopback
    /// registries (localhost, 127.0.0.0/8, ::1) need neither: HTTPS is
    /// tried first, then plain HTTP if a plain-HTTP server answers.
    #[arg(
        long = "plain-http",
        value_name = "HOST",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = airlock::registry::options::EVERY
    )]
    pub plain_http: Vec<String>,
    /// Attempts per request on connection errors, 429 and 5xx.
    #[arg(long, default_value_t = 6, value_name = "N")]
    pub retries: u32,
}

impl RegistryArgs {
    /// The options for `airlock::registry`; with `--password-stdin`, reads
    /// one line of standard input as the password.
    pub fn options(self, jobs: Option<usize>) -> Result<RegistryOptions> {
        let mut opts = RegistryOptions::default();
        if self.password_stdin {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| Error::io("read password from", "standard input", e))?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                // Sent, an empty password reads as "wrong password" later.
                return Err(Error::Usage(format!(
                    "--password-stdin read an empty password for {}; pipe it in, e.g. \
                     `printf %s \"$TOKEN\" | airlock … --password-stdin`",
                    self.username.as_deref().unwrap_or("the user")
                )));
            }
            opts.password = Some(password.to_string());
            opts.username = self.username;
        }
        opts.ca_certs = self.ca_certs;
        if !self.certs_dirs.is_empty() {
            opts.certs_dirs = self.certs_dirs;
        }
        opts.insecure = self.insecure;
        opts.plain_http = self.plain_http;
        opts.authfile = self.authfile;
        opts.attempts = self.retries.max(1);
        opts.jobs = jobs.unwrap_or(8);
        Ok(opts)
    }
}

#[derive(Args)]
pub struct TrustArgs {
    /// The signer's public key; repeatable: a bundle signed by any of them
    /// passes (an old and a new key while keys rotate).
    #[arg(
        long = "pub",
        value_name = "KEY",
        required_unless_present = "allow_unsigned"
    )]
    pub public_keys: Vec<PathBuf>,
    /// Accept the bundle without checking who signed it.
    #[arg(long, conflicts_with = "public_keys")]
    pub allow_unsigned: bool,
}

#[derive(Args)]
pub struct OutputArgs {
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON report on stdout (see docs/json.md); on failure, a
    /// JSON object with the error.
    #[arg(long)]
    pub json: bool,
}

/// `login`/`logout REGISTRY`: credentials belong to a whole registry, so
/// a scheme or a path is refused rather than stored under a key no lookup
/// matches.
pub(super) fn registry_host(s: &str) -> Result<String, String> {
    let host = s.split("://").last().unwrap_or(s);
    let host = host.split('/').next().unwrap_or(host);
    if host.is_empty() {
        return Err("the registry is empty".into());
    }
    if host != s {
        return Err(format!(
            "{s:?}: give the registry as HOST[:PORT], e.g. {host}"
        ));
    }
    Ok(s.to_string())
}
