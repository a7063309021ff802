//! Registry failures as a typed value: what was asked, what the registry
//! said (status and its `errors` body), and whether a retry can help.

use std::fmt;

use serde::Deserialize;

use super::Shown;

/// A failed registry request, with the URL (never credentials) and the
/// registry's own error codes.
#[derive(Debug, Clone)]
pub struct RegistryError {
    /// `GET https://host/v2/…` (query strings removed: they may hold tokens).
    pub request: String,
    pub kind: Failure,
    /// `CODE: message` pairs from the registry's error body.
    pub codes: Vec<(String, String)>,
    /// The registry (`HOST[:PORT]`) it concerns, when the client knows it:
    /// hints name it (`--plain-http=HOST`, `airlock login HOST`).
    pub registry: String,
    /// The failure concerns the whole registry, not this request: no other
    /// request to it can do better, so the run stops here (see
    /// [`RegistryError::is_whole_target`]).
    pub whole_target: bool,
    /// Retries ended because the run's retry budget is spent: the registry
    /// failed every request for this many seconds.
    pub gave_up_after: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    /// TLS certificate not trusted (x509 unknown authority and friends).
    Certificate(String),
    /// A server that speaks plain HTTP where TLS was expected, or the reverse.
    Protocol(String),
    /// The connection broke during an exchange (reset, cut, timeout): a
    /// retry may succeed.
    Connection(String),
    /// Nothing accepts connections there (refused, or no answer to connect).
    Unreachable(String),
    /// The host name does not resolve: no retry can help.
    UnknownHost(String),
    /// A 401 although credentials were sent: they are wrong.
    CredentialsRefused(Box<Login>),
    /// A 401 and no credentials for the registry anywhere airlock looked.
    NotLoggedIn {
        looked_in: String,
    },
    /// A 403 on the first request that writes: this login may not push.
    PushDenied,
    /// A 401 to one request with credentials the registry accepted for
    /// others: this login may not reach that repository (with Bearer auth,
    /// `insufficient_scope`). Only the images that need it fail.
    AccessDenied(Box<Login>),
    /// The credentials could not be read: a malformed docker config, or a
    /// credential helper missing or failing.
    CredentialStore(String),
}

/// Credentials that were sent: the user, and where they came from
/// (`--username`, a config file, a helper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub from: String,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    errors: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The io error inside a ureq error, if that is what it is.
fn io_kind(error: &ureq::Error) -> Option<std::io::ErrorKind> {
    match error {
        ureq::Error::Io(e) => Some(e.kind()),
        _ => None,
    }
}

impl RegistryError {
    fn new(request: String, kind: Failure, codes: Vec<(String, String)>) -> RegistryError {
        RegistryError {
            request,
            kind,
            codes,
            registry: String::new(),
            whole_target: false,
            gave_up_after: None,
        }
    }

    pub fn status(request: String, status: u16, body: &[u8]) -> RegistryError {
        let codes = serde_json::from_slice::<Body>(body)
            .map(|b| b.errors.into_iter().map(|e| (e.code, e.message)).collect())
            .unwrap_or_default();
        RegistryError::new(request, Failure::Status(status), codes)
    }

    /// A failure of the registry as a whole (credentials, TLS trust, …) for
    /// `registry`, found by `request`.
    pub fn target(request: String, registry: &str, kind: Failure) -> RegistryError {
        RegistryError::new(request, kind, Vec::new())
            .on(registry)
            .concerns_target()
    }

    pub fn transport(request: String, error: &ureq::Error) -> RegistryError {
        use std::io::ErrorKind as K;
        let text = error.to_string();
        let kind = match error {
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => {
                if text.contains("Certificate")
                    || text.contains("certificate")
                    || text.contains("UnknownIssuer")
                {
                    Failure::Certificate(text)
                } else {
                    Failure::Protocol(text)
                }
            }
            ureq::Error::Protocol(_) => Failure::Protocol(text),
            ureq::Error::HostNotFound => Failure::UnknownHost(text),
            ureq::Error::Timeout(ureq::Timeout::Resolve) => Failure::UnknownHost(text),
            ureq::Error::Timeout(ureq::Timeout::Connect) | ureq::Error::ConnectionFailed => {
                Failure::Unreachable(text)
            }
            // rustls's certificate errors reach us wrapped in I/O errors:
            // "invalid peer certificate: UnknownIssuer", "…: NotValidForName",
            // "…: Other(OtherError(CaUsedAsEndEntity))". None is cured by a
            // retry, and each is a matter of trust, not of the network.
            _ if is_certificate_text(&text) => Failure::Certificate(text),
            // rustls reading a plain-HTTP answer, wrapped in an I/O error.
            _ if text.contains("corrupt message") || text.contains("InvalidContentType") => {
                Failure::Protocol(text)
            }
            // std's resolver reports a failed lookup as an uncategorised
            // I/O error with getaddrinfo's message.
            _ if text.contains("failed to lookup address") => Failure::UnknownHost(text),
            _ if matches!(
                io_kind(error),
                Some(K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable)
            ) =>
            {
                Failure::Unreachable(text)
            }
            _ => Failure::Connection(text),
        };
        RegistryError::new(request, kind, Vec::new())
    }

