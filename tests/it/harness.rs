//! Real parts for registry tests: CNCF distribution (Debian's
//! `docker-registry`) started on 127.0.0.1 with the TLS and auth a test
//! needs, a token endpoint for the Bearer flow, and a TCP proxy that cuts
//! or slows connections. Everything stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::util::*;

mod origin;
mod status;
pub use origin::{Answer, LocationProxy, Recorded, Recorder};
pub use status::StatusProxy;

/// A port for a server that binds it itself (a registry, `airlock serve`),
/// or one that must have nothing listening. Taken below the kernel's
/// ephemeral range, where every bind to port 0 and every outgoing
/// connection of the other tests get theirs, and never twice in a run: a
/// port from the ephemeral range could be taken by another test's listener
/// between this check and the server's own bind, and the test would then
/// talk to that other server.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32768);
    const FIRST: usize = 10_000;
    if low < FIRST + 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    // Two suites at once on one machine (a rehearsal beside a run) start
    // at different places.
    let start = std::process::id() as usize * 97;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < low - FIRST, "no free port left below {low}");
        let port = (FIRST + (start + n) % (low - FIRST)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sh(cmd: &str, cwd: &Path) {
    run("sh", &["-c", cmd], cwd).ok();
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=airlock-test-ca -keyout ca.key -out ca.crt 2>/dev/null \
             && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null \
             && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf \
             && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null",
            dir,
        );
        Certs {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}

#[derive(Default)]
pub struct Config<'a> {
    pub tls: Option<&'a Certs>,
    /// htpasswd Basic auth with this user and password.
    pub basic: Option<(&'a str, &'a str)>,
    pub token: Option<&'a TokenServer>,
    /// Keeps upload sessions valid across restarts.
    pub secret: bool,
    /// `catalog.maxentries`: `_catalog` pages of at most this many.
    pub catalog_max: Option<usize>,
}

pub struct Registry {
    pub port: u16,
    pub host: String,
    dir: tempfile::TempDir,
    child: Child,
    tls: bool,
    creds: Option<String>,
}

