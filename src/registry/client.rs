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
//! Not here: the requests of the protocol ([`super::push`],
//! [`super::source`]) or where credentials come from
//! ([`super::credentials`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ureq::http::{Method, Response};
use ureq::{Body, ResponseExt};

use super::auth::{parse_challenge, parse_token, Challenge, Credentials, TokenCache};
use super::credentials::{self, Found, Lookup};
use super::options::RegistryOptions;
use super::origin::Origin;
use super::retry::Budget;
use super::tls;
use crate::error::registry::{redact, Failure, Login, RegistryError, PAGES_REPEAT, SPEAKS_TLS};
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

/// The scheme and host requests go to, and its origin: the only one
/// that gets credentials.
struct Endpoint {
    base: String,
    origin: Origin,
}

type R<T> = std::result::Result<T, RegistryError>;

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

    /// The registry's credentials, looked up the first time they are
    /// needed; a config or helper that fails is an error then.
    fn found(&self) -> R<Option<&Found>> {
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
    fn unauthorized(
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

    pub fn registry(&self) -> &str {
        &self.registry
    }

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
        if s == 429 || s == 408 || (500..600).contains(&s) {
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
            if s == 429 || s == 408 || (500..600).contains(&s) {
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
                    let header = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|h| h.to_str().ok())
                        .and_then(parse_challenge);
                    let sent = auth.is_some();
                    if refreshed_auth || header.is_none() {
                        return Err(self.unauthorized(what, Some(resp), sent));
                    }
                    // Learn (or relearn) how to authenticate, then try again
                    // once with fresh credentials; this is not a failure.
                    refreshed_auth = true;
                    attempt -= 1;
                    *self.challenge.lock().expect("not poisoned") = header.clone();
                    self.tokens.lock().expect("not poisoned").forget(scope);
                    if header == Some(Challenge::Basic) {
                        // Sent, or none to send: trying again cannot help.
                        if sent || self.found()?.is_none() {
                            return Err(self.unauthorized(what, Some(resp), sent));
                        }
                    }
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
                    let retryable = s == 429 || s == 408 || (500..600).contains(&s);
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
                    let wanted = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|secs| Duration::from_secs(secs.min(60)));
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

    /// Follows `Link: <…>; rel="next"` pages of a JSON list, collecting the
    /// array at `field`.
    pub fn paginate(
        &self,
        first: &str,
        scope: &str,
        field: &str,
    ) -> std::result::Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next.take() {
            // A registry whose next link names a page it sent already would
            // keep this loop (and its list) growing for ever.
            if !seen.insert(path.clone()) {
                let what = self.what(&Method::GET, &path);
                let kind = Failure::Protocol(format!(
                    "{PAGES_REPEAT}: its next-page link names a page it sent already"
                ));
                return Err(RegistryError::target(what, &self.registry, kind));
            }
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

/// Logs one exchange at info (`-v`): each redirect it followed, then the
/// method, URL and status (or failure) and the time taken; at debug
/// (`-vv`) the response headers too. URLs lose their query string (it may
/// hold a presigned signature or a token), header values that carry
/// secrets are replaced (see [`shown_header`]).
fn log_exchange(
    method: &Method,
    url: &str,
    started: Instant,
    outcome: &std::result::Result<Response<Body>, ureq::Error>,
) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let ms = started.elapsed().as_millis();
    let url = redact(url);
    match outcome {
        Ok(resp) => {
            if let Some(hops) = resp.get_redirect_history() {
                for hop in hops.windows(2) {
                    log::info!(
                        "{method} {} redirected to {}",
                        redact(&hop[0].to_string()),
                        redact(&hop[1].to_string())
                    );
                }
            }
            let status = resp.status();
            log::info!(
                "{method} {url} -> {} {} ({ms} ms)",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            if log::log_enabled!(log::Level::Debug) {
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("<not text>")));
                log_headers(&format!("{method} {url}"), "<", headers);
            }
        }
        Err(e) => {
            let err = RegistryError::transport(String::new(), e);
            log::info!("{method} {url} -> failed: {} ({ms} ms)", err.brief());
        }
    }
}

/// Logs headers at debug, one line each: `> Name: value` sent, `<` received.
fn log_headers<'h>(request: &str, dir: &str, headers: impl Iterator<Item = (&'h str, &'h str)>) {
    for (name, value) in headers {
        log::debug!(
            "{request} {dir} {name}: {}",
            crate::error::Shown(shown_header(name, value))
        );
    }
}

