//! One registry: requests with authentication and bounded retries.
//!
//! Retries share one budget per run ([`super::retry`]); a failure that
//! concerns the registry as a whole (nothing answers, unknown host, TLS
//! trust or protocol, credentials refused or missing or unreadable, a 403
//! on the first write) is marked so, and kept for
//! [`Client::target_failure`], so the caller can stop the run with it once.
//! Credentials are looked up when the registry first asks (a 401).
//!
//! Credentials and tokens go only to the registry's own origin (scheme,
//! host and port of the URL the client was made for), as docker and
//! containerd do: a request to a URL on another origin (an upload
//! `Location`, a `Link` page, a journaled session) is sent without an
//! `Authorization` header, and a challenge it answers with is not learnt.
//! Redirects are followed by ureq, which never carries `Authorization`
//! along (a blob redirected to storage such as S3 is fetched without it).
//!
//! Every exchange is logged here, at info (`-v`: redirects, method, URL
//! without its query, status, time) and debug (`-vv`: headers, secrets
//! redacted). A loopback registry not named by `--plain-http` is tried
//! over HTTPS first, then plain HTTP (see [`Client::endpoint`]).
//!
//! Where requests go (scheme, origin, URLs) is in `endpoint`; logging in
//! (credentials, tokens, what a 401 means) in `login`; list pages in
//! `pages`; the exchange log in `wire_log`.
//!
//! Not here: the requests of the protocol ([`super::push`],
//! [`super::source`]) or where credentials come from
//! ([`super::credentials`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ureq::http::{Method, Response};
use ureq::{Body, ResponseExt};

use super::auth::{Challenge, TokenCache};
use super::credentials::Lookup;
use super::options::RegistryOptions;
use super::origin::Origin;
use super::retry::Budget;
use super::tls;
use crate::error::registry::{redact, Failure, RegistryError, SPEAKS_TLS};
use crate::error::Result;

mod endpoint;
mod login;
mod pages;
mod wire_log;

use endpoint::Endpoint;

use wire_log::{log_exchange, log_headers};

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
    /// `host[:port]` in URLs (Docker Hub's API host for `docker.io`).
    host: String,
    /// Named by `--plain-http`: plain HTTP from the start.
    plain: bool,
    /// A loopback registry not named by `--plain-http`: HTTPS, unless it
    /// turns out to be a plain-HTTP server (see [`Client::endpoint`]).
    loopback_fallback: bool,
    /// Where requests go, settled by the first URL built.
    endpoint: OnceLock<Endpoint>,
    agent: ureq::Agent,
    /// For the credentials lookup, done when the registry first asks.
    opts: RegistryOptions,
    credentials: OnceLock<std::result::Result<Lookup, String>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<TokenCache>,
    attempts: u32,
    backoff: Duration,
    /// Retries of every thread using this client, for the whole run.
    budget: Budget,
    /// A request that writes (POST, PUT, PATCH) succeeded: a 403 after that
    /// concerns one repository, before it the whole login.
    wrote: AtomicBool,
    /// Credentials this client sent were accepted once: a later 401 is
    /// about one repository, not the login.
    accepted: AtomicBool,
    /// The first failure of the whole registry a request returned.
    target_failure: Mutex<Option<RegistryError>>,
    /// A request gave up on a temporary failure (5xx, a cut connection).
    transient: AtomicBool,
}

type R<T> = std::result::Result<T, RegistryError>;

/// A status that a later try may not meet: too many requests, a request
/// timeout, a server error.
fn temporary_status(s: u16) -> bool {
    s == 429 || s == 408 || (500..600).contains(&s)
}

/// How long a `Retry-After: SECONDS` asks to wait, at most a minute (the
/// HTTP-date form is left to the backoff).
fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(60)))
}

