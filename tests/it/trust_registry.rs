//! Issue #11, items 6 and 7 against real registries: credentials go only to
//! the origin they belong to (upload `Location`s, journaled sessions and
//! redirects on another origin get none; `--username` is for one
//! registry), and the journal never outranks the registry (a wiped
//! registry gets everything again; two imports on one state do not race).
//!
//! `AIRLOCK_BIN=/path/to/airlock` runs these tests against another binary
//! (to show that they fail on an older one).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::harness::*;
use crate::util::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pass";

fn bin() -> String {
    std::env::var("AIRLOCK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_airlock").to_string())
}

fn basic() -> String {
    format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

/// Runs the airlock under test with `stdin` as its standard input.
fn airlock_with_stdin(args: &[&str], cwd: &Path, stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may refuse before it reads: its output says so, not a
    // broken pipe here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `import BUNDLE --to TARGET --state STATE --json` with `extra` flags.
fn import_args<'a>(
    bundle: &'a Path,
    public: &'a Path,
    target: &'a str,
    state: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "import",
        bundle.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
        "--to",
        target,
        "--state",
        state.to_str().unwrap(),
        "--json",
        "-q",
    ];
    args.extend_from_slice(extra);
    args
}

/// The layout fixture (several images, shared layers) and the 6 MiB
/// `large` image, so that both one-PUT and PATCH uploads happen.
fn bundle(dir: &Path) -> (PathBuf, PathBuf) {
    packed(
        dir,
        &[
            &format!("oci:{}", layout().display()),
            &format!("oci:{}:large", fixtures().join("large").display()),
        ],
    )
}

/// Every image of the bundle is in `reg` under `prefix`, with its digest.
fn assert_all_there(reg: &Registry, bundle: &Path, prefix: &str, skopeo_flags: &[&str]) {
    let r = airlock(
        &["inspect", "--json", bundle.to_str().unwrap()],
        Path::new("/"),
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).unwrap();
    let images = v["images"].as_array().unwrap();
    assert!(images.len() >= 3, "{v:#}");
    for image in images {
        let name = image["name"].as_str().unwrap();
        let repo_tag = name.split_once('/').unwrap().1;
        let got = reg.digest(&format!("{prefix}{repo_tag}"), skopeo_flags);
        assert_eq!(got, image["digest"].as_str().unwrap(), "{name}");
    }
}

/// `METHOD PATH: Authorization SCHEME` of each request the recorder got
/// with credentials.
fn credentials_seen(rec: &Recorder) -> Vec<String> {
    rec.seen()
        .iter()
        .filter_map(|r: &Recorded| {
            let scheme = r.authorization()?.split(' ').next().unwrap_or("");
            let line = r.line.split('?').next().unwrap_or("");
            Some(format!("{line}: Authorization {scheme}"))
        })
        .collect()
}