impl Registry {
    pub fn start(cfg: Config) -> Registry {
        let dir = scratch();
        let port = free_port();
        let mut yml = format!(
            "version: 0.1\nlog: {{level: info, accesslog: {{disabled: false}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if cfg.secret {
            yml.push_str("  secret: airlock-test-secret\n");
        }
        if let Some(c) = cfg.tls {
            yml.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                c.cert.display(),
                c.key.display()
            ));
        }
        // Top level, after the `http:` lines above.
        if let Some(n) = cfg.catalog_max {
            yml.push_str(&format!("catalog: {{maxentries: {n}}}\n"));
        }
        if let Some((user, pass)) = cfg.basic {
            let out = run("htpasswd", &["-Bbn", user, pass], dir.path()).ok();
            std::fs::write(dir.path().join("htpasswd"), out.out.stdout).unwrap();
            yml.push_str(&format!(
                "auth: {{htpasswd: {{realm: airlock-test, path: {}}}}}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        if let Some(t) = cfg.token {
            yml.push_str(&format!(
                "auth: {{token: {{realm: 'http://127.0.0.1:{}/token', service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}}}\n",
                t.port,
                t.cert.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yml).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (see scripts/setup.sh)");
        wait_for_port(port);
        Registry {
            port,
            host: format!("127.0.0.1:{port}"),
            dir,
            child,
            tls: cfg.tls.is_some(),
            creds: cfg
                .basic
                .map(|(u, p)| format!("{u}:{p}"))
                .or(cfg.token.map(|t| format!("{}:{}", t.user, t.password))),
        }
    }

    /// `skopeo copy --all SRC docker://HOST/DEST`, with this registry's
    /// TLS and credentials.
    pub fn push(&self, src: &str, dest: &str) {
        let target = format!("docker://{}/{dest}", self.host);
        let mut args = vec![
            "copy",
            "-q",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ];
        if let Some(c) = &self.creds {
            args.push("--dest-creds");
            args.push(c);
        }
        args.push(src);
        args.push(&target);
        skopeo(&args, self.dir.path()).ok();
    }

    /// The flags airlock needs to reach this registry without extra trust.
    pub fn plain_flags(&self) -> Vec<String> {
        if self.tls {
            vec![]
        } else {
            vec![format!("--plain-http={}", self.host)]
        }
    }

    /// `sha256:` of the manifest skopeo reads for `image` here; `extra`
    /// holds skopeo's TLS and credential flags.
    pub fn digest(&self, image: &str, extra: &[&str]) -> String {
        let target = format!("docker://{}/{image}", self.host);
        let mut args = vec!["inspect", "--raw"];
        args.extend_from_slice(extra);
        args.push(&target);
        format!(
            "sha256:{}",
            sha256_hex(&skopeo(&args, Path::new("/")).ok().out.stdout)
        )
    }

    /// The registry's `_catalog` answer (plain HTTP registries).
    pub fn catalog(&self) -> String {
        let code = format!("import urllib.request;print(urllib.request.urlopen('http://{}/v2/_catalog').read().decode())", self.host);
        run("python3", &["-c", &code], Path::new("/")).ok().stdout()
    }

    /// Where the registry keeps a blob's bytes, to damage them behind its
    /// back (distribution serves stored blobs without checking them).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Stops and starts the registry on the same port and storage (and
    /// `http.secret`, if it had one).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(self.port);
    }

    /// Stops the registry, deletes everything it stored, and starts it
    /// again on the same port: a registry restored from nothing.
    pub fn wipe(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path().join("data")).unwrap();
        self.restart();
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub const SERVICE: &str = "airlock-test";
pub const ISSUER: &str = "airlock-test-issuer";

/// A token endpoint for the Bearer flow: checks Basic credentials and hands
/// out ES256 JWTs (signed by openssl) that CNCF distribution accepts.
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    pub user: String,
    pub password: String,
    /// Tokens issued so far.
    pub issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// `lifetime` is the token's `expires_in` and its JWT expiry.
    pub fn start(user: &str, password: &str, lifetime: u64) -> TokenServer {
        let dir = scratch();
        sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=token-signer -keyout signer.key -out signer.crt 2>/dev/null \
             && openssl x509 -in signer.crt -outform DER -out signer.der",
            dir.path(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (i, s, d) = (issued.clone(), stop.clone(), dir.path().to_path_buf());
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let _ = serve_token(conn, &d, &expected, lifetime, &i);
            }
        });
        TokenServer {
            port,
            cert: dir.path().join("signer.crt"),
            user: user.into(),
            password: password.into(),
            issued,
            stop,
            _dir: dir,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_token(
    conn: TcpStream,
    dir: &Path,
    expected_auth: &str,
    lifetime: u64,
    issued: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let mut conn = conn;
    if auth.as_deref() != Some(expected_auth) {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        write!(
            conn,
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    // Grant what was asked: every scope= parameter.
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = percent_decode(scope);
            let parts: Vec<&str> = scope.splitn(3, ':').collect();
            if parts.len() == 3 {
                access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let n = issued.fetch_add(1, Ordering::SeqCst);
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(std::fs::read(dir.join("signer.der"))?)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "tester", "aud": SERVICE, "exp": now + lifetime, "nbf": now - 10,
        "iat": now, "jti": format!("token-{n}"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let input_file = dir.join(format!("input-{n}"));
    std::fs::write(&input_file, &signing_input)?;
    let der = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("signer.key"))
        .arg(&input_file)
        .output()?
        .stdout;
    let jwt = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(der_to_raw(&der))
    );
    let body = serde_json::json!({"token": jwt, "expires_in": lifetime}).to_string();
    write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    Ok(())
}

/// An ECDSA signature from DER (`SEQUENCE { r, s }`) to JWT's raw r‖s.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut i = 2; // SEQUENCE tag and length (short form for P-256)
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER expected");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP proxy in front of a registry. The first `cuts` connections are cut
/// after `cut_after` bytes flowed back to the client; `throttle` slows every
/// response; `fail_all` refuses every connection (a registry that is down).
pub struct FaultProxy {
    pub port: u16,
    /// Bytes sent from the registry to the client, all connections.
    pub bytes_down: Arc<AtomicU64>,
    /// Bytes sent from the client to the registry, all connections.
    pub bytes_up: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
pub struct Faults {
    pub cut_after: u64,
    pub cuts: usize,
    /// Like `cut_after`, but counting what the client sends (uploads).
    pub cut_up_after: u64,
    pub cuts_up: usize,
    /// Drop the connection carrying the Nth PATCH request (1-based) before
    /// any of it reaches the registry, which so keeps its upload session.
    pub drop_patch: usize,
    /// Hold the Nth PATCH request (1-based): none of it reaches the
    /// registry, and its connection stays open until the registry's side
    /// closes, so the upload goes no further while the registry runs.
    pub hold_patch: usize,
    /// Delay per 16 KiB chunk sent back.
    pub throttle: Option<Duration>,
    pub fail_all: bool,
    /// Blank out `Range` request headers, as servers that ignore Range do:
    /// the registry then answers 200 with the whole blob.
    pub hide_range: bool,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let bytes_down = Arc::new(AtomicU64::new(0));
        let bytes_up = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let cuts_left = Arc::new(AtomicUsize::new(faults.cuts));
        let cuts_up_left = Arc::new(AtomicUsize::new(faults.cuts_up));
        let (b, up, s) = (bytes_down.clone(), bytes_up.clone(), stop.clone());
        let patches = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if faults.fail_all {
                    drop(client);
                    continue;
                }
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let cut = cuts_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let limit = if cut { faults.cut_after } else { u64::MAX };
                let cut_up = cuts_up_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let up_limit = if cut_up {
                    faults.cut_up_after
                } else {
                    u64::MAX
                };
                let (c2, s2, up) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    up.clone(),
                );
                let patches = patches.clone();
                let watch = match (faults.drop_patch, faults.hold_patch) {
                    (0, 0) => None,
                    (0, nth) => Some((nth, Patch::Hold)),
                    (nth, _) => Some((nth, Patch::Drop)),
                };
                let hide_range = faults.hide_range;
                std::thread::spawn(move || {
                    let watch = watch.map(|(nth, what)| (&*patches, nth, what));
                    pump(c2, s2, up_limit, None, &up, watch, hide_range)
                });
                let (b, throttle) = (b.clone(), faults.throttle);
                std::thread::spawn(move || pump(server, client, limit, throttle, &b, None, false));
            }
        });
        FaultProxy {
            port,
            bytes_down,
            bytes_up,
            stop,
        }
    }
}

