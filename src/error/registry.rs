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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    /// TLS certificate not trusted (x509 unknown authority and friends).
    Certificate(String),
    /// A server that speaks plain HTTP where TLS was expected, or the reverse.
    Protocol(String),
    Connection(String),
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

impl RegistryError {
    pub fn status(request: String, status: u16, body: &[u8]) -> RegistryError {
        let codes = serde_json::from_slice::<Body>(body)
            .map(|b| b.errors.into_iter().map(|e| (e.code, e.message)).collect())
            .unwrap_or_default();
        RegistryError {
            request,
            kind: Failure::Status(status),
            codes,
        }
    }

    pub fn transport(request: String, error: &ureq::Error) -> RegistryError {
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
            _ if text.contains("InvalidCertificate") || text.contains("UnknownIssuer") => {
                Failure::Certificate(text)
            }
            // rustls reading a plain-HTTP answer, wrapped in an I/O error.
            _ if text.contains("corrupt message") || text.contains("InvalidContentType") => {
                Failure::Protocol(text)
            }
            _ => Failure::Connection(text),
        };
        RegistryError {
            request,
            kind,
            codes: Vec::new(),
        }
    }

    /// Whether the same request may succeed if tried again.
    pub fn is_temporary(&self) -> bool {
        match self.kind {
            Failure::Status(s) => s == 429 || s == 408 || (500..600).contains(&s),
            Failure::Connection(_) => true,
            Failure::Certificate(_) | Failure::Protocol(_) => false,
        }
    }

    pub fn status_code(&self) -> Option<u16> {
        match self.kind {
            Failure::Status(s) => Some(s),
            _ => None,
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|(c, _)| c == code)
    }

    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match &self.kind {
            Failure::Status(401) => "log in: `docker login HOST`, or pass --username USER --password-stdin".into(),
            Failure::Status(403) => "the credentials are valid but lack permission for this repository; ask the registry's administrator".into(),
            Failure::Status(404) => "check the repository name and the tag or digest (names are case-sensitive and lower-case)".into(),
            Failure::Status(429) => "the registry is rate-limiting; wait, log in for a higher limit, or lower --jobs".into(),
            Failure::Status(s) if (500..600).contains(s) => "the registry failed; retry later or ask its administrator".into(),
            Failure::Status(_) => "see the registry's message".into(),
            Failure::Certificate(_) => "the registry's certificate is not trusted: pass its CA with --ca-cert FILE, put it in /etc/docker/certs.d/HOST:PORT/ca.crt, or (only on a trusted network) --insecure HOST".into(),
            Failure::Protocol(_) => "if the registry speaks plain HTTP, pass --plain-http HOST".into(),
            Failure::Connection(_) => "check the host name, the port, proxies (HTTPS_PROXY, NO_PROXY) and that the registry is up".into(),
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL holds names from the bundle and the rest comes from the
        // server: all of it is escaped before it reaches a terminal.
        write!(f, "{}: ", Shown(&self.request))?;
        match &self.kind {
            Failure::Status(s) => write!(f, "HTTP {s}")?,
            Failure::Certificate(t) => write!(f, "TLS certificate not trusted ({})", Shown(t))?,
            Failure::Protocol(t) => write!(f, "protocol error ({})", Shown(t))?,
            Failure::Connection(t) => write!(f, "connection failed ({})", Shown(t))?,
        }
        for (code, message) in &self.codes {
            write!(f, "; {}: {}", Shown(code), Shown(message))?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {}

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
        let c = RegistryError {
            request: "GET x".into(),
            kind: Failure::Connection("reset\r\nOK".into()),
            codes: vec![],
        };
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
