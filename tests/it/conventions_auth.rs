//! Issue #15, items 1–3, against real registries: credentials from the
//! containers auth file (`REGISTRY_AUTH_FILE`, `airlock login`/`logout`,
//! `--authfile`); `--insecure[=HOST]` and `--plain-http[=HOST]` that never
//! take the next word, and loopback over plain HTTP without a flag; `-v`
//! and `-vv` logs that never show a password, its base64 or a token.
//!
//! Every run gets a HOME, DOCKER_CONFIG and XDG_RUNTIME_DIR of its own, so
//! the machine's files are neither read nor written.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::harness::*;
use crate::util::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pass";

/// `airlock ARGS…` in `t` with HOME=t/home, DOCKER_CONFIG=t/docker,
/// XDG_RUNTIME_DIR=t/run, REGISTRY_AUTH_FILE unset unless in `env`.
fn al(t: &Path, args: &[&str], env: &[(&str, &Path)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args)
        .current_dir(t)
        .env("HOME", t.join("home"))
        .env("DOCKER_CONFIG", t.join("docker"))
        .env("XDG_RUNTIME_DIR", t.join("run"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // A command that does not read its input may have exited already.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `pack -q --force --cache t/cache -o out.airlock ARGS…`.
fn pack(t: &Path, args: &[&str], env: &[(&str, &Path)], stdin: &str) -> Output {
    let cache = t.join("cache");
    let mut all = vec!["pack", "-q", "--force", "--cache", cache.to_str().unwrap()];
    all.extend_from_slice(&["-o", "out.airlock"]);
    all.extend_from_slice(args);
    al(t, &all, env, stdin)
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

macro_rules! snapshot {
    ($t:expr, $text:expr, @$snap:literal) => {
        let dir = regex_escape(&$t.display().to_string());
        insta::with_settings!({filters => vec![
            (dir.as_str(), "[DIR]"),
            (r"127\.0\.0\.1:\d+", "[REG]"),
            (r"\(\d+ ms\)", "(T ms)"),
        ]}, {
            insta::assert_snapshot!($text, @$snap);
        });
    };
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn htpasswd_registry() -> Registry {
    let reg = Registry::start(Config {
        basic: Some((USER, PASSWORD)),
        ..Default::default()
    });
    reg.push(&format!("oci:{}:app-1", layout().display()), "demo/app:1");
    reg
}

fn auth_json(host: &str, user: &str, password: &str) -> String {
    let auth = B64.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

#[test]
fn a_registry_auth_file_logs_in() {
    let reg = htpasswd_registry();
    let t = scratch();
    let image = format!("{}/demo/app:1", reg.host);
    let file = t.path().join("elsewhere/auth.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, auth_json(&reg.host, USER, PASSWORD)).unwrap();
    ok(pack(
        t.path(),
        &[&image],
        &[("REGISTRY_AUTH_FILE", &file)],
        "",
    ));
    ok(al(
        t.path(),
        &["verify", "--allow-unsigned", "out.airlock"],
        &[],
        "",
    ));

    // --authfile names the file instead; a wrong password in it is
    // reported with the file's name.
    let wrong = t.path().join("wrong.json");
    std::fs::write(&wrong, auth_json(&reg.host, USER, "old-pass")).unwrap();
    let r = pack(
        t.path(),
        &["--authfile", wrong.to_str().unwrap(), &image],
        &[],
        "",
    );
    assert_eq!(r.status.code(), Some(1));
    snapshot!(t.path(), stderr(&r), @r"
    airlock: error: the registry refused the credentials for alice from [DIR]/wrong.json (GET http://[REG]/v2/demo/app/manifests/1: HTTP 401); UNAUTHORIZED: authentication required
      hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
    ");
}

#[test]
fn login_stores_credentials_and_logout_removes_them() {
    let reg = htpasswd_registry();
    let t = scratch();
    let h = reg.host.as_str();
    let image = format!("{h}/demo/app:1");
    // Another registry's entry and other keys are kept.
    let file = t.path().join("run/containers/auth.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"credHelpers":{"x.example":"pass"}}"#,
    )
    .unwrap();

    let none = pack(t.path(), &[&image], &[], "");
    assert_eq!(none.status.code(), Some(1));
    snapshot!(t.path(), stderr(&none), @r"
    airlock: error: the registry needs a login, and no credentials for [REG] were found in [DIR]/run/containers/auth.json, or [DIR]/home/.config/containers/auth.json, which does not exist, or [DIR]/docker/config.json, which does not exist (GET http://[REG]/v2/demo/app/manifests/1: HTTP 401); UNAUTHORIZED: authentication required
      hint: log in with `airlock login [REG]`, or pass --username USER --password-stdin
    ");

    let login = ok(al(
        t.path(),
        &["login", h, "--username", USER, "--password-stdin"],
        &[],
        &format!("{PASSWORD}\n"),
    ));
    snapshot!(t.path(), stdout(&login), @"Login succeeded: credentials for alice at [REG] stored in [DIR]/run/containers/auth.json");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({
            "auths": {
                "other.example": {"auth": "eDp5"},
                h: {"auth": B64.encode(format!("{USER}:{PASSWORD}"))},
            },
            "credHelpers": {"x.example": "pass"},
        })
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    ok(pack(t.path(), &[&image], &[], ""));

    let out = ok(al(t.path(), &["logout", h], &[], ""));
    snapshot!(t.path(), stdout(&out), @"Removed the credentials for [REG] from [DIR]/run/containers/auth.json");
    let after = pack(t.path(), &[&image], &[], "");
    assert_eq!(after.status.code(), Some(1));
    assert_eq!(stderr(&after), stderr(&none), "not logged in again");
    let again = al(t.path(), &["logout", h], &[], "");
    assert_eq!(again.status.code(), Some(1));
    snapshot!(t.path(), stderr(&again), @"airlock: error: not logged in to [REG]: [DIR]/run/containers/auth.json holds no credentials for it (credentials in docker's config.json are docker's to remove: `docker logout [REG]`)");

    // login --authfile writes there, pack --authfile reads it; logout
    // --all empties it.
    let mine = t.path().join("mine.json");
    let m = mine.to_str().unwrap();
    ok(al(
        t.path(),
        &["login", h, "-u", USER, "--password-stdin", "--authfile", m],
        &[],
        &format!("{PASSWORD}\n"),
    ));
    ok(pack(t.path(), &["--authfile", m, &image], &[], ""));
    let all = ok(al(t.path(), &["logout", "--all", "--authfile", m], &[], ""));
    snapshot!(t.path(), stdout(&all), @"Removed the credentials for 1 registry from [DIR]/mine.json");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&mine).unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({"auths": {}}));
}

#[test]
fn login_with_a_wrong_password_stores_nothing() {
    let reg = htpasswd_registry();
    let t = scratch();
    let h = reg.host.as_str();
    let r = al(
        t.path(),
        &["login", h, "--username", USER, "--password-stdin"],
        &[],
        "wrong-pass\n",
    );
    assert_eq!(r.status.code(), Some(1));
    snapshot!(t.path(), stderr(&r), @r"
    airlock: error: the registry refused the credentials for alice from --username (GET http://[REG]/v2/: HTTP 401); UNAUTHORIZED: authentication required
      hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
    ");
    assert!(stdout(&r).is_empty());
    assert!(!t.path().join("run").exists(), "no auth file, no directory");
    assert!(!t.path().join("home").exists());

    // Without a terminal, login asks for --password-stdin.
    let r = al(t.path(), &["login", h, "--username", USER], &[], "");
    assert_eq!(r.status.code(), Some(2));
    snapshot!(t.path(), stderr(&r), @"airlock: error: airlock login [REG] needs a password, and standard input is not a terminal to ask on: pass --username USER and pipe the password in with --password-stdin");
}

fn tls_registry(t: &Path) -> (Registry, Certs) {
    let certs = Certs::make(&t.join("pki"));
    let reg = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    reg.push(&format!("oci:{}:app-1", layout().display()), "demo/app:1");
    (reg, certs)
}

#[test]
fn bare_insecure_does_not_take_the_image_and_applies_to_every_registry() {
    let t = scratch();
    let (reg, certs) = tls_registry(t.path());
    let image = format!("{}/demo/app:1", reg.host);
    let no_certs_d = t.path().join("no-certs.d");
    let d = no_certs_d.to_str().unwrap();
    // The exact command of the issue.
    let out = al(
        t.path(),
        &[
            "pack",
            "-o",
            "x",
            "--insecure",
            &image,
            "--certs-dir",
            d,
            "-q",
        ],
        &[],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    ok(al(t.path(), &["verify", "--allow-unsigned", "x"], &[], ""));

    // --plain-http=OTHER does not apply to this registry: it is still
    // spoken to over TLS (and trusted through --ca-cert); a bare
    // --plain-http applies to it, and TLS answers plain HTTP.
    let ca = certs.ca.to_str().unwrap();
    ok(pack(
        t.path(),
        &["--plain-http=127.0.0.2:1", "--ca-cert", ca, &image],
        &[],
        "",
    ));
    let plain = pack(
        t.path(),
        &["--plain-http", "--ca-cert", ca, "--retries", "1", &image],
        &[],
        "",
    );
    assert_eq!(plain.status.code(), Some(1), "{}", stderr(&plain));
    assert!(stderr(&plain).contains(&format!("GET http://{}/v2/", reg.host)));

    // A certificate error on loopback stays one: no fallback to HTTP.
    let r = pack(t.path(), &["--certs-dir", d, &image], &[], "");
    assert_eq!(r.status.code(), Some(1));
    snapshot!(t.path(), stderr(&r), @r"
    airlock: error: GET https://[REG]/v2/demo/app/manifests/1: TLS certificate not trusted (io: invalid peer certificate: UnknownIssuer)
      hint: the registry's certificate is not trusted: pass its CA with --ca-cert FILE, put it in /etc/docker/certs.d/[REG]/ca.crt, or (only on a trusted network) --insecure=[REG]
    ");
}

#[test]
fn a_loopback_registry_is_reached_over_plain_http_without_a_flag() {
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "demo/app:1");
    let t = scratch();
    let image = format!("{}/demo/app:1", reg.host);
    let r = ok(pack(t.path(), &["-v", &image], &[], ""));
    let log = stderr(&r);
    let first: Vec<&str> = log.lines().take(3).collect();
    snapshot!(t.path(), first.join("\n"), @r"
    airlock: info: GET https://[REG]/v2/ -> failed: received corrupt message of type invalidcontenttype (T ms)
    airlock: info: [REG] answers HTTPS in plain HTTP; it is on loopback, so airlock speaks plain HTTP to it
    airlock: info: GET http://[REG]/v2/demo/app/manifests/1 -> 200 OK (T ms)
    ");
    // localhost is loopback too.
    let by_name = format!("localhost:{}/demo/app:1", reg.port);
    ok(pack(t.path(), &[&by_name], &[], ""));
}

/// This machine's address on its network: not loopback.
fn own_address() -> std::net::IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    // A UDP connect sends nothing; it only picks the outgoing address.
    s.connect("192.0.2.1:9")
        .expect("a network route for the test");
    let ip = s.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback(),
        "this test needs an address that is not loopback"
    );
    ip
}

#[test]
fn a_plain_http_server_off_loopback_is_not_spoken_to_in_plain_text() {
    let ip = own_address();
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let t = scratch();
    let r = pack(t.path(), &[&format!("{host}/demo/app:1")], &[], "");
    assert_eq!(r.status.code(), Some(1));
    let text = stderr(&r).replace(&host, "[HOST]");
    snapshot!(t.path(), text, @r"
    airlock: error: GET https://[HOST]/v2/demo/app/manifests/1: protocol error (io: received corrupt message of type InvalidContentType)
      hint: if the registry speaks plain HTTP, pass --plain-http=[HOST]
    ");
}

/// Every secret of a login: the password, its base64 in a Basic header,
/// and any JWT (tokens start `eyJ`).
fn assert_no_secret(text: &str) {
    let basic = B64.encode(format!("{USER}:{PASSWORD}"));
    for secret in [PASSWORD, basic.as_str(), "eyJ"] {
        assert!(!text.contains(secret), "{secret:?} in:\n{text}");
    }
}

#[test]
fn verbose_logs_show_requests_and_never_a_secret() {
    let reg = htpasswd_registry();
    let t = scratch();
    let h = reg.host.as_str();
    let image = format!("{h}/demo/app:1");
    let login = ["--username", USER, "--password-stdin"];
    let stdin = format!("{PASSWORD}\n");
    let plain = format!("--plain-http={h}");

    let mut args = vec!["-v", "--json", &plain, &image];
    args.extend(login);
    let r = ok(pack(t.path(), &args, &[], &stdin));
    let log = stderr(&r);
    assert_no_secret(&log);
    assert!(log.lines().all(|l| l.starts_with("airlock: ")), "{log}");
    let manifest: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/manifests/1 ->"))
        .collect();
    snapshot!(t.path(), manifest.join("\n"), @r"
    airlock: info: GET http://[REG]/v2/demo/app/manifests/1 -> 401 Unauthorized (T ms)
    airlock: info: GET http://[REG]/v2/demo/app/manifests/1 -> 200 OK (T ms)
    ");
    let summary: serde_json::Value = serde_json::from_str(&stdout(&r)).expect("stdout is JSON");
    assert_eq!(summary["images"].as_array().map(Vec::len), Some(1));

    // -vv: headers, the Authorization value redacted.
    args[0] = "-vv";
    let r = ok(pack(t.path(), &args, &[], &stdin));
    let log = stderr(&r);
    assert_no_secret(&log);
    let auth: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("/manifests/1 ")
                && (l.contains("uthenticate") || l.contains("Authorization"))
        })
        .collect();
    snapshot!(t.path(), auth.join("\n"), @r#"
    airlock: debug: GET http://[REG]/v2/demo/app/manifests/1 < www-authenticate: Basic realm="airlock-test"
    airlock: debug: GET http://[REG]/v2/demo/app/manifests/1 > Authorization: <redacted>
    "#);
    serde_json::from_str::<serde_json::Value>(&stdout(&r)).expect("stdout is JSON");
}

#[test]
fn verbose_logs_of_the_token_flow_redact_the_token() {
    let token = TokenServer::start(USER, PASSWORD, 300);
    let reg = Registry::start(Config {
        token: Some(&token),
        ..Default::default()
    });
    reg.push(&format!("oci:{}:app-1", layout().display()), "demo/app:1");
    let t = scratch();
    let h = reg.host.as_str();
    let image = format!("{h}/demo/app:1");
    let file = t.path().join("auth.json");
    std::fs::write(&file, auth_json(h, USER, PASSWORD)).unwrap();
    let r = ok(pack(
        t.path(),
        &["-vv", &image],
        &[("REGISTRY_AUTH_FILE", &file)],
        "",
    ));
    let log = stderr(&r);
    assert_no_secret(&log);
    assert!(token.issued.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let token_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/token") && !l.contains(" < "))
        .take(2)
        .collect();
    snapshot!(t.path(), token_lines.join("\n"), @r"
    airlock: debug: GET http://[REG]/token > Authorization: <redacted>
    airlock: info: GET http://[REG]/token -> 200 OK (T ms)
    ");
    assert!(
        log.lines()
            .any(|l| l.ends_with("> Authorization: <redacted>") && l.contains("/manifests/")),
        "{log}"
    );
}

#[test]
fn verbose_logs_show_redirects() {
    let reg = htpasswd_registry();
    let auth = format!("Basic {}", B64.encode(format!("{USER}:{PASSWORD}")));
    // Blob GETs are answered by a 307 to another port, which forwards
    // them to the registry with credentials of its own.
    let rec = Recorder::start(Answer::Forward(reg.port, Some(auth)));
    let proxy = LocationProxy::start(reg.port, rec.port, true);
    let p = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    let file = t.path().join("auth.json");
    std::fs::write(&file, auth_json(&p, USER, PASSWORD)).unwrap();
    let image = format!("{p}/demo/app:1");
    // The proxy closes a TLS hello unanswered, which is not a plain-HTTP
    // server answering: no fallback, so it is named.
    let plain = format!("--plain-http={p}");
    let env = [("REGISTRY_AUTH_FILE", file.as_path())];
    let r = ok(pack(t.path(), &["-v", &plain, &image], &env, ""));
    let log = stderr(&r);
    assert_no_secret(&log);
    let first = log
        .lines()
        .find(|l| l.contains(" redirected to "))
        .unwrap_or_else(|| panic!("no redirect logged:\n{log}"));
    let first = first
        .replace(&proxy.port.to_string(), "[PROXY]")
        .replace(&rec.port.to_string(), "[OTHER]");
    let digest = regex_free_digest(&first);
    snapshot!(t.path(), first.replace(&digest, "[D]"), @"airlock: info: GET http://127.0.0.1:[PROXY]/v2/demo/app/blobs/[D] redirected to http://127.0.0.1:[OTHER]/v2/demo/app/blobs/[D]");
}

/// The first `sha256:<hex>` in a line.
fn regex_free_digest(line: &str) -> String {
    let at = line.find("sha256:").expect("a digest in the line");
    line[at..at + 7 + 64].to_string()
}

#[test]
fn login_takes_a_registry_not_a_url_or_a_repository() {
    let t = scratch();
    let r = al(
        t.path(),
        &[
            "login",
            "https://reg.example/ns",
            "-u",
            USER,
            "--password-stdin",
        ],
        &[],
        "",
    );
    assert_eq!(r.status.code(), Some(2));
    snapshot!(t.path(), stderr(&r), @r#"
    error: invalid value 'https://reg.example/ns' for '<REGISTRY>': "https://reg.example/ns": give the registry as HOST[:PORT], e.g. reg.example

    For more information, try '--help'.
    "#);
}

/// Runs `airlock ARGS…` on a new pseudo-terminal (Python's `pty`): waits
/// for `Password: `, types `typed`, and returns everything the terminal
/// showed, and the exit code.
fn on_terminal(t: &Path, args: &[&str], typed: &str) -> (String, i32) {
    const DRIVER: &str = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
shown = b""
def more():
    global shown
    try:
        b = os.read(fd, 1024)
    except OSError:
        return False
    shown += b
    return bool(b)
while b"Password: " not in shown and more():
    pass
os.write(fd, sys.argv[1].encode() + b"\n")
while more():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode())
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut all = vec!["-c", DRIVER, typed, env!("CARGO_BIN_EXE_airlock")];
    all.extend_from_slice(args);
    let out = Command::new("python3")
        .args(&all)
        .current_dir(t)
        .env("HOME", t.join("home"))
        .env("DOCKER_CONFIG", t.join("docker"))
        .env("XDG_RUNTIME_DIR", t.join("run"))
        .env_remove("REGISTRY_AUTH_FILE")
        .output()
        .unwrap();
    (stdout(&out), out.status.code().unwrap_or(-1))
}

#[test]
fn login_asks_for_the_password_on_a_terminal_without_echo() {
    let reg = htpasswd_registry();
    let t = scratch();
    let h = reg.host.as_str();
    let (shown, code) = on_terminal(t.path(), &["login", h, "-u", USER], PASSWORD);
    assert_eq!(code, 0, "{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed: {shown}"
    );
    snapshot!(t.path(), shown.replace("\r\n", "\n"), @r"
    Password: 
    Login succeeded: credentials for alice at [REG] stored in [DIR]/run/containers/auth.json
    ");
    let stored = std::fs::read_to_string(t.path().join("run/containers/auth.json")).unwrap();
    assert!(stored.contains(&B64.encode(format!("{USER}:{PASSWORD}"))));
}