/// A header's value as logs show it: credentials, cookies and tokens as
/// `<redacted>`; a URL (a `Location`) without its query string.
pub(crate) fn shown_header<'v>(name: &str, value: &'v str) -> &'v str {
    let name = name.to_ascii_lowercase();
    let secret = matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-registry-auth"
    ) || name.contains("token");
    if secret {
        "<redacted>"
    } else if name == "location" || name == "content-location" {
        redact(value)
    } else {
        value
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
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

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

    /// Log records of every test in this binary, kept for inspection.
    fn captured() -> &'static Mutex<Vec<(log::Level, String)>> {
        struct Capture;
        static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata) -> bool {
                true
            }
            fn log(&self, r: &log::Record) {
                LINES
                    .lock()
                    .unwrap()
                    .push((r.level(), r.args().to_string()));
            }
            fn flush(&self) {}
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_logger(&Capture).unwrap();
            log::set_max_level(log::LevelFilter::Info);
        });
        &LINES
    }

    /// Answers 401 (Basic) to a request without credentials and 503 to
    /// one with them, forever.
    fn failing_registry() -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(&conn);
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    authorized |= line.to_ascii_lowercase().starts_with("authorization:");
                }
                let answer = if authorized {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = (&conn).write_all(answer.as_bytes());
            }
        });
        port
    }

    #[test]
    fn retries_are_logged_without_credentials_and_announced_once_past_2_s() {
        let lines = captured();
        let port = failing_registry();
        let host = format!("127.0.0.1:{port}");
        let opts = RegistryOptions {
            plain_http: vec![host.clone()],
            username: Some("alice".into()),
            password: Some("hunter2-secret".into()),
            login_registry: Some(host.clone()),
            attempts: 100,
            backoff: Duration::from_millis(400),
            retry_window: Duration::from_secs(3),
            ..Default::default()
        };
        let c = Client::new(&opts, &host).unwrap();
        let started = std::time::Instant::now();
        let err = c.ping().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "bounded by the window"
        );
        assert!(err.is_whole_target(), "{err}");
        assert_eq!(
            err.to_string(),
            format!("GET http://{host}/v2/: HTTP 503; gave up after 3 s of retries")
        );
        let mine: Vec<(log::Level, String)> = lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(&host))
            .cloned()
            .collect();
        let secret = B64.encode("alice:hunter2-secret");
        assert!(
            mine.iter()
                .all(|(_, l)| !l.contains("hunter2") && !l.contains(&secret)),
            "{mine:?}"
        );
        let retries = mine
            .iter()
            .filter(|(lvl, _)| *lvl == log::Level::Info)
            .count();
        assert!(retries >= 2, "each retry is logged: {mine:?}");
        let warnings: Vec<&String> = mine
            .iter()
            .filter(|(lvl, _)| *lvl == log::Level::Warn)
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            warnings,
            [&format!(
                "registry {host} is failing (HTTP 503); retrying for up to 3 s"
            )],
            "{mine:?}"
        );
    }

    #[test]
    fn logged_headers_hide_credentials_cookies_and_tokens() {
        for (name, value) in [
            ("Authorization", "Basic YWxpY2U6cHc="),
            ("proxy-authorization", "Bearer x"),
            ("Cookie", "session=1"),
            ("set-cookie", "session=1; HttpOnly"),
            ("X-Registry-Token", "t"),
        ] {
            assert_eq!(shown_header(name, value), "<redacted>", "{name}");
        }
        assert_eq!(
            shown_header("Location", "https://s3/x?X-Amz-Signature=s"),
            "https://s3/x"
        );
        assert_eq!(shown_header("Content-Type", "a/b"), "a/b");
    }

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
