//! One registry: requests with authentication and bounded retries.
//!
//! Credentials and tokens go only to the registry's own origin (scheme,
//! host and port of the URL the client was made for), as docker and
//! containerd do: a request to a URL on another origin (an upload
//! `Location`, a `Link` page, a journaled session) is sent without an
//! `Authorization` header, and a challenge it answers with is not learnt.
//! Redirects are followed by ureq, which never carries `Authorization`
//! along (a blob redirected to storage such as S3 is fetched without it).
//!
//! Not here: the requests of the protocol ([`super::push`],
//! [`super::source`]) or where credentials come from ([`super::auth`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{Method, Response};
use ureq::{Body, ResponseExt};

use super::auth::{parse_challenge, parse_token, Challenge, Credentials, TokenCache};
use super::options::RegistryOptions;
use super::origin::Origin;
use super::tls;
use crate::error::registry::{redact, RegistryError};
use crate::error::Result;

/// Every manifest type airlock reads. Schema 1 is listed last so that a
/// registry offering only schema 1 says so, and airlock can refuse it by name.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5";

/// Error bodies and small JSON answers are read up to this size.
pub const SMALL_BODY: u64 = 4 * 1024 * 1024;

/// Hands out one client per registry host, sharing options.
pub struct Registries {
    opts: RegistryOptions,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Registries {
    pub fn new(opts: RegistryOptions) -> Registries {
        Registries {
            opts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    pub fn client(&self, registry: &str) -> Result<Arc<Client>> {
        let mut clients = self.clients.lock().expect("not poisoned");
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let c = Arc::new(Client::new(&self.opts, registry)?);
        clients.insert(registry.to_string(), c.clone());
        Ok(c)
    }
}

pub struct Client {
    registry: String,
    base: String,
    /// The origin of `base`: the only one that gets credentials.
    origin: Origin,
    agent: ureq::Agent,
    credentials: Credentials,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<TokenCache>,
    attempts: u32,
    backoff: Duration,
}

impl Client {
    pub fn new(opts: &RegistryOptions, registry: &str) -> Result<Client> {
        let plain = RegistryOptions::names(&opts.plain_http, registry);
        let host = if registry == crate::model::reference::DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            registry
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls::config(opts, registry)?)
            .proxy(ureq::Proxy::try_from_env())
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(opts.jobs.max(1) * 2)
            .user_agent(format!("airlock/{}", env!("CARGO_PKG_VERSION")))
            // Stated, not left to a default: a redirect never carries
            // credentials, not even to the same host on another port.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .build();
        let base = format!("{}://{host}", if plain { "http" } else { "https" });
        let origin = Origin::of(&base).ok_or_else(|| {
            crate::error::Error::Usage(format!("{registry:?} is not a valid registry host"))
        })?;
        Ok(Client {
            registry: registry.to_string(),
            base,
            origin,
            agent: config.into(),
            credentials: Credentials::lookup(opts, registry),
            challenge: Mutex::new(None),
            tokens: Mutex::new(TokenCache::default()),
            attempts: opts.attempts.max(1),
            backoff: opts.backoff,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `https://host/v2/…` for a path that starts with `/v2/`; an absolute
    /// URL as it is, and `//host/…` on the registry's scheme (a `Location`
    /// may take each form).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with("//") {
            format!("{}:{path}", self.origin.scheme)
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Whether `url` (absolute, see [`Client::url`]) is on the registry's
    /// origin, the only one that is sent credentials.
    pub fn is_own(&self, url: &str) -> bool {
        Origin::of(url).as_ref() == Some(&self.origin)
    }

    /// Sends a request, authenticating and retrying as needed. Returns the
    /// response whatever its final status; see [`Client::success`].
    ///
    /// `scope` is the token scope this request needs, e.g.
    /// `repository:library/nginx:pull`.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
    ) -> std::result::Result<Response<Body>, RegistryError> {
        self.send_body(method, path, scope, headers, None)
    }

    /// [`Client::send`] with a request body, resent as a whole on retry
    /// (so bodies are bounded: one upload chunk at most).
    pub fn send_body(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::result::Result<Response<Body>, RegistryError> {
        self.request(method, path, scope, headers, body, self.attempts)
    }

    /// Sends a body once: connection errors and 5xx are not retried (a 401
    /// still leads to authentication and one more try, as the body was
    /// refused before it was read).
    pub fn send_body_once(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::result::Result<Response<Body>, RegistryError> {
        self.request(method, path, scope, headers, Some(body), 1)
    }

    /// Sends `len` bytes read from `body` once, with the current
    /// authorization and no retry of any kind: a stream cannot be resent.
    /// Memory stays at a small buffer whatever `len` is.
    pub fn send_stream_once(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: &mut dyn std::io::Read,
        len: u64,
    ) -> std::result::Result<Response<Body>, RegistryError> {
        let url = self.url(path);
        let what = self.what(&method, &url);
        let auth = self.authorization(&url, scope, &what)?;
        let length = len.to_string();
        let mut all = vec![("Content-Length", length.as_str())];
        all.extend_from_slice(headers);
        let body = ureq::SendBody::from_reader(body);
        let req = self.build(&method, &url, &all, auth.as_deref(), body, &what)?;
        self.agent
            .run(req)
            .map_err(|e| RegistryError::transport(what, &e))
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
                self.base
            ));
        }
        what
    }

    /// Every request to the registry is built here: method, URL, the
    /// caller's headers, the Authorization header and the body.
    fn build<B>(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: B,
        what: &str,
    ) -> std::result::Result<ureq::http::Request<B>, RegistryError> {
        let mut req = ureq::http::Request::builder()
            .method(method.clone())
            .uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.body(body)
            .map_err(|e| RegistryError::status(format!("{what} ({e})"), 0, b""))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        attempts: u32,
    ) -> std::result::Result<Response<Body>, RegistryError> {
        let url = self.url(path);
        let what = self.what(&method, &url);
        let mut refreshed_auth = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.authorization(&url, scope, &what)?;
            let a = auth.as_deref();
            let outcome = match body {
                None => self
                    .agent
                    .run(self.build(&method, &url, headers, a, (), &what)?),
                Some(b) => self
                    .agent
                    .run(self.build(&method, &url, headers, a, b, &what)?),
            };
            let temporary_wait = match outcome {
                Err(e) => {
                    let err = RegistryError::transport(what.clone(), &e);
                    if !err.is_temporary() || attempt >= attempts {
                        return Err(err);
                    }
                    None
                }
                Ok(resp) if resp.status() == 401 && !self.is_own(&resp.get_uri().to_string()) => {
                    // Another origin (named by a Location, or reached by a
                    // redirect) gets no credentials, and its challenge is
                    // not learnt: it could name a realm of its choosing.
                    return Err(error_from(what, resp));
                }
                Ok(resp) if resp.status() == 401 && !refreshed_auth => {
                    // Learn (or relearn) how to authenticate, then try again
                    // once with fresh credentials; this is not a failure.
                    refreshed_auth = true;
                    attempt -= 1;
                    let header = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|h| h.to_str().ok())
                        .and_then(parse_challenge);
                    let had_auth = auth.is_some();
                    *self.challenge.lock().expect("not poisoned") = header.clone();
                    self.tokens.lock().expect("not poisoned").forget(scope);
                    if header.is_none() || (had_auth && matches!(header, Some(Challenge::Basic))) {
                        return Err(error_from(what, resp));
                    }
                    continue;
                }
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    let retryable = s == 429 || s == 408 || (500..600).contains(&s);
                    if !retryable || attempt >= attempts {
                        return Ok(resp);
                    }
                    resp.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|secs| Duration::from_secs(secs.min(60)))
                }
            };
            std::thread::sleep(temporary_wait.unwrap_or_else(|| self.delay(attempt)));
        }
    }

    /// Exponential backoff with ±50 % jitter, capped at 10 s.
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .backoff
            .saturating_mul(1 << attempt.min(6))
            .min(Duration::from_secs(10));
        let jitter = getrandom::u32().unwrap_or(0) % 1000;
        base.mul_f64(0.5 + f64::from(jitter) / 1000.0)
    }

    /// Sends and requires a 2xx answer; otherwise the registry's error.
    pub fn success(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
    ) -> std::result::Result<Response<Body>, RegistryError> {
        let what = self.what(&method, path);
        let resp = self.send(method, path, scope, headers)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from(what, resp))
        }
    }

    /// The Authorization header for a request to `url` needing `scope`,
    /// fetching a token if needed; none for a URL on another origin.
    fn authorization(
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
            Some(Challenge::Basic) => Ok(self.credentials.basic_header()),
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

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        what: &str,
    ) -> std::result::Result<super::auth::Token, RegistryError> {
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", encode(s)));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(format!("scope={}", encode(s)));
        }
        let token_what = format!("token for {what} from {}", redact(realm));
        let mut last = None;
        for attempt in 1..=self.attempts {
            let result = match &self.credentials {
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
                    self.agent
                        .post(realm)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .send(body.join("&").as_bytes())
                }
                creds => {
                    let sep = if realm.contains('?') { '&' } else { '?' };
                    let mut req = self.agent.get(format!("{realm}{sep}{}", query.join("&")));
                    if let Some(b) = creds.basic_header() {
                        req = req.header("Authorization", b);
                    }
                    req.call()
                }
            };
            match result {
                Ok(mut resp) if resp.status().is_success() => {
                    let body = read_limited(&mut resp, SMALL_BODY, &token_what)?;
                    return parse_token(&body)
                        .ok_or_else(|| RegistryError::status(token_what.clone(), 200, b""));
                }
                Ok(resp) => {
                    let err = error_from(token_what.clone(), resp);
                    if !err.is_temporary() || attempt == self.attempts {
                        return Err(err);
                    }
                    last = Some(err);
                }
                Err(e) => {
                    let err = RegistryError::transport(token_what.clone(), &e);
                    if !err.is_temporary() || attempt == self.attempts {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
            std::thread::sleep(self.delay(attempt));
        }
        Err(last.expect("at least one attempt"))
    }

    /// Follows `Link: <…>; rel="next"` pages of a JSON list, collecting the
    /// array at `field`.
    pub fn paginate(
        &self,
        first: &str,
        scope: &str,
        field: &str,
    ) -> std::result::Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            let mut resp =
                self.success(Method::GET, &path, scope, &[("Accept", "application/json")])?;
            next = resp
                .headers()
                .get("link")
                .and_then(|l| l.to_str().ok())
                .and_then(next_link);
            let what = self.what(&Method::GET, &path);
            let body = read_limited(&mut resp, SMALL_BODY, &what)?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| RegistryError::status(what.clone(), 200, b""))?;
            out.extend(
                v.get(field)
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from)),
            );
        }
        Ok(out)
    }
}