    /// Names the registry this error concerns (for the hint).
    pub fn on(mut self, registry: &str) -> RegistryError {
        self.registry = registry.to_string();
        self
    }

    /// Marks the failure as one of the whole registry.
    pub fn concerns_target(mut self) -> RegistryError {
        self.whole_target = true;
        self
    }

    /// Whether the failure concerns the whole registry (it cannot be
    /// reached, trusted, spoken to, or logged in to, or it failed every
    /// request for the run's retry budget): the run stops at once and says
    /// so once, instead of failing image after image.
    pub fn is_whole_target(&self) -> bool {
        self.whole_target
            || matches!(
                self.kind,
                Failure::Certificate(_)
                    | Failure::Protocol(_)
                    | Failure::UnknownHost(_)
                    | Failure::CredentialsRefused(_)
                    | Failure::NotLoggedIn { .. }
                    | Failure::PushDenied
                    | Failure::CredentialStore(_)
            )
    }

    /// Whether the same request may succeed if tried again.
    pub fn is_temporary(&self) -> bool {
        if self.whole_target {
            return false;
        }
        match self.kind {
            Failure::Status(s) => s == 429 || s == 408 || (500..600).contains(&s),
            Failure::Connection(_) | Failure::Unreachable(_) => true,
            _ => false,
        }
    }

    /// Whether running the same command again later is the cure: the
    /// registry failed for a while (5xx, 429, a cut connection), nothing
    /// the user must change first.
    pub fn retry_cures(&self) -> bool {
        match self.kind {
            Failure::Status(s) => s == 429 || s == 408 || (500..600).contains(&s),
            Failure::Connection(_) => true,
            _ => false,
        }
    }

    /// The failure in a few words, for a log line: `HTTP 503`,
    /// `connection refused`.
    pub fn brief(&self) -> String {
        let short = |t: &str| {
            let t = t.strip_prefix("io: ").unwrap_or(t);
            let t = t.split(" (os error").next().unwrap_or(t);
            Shown(t.to_lowercase()).to_string()
        };
        match &self.kind {
            Failure::Status(s) => format!("HTTP {s}"),
            Failure::Connection(t)
            | Failure::Unreachable(t)
            | Failure::UnknownHost(t)
            | Failure::Certificate(t)
            | Failure::Protocol(t) => short(t),
            _ => "refused".into(),
        }
    }

