//! The client's side of logging in: the credentials looked up when the
//! registry first asks, the Authorization header each request carries, the
//! token fetched from a Bearer realm (retried within the run's budget), and
//! the error a 401 becomes. Only for URLs on the registry's own origin.
//!
//! Not here: where credentials come from ([`crate::registry::credentials`])
//! or how challenges and tokens are parsed ([`crate::registry::auth`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use ureq::http::{Method, Response};
use ureq::Body;

use super::wire_log::{log_exchange, log_headers};
use super::{error_from, read_limited, Client, SMALL_BODY};
use crate::error::registry::{redact, Failure, Login, RegistryError};
use crate::registry::auth::{parse_challenge, parse_token, Challenge, Credentials, Token};
use crate::registry::credentials::{self, Found, Lookup};

type R<T> = std::result::Result<T, RegistryError>;

impl Client {
    /// The registry's credentials, looked up the first time they are
    /// needed; a config or helper that fails is an error then.
    pub(super) fn found(&self) -> R<Option<&Found>> {
        let lookup = self
            .credentials
            .get_or_init(|| credentials::lookup(&self.opts, &self.registry));
        match lookup {
            Ok(Lookup::Found(f)) => Ok(Some(f)),
            Ok(Lookup::Nothing { .. }) => Ok(None),
            Err(e) => Err(RegistryError::target(
                "the docker config".into(),
                &self.registry,
                Failure::CredentialStore(e.clone()),
            )),
        }
    }

    /// The error for a 401 to `what`: the credentials sent were refused, or
    /// there were none to send.
    pub(super) fn unauthorized(
        &self,
        what: String,
        resp: Option<Response<Body>>,
        sent: bool,
    ) -> RegistryError {
        let base = match resp {
            Some(r) => error_from(what.clone(), r),
            None => RegistryError::status(what.clone(), 401, b""),
        };
        let kind = match (sent, self.found()) {
            (_, Err(e)) => return e,
            // Accepted before, refused here: this repository, not the login.
            (true, Ok(Some(f))) if self.accepted.load(Ordering::Relaxed) => {
                let mut e = RegistryError::status(what, 401, b"").on(&self.registry);
                e.kind = Failure::AccessDenied(Box::new(Login {
                    user: f.user.clone(),
                    from: f.from.clone(),
                }));
                e.codes = base.codes;
                return e;
            }
            (true, Ok(Some(f))) => Failure::CredentialsRefused(Box::new(Login {
                user: f.user.clone(),
                from: f.from.clone(),
            })),
            _ => Failure::NotLoggedIn {
                looked_in: match self.credentials.get() {
                    Some(Ok(Lookup::Nothing { looked_in })) => looked_in.clone(),
                    _ => "the docker config".into(),
                },
            },
        };
        let mut e = RegistryError::target(what, &self.registry, kind);
        e.codes = base.codes;
        e
    }

    /// After a 401 from the registry's own origin: learns (or relearns)
    /// how to authenticate from its challenge, so that the request is
    /// tried once more. The 401's error when that cannot help: relearnt
    /// already, no challenge, or Basic with credentials sent or none to
    /// send.
    pub(super) fn relearn(
        &self,
        resp: Response<Body>,
        what: &str,
        scope: &str,
        sent: bool,
        relearnt: bool,
    ) -> R<()> {
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge);
        if relearnt || challenge.is_none() {
            return Err(self.unauthorized(what.to_string(), Some(resp), sent));
        }
        *self.challenge.lock().expect("not poisoned") = challenge.clone();
        self.tokens.lock().expect("not poisoned").forget(scope);
        if challenge == Some(Challenge::Basic) && (sent || self.found()?.is_none()) {
            return Err(self.unauthorized(what.to_string(), Some(resp), sent));
        }
        Ok(())
    }

    /// The Authorization header for a request to `url` needing `scope`,
    /// fetching a token if needed; none for a URL on another origin.
    pub(super) fn authorization(
        &self,
        url: &str,
        scope: &str,
        what: &str,
    ) -> std::result::Result<Option<String>, RegistryError> {
        if !self.is_own(url) {
            return Ok(None);
        }
        let challenge = self.challenge.lock().expect("not poisoned").clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.found()?.and_then(|f| f.credentials.basic_header())),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(t) = self.tokens.lock().expect("not poisoned").get(scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope, what)?;
                let header = format!("Bearer {}", token.value);
                self.tokens.lock().expect("not poisoned").put(scope, token);
                Ok(Some(header))
            }
        }
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str, what: &str) -> R<Token> {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(format!("scope={}", encode(s)));
        }
        let token_what = format!("token for {what} from {}", redact(realm));
        let found = self.found()?;
        let anonymous = Credentials::Anonymous;
        let creds = found.map_or(&anonymous, |f| &f.credentials);
        let mut attempt = 0;
        loop {
            if let Some(spent) = self.budget.spent() {
                return Err(spent);
            }
            attempt += 1;
            let result = match creds {
                Credentials::IdentityToken(refresh) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("refresh_token", refresh.clone()),
                        ("client_id", "airlock".to_string()),
                        ("scope", scope.to_string()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s.to_string()));
                    }
                    let body: Vec<String> = form
                        .iter()
                        .map(|(k, v)| format!("{k}={}", encode(v)))
                        .collect();
                    let started = Instant::now();
                    let outcome = self
                        .agent
                        .post(realm)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(body.join("&").as_bytes());
                    log_exchange(&Method::POST, realm, started, &outcome);
                    outcome
                }
                creds => {
                    let sep = if realm.contains('?') { '&' } else { '?' };
                    let url = format!("{realm}{sep}{}", query.join("&"));
                    let mut req = self.agent.get(&url);
                    let basic = creds.basic_header();
                    if let Some(b) = &basic {
                        req = req.header("Authorization", b);
                    }
                    if log::log_enabled!(log::Level::Debug) {
                        let sent = basic.as_deref().map(|b| ("Authorization", b));
                        log_headers(&format!("GET {}", redact(&url)), ">", sent.into_iter());
                    }
                    let started = Instant::now();
                    let outcome = req.call();
                    log_exchange(&Method::GET, &url, started, &outcome);
                    outcome
                }
            };
            let err = match result {
                Ok(mut resp) if resp.status().is_success() => {
                    self.budget.success();
                    if found.is_some() {
                        self.accepted.store(true, Ordering::Relaxed);
                    }
                    let body = read_limited(&mut resp, SMALL_BODY, &token_what)?;
                    return parse_token(&body)
                        .ok_or_else(|| RegistryError::status(token_what.clone(), 200, b""));
                }
                // The realm refused the credentials (or wants some).
                Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
                    self.budget.success();
                    let sent = found.is_some();
                    return Err(self.unauthorized(token_what, Some(resp), sent));
                }
                Ok(resp) => error_from(token_what.clone(), resp),
                Err(e) => RegistryError::transport(token_what.clone(), &e),
            };
            let err = err.on(&self.registry);
            if !err.is_temporary() {
                return Err(err);
            }
            if attempt >= self.attempts {
                return Err(self.budget.failed(err));
            }
            let delay = self.budget.retry(&err, attempt, self.delay(attempt))?;
            std::thread::sleep(delay);
        }
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