/// `<url>; rel="next"` → url.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
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

/// Reads a response body of at most `limit` bytes.
pub fn read_limited(
    resp: &mut Response<Body>,
    limit: u64,
    what: &str,
) -> std::result::Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| RegistryError::transport(what.to_string(), &e))
}

/// `resp` when its status is one of `ok`, else the registry's error for
/// the request named `what`.
pub fn expect_status(
    what: String,
    resp: Response<Body>,
    ok: &[u16],
) -> std::result::Result<Response<Body>, RegistryError> {
    if ok.contains(&resp.status().as_u16()) {
        Ok(resp)
    } else {
        Err(error_from(what, resp))
    }
}

/// Reads the error body (bounded) into a typed error.
pub fn error_from(what: String, mut resp: Response<Body>) -> RegistryError {
    let status = resp.status().as_u16();
    // The body only adds detail; a failure to read it leaves the status.
    let body = read_limited(&mut resp, 64 * 1024, &what).unwrap_or_default();
    RegistryError::status(what, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn credentials_are_bound_to_the_registry_origin() {
        let opts = RegistryOptions {
            plain_http: vec!["reg.example:5000".into()],
            ..Default::default()
        };
        let c = Client::new(&opts, "reg.example:5000").unwrap();
        assert!(c.is_own(&c.url("/v2/a/blobs/uploads/x")));
        assert!(!c.is_own("http://reg.example:5001/v2/x"), "another port");
        assert!(!c.is_own(&c.url("//other.example:5000/v2/x")));
        assert!(c
            .what(&Method::PUT, "http://evil:1/v2/x")
            .contains("without credentials"));
    }

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