    pub fn status_code(&self) -> Option<u16> {
        match self.kind {
            Failure::Status(s) => Some(s),
            Failure::CredentialsRefused(_)
            | Failure::NotLoggedIn { .. }
            | Failure::AccessDenied(_) => Some(401),
            Failure::PushDenied => Some(403),
            _ => None,
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|(c, _)| c == code)
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        let host = if self.registry.is_empty() {
            "HOST"
        } else {
            self.registry.as_str()
        };
        match &self.kind {
            Failure::Status(401) => format!("log in: `airlock login {host}`, or pass --username USER --password-stdin"),
            Failure::Status(403) => "the credentials are valid but lack permission for this repository; ask the registry's administrator".into(),
            Failure::Status(404) => "check the repository name and the tag or digest (names are case-sensitive and lower-case)".into(),
            Failure::Status(429) => "the registry is rate-limiting; wait, log in for a higher limit, or lower --jobs".into(),
            Failure::Status(s) if (500..600).contains(s) => "the registry failed; retry later or ask its administrator".into(),
            Failure::Status(_) => "see the registry's message".into(),
            Failure::Certificate(t) if t.contains("CaUsedAsEndEntity") => format!("the registry presents a CA certificate (basicConstraints CA:TRUE) as its own, which TLS clients refuse even when it is trusted: give the registry a server certificate signed by that CA (CA:FALSE), or (only on a trusted network) --insecure={host}"),
            Failure::Certificate(_) => format!("the registry's certificate is not trusted: pass its CA with --ca-cert FILE, put it in /etc/docker/certs.d/{host}/ca.crt, or (only on a trusted network) --insecure={host}"),
            Failure::Protocol(t) if t.starts_with(SPEAKS_TLS) => "the registry speaks HTTPS: drop --plain-http".into(),
            Failure::Protocol(t) if t.starts_with(PAGES_REPEAT) => "the registry's list goes round in a circle: ask its administrator, or name the repositories and tags one by one".into(),
            Failure::Protocol(_) => format!("if the registry speaks plain HTTP, pass --plain-http={host}"),
            Failure::Connection(_) | Failure::Unreachable(_) => "check the host name, the port, proxies (HTTPS_PROXY, NO_PROXY) and that the registry is up".into(),
            Failure::UnknownHost(_) => "check the host name (and the DNS or /etc/hosts entry that should resolve it)".into(),
            Failure::CredentialsRefused(_) => format!("check the password: `airlock login {host}` stores a new one, or pass --username USER --password-stdin"),
            Failure::NotLoggedIn { .. } => format!("log in with `airlock login {host}`, or pass --username USER --password-stdin"),
            Failure::PushDenied => "the credentials are valid but may not push here; log in as a user who may, or ask the registry's administrator".into(),
            Failure::AccessDenied(login) => format!("{} may not use this repository; log in as a user who may, or ask the registry's administrator", Shown(&login.user)),
            Failure::CredentialStore(_) => format!("fix the file or the credential helper named above, or pass --username USER --password-stdin for {host}"),
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL holds names from the bundle and the rest comes from the
        // server: all of it is escaped before it reaches a terminal.
        match &self.kind {
            Failure::CredentialsRefused(login) => write!(
                f,
                "the registry refused the credentials for {} from {} ({}: HTTP 401)",
                Shown(&login.user),
                Shown(&login.from),
                Shown(&self.request)
            )?,
            Failure::NotLoggedIn { looked_in } => write!(
                f,
                "the registry needs a login, and no credentials for {} were found in {} ({}: HTTP 401)",
                Shown(&self.registry),
                Shown(looked_in),
                Shown(&self.request)
            )?,
            Failure::PushDenied => write!(
                f,
                "the registry does not let this login push ({}: HTTP 403)",
                Shown(&self.request)
            )?,
            Failure::AccessDenied(login) => write!(
                f,
                "the registry refused {} access to this repository, though it accepted the credentials for others ({}: HTTP 401)",
                Shown(&login.user),
                Shown(&self.request)
            )?,
            Failure::CredentialStore(t) => write!(
                f,
                "cannot read the credentials for {}: {}",
                Shown(&self.registry),
                Shown(t)
            )?,
            kind => {
                write!(f, "{}: ", Shown(&self.request))?;
                match kind {
                    Failure::Status(s) => write!(f, "HTTP {s}")?,
                    Failure::Certificate(t) => {
                        write!(f, "TLS certificate not trusted ({})", Shown(t))?
                    }
                    Failure::Protocol(t) => write!(f, "protocol error ({})", Shown(t))?,
                    Failure::Connection(t) => write!(f, "connection failed ({})", Shown(t))?,
                    Failure::Unreachable(t) => {
                        write!(f, "connection failed, nothing answers there ({})", Shown(t))?
                    }
                    Failure::UnknownHost(t) => {
                        write!(f, "unknown host, the name does not resolve ({})", Shown(t))?
                    }
                    _ => {}
                }
            }
        }
        for (code, message) in &self.codes {
            write!(f, "; {}: {}", Shown(code), Shown(message))?;
        }
        if let Some(secs) = self.gave_up_after {
            write!(f, "; gave up after {secs} s of retries")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {}

/// How a plain-HTTP request to a TLS port is described (Go's servers, and
/// so distribution, answer it with a 400 and this body).
pub const SPEAKS_TLS: &str = "the server speaks HTTPS";

/// The start of the [`Failure::Protocol`] text of a paginated list whose
/// next-page links go round.
pub const PAGES_REPEAT: &str = "the registry's pages repeat";

/// Whether a transport error's text is rustls refusing the peer's
/// certificate (whatever the reason: issuer, name, CA used as an end entity,
/// expiry).
fn is_certificate_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer") || t.contains("notvalidforname")
}

/// Drops the query string: presigned URLs and token requests carry secrets.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_error_bodies() {
        let e = RegistryError::status(
            "GET https://r/v2/a/manifests/x".into(),
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert!(e.has_code("MANIFEST_UNKNOWN"));
        assert_eq!(
            e.to_string(),
            "GET https://r/v2/a/manifests/x: HTTP 404; MANIFEST_UNKNOWN: manifest unknown"
        );
        assert!(!e.is_temporary());
        assert!(RegistryError::status("x".into(), 503, b"").is_temporary());
        assert!(RegistryError::status("x".into(), 429, b"not json").is_temporary());
        assert!(e.hint().contains("tag or digest"));
    }

    #[test]
    fn a_registry_message_cannot_forge_lines_or_escape_sequences() {
        let e = RegistryError::status(
            "GET https://r/v2/a\u{1b}]0;t/manifests/x".into(),
            400,
            br#"{"errors":[{"code":"DENIED\r","message":"no\nOK: 5 image(s) \u001b[32mfine"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "GET https://r/v2/a\\u{1b}]0;t/manifests/x: HTTP 400; DENIED\\r: no\\nOK: 5 image(s) \\u{1b}[32mfine"
        );
        let c = RegistryError::new(
            "GET x".into(),
            Failure::Connection("reset\r\nOK".into()),
            vec![],
        );
        assert_eq!(c.to_string(), "GET x: connection failed (reset\\r\\nOK)");
    }

    #[test]
    fn redacts_query_strings() {
        assert_eq!(
            redact("https://s3/x?X-Amz-Signature=secret"),
            "https://s3/x"
        );
    }
}
