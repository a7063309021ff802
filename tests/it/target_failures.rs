//! Import into a registry that cannot be used as a whole: down, unknown,
//! untrusted, spoken to in the wrong protocol, refusing the credentials or
//! the push, or with credentials that cannot be read. Each stops at once
//! and says the cause once, with what to do; stderr is checked whole.
//! And the failures that a later run may cure still say "run again", with
//! `-q` too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;

struct Ran {
    status: Option<i32>,
    stderr: String,
    took: Duration,
}

/// `airlock import -q BUNDLE --pub PUB --to TO --state DIR/state EXTRA…`
/// with DOCKER_CONFIG at DIR/docker, REGISTRY_AUTH_FILE at
/// DIR/containers/auth.json (and `env`), `stdin` as its input.
fn import(t: &Path, to: &str, extra: &[&str], env: &[(&str, String)], stdin: &str) -> Ran {
    let (bundle, public) = bundle(t);
    let state = t.join("state");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["import", "-q"])
        .arg(&bundle)
        .arg("--pub")
        .arg(&public)
        .args(["--to", to, "--state"])
        .arg(&state)
        .args(extra)
        .env("DOCKER_CONFIG", t.join("docker"))
        .env("REGISTRY_AUTH_FILE", t.join("containers/auth.json"))
        .current_dir(t)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // The child may refuse before it reads: its output says so, not a
    // broken pipe here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ran {
        status: out.status.code(),
        stderr,
        took: started.elapsed(),
    }
}

/// The fixture layout, packed and signed once per test directory.
fn bundle(t: &Path) -> (PathBuf, PathBuf) {
    let b = t.join("b.airlock");
    if b.exists() {
        return (b, t.join("signer.pub"));
    }
    packed(t, &[&format!("oci:{}", layout().display())])
}

/// Hides ports and the test's directory.
fn filters(t: &Path) -> Vec<(String, &'static str)> {
    vec![
        (r"127\.0\.0\.1:\d+".to_string(), "[REG]"),
        (t.display().to_string().replace('.', r"\."), "[DIR]"),
        (r"sha256:[0-9a-f]{64}".to_string(), "[DIGEST]"),
    ]
}

macro_rules! snapshot {
    ($t:expr, $text:expr, @$snap:literal) => {
        let f = filters($t);
        let f: Vec<(&str, &str)> = f.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        insta::with_settings!({filters => f}, {
            insta::assert_snapshot!($text, @$snap);
        });
    };
}

fn docker_config(t: &Path, json: &str) {
    std::fs::create_dir_all(t.join("docker")).unwrap();
    std::fs::write(t.join("docker/config.json"), json).unwrap();
}

fn htpasswd_registry() -> Registry {
    Registry::start(Config {
        basic: Some(("alice", "s3cret-pass")),
        ..Default::default()
    })
}

