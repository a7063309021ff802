//! The origin of a URL (scheme, host, port): what credentials are bound
//! to. A client sends its registry's credentials and tokens only to URLs
//! of that registry's origin, as docker and containerd do; a URL that
//! differs in any of the three gets none.
//!
//! Not here: deciding which requests carry credentials ([`super::Client`]).

use ureq::http::Uri;

/// Scheme, host and port of an absolute URL (the port filled in from the
/// scheme), compared case-insensitively: what credentials are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `None` for anything but an absolute `http` or `https` URL.
    pub fn of(url: &str) -> Option<Origin> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        Some(Origin {
            host: uri.host()?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default),
            scheme,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_in_scheme_host_or_port() {
        let own = Origin::of("http://reg.example:5000/v2/").unwrap();
        let same = |u: &str| Origin::of(u).as_ref() == Some(&own);
        assert!(same("HTTP://Reg.Example:5000/v2/x?_state=1"));
        assert!(!same("http://reg.example:5001/v2/x"), "another port");
        assert!(!same("https://reg.example:5000/v2/x"), "another scheme");
        assert!(!same("http://other.example:5000/v2/x"), "another host");
        assert!(
            !same("http://reg.example:5000@evil.example/v2/x"),
            "userinfo"
        );
        assert!(!same("/v2/x") && !same("ftp://reg.example:5000/"));
        let tls = Origin::of("https://reg.example").unwrap();
        assert_eq!(Origin::of("https://reg.example:443/v2/"), Some(tls));
        assert_ne!(
            Origin::of("http://reg.example/"),
            Origin::of("https://reg.example/")
        );
    }
}