/// Requests that write: a 403 on the first of them is a login that may
/// not push at all.
fn writes(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
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
            // Short enough that a host that drops connections is given up
            // on within the retry window.
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(opts.jobs.max(1) * 2)
            .user_agent(format!("airlock/{}", env!("CARGO_PKG_VERSION")))
            // Stated, not left to a default: a redirect never carries
            // credentials, not even to the same host on another port.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            // So that `-v` can show each redirect.
            .save_redirect_history(true)
            .build();
        if Origin::of(&format!("https://{host}")).is_none() {
            return Err(crate::error::Error::Usage(format!(
                "{registry:?} is not a valid registry host"
            )));
        }
        Ok(Client {
            registry: registry.to_string(),
            host: host.to_string(),
            plain,
            loopback_fallback: !plain && RegistryOptions::is_loopback(registry),
            endpoint: OnceLock::new(),
            agent: config.into(),
            opts: opts.clone(),
            credentials: OnceLock::new(),
            challenge: Mutex::new(None),
            tokens: Mutex::new(TokenCache::default()),
            attempts: opts.attempts.max(1),
            backoff: opts.backoff,
            budget: Budget::new(registry, opts.retry_window),
            wrote: AtomicBool::new(false),
            accepted: AtomicBool::new(false),
            target_failure: Mutex::new(None),
            transient: AtomicBool::new(false),
        })
    }

    /// The first failure of the whole registry a request met (it cannot
    /// be reached, trusted or logged in to, or it failed every request for
    /// the whole retry window), if one did.
    pub fn target_failure(&self) -> Option<RegistryError> {
        let first = self.target_failure.lock().expect("not poisoned").clone();
        first.or_else(|| self.budget.spent())
    }

    /// Whether a request gave up on a failure that a later run may not
    /// meet (a 5xx, a cut connection).
    pub fn had_transient_failure(&self) -> bool {
        self.transient.load(Ordering::Relaxed)
    }

    /// Every error a request returns passes here: it names the registry,
    /// and what it says about the registry as a whole is kept.
    fn noted(&self, e: RegistryError) -> RegistryError {
        let e = e.on(&self.registry);
        if e.is_whole_target() {
            self.target_failure
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| e.clone());
        } else if e.retry_cures() {
            self.transient.store(true, Ordering::Relaxed);
        }
        e
    }

    /// `GET /v2/` with the auth handshake: the first request of a run, so
    /// that a registry that cannot be reached, trusted, spoken to or logged
    /// in to is reported once, before any blob work.
    pub fn ping(&self) -> R<()> {
        let what = self.what(&Method::GET, "/v2/");
        let mut resp = self.send(Method::GET, "/v2/", "", &[])?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() == 400 && self.url("/v2/").starts_with("http://") {
            // A TLS port asked in plain HTTP: Go's servers say so in the body.
            let body = read_limited(&mut resp, 64 * 1024, &what).unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            if text.contains("HTTP request to an HTTPS server") {
                let said = text.trim().chars().take(200).collect::<String>();
                let kind = Failure::Protocol(format!("{SPEAKS_TLS}; it answered {said:?}"));
                return Err(RegistryError::target(what, &self.registry, kind));
            }
            return Err(RegistryError::status(what, 400, &body)
                .on(&self.registry)
                .concerns_target());
        }
        Err(error_from(what, resp).on(&self.registry).concerns_target())
    }

    pub fn registry(&self) -> &str {
        &self.registry
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
        if let Some(spent) = self.budget.spent() {
            return Err(spent);
        }
        let url = self.url(path);
        let what = self.what(&method, &url);
        let auth = self
            .authorization(&url, scope, &what)
            .map_err(|e| self.noted(e))?;
        let length = len.to_string();
        let mut all = vec![("Content-Length", length.as_str())];
        all.extend_from_slice(headers);
        let body = ureq::SendBody::from_reader(body);
        let req = self.build(&method, &url, &all, auth.as_deref(), body, &what)?;
        let started = Instant::now();
        let outcome = self.agent.run(req);
        log_exchange(&method, &url, started, &outcome);
        match outcome {
            Ok(resp) => Ok(self.answered(&what, &method, resp)),
            Err(e) => {
                let err = RegistryError::transport(what, &e).on(&self.registry);
                Err(self.noted(if err.is_temporary() {
                    self.budget.failed(err)
                } else {
                    err
                }))
            }
        }
    }

    /// Notes what an answer says about the registry: a temporary failure
    /// counts toward the retry budget, anything else shows it is there.
    fn answered(&self, what: &str, method: &Method, resp: Response<Body>) -> Response<Body> {
        let s = resp.status().as_u16();
        if temporary_status(s) {
            let _ = self
                .budget
                .failed(RegistryError::status(what.to_string(), s, b""));
        } else {
            if resp.status().is_success() {
                self.budget.established();
            } else {
                self.budget.success();
            }
            if writes(method) && resp.status().is_success() {
                self.wrote.store(true, Ordering::Relaxed);
            }
        }
        resp
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
        if log::log_enabled!(log::Level::Debug) {
            let mut sent: Vec<(&str, &str)> = headers.to_vec();
            if let Some(a) = auth {
                sent.push(("Authorization", a));
            }
            log_headers(&format!("{method} {}", redact(url)), ">", sent.into_iter());
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
    ) -> R<Response<Body>> {
        let result = self.request_inner(method, path, scope, headers, body, attempts);
        if let Ok(resp) = &result {
            let s = resp.status().as_u16();
            if temporary_status(s) {
                self.transient.store(true, Ordering::Relaxed);
            }
        }
        result.map_err(|e| self.noted(e))
    }

    fn request_inner(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        attempts: u32,
    ) -> R<Response<Body>> {
        let url = self.url(path);
        let what = self.what(&method, &url);
        let mut refreshed_auth = false;
        let mut attempt = 0;
        loop {
            if let Some(spent) = self.budget.spent() {
                return Err(spent);
            }
            attempt += 1;
            let auth = self.authorization(&url, scope, &what)?;
            let a = auth.as_deref();
            let started = Instant::now();
            let outcome = match body {
                None => self
                    .agent
                    .run(self.build(&method, &url, headers, a, (), &what)?),
                Some(b) => self
                    .agent
                    .run(self.build(&method, &url, headers, a, b, &what)?),
            };
            log_exchange(&method, &url, started, &outcome);
            let (err, wanted) = match outcome {
                Err(e) => {
                    let err = RegistryError::transport(what.clone(), &e).on(&self.registry);
                    if !err.is_temporary() {
                        return Err(err);
                    }
                    // Nothing answering is retried for the run's whole
                    // window, however few the attempts (a registry that
                    // restarts comes back within it), and then is the
                    // registry's failure, not this request's.
                    let unreachable = matches!(err.kind, Failure::Unreachable(_));
                    if attempt >= attempts && !unreachable {
                        return Err(self.budget.failed(err));
                    }
                    (err, None)
                }
                Ok(resp) if resp.status() == 401 && !self.is_own(&resp.get_uri().to_string()) => {
                    // Another origin (named by a Location, or reached by a
                    // redirect) gets no credentials, and its challenge is
                    // not learnt: it could name a realm of its choosing.
                    self.budget.success();
                    return Err(error_from(what, resp));
                }
                Ok(resp) if resp.status() == 401 => {
                    self.budget.success();
                    self.relearn(resp, &what, scope, auth.is_some(), refreshed_auth)?;
                    // Tried again once with fresh credentials: not a failure.
                    refreshed_auth = true;
                    attempt -= 1;
                    continue;
                }
                Ok(resp)
                    if resp.status() == 403
                        && writes(&method)
                        && !self.wrote.load(Ordering::Relaxed) =>
                {
                    self.budget.success();
                    let base = error_from(what.clone(), resp);
                    let mut e = RegistryError::target(what, &self.registry, Failure::PushDenied);
                    e.codes = base.codes;
                    return Err(e);
                }
                Ok(resp) => {
                    if auth.is_some() && self.is_own(&url) {
                        self.accepted.store(true, Ordering::Relaxed);
                    }
                    let s = resp.status().as_u16();
                    let retryable = temporary_status(s);
                    if !retryable {
                        return Ok(self.answered(&what, &method, resp));
                    }
                    if attempt >= attempts {
                        let resp = self.answered(&what, &method, resp);
                        return match self.budget.spent() {
                            Some(spent) => Err(spent),
                            None => Ok(resp),
                        };
                    }
                    let wanted = retry_after(&resp);
                    (error_from(what.clone(), resp).on(&self.registry), wanted)
                }
            };
            let wanted = wanted.unwrap_or_else(|| self.delay(attempt));
            let delay = self.budget.retry(&err, attempt, wanted)?;
            std::thread::sleep(delay);
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
}
