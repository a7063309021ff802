//! Credentials and the registry auth handshakes.
//!
//! Credentials come from the command line (for the one registry they were
//! given for), the containers auth file or docker's `config.json`
//! ([`super::credentials`]). The
//! client sends them, and the tokens they buy, only to its registry's
//! origin (see [`super::client`]). A `401` carries a challenge: `Basic`
//! means sending the credentials; `Bearer` means asking the named realm for
//! a token for a scope, which is cached until it expires and fetched again
//! after that (tokens often live 60 s; a large pull outlives many). The
//! client reports a 401 after credentials were sent as those credentials
//! refused (naming the user and where they came from), and one with none
//! to send as no login (naming where airlock looked).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A refresh token (docker's `identitytoken`), exchanged at the realm.
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

impl Credentials {
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                B64.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `WWW-Authenticate`, e.g.
/// `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key=value` pairs; values may contain commas inside quotes.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
}

/// Tokens by scope string.
#[derive(Default)]
pub struct TokenCache {
    tokens: HashMap<String, Token>,
}

impl TokenCache {
    /// A cached token with some life left (10 s of margin for slow requests).
    pub fn get(&self, scope: &str) -> Option<String> {
        self.tokens
            .get(scope)
            .filter(|t| t.expires > Instant::now() + Duration::from_secs(10))
            .map(|t| t.value.clone())
    }

    pub fn put(&mut self, scope: &str, token: Token) {
        self.tokens.insert(scope.to_string(), token);
    }

    pub fn forget(&mut self, scope: &str) {
        self.tokens.remove(scope);
    }
}

/// Parses a token endpoint's answer (`token` or `access_token`, default
/// lifetime 60 s as the spec says).
pub fn parse_token(body: &[u8]) -> Option<Token> {
    let r: TokenResponse = serde_json::from_slice(body).ok()?;
    let value = r.token.or(r.access_token).filter(|t| !t.is_empty())?;
    Some(Token {
        value,
        expires: Instant::now() + Duration::from_secs(r.expires_in.unwrap_or(60).max(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a,b:pull,push""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        let p = parse_params(r#"realm=plain, service="s""#);
        assert_eq!(p["realm"], "plain");
        assert_eq!(p["service"], "s");
    }

    #[test]
    fn parses_tokens_and_expiry() {
        let t = parse_token(br#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.expires > Instant::now() + Duration::from_secs(200));
        assert!(parse_token(br#"{"token":""}"#).is_none());
        let mut cache = TokenCache::default();
        cache.put(
            "s",
            Token {
                value: "old".into(),
                expires: Instant::now() + Duration::from_secs(5),
            },
        );
        assert_eq!(
            cache.get("s"),
            None,
            "a token about to expire is not reused"
        );
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::IdentityToken("tok".into())).contains("tok"));
    }
}
