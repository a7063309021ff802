//! Where a client's requests go: the scheme (HTTPS, or plain HTTP when
//! named by `--plain-http` or met on loopback), the registry's origin that
//! alone is sent credentials, the URL a path or `Location` stands for, and
//! how a request is named in messages.

use std::time::Instant;

use ureq::http::Method;

use super::wire_log::log_exchange;
use super::Client;
use crate::error::registry::{redact, Failure, RegistryError};
use crate::registry::origin::Origin;

/// The scheme and host requests go to, and its origin: the only one
/// that gets credentials.
pub(super) struct Endpoint {
    base: String,
    origin: Origin,
}

impl Client {
    /// The scheme and host of every request, settled once. A loopback
    /// registry not named by `--plain-http` is asked `GET /v2/` over HTTPS
    /// first, as docker does; only if a plain-HTTP server answers the TLS
    /// hello (a protocol error) does the client speak plain HTTP to it. A
    /// certificate error, or any other answer, keeps HTTPS: falling back
    /// then would turn a trust failure into plain text.
    fn endpoint(&self) -> &Endpoint {
        self.endpoint.get_or_init(|| {
            let http = self.plain || (self.loopback_fallback && self.answers_plain_http());
            let base = format!("{}://{}", if http { "http" } else { "https" }, self.host);
            let origin = Origin::of(&base).expect("checked in Client::new");
            Endpoint { base, origin }
        })
    }

    /// Whether HTTPS to the registry meets a plain-HTTP server.
    fn answers_plain_http(&self) -> bool {
        let url = format!("https://{}/v2/", self.host);
        let started = Instant::now();
        let outcome = self.agent.get(&url).call();
        log_exchange(&Method::GET, &url, started, &outcome);
        let Err(e) = outcome else { return false };
        let err = RegistryError::transport(String::new(), &e);
        let plain = matches!(&err.kind, Failure::Protocol(t) if t.contains("InvalidContentType"));
        if plain {
            log::info!(
                "{} answers HTTPS in plain HTTP; it is on loopback, so airlock speaks plain HTTP to it",
                self.registry
            );
        }
        plain
    }

    /// `https://host/v2/…` for a path that starts with `/v2/`; an absolute
    /// URL as it is, and `//host/…` on the registry's scheme (a `Location`
    /// may take each form).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with("//") {
            format!("{}:{path}", self.endpoint().origin.scheme)
        } else {
            format!("{}{path}", self.endpoint().base)
        }
    }

    /// Whether `url` (absolute, see [`Client::url`]) is on the registry's
    /// origin, the only one that is sent credentials.
    pub fn is_own(&self, url: &str) -> bool {
        Origin::of(url).as_ref() == Some(&self.endpoint().origin)
    }

    /// How a request is named in messages: its method and URL, with any
    /// credentials in the URL redacted, and a note when the URL is on
    /// another origin (which is why it was sent no credentials).
    pub fn what(&self, method: &Method, path: &str) -> String {
        let url = self.url(path);
        let mut what = format!("{method} {}", redact(&url));
        if !self.is_own(&url) {
            what.push_str(&format!(
                " (not on the registry's origin {}: sent without credentials)",
                self.endpoint().base
            ));
        }
        what
    }
}
