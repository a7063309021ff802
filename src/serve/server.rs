//! Connections: the listener, TLS, Basic auth, one thread per connection,
//! the access log, and a clean stop on SIGTERM or SIGINT.
//!
//! A thread per connection (blocking I/O, small stacks) keeps a slow
//! client's cost to its own thread: it never holds a lock or a shared
//! buffer, so it cannot stall the others. A blob is read, hashed and
//! sent on the connection's own thread ([`View::stream_blob`]): memory is
//! a 128 KiB piece per blob being sent, plus a frame buffer while it
//! crosses compressed frames (stored frames are read in place).
//! When `max_connections` are open, a new client takes the slot of the
//! connection that has waited longest for a request (idle keep-alive, or a
//! request sent too slowly); only when every connection is being answered
//! is it answered 503.
//!
//! Not for what a request answers (`routes.rs`).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::blob::Cut;
use super::http::{self, write_head};
use super::routes::{self, Answer, Body};
use super::view::View;
use crate::error::{Error, Result, Shown};

/// How long a keep-alive connection may sit idle, and a write may stall.
const IDLE: Duration = Duration::from_secs(120);
const STALL: Duration = Duration::from_secs(300);
/// How long a stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);
const STACK: usize = 512 * 1024;

pub struct ServerOptions {
    pub listen: String,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Htpasswd>,
    pub max_connections: usize,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Shared {
    view: Arc<View>,
    auth: Option<Htpasswd>,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: AtomicUsize,
    /// Requests being answered: a stop waits for them.
    busy: AtomicUsize,
    /// Connections waiting for (the rest of) a request, by id: since when,
    /// and a handle to close them by. When every slot is taken, the one
    /// that has waited longest is closed for a new client, as nginx reuses
    /// idle keep-alive connections: idle or slow-sending clients cannot
    /// lock everyone out; only connections being answered hold their slot.
    waiting: Mutex<HashMap<u64, (Instant, Arc<TcpStream>)>>,
    next_id: AtomicU64,
}

/// A connection must have waited this long before a new one may take its
/// slot, so a burst of new clients does not close each other.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// Binds, calls `ready` with the address, and serves until SIGTERM or
/// SIGINT; then stops accepting and waits (up to 10 s) for requests in
/// flight.
pub fn run(view: Arc<View>, options: ServerOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = TcpListener::bind(&options.listen).map_err(|e| {
        Error::Failed(format!(
            "cannot listen on {}: {e}; choose another address with --listen",
            options.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Failed(format!("cannot listen on {}: {e}", options.listen)))?;
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let shared = Arc::new(Shared {
        view,
        auth: options.auth,
        tls: options.tls,
        connections: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        waiting: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    ready(addr);
    let mut failing = false;
    while !STOP.load(Ordering::SeqCst) {
        if !readable(&listener, 200) {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => {
                failing = false;
                c
            }
            Err(e) => {
                // Out of descriptors, say: the connection stays queued and
                // the listener readable, so without a pause this loop
                // would spin and flood the log. Said once per spell.
                if !failing {
                    log::warn!("accept: {e}; new connections wait until it clears");
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.connections.load(Ordering::SeqCst) >= options.max_connections
            && !evict_longest_waiting(&shared)
        {
            refuse(stream);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("serve".into())
            .stack_size(STACK)
            .spawn(move || {
                // Counted down even if the connection panics: a leaked
                // count would end in 503 for everyone.
                let _count = Release(&s.connections);
                connection(&s, stream, peer);
            });
        if let Err(e) = spawned {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            log::warn!("cannot start a thread for {peer}: {e}");
        }
    }
    let deadline = Instant::now() + DRAIN;
    while shared.busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Closes the connection that has waited longest for a request, if one
/// has waited [`EVICT_AFTER`]; its thread sees the end of its stream and
/// counts itself down.
fn evict_longest_waiting(shared: &Shared) -> bool {
    let mut waiting = shared.waiting.lock().expect("not poisoned");
    let Some((&id, _)) = waiting
        .iter()
        .filter(|(_, (since, _))| since.elapsed() >= EVICT_AFTER)
        .min_by_key(|(_, (since, _))| *since)
    else {
        return false;
    };
    let (_, stream) = waiting.remove(&id).expect("found above");
    log::debug!(
        "every connection slot is taken: closing the one waiting since {:?} for a new client",
        stream.peer_addr().ok()
    );
    let _ = stream.shutdown(std::net::Shutdown::Both);
    true
}

/// Takes a connection out of the waiting list when dropped.
struct Waiting<'a>(&'a Shared, u64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.lock().expect("not poisoned").remove(&self.1);
    }
}

/// Counts a connection down when dropped.
struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// poll(2) on the listener, so the loop sees a stop within `ms`.
fn readable(listener: &TcpListener, ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}

fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let a = routes::error(
        503,
        "UNAVAILABLE",
        "too many connections; try again, or start serve with a higher --max-connections",
    );
    if let Body::Bytes(b) = &a.body {
        let mut headers = a.headers.clone();
        headers.push(("Content-Length".into(), b.len().to_string()));
        let _ = write_head(&mut stream, 503, &headers, true);
        let _ = stream.write_all(b);
    }
}

/// A stream that is plain TCP or TLS.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn connection(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(STALL));
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    // One handle for the whole connection: listing it costs no syscall.
    let handle = stream.try_clone().ok().map(Arc::new);
    let _waiting = Waiting(shared, id);
    let conn: Box<dyn Conn> = match &shared.tls {
        None => Box::new(stream),
        Some(config) => match rustls::ServerConnection::new(config.clone()) {
            Ok(tls) => Box::new(rustls::StreamOwned::new(tls, stream)),
            Err(e) => {
                log::warn!("TLS with {peer}: {e}");
                return;
            }
        },
    };
    let mut conn = BufReader::with_capacity(16 * 1024, conn);
    loop {
        if let Some(h) = &handle {
            let mut waiting = shared.waiting.lock().expect("not poisoned");
            waiting.insert(id, (Instant::now(), h.clone()));
        }
        let read = http::read_request(&mut conn);
        // Being answered from here on: its slot is its own. Closed while
        // waiting (for a new client), it ends here.
        let evicted = shared
            .waiting
            .lock()
            .expect("not poisoned")
            .remove(&id)
            .is_none();
        if handle.is_some() && evicted {
            return;
        }
        let req = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                log::debug!("{peer}: {e}");
                if e.kind() == io::ErrorKind::InvalidData {
                    let a = routes::error(400, "UNSUPPORTED", format!("bad request: {e}"));
                    if let Body::Bytes(b) = &a.body {
                        let mut headers = a.headers.clone();
                        headers.push(("Content-Length".into(), b.len().to_string()));
                        let out = conn.get_mut();
                        let _ = write_head(out, 400, &headers, true).and_then(|_| out.write_all(b));
                        let _ = out.flush();
                    }
                }
                return;
            }
        };
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let busy = Release(&shared.busy);
        let started = Instant::now();
        let close = req.close || req.has_body || STOP.load(Ordering::SeqCst);
        let answer = match authorized(shared, &req) {
            true => routes::answer(&shared.view, &req),
            false => routes::error(401, "UNAUTHORIZED", "authentication required").with_challenge(),
        };
        let (status, sent, outcome) = send(shared, conn.get_mut(), &req, answer, close);
        drop(busy);
        log::info!(
            "{peer} {} {} {status} {sent} {}ms{}",
            Shown(&req.method),
            Shown(&req.path),
            started.elapsed().as_millis(),
            match &outcome {
                Ok(()) => String::new(),
                Err(Cut::Client(e)) => format!(" (client: {e})"),
                Err(Cut::Damage(_)) => " (cut: damaged)".into(),
            }
        );
        if let Err(Cut::Damage(why)) = &outcome {
            log::error!(
                "{} {}: {why}; the response was cut",
                Shown(&req.method),
                Shown(&req.path)
            );
        }
        if close || outcome.is_err() {
            return;
        }
    }
}

impl Answer {
    fn with_challenge(mut self) -> Answer {
        self.headers.push((
            "WWW-Authenticate".into(),
            "Basic realm=\"airlock serve\"".into(),
        ));
        self
    }
}

/// Writes the answer; returns the status, body bytes sent, and how it went.
fn send(
    shared: &Shared,
    out: &mut dyn Write,
    req: &http::Request,
    answer: Answer,
    close: bool,
) -> (u16, u64, std::result::Result<(), Cut>) {
    let mut headers = answer.headers;
    headers.push((
        "Docker-Distribution-API-Version".into(),
        "registry/2.0".into(),
    ));
    headers.push(("Content-Length".into(), answer.body.len().to_string()));
    let status = answer.status;
    if let Err(e) = write_head(out, status, &headers, close) {
        return (status, 0, Err(Cut::Client(e)));
    }
    if req.method == "HEAD" {
        return (status, 0, out.flush().map_err(Cut::Client));
    }
    let mut sent = 0u64;
    let outcome = match answer.body {
        Body::Bytes(b) => out
            .write_all(&b)
            .and_then(|_| out.flush())
            .map(|_| sent = b.len() as u64)
            .map_err(Cut::Client),
        Body::Blob {
            slot,
            digest,
            size,
            start,
            end,
        } => {
            let mut w = Counted {
                inner: out,
                buf: Vec::with_capacity(64 * 1024),
            };
            shared
                .view
                .stream_blob(slot, &digest, size, start, end, &mut w, &mut |n| sent += n)
        }
    };
    (status, sent, outcome)
}

/// Gathers small writes into 64 KiB ones (a TLS record each, at most).
struct Counted<'a> {
    inner: &'a mut dyn Write,
    buf: Vec<u8>,
}

impl Write for Counted<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.buf.capacity() {
            self.flush_buf()?;
        }
        if b.len() >= self.buf.capacity() {
            self.inner.write_all(b)?;
        } else {
            self.buf.extend_from_slice(b);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.inner.flush()
    }
}

impl Counted<'_> {
    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn authorized(shared: &Shared, req: &http::Request) -> bool {
    let Some(auth) = &shared.auth else {
        return true;
    };
    let Some((user, password)) = req
        .header("authorization")
        .and_then(basic_token)
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
    else {
        return false;
    };
    auth.check(&user, &password)
}

/// The credentials of a `Basic` authorization; the scheme's name is
/// case-insensitive (RFC 9110 §11.1).
fn basic_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then_some(token)
}

/// Users and bcrypt hashes from an htpasswd file (`htpasswd -B`).
pub struct Htpasswd {
    users: Vec<(String, String)>,
    /// SHA-256 of `user:password` pairs that passed: bcrypt is slow on
    /// purpose, and clients send the password with every request.
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let mut users = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').unwrap_or((line, ""));
            if !hash.starts_with("$2") {
                return Err(Error::Usage(format!(
                    "{} line {}: user {user:?} has no bcrypt password; only bcrypt is supported (write the file with htpasswd -B)",
                    path.display(),
                    i + 1
                )));
            }
            users.push((user.to_string(), hash.to_string()));
        }
        if users.is_empty() {
            return Err(Error::Usage(format!(
                "{} names no users (write it with htpasswd -B -c FILE USER)",
                path.display()
            )));
        }
        Ok(Htpasswd {
            users,
            passed: Mutex::new(HashSet::new()),
        })
    }

    fn check(&self, user: &str, password: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}")).into();
        if self.passed.lock().expect("not poisoned").contains(&key) {
            return true;
        }
        let ok = self
            .users
            .iter()
            .filter(|(u, _)| u == user)
            .any(|(_, h)| bcrypt::verify(password, h).unwrap_or(false));
        if ok {
            self.passed.lock().expect("not poisoned").insert(key);
        }
        ok
    }
}

/// A TLS server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| Error::Usage(format!("--tls-cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "--tls-cert {} holds no PEM certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Usage(format!("--tls-key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Usage(format!("--tls-cert/--tls-key: {e}")))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::basic_token;

    #[test]
    fn the_basic_scheme_is_case_insensitive() {
        assert_eq!(basic_token("Basic YWxpY2U6eA=="), Some("YWxpY2U6eA=="));
        assert_eq!(basic_token("basic YWxpY2U6eA=="), Some("YWxpY2U6eA=="));
        assert_eq!(basic_token("BASIC YWxpY2U6eA=="), Some("YWxpY2U6eA=="));
        assert_eq!(basic_token("Bearer YWxpY2U6eA=="), None);
        assert_eq!(basic_token("Basic"), None);
    }
}
