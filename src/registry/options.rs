//! What the user said about registries: trust, transport, credentials,
//! retries. One value serves every registry a command touches; the
//! per-registry settings name their hosts, and the command-line
//! credentials name the one registry they are for
//! ([`RegistryOptions::scope_login`]).

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
    /// Hosts (`host` or `host:port`) whose certificates are not verified;
    /// [`EVERY`] names every registry.
    pub insecure: Vec<String>,
    /// Hosts spoken to over plain HTTP; [`EVERY`] names every registry.
    /// A loopback registry not named here is tried over HTTPS, then over
    /// plain HTTP if HTTPS meets a plain-HTTP server (see `client`).
    pub plain_http: Vec<String>,
    /// `--authfile`: the containers auth file to read instead of the
    /// default ones (see `credentials`).
    pub authfile: Option<PathBuf>,
    /// Credentials given on the command line; they take precedence over
    /// docker's config for `login_registry` only.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The one registry `username` and `password` are sent to; with none,
    /// they are sent to no registry. See [`RegistryOptions::scope_login`].
    pub login_registry: Option<String>,
    /// Attempts per request for temporary failures (connection, 429, 5xx).
    pub attempts: u32,
    /// First backoff delay; doubled each attempt, with jitter, capped.
    pub backoff: Duration,
    /// How long a registry may fail every request (no success in between)
    /// before the run gives up on it: one budget per registry and run,
    /// shared by every thread, so a dead registry is given up on in this
    /// time however many images and blobs are left.
    pub retry_window: Duration,
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
            authfile: None,
            username: None,
            password: None,
            login_registry: None,
            attempts: 6,
            backoff: Duration::from_millis(250),
            retry_window: Duration::from_secs(20),
            jobs: 4,
        }
    }
}

impl RegistryOptions {
    /// Binds the command-line credentials to the registry a command
    /// targets: the only one of `registries` (every registry the command
    /// will talk to, by the names clients are made for). With several, and
    /// credentials given, the command is refused: one password for several
    /// registries would hand each the others' secret.
    pub fn scope_login<'r>(
        &mut self,
        registries: impl IntoIterator<Item = &'r str>,
    ) -> crate::error::Result<()> {
        let mut names: Vec<&str> = registries.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        match (&self.username, names.as_slice()) {
            (None, _) => Ok(()),
            (Some(_), [one]) => {
                self.login_registry = Some(one.to_string());
                Ok(())
            }
            (Some(_), []) => Ok(()),
            (Some(user), many) => Err(crate::error::Error::Usage(format!(
                "--username {user} names one registry, but this command reads from {}: \
                 log in to each with `airlock login HOST` (or `docker login HOST`), \
                 or pack each registry's images in a command of its own",
                many.join(", ")
            ))),
        }
    }

    /// Does a list of hosts name this registry? `host` matches any port;
    /// [`EVERY`] (a bare `--insecure`) matches every registry.
    pub(crate) fn names(list: &[String], registry: &str) -> bool {
        let bare = host_of(registry);
        list.iter()
            .any(|h| h == EVERY || h == registry || h.trim_matches(['[', ']']) == bare)
    }

    /// Whether a registry is on this machine's loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`, any port): docker reaches those over plain
    /// HTTP without being told to.
    pub fn is_loopback(registry: &str) -> bool {
        let host = host_of(registry);
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// In a host list, every registry of the command (a bare `--insecure` or
/// `--plain-http`).
pub const EVERY: &str = "*";

/// `host` of `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, _)) if !h.contains(':') => h,
        Some(_) => registry,
        None => registry,
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
            .field("authfile", &self.authfile)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("login_registry", &self.login_registry)
            .field("attempts", &self.attempts)
            .field("retry_window", &self.retry_window)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_credentials_belong_to_one_registry() {
        let mut o = RegistryOptions {
            username: Some("alice".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        o.scope_login(["a.example", "a.example"]).unwrap();
        assert_eq!(o.login_registry.as_deref(), Some("a.example"));
        let err = o
            .scope_login(["b.example:5000", "a.example"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.example, b.example:5000"), "{err}");
        let mut anonymous = RegistryOptions::default();
        anonymous.scope_login(["a.example", "b.example"]).unwrap();
        assert_eq!(anonymous.login_registry, None);
    }

    #[test]
    fn host_lists_and_loopback() {
        let named = vec!["reg.example".to_string(), "[::1]:5000".to_string()];
        assert!(RegistryOptions::names(&named, "reg.example:5000"));
        assert!(RegistryOptions::names(&named, "[::1]:5000"));
        assert!(!RegistryOptions::names(&named, "other.example"));
        assert!(RegistryOptions::names(
            &[EVERY.to_string()],
            "any.example:1"
        ));
        for l in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(RegistryOptions::is_loopback(l), "{l}");
        }
        for n in [
            "reg.example",
            "10.0.0.1:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!RegistryOptions::is_loopback(n), "{n}");
        }
    }
}
