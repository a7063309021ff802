//! What the user said about registries: trust, transport, credentials,
//! retries. One value serves every registry a command touches; the
//! per-registry settings name their hosts.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone)]
pub struct RegistryOptions {
    /// Extra CA certificates (PEM) trusted for every registry, beside the
    /// system roots and certs.d.
    pub ca_certs: Vec<PathBuf>,
    /// Directories searched for `HOST[:PORT]/ca.crt`, `*.crt`,
    /// `client.cert` and `client.key`.
    pub certs_dirs: Vec<PathBuf>,
    /// Hosts (`host` or `host:port`) whose certificates are not verified.
    pub insecure: Vec<String>,
    /// Hosts spoken to over plain HTTP.
    pub plain_http: Vec<String>,
    /// Credentials given on the command line; they take precedence over
    /// docker's config for every registry of this command.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Attempts per request for temporary failures (connection, 429, 5xx).
    pub attempts: u32,
    /// First backoff delay; doubled each attempt, with jitter, capped.
    pub backoff: Duration,
    /// Connections per registry; the size of the network pool.
    pub jobs: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            ca_certs: Vec::new(),
            certs_dirs: vec![
                "/etc/docker/certs.d".into(),
                "/etc/containers/certs.d".into(),
            ],
            insecure: Vec::new(),
            plain_http: Vec::new(),
            username: None,
            password: None,
            attempts: 6,
            backoff: Duration::from_millis(250),
            jobs: 4,
        }
    }
}

impl RegistryOptions {
    /// Does a list of hosts name this registry? `host` matches any port.
    pub(crate) fn names(list: &[String], registry: &str) -> bool {
        let bare = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        list.iter().any(|h| h == registry || h == bare)
    }
}

/// Credentials are never printed, not even by `{:?}`.
impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("ca_certs", &self.ca_certs)
            .field("certs_dirs", &self.certs_dirs)
            .field("insecure", &self.insecure)
            .field("plain_http", &self.plain_http)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("attempts", &self.attempts)
            .finish()
    }
}