#[test]
fn a_registry_that_is_down_is_given_up_on_in_under_30_s_and_said_once() {
    let t = scratch();
    bundle(t.path());
    let to = format!("127.0.0.1:{}", free_port());
    let r = import(t.path(), &to, &[&*format!("--plain-http={to}")], &[], "");
    assert_eq!(r.status, Some(1));
    assert!(r.took < Duration::from_secs(30), "took {:?}", r.took);
    snapshot!(t.path(), r.stderr, @r"
    airlock: warning: registry [REG] is not answering (connection refused); retrying for up to 20 s
    airlock: error: GET http://[REG]/v2/: connection failed, nothing answers there (io: Connection refused (os error 111)); gave up after 20 s of retries
      hint: check the host name, the port, proxies (HTTPS_PROXY, NO_PROXY) and that the registry is up
    ");
}

#[test]
fn a_registry_that_dies_mid_run_ends_it_promptly_with_one_cause() {
    let reg = Registry::start(Config::default());
    let proxy = StatusProxy::dying(reg.port, "PUT ", "/blobs/uploads/");
    let to = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &to,
        &[&*format!("--plain-http={to}"), "-j", "1"],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    assert_eq!(proxy.answered.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(r.took < Duration::from_secs(30), "took {:?}", r.took);
    snapshot!(t.path(), r.stderr, @r"
    airlock: warning: registry [REG] is not answering (connection refused); retrying for up to 20 s
    airlock: error: HEAD http://[REG]/v2/layout/blobs/[DIGEST]: connection failed, nothing answers there (io: Connection refused (os error 111)); gave up after 20 s of retries
      hint: check the host name, the port, proxies (HTTPS_PROXY, NO_PROXY) and that the registry is up
    ");
}

#[test]
fn an_unknown_host_is_not_retried() {
    let t = scratch();
    bundle(t.path());
    let r = import(t.path(), "no-such-host.invalid", &[], &[], "");
    assert_eq!(r.status, Some(1));
    assert!(r.took < Duration::from_secs(5), "took {:?}", r.took);
    snapshot!(t.path(), r.stderr, @r"
    airlock: error: GET https://no-such-host.invalid/v2/: unknown host, the name does not resolve (io: failed to lookup address information: Name or service not known)
      hint: check the host name (and the DNS or /etc/hosts entry that should resolve it)
    ");
}

#[test]
fn a_wrong_password_and_no_login_are_told_apart() {
    let reg = htpasswd_registry();
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    let wrong = import(
        t.path(),
        h,
        &[
            &*format!("--plain-http={h}"),
            "--username",
            "alice",
            "--password-stdin",
        ],
        &[],
        "not-the-password\n",
    );
    assert_eq!(wrong.status, Some(1));
    snapshot!(t.path(), wrong.stderr, @r"
    airlock: error: the registry refused the credentials for alice from --username (GET http://[REG]/v2/: HTTP 401); UNAUTHORIZED: authentication required
      hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
    ");

    let none = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(none.status, Some(1));
    snapshot!(t.path(), none.stderr, @r"
    airlock: error: the registry needs a login, and no credentials for [REG] were found in [DIR]/containers/auth.json, which does not exist, or [DIR]/docker/config.json, which does not exist (GET http://[REG]/v2/: HTTP 401); UNAUTHORIZED: authentication required
      hint: log in with `airlock login [REG]`, or pass --username USER --password-stdin
    ");

    // A wrong password in docker's config names the file it came from.
    docker_config(
        t.path(),
        r#"{"auths":{"HOST":{"auth":"YWxpY2U6b2xkLXBhc3N3b3Jk"}}}"#
            .replace("HOST", h)
            .as_str(),
    );
    let stale = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(stale.status, Some(1));
    snapshot!(t.path(), stale.stderr, @r"
    airlock: error: the registry refused the credentials for alice from [DIR]/docker/config.json (GET http://[REG]/v2/: HTTP 401); UNAUTHORIZED: authentication required
      hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
    ");
}

#[test]
fn a_plain_http_loopback_registry_needs_no_plain_http() {
    // Loopback is tried over HTTPS, then plain HTTP (#15); the protocol
    // error and its hint for any other host: conventions_auth.rs.
    let reg = Registry::start(Config::default());
    let t = scratch();
    bundle(t.path());
    let r = import(t.path(), &reg.host, &[], &[], "");
    assert_eq!(r.status, Some(0), "{}", r.stderr);
}

/// The reverse mistake: `--plain-http` for a registry that speaks TLS.
/// (It said "HTTP 400, see the registry's message" and showed no message.)
#[test]
fn plain_http_to_a_tls_registry_says_to_drop_the_flag() {
    let t = scratch();
    let certs = Certs::make(&t.path().join("pki"));
    let reg = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    bundle(t.path());
    let r = import(
        t.path(),
        &reg.host,
        &[&format!("--plain-http={}", reg.host)],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r#"
    airlock: error: GET http://[REG]/v2/: protocol error (the server speaks HTTPS; it answered "Client sent an HTTP request to an HTTPS server.")
      hint: the registry speaks HTTPS: drop --plain-http
    "#);
}

/// A self-signed certificate made the usual way (`openssl req -x509`, so
/// CA:TRUE) served as the registry's own, even with `--ca-cert` naming it:
/// a matter of trust, said at once with what to change. (It was retried as
/// a network failure for the whole window, with the "check the host name"
/// hint.)
#[test]
fn a_ca_certificate_served_as_the_registrys_own_is_said_at_once() {
    let t = scratch();
    let dir = t.path().join("selfsigned");
    std::fs::create_dir_all(&dir).unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", "server.key", "-out", "server.crt"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let certs = Certs {
        ca: dir.join("server.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    let reg = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    bundle(t.path());
    let ca = certs.ca.to_str().unwrap();
    let r = import(t.path(), &reg.host, &["--ca-cert", ca], &[], "");
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    airlock: error: GET https://[REG]/v2/: TLS certificate not trusted (io: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity)))
      hint: the registry presents a CA certificate (basicConstraints CA:TRUE) as its own, which TLS clients refuse even when it is trusted: give the registry a server certificate signed by that CA (CA:FALSE), or (only on a trusted network) --insecure=[REG]
    ");
}

#[test]
fn an_untrusted_certificate_names_ca_cert_once() {
    let t = scratch();
    let certs = Certs::make(&t.path().join("pki"));
    let reg = Registry::start(Config {
        tls: Some(&certs),
        ..Default::default()
    });
    bundle(t.path());
    let empty = t.path().join("no-certs.d");
    let r = import(
        t.path(),
        &reg.host,
        &["--certs-dir", empty.to_str().unwrap()],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    airlock: error: GET https://[REG]/v2/: TLS certificate not trusted (io: invalid peer certificate: UnknownIssuer)
      hint: the registry's certificate is not trusted: pass its CA with --ca-cert FILE, put it in /etc/docker/certs.d/[REG]/ca.crt, or (only on a trusted network) --insecure=[REG]
    ");
}

#[test]
fn a_403_on_the_first_push_stops_the_run() {
    let reg = Registry::start(Config::default());
    let proxy = StatusProxy::start(
        reg.port,
        "POST ",
        "/blobs/uploads/",
        "403 Forbidden",
        "DENIED",
    );
    let to = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &to,
        &[&*format!("--plain-http={to}"), "-j", "1"],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    airlock: error: the registry does not let this login push (POST http://[REG]/v2/layout/blobs/uploads/: HTTP 403); DENIED: answered by the test proxy
      hint: the credentials are valid but may not push here; log in as a user who may, or ask the registry's administrator
    ");
    assert_eq!(
        proxy.answered.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one refused push is enough to stop"
    );
}

#[test]
fn a_malformed_docker_config_is_reported_with_its_parse_error() {
    let reg = htpasswd_registry();
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    docker_config(t.path(), r#"{"auths": {"#);
    let r = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    airlock: error: cannot read the credentials for [REG]: [DIR]/docker/config.json is not valid JSON (EOF while parsing an object at line 1 column 11)
      hint: fix the file or the credential helper named above, or pass --username USER --password-stdin for [REG]
    ");
}

#[test]
fn a_credential_helper_that_is_missing_or_fails_is_reported() {
    let reg = htpasswd_registry();
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    docker_config(t.path(), r#"{"credsStore": "airlock-test-absent"}"#);
    let missing = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(missing.status, Some(1));
    snapshot!(t.path(), missing.stderr, @r"
    airlock: error: cannot read the credentials for [REG]: the credential helper docker-credential-airlock-test-absent (credsStore in [DIR]/docker/config.json) is not on PATH
      hint: fix the file or the credential helper named above, or pass --username USER --password-stdin for [REG]
    ");

    // A helper that exits without reading its input, as a locked keychain
    // does: its own failure is shown, not a broken pipe of ours.
    let path = helper(
        t.path(),
        "airlock-test-locked",
        "#!/bin/sh\necho 'error: the keychain is locked' >&2\necho 'second line' >&2\nexit 3\n",
    );
    docker_config(t.path(), r#"{"credsStore": "airlock-test-locked"}"#);
    let fails = import(
        t.path(),
        h,
        &[&*format!("--plain-http={h}")],
        &[("PATH", path)],
        "",
    );
    assert_eq!(fails.status, Some(1));
    snapshot!(t.path(), fails.stderr, @r"
    airlock: error: cannot read the credentials for [REG]: the credential helper docker-credential-airlock-test-locked (credsStore in [DIR]/docker/config.json) failed (exit status: 3): error: the keychain is locked
      hint: fix the file or the credential helper named above, or pass --username USER --password-stdin for [REG]
    ");
}

#[test]
fn a_credential_helper_that_hangs_is_stopped_and_reported() {
    let reg = htpasswd_registry();
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    // A keyring waiting to be unlocked: the helper never answers.
    let path = helper(
        t.path(),
        "airlock-test-hangs",
        "#!/bin/sh
exec sleep 600
",
    );
    docker_config(t.path(), r#"{"credsStore": "airlock-test-hangs"}"#);
    let started = std::time::Instant::now();
    let hung = import(
        t.path(),
        h,
        &[&*format!("--plain-http={h}")],
        &[
            ("PATH", path),
            ("AIRLOCK_CREDENTIAL_HELPER_TIMEOUT", "2".into()),
        ],
        "",
    );
    assert_eq!(hung.status, Some(1));
    assert!(
        started.elapsed().as_secs() < 60,
        "the helper was waited for"
    );
    snapshot!(t.path(), hung.stderr, @r"
    airlock: error: cannot read the credentials for [REG]: the credential helper docker-credential-airlock-test-hangs (credsStore in [DIR]/docker/config.json) did not answer within 2 s and was stopped
      hint: fix the file or the credential helper named above, or pass --username USER --password-stdin for [REG]
    ");
}

#[test]
fn a_passing_failure_with_quiet_lists_the_image_and_says_run_again() {
    let reg = Registry::start(Config::default());
    let proxy = StatusProxy::start(
        reg.port,
        "PUT ",
        "/manifests/app-1 ",
        "500 Internal Server Error",
        "UNKNOWN",
    );
    let to = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &to,
        &[&*format!("--plain-http={to}"), "--retries", "2"],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    failed localhost/layout:app-1 -> [REG]/layout:app-1: PUT http://[REG]/v2/layout/manifests/app-1: HTTP 500; UNKNOWN: answered by the test proxy
    airlock: error: 1 image(s) failed (listed above)
      hint: run the same command again to retry them; what went in is not sent again
    ");
}

/// One manifest the registry keeps answering 503 (Retry-After: 5) for
/// longer than the retry window, while nothing else is in flight: the
/// registry answers, so only that image fails and the others go in. (The
/// per-run budget took the lone failing request for a dead registry and
/// ended the whole import after 20 s, with one error and no list.)
#[test]
fn one_manifest_failing_past_the_retry_window_fails_only_its_image() {
    let reg = Registry::start(Config::default());
    let proxy = StatusProxy::start(
        reg.port,
        "PUT ",
        "/manifests/app-1 ",
        "503 Service Unavailable",
        "UNAVAILABLE",
    );
    let to = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &to,
        &[&format!("--plain-http={to}"), "-j", "1"],
        &[],
        "",
    );
    assert_eq!(r.status, Some(1));
    assert_eq!(proxy.answered.load(std::sync::atomic::Ordering::SeqCst), 6);
    snapshot!(t.path(), r.stderr, @r"
    airlock: warning: registry [REG] is failing (HTTP 503); retrying for up to 20 s
    failed localhost/layout:app-1 -> [REG]/layout:app-1: PUT http://[REG]/v2/layout/manifests/app-1: HTTP 503; UNAVAILABLE: answered by the test proxy
    airlock: error: 1 image(s) failed (listed above)
      hint: run the same command again to retry them; what went in is not sent again
    ");
    for tag in ["base", "app-2", "arm-1", "multi"] {
        let source = skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path());
        assert_eq!(
            reg.digest(&format!("layout:{tag}"), &["--tls-verify=false"]),
            source,
            "{tag}"
        );
    }
}

/// `RUST_LOG=trace` turns on ureq's raw dump of each request, which holds
/// the `Authorization` header: no log level may print the password or its
/// base64 (it did, at every request).
#[test]
fn no_log_level_prints_the_password() {
    let reg = htpasswd_registry();
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &reg.host,
        &[
            &format!("--plain-http={}", reg.host),
            "--username",
            "alice",
            "--password-stdin",
        ],
        &[("RUST_LOG", "trace".to_string())],
        "s3cret-pass\n",
    );
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("airlock: debug:"),
        "the logger ran: {}",
        r.stderr
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pass");
    for secret in ["s3cret-pass", basic.as_str()] {
        assert!(!r.stderr.contains(secret), "{secret} in the log");
    }
    // ureq's dump is hex with a text column, 16 bytes a line, so the
    // base64 is cut across lines: look for the dump itself.
    let hex_words = |l: &str| {
        l.split(' ')
            .take_while(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .count()
    };
    let dumped = r.stderr.lines().find(|l| {
        l.strip_prefix("airlock: trace: ")
            .is_some_and(|rest| hex_words(rest) >= 4)
    });
    assert_eq!(dumped, None, "a raw request dump in the log");
}

/// A 401 to one repository's manifest, with credentials the registry
/// accepted for everything else: that image fails, the others go in. (It
/// was said as "the registry refused the credentials; check the password"
/// and ended the run, though four of five tags were in.)
#[test]
fn a_401_for_one_repository_after_the_login_worked_fails_only_that_image() {
    let reg = htpasswd_registry();
    let proxy = StatusProxy::start(
        reg.port,
        "PUT ",
        "/manifests/app-1 ",
        "401 Unauthorized",
        "UNAUTHORIZED",
    );
    let to = format!("127.0.0.1:{}", proxy.port);
    let t = scratch();
    bundle(t.path());
    let r = import(
        t.path(),
        &to,
        &[
            &format!("--plain-http={to}"),
            "--username",
            "alice",
            "--password-stdin",
        ],
        &[],
        "s3cret-pass\n",
    );
    assert_eq!(r.status, Some(1));
    snapshot!(t.path(), r.stderr, @r"
    failed localhost/layout:app-1 -> [REG]/layout:app-1: the registry refused alice access to this repository, though it accepted the credentials for others (PUT http://[REG]/v2/layout/manifests/app-1: HTTP 401); UNAUTHORIZED: answered by the test proxy
    airlock: error: 1 image(s) failed (listed above)
      hint: each image's reason says what to change before it can go in
    ");
    let creds = ["--tls-verify=false", "--creds", "alice:s3cret-pass"];
    for tag in ["base", "app-2", "arm-1", "multi"] {
        let source = skopeo_digest(&format!("oci:{}:{tag}", layout().display()), t.path());
        assert_eq!(
            reg.digest(&format!("layout:{tag}"), &creds),
            source,
            "{tag}"
        );
    }
}

#[test]
fn the_bearer_flow_tells_a_wrong_password_from_no_login_too() {
    let token = TokenServer::start("tester", "tok-pass", 300);
    let reg = Registry::start(Config {
        token: Some(&token),
        ..Default::default()
    });
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    let wrong = import(
        t.path(),
        h,
        &[
            &*format!("--plain-http={h}"),
            "--username",
            "tester",
            "--password-stdin",
        ],
        &[],
        "wrong\n",
    );
    assert_eq!(wrong.status, Some(1));
    snapshot!(t.path(), wrong.stderr, @r"
    airlock: error: the registry refused the credentials for tester from --username (token for GET http://[REG]/v2/ from http://[REG]/token: HTTP 401); UNAUTHORIZED: bad credentials
      hint: check the password: `airlock login [REG]` stores a new one, or pass --username USER --password-stdin
    ");
    let none = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(none.status, Some(1));
    snapshot!(t.path(), none.stderr, @r"
    airlock: error: the registry needs a login, and no credentials for [REG] were found in [DIR]/containers/auth.json, which does not exist, or [DIR]/docker/config.json, which does not exist (token for GET http://[REG]/v2/ from http://[REG]/token: HTTP 401); UNAUTHORIZED: bad credentials
      hint: log in with `airlock login [REG]`, or pass --username USER --password-stdin
    ");
}

/// Writes an executable `docker-credential-NAME` script into DIR/bin;
/// returns a PATH with it first.
fn helper(t: &Path, name: &str, script: &str) -> String {
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let file = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&file, script).unwrap();
    let st = Command::new("chmod").arg("+x").arg(&file).status().unwrap();
    assert!(st.success());
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn a_credential_helper_gets_the_server_on_stdin_and_its_answer_logs_in() {
    let reg = htpasswd_registry();
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    // Answers only for the server it is asked about, as docker's helpers do.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 9\nread server\n[ \"$server\" = '{h}' ] || {{ echo \"asked for $server\" >&2; exit 4; }}\n\
         echo '{{\"ServerURL\":\"{h}\",\"Username\":\"alice\",\"Secret\":\"s3cret-pass\"}}'\n"
    );
    let path = helper(t.path(), "airlock-test-ok", &script);
    docker_config(
        t.path(),
        &format!(
            r#"{{"credHelpers": {{"{h}": "airlock-test-ok"}}, "credsStore": "airlock-test-absent"}}"#
        ),
    );
    let r = import(
        t.path(),
        h,
        &[&*format!("--plain-http={h}")],
        &[("PATH", path)],
        "",
    );
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "");
}

#[test]
fn a_broken_helper_does_not_stop_a_registry_that_asks_for_no_credentials() {
    let reg = Registry::start(Config::default());
    let h = reg.host.as_str();
    let t = scratch();
    bundle(t.path());
    docker_config(t.path(), r#"{"credsStore": "airlock-test-absent"}"#);
    let r = import(t.path(), h, &[&*format!("--plain-http={h}")], &[], "");
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "");
}