/// What happens to the watched PATCH request.
#[derive(Clone, Copy, PartialEq)]
enum Patch {
    Drop,
    Hold,
}

/// Copies one direction of a connection, counting bytes; stops after
/// `limit` bytes, slows down by `throttle` per chunk, and (client to
/// registry) drops or holds the connection carrying the Nth PATCH of
/// `watch` and renames `Range` headers away when `hide_range`.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    limit: u64,
    throttle: Option<Duration>,
    counter: &AtomicU64,
    watch: Option<(&AtomicUsize, usize, Patch)>,
    hide_range: bool,
) {
    let mut sent = 0u64;
    let mut buf = [0u8; 16 * 1024];
    let mut holding = false;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some((seen, nth, what)) = watch {
            if buf[..n].starts_with(b"PATCH ") && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                if what == Patch::Drop {
                    break;
                }
                holding = true;
            }
        }
        if holding {
            // Read and discarded until the other direction ends and shuts
            // this connection down.
            continue;
        }
        if hide_range {
            // Same length, so nothing else in the request moves.
            for i in 0..n.saturating_sub(8) {
                if buf[i..i + 8].eq_ignore_ascii_case(b"\r\nrange:") {
                    buf[i + 2..i + 8].copy_from_slice(b"x-nop:");
                }
            }
        }
        let n = n.min((limit - sent) as usize);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
        if sent >= limit {
            break;
        }
        if let Some(t) = throttle {
            std::thread::sleep(t);
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