#[test]
fn an_upload_location_on_another_origin_is_sent_no_credentials() {
    let reg = Registry::start(Config {
        basic: Some((USER, PASSWORD)),
        ..Default::default()
    });
    // The other origin plays storage behind a presigned URL: it lets the
    // request through to the registry with credentials of its own.
    let rec = Recorder::start(Answer::Forward(reg.port, Some(basic())));
    let proxy = LocationProxy::start(reg.port, rec.port, false);
    let t = scratch();
    let (bundle, public) = bundle(t.path());
    let p = format!("127.0.0.1:{}", proxy.port);
    let target = format!("{p}/mirror");
    let state = t.path().join("state");
    let extra = [
        &*format!("--plain-http={p}"),
        "--chunk-size",
        "1M",
        "--username",
        USER,
        "--password-stdin",
    ];
    let args = import_args(&bundle, &public, &target, &state, &extra);
    let out = airlock_with_stdin(&args, t.path(), format!("{PASSWORD}\n").as_bytes());
    let seen = rec.seen();
    assert!(
        seen.iter().any(|r| r.line.starts_with("PATCH ")) && seen.len() > 3,
        "the uploads went to the other origin: {seen:#?}\n{}",
        text(&out)
    );
    assert_eq!(
        credentials_seen(&rec),
        Vec::<String>::new(),
        "the other origin received credentials"
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_all_there(
        &reg,
        &bundle,
        "mirror/",
        &[
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ],
    );
}

#[test]
fn an_upload_location_on_another_origin_that_asks_for_credentials_fails_naming_it() {
    let reg = Registry::start(Config {
        basic: Some((USER, PASSWORD)),
        ..Default::default()
    });
    // This other origin passes requests on as they came: the registry
    // answers 401 to one without credentials.
    let rec = Recorder::start(Answer::Forward(reg.port, None));
    let proxy = LocationProxy::start(reg.port, rec.port, false);
    let t = scratch();
    let (bundle, public) = bundle(t.path());
    let p = format!("127.0.0.1:{}", proxy.port);
    let state = t.path().join("state");
    let extra = [
        &*format!("--plain-http={p}"),
        "--username",
        USER,
        "--password-stdin",
    ];
    let args = import_args(&bundle, &public, &p, &state, &extra);
    let out = airlock_with_stdin(&args, t.path(), format!("{PASSWORD}\n").as_bytes());
    assert_eq!(credentials_seen(&rec), Vec::<String>::new());
    assert!(!rec.seen().is_empty());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let other = format!("http://127.0.0.1:{}/v2/", rec.port);
    assert!(
        stdout.contains(&other) && stdout.contains("sent without credentials"),
        "{}",
        text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// The blob keys (`repo@digest`) a journal holds, in either format.
fn journaled_blobs(journal: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(journal).unwrap();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        if let Some(blobs) = v["blobs"].as_object() {
            return blobs.keys().cloned().collect();
        }
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|f| f["fact"] == "blob")
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_journaled_session_on_another_origin_is_sent_no_credentials() {
    let mut reg = Registry::start(Config {
        basic: Some((USER, PASSWORD)),
        ..Default::default()
    });
    let rec = Recorder::start(Answer::NotFound);
    let t = scratch();
    let (bundle, public) = bundle(t.path());
    let h = reg.host.clone();
    let target = format!("{h}/mirror");
    let state = t.path().join("state");
    let extra = [
        &*format!("--plain-http={h}"),
        "--username",
        USER,
        "--password-stdin",
    ];
    let args = import_args(&bundle, &public, &target, &state, &extra);
    let password = format!("{PASSWORD}\n");
    let out = airlock_with_stdin(&args, t.path(), password.as_bytes());
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let journal = PathBuf::from(report["journal"].as_str().unwrap());
    // The registry loses everything, and the journal is edited: no blob is
    // done, and each has an upload session on another origin.
    let blobs = journaled_blobs(&journal);
    assert!(blobs.len() >= 3, "{blobs:?}");
    let uploads: serde_json::Map<String, serde_json::Value> = blobs
        .iter()
        .map(|k| {
            let repo = k.split_once('@').unwrap().0;
            let location = format!("http://127.0.0.1:{}/v2/{repo}/blobs/uploads/x", rec.port);
            (
                k.clone(),
                serde_json::json!({"location": location, "offset": 0}),
            )
        })
        .collect();
    let edited = serde_json::json!({"blobs": {}, "manifests": {}, "uploads": uploads});
    std::fs::write(&journal, edited.to_string()).unwrap();
    reg.wipe();
    let out = airlock_with_stdin(&args, t.path(), password.as_bytes());
    assert_eq!(
        credentials_seen(&rec),
        Vec::<String>::new(),
        "the journaled origin received credentials"
    );
    // A journal is a hint: a session on another origin is not even asked.
    assert!(rec.seen().is_empty(), "{:#?}", rec.seen());
    assert!(out.status.success(), "{}", text(&out));
    assert_all_there(
        &reg,
        &bundle,
        "mirror/",
        &[
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
        ],
    );
}

#[test]
fn a_blob_download_redirected_to_another_origin_is_sent_no_credentials() {
    let reg = Registry::start(Config {
        basic: Some((USER, PASSWORD)),
        ..Default::default()
    });
    let t = scratch();
    reg.push(&format!("oci:{}:multi", layout().display()), "demo/multi:1");
    let rec = Recorder::start(Answer::Forward(reg.port, Some(basic())));
    let proxy = LocationProxy::start(reg.port, rec.port, true);
    let p = format!("127.0.0.1:{}", proxy.port);
    let image = format!("{p}/demo/multi:1");
    let cache = t.path().join("cache");
    let args = [
        "pack",
        "-q",
        &*format!("--plain-http={p}"),
        "--username",
        USER,
        "--password-stdin",
        "--cache",
        cache.to_str().unwrap(),
        "-o",
        "out.airlock",
        &image,
    ];
    let out = airlock_with_stdin(&args, t.path(), format!("{PASSWORD}\n").as_bytes());
    assert!(out.status.success(), "{}", text(&out));
    let seen = rec.seen();
    assert!(
        seen.iter().any(|r| r.line.starts_with("GET ")),
        "blobs came from the other origin: {seen:#?}"
    );
    assert_eq!(credentials_seen(&rec), Vec::<String>::new());
    airlock(&["verify", "--allow-unsigned", "out.airlock"], t.path()).ok();
}

#[test]
fn username_is_refused_when_the_sources_span_several_registries() {
    let a = Registry::start(Config::default());
    let b = Registry::start(Config::default());
    a.push(&format!("oci:{}:multi", layout().display()), "demo/multi:1");
    b.push(&format!("oci:{}:multi", layout().display()), "demo/multi:1");
    let t = scratch();
    let (ia, ib) = (
        format!("{}/demo/multi:1", a.host),
        format!("{}/demo/multi:1", b.host),
    );
    let cache = t.path().join("cache");
    let args = [
        "pack",
        "-q",
        &*format!("--plain-http={}", a.host),
        &*format!("--plain-http={}", b.host),
        "--username",
        USER,
        "--password-stdin",
        "--cache",
        cache.to_str().unwrap(),
        "-o",
        "out.airlock",
        &ia,
        &ib,
    ];
    let out = airlock_with_stdin(&args, t.path(), format!("{PASSWORD}\n").as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        err.contains(&a.host) && err.contains(&b.host) && err.contains("docker login"),
        "{err}"
    );
    assert!(!t.path().join("out.airlock").exists());
}

#[test]
fn a_registry_that_lost_its_data_gets_everything_again() {
    let mut reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = bundle(t.path());
    let h = reg.host.clone();
    let target = format!("{h}/mirror");
    let state = t.path().join("state");
    let plain_http = format!("--plain-http={h}");
    let args = import_args(&bundle, &public, &target, &state, &[&plain_http]);
    let first = Command::new(bin()).args(&args).output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_all_there(&reg, &bundle, "mirror/", &["--tls-verify=false"]);
    // Restored from nothing, on the same host and port.
    reg.wipe();
    let again = Command::new(bin()).args(&args).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_all_there(&reg, &bundle, "mirror/", &["--tls-verify=false"]);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(
        report["bytes_pushed"].as_u64().unwrap() > 6 << 20,
        "{report:#}"
    );
}

#[test]
fn a_second_import_on_the_same_state_is_refused_while_the_first_runs() {
    let reg = Registry::start(Config::default());
    // Each answer from the registry is held back: the first import is slow.
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(40)),
            ..Default::default()
        },
    );
    let t = scratch();
    let (bundle, public) = bundle(t.path());
    let s = format!("127.0.0.1:{}", slow.port);
    let state = t.path().join("state");
    let extra = [
        &*format!("--plain-http={s}"),
        "--chunk-size",
        "1M",
        "-j",
        "1",
    ];
    let args = import_args(&bundle, &public, &s, &state, &extra);
    let mut first = Command::new(bin())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first import opened its journal.
    let deadline = Instant::now() + Duration::from_secs(20);
    let journal = loop {
        let found = std::fs::read_dir(&state).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "json"))
        });
        if let Some(j) = found {
            break j;
        }
        assert!(
            Instant::now() < deadline,
            "the first import wrote no journal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let second = Command::new(bin()).args(&args).output().unwrap();
    // Refused, not queued: a lock that made it wait would have let the first
    // (slowed by the proxy) finish before the second returned.
    let first_still_running = first.try_wait().unwrap().is_none();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "first: {}", text(&first));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "second: {}", text(&second));
    assert!(
        err.contains("another import") && err.contains(&journal.display().to_string()),
        "{err}"
    );
    assert!(
        first_still_running,
        "the second import returned only after the first had finished"
    );
    assert_all_there(&reg, &bundle, "", &["--tls-verify=false"]);
}
