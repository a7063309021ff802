//! Progress and reports that tell the truth: import progress that moves as
//! chunks go up, a rate that counts only what this run moved, `exists` for
//! what was there, and a dry run that predicts what the import sends and
//! warns before a tag moves.
//!
//! Progress is read from the plain line printed on a non-terminal, every
//! `AIRLOCK_PROGRESS_EVERY_MS` milliseconds.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::util::*;

const MIB: f64 = 1024.0 * 1024.0;

fn large() -> String {
    format!("oci:{}:large", fixtures().join("large").display())
}

/// The size of the one big layer of the `large` fixture.
fn large_layer() -> u64 {
    largest_blob(&fixtures().join("large")).0
}

/// Runs airlock with plain progress lines every 50 ms.
fn airlock_showing_progress(args: &[&str], dir: &Path) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .current_dir(dir)
        .env("AIRLOCK_PROGRESS_EVERY_MS", "50")
        .output()
        .unwrap();
    Run {
        cmd: format!("airlock {}", args.join(" ")),
        out,
    }
}

/// `(done, total)` in MiB of each plain line `LABEL: D of T MiB …`.
fn progress_lines(stderr: &str, label: &str) -> Vec<(f64, f64)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{label}: ")))
        .map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!((words[1], words[3]), ("of", "MiB"), "{rest}");
            (words[0].parse().unwrap(), words[2].parse().unwrap())
        })
        .collect()
}

fn import_args<'a>(bundle: &'a Path, public: &'a Path, target: &'a str) -> Vec<&'a str> {
    vec![
        "import",
        bundle.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
        "--to",
        target,
    ]
}

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.ok().stdout()).unwrap()
}

/// The 6 MiB layer goes up in 6 chunks of 1 MiB (the smallest allowed) through a link that
/// answers slowly: the progress line must move while it does. (It stayed
/// at the small blobs' bytes until the whole layer was committed.)
#[test]
fn import_progress_advances_as_chunks_go_up() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&large()]);
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(60)),
            ..Default::default()
        },
    );
    let p = format!("127.0.0.1:{}", slow.port);
    let mut args = import_args(&bundle, &public, &p);
    let state = t.path().join("state");
    let plain_http = format!("--plain-http={p}");
    args.extend([&plain_http, "--chunk-size", "1M", "-j", "1"]);
    args.extend(["--state", state.to_str().unwrap()]);
    let run = airlock_showing_progress(&args, t.path()).ok();
    let lines = progress_lines(&run.stderr(), "push");
    let layer = large_layer() as f64 / MIB;
    // The largest blob goes first: a line between its first chunk and its
    // end shows it going up.
    let during: Vec<f64> = lines
        .iter()
        .map(|&(done, _)| done)
        .filter(|&done| done > 0.0 && done < layer - 0.3)
        .collect();
    assert!(
        during.len() >= 3,
        "no progress while the {layer:.1} MiB layer went up: {lines:?}"
    );
    assert!(
        lines.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress went back: {lines:?}"
    );
    let (done, total) = *lines.last().unwrap();
    assert_eq!(done, total, "{lines:?}");

    // A re-run finds every blob there: the total is reached, nothing moved.
    let again = airlock_showing_progress(&args, t.path()).ok().stderr();
    let last = again.lines().rfind(|l| l.starts_with("push: ")).unwrap();
    assert_eq!(
        last,
        format!("push: {total:.1} of {total:.1} MiB (100%), 0.0 MiB/s"),
        "{again}"
    );
}

/// A second pack of the same image finds every blob in the cache: nothing
/// moves, so the rate is nil (it was the cache's size over the run's time).
#[test]
fn a_pull_from_the_cache_reports_only_what_it_moved() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    reg.push(&large(), "large:large");
    let cache = t.path().join("cache");
    let source = format!("{}/large:large", reg.host);
    let pack = |out: &str| {
        let out = t.path().join(out);
        let args = [
            "pack",
            "-o",
            out.to_str().unwrap(),
            &*format!("--plain-http={}", reg.host),
            "--cache",
            cache.to_str().unwrap(),
            &source,
        ];
        airlock_showing_progress(&args, t.path()).ok()
    };
    let first = pack("first.airlock").stderr();
    let again = pack("again.airlock").stderr();
    let last_pull = |stderr: &str| {
        stderr
            .lines()
            .rfind(|l| l.starts_with("pull: "))
            .unwrap_or_else(|| panic!("no pull line in\n{stderr}"))
            .to_string()
    };
    assert!(!last_pull(&first).contains(" 0.0 MiB/s"), "{first}");
    let layer = large_layer() as f64 / MIB;
    let line = last_pull(&again);
    let done = progress_lines(&line, "pull")[0].0;
    assert!(done >= layer - 0.05, "{line}");
    assert_eq!(
        line,
        format!("pull: {done:.1} of {done:.1} MiB (100%), 0.0 MiB/s"),
        "{again}"
    );
}

/// A second import of the same bundle finds everything there: each image
/// says `exists`, and nothing is sent.
#[test]
fn a_rerun_where_everything_exists_says_exists() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}", layout().display())]);
    let target = format!("{}/mirror", reg.host);
    let state = t.path().join("state");
    let mut args = import_args(&bundle, &public, &target);
    let plain_http = format!("--plain-http={}", reg.host);
    args.extend([&plain_http, "-q"]);
    args.extend(["--state", state.to_str().unwrap()]);
    airlock(&args, t.path()).ok();
    args.retain(|a| *a != "-q");
    let again = airlock(&args, t.path()).ok();
    let stdout = again.stdout();
    // The fixtures are built afresh per test run: their total size varies.
    let filters = vec![
        (r"127\.0\.0\.1:\d+", "[REG]"),
        (r"of [\d.]+ KiB sent", "of [TOTAL] sent"),
    ];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!(stdout, @r"
        exists     localhost/layout:base -> [REG]/mirror/layout:base
        exists     localhost/layout:app-1 -> [REG]/mirror/layout:app-1
        exists     localhost/layout:app-2 -> [REG]/mirror/layout:app-2
        exists     localhost/layout:arm-1 -> [REG]/mirror/layout:arm-1
        exists     localhost/layout:multi -> [REG]/mirror/layout:multi
        import: 0 blob(s) pushed, 0 mounted, 8 already there; 0 B of [TOTAL] sent
        ");
    });
}

/// With two repositories that share layers, the dry run predicts what the
/// import then does: each blob sent once, mounted into the other
/// repository. (It counted a shared blob once per repository, predicting
/// more bytes than the bundle holds.)
#[test]
fn a_dry_run_predicts_the_blobs_and_bytes_the_import_sends() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    let (bundle, public) = packed(
        t.path(),
        &[
            &format!("oci:{}", layout().display()),
            &format!(
                "docker-archive:{}",
                fixtures().join("app2.docker.tar").display()
            ),
        ],
    );
    let target = format!("{}/mirror", reg.host);
    let state = t.path().join("state");
    let mut args = import_args(&bundle, &public, &target);
    let plain_http = format!("--plain-http={}", reg.host);
    args.extend([&plain_http, "--json"]);
    args.extend(["--state", state.to_str().unwrap()]);
    let mut dry_args = args.clone();
    dry_args.push("--dry-run");
    let dry = json(airlock(&dry_args, t.path()));
    let real = json(airlock(&args, t.path()));
    assert!(
        real["blob_counts"]["mounted"].as_u64().unwrap() >= 1,
        "{real:#}"
    );
    assert_eq!(
        dry["blob_counts"], real["blob_counts"],
        "dry {dry:#}\nreal {real:#}"
    );
    assert_eq!(dry["bytes_pushed"], real["bytes_pushed"]);
    assert!(dry["bytes_pushed"].as_u64() <= dry["bytes_total"].as_u64());
    // Against what is there now, the dry run predicts nothing to send.
    let after = json(airlock(&dry_args, t.path()));
    assert_eq!(after["bytes_pushed"], 0, "{after:#}");
    assert!(after["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["status"] == "exists"));
}

/// The target's tag names another image: the dry run says which tag, and
/// both digests.
#[test]
fn a_dry_run_warns_when_a_tag_would_move() {
    let reg = Registry::start(Config::default());
    let t = scratch();
    reg.push(
        &format!("oci:{}:app-2", layout().display()),
        "mirror/layout:app-1",
    );
    let (bundle, public) = packed(t.path(), &[&format!("oci:{}:app-1", layout().display())]);
    let target = format!("{}/mirror", reg.host);
    let mut args = import_args(&bundle, &public, &target);
    let plain_http = format!("--plain-http={}", reg.host);
    args.extend([&plain_http, "--dry-run"]);
    let run = airlock(&args, t.path()).ok();
    let old = skopeo_digest(&format!("oci:{}:app-2", layout().display()), t.path());
    let new = skopeo_digest(&format!("oci:{}:app-1", layout().display()), t.path());
    let stderr = run.stderr();
    insta::with_settings!({filters => vec![
        (r"127\.0\.0\.1:\d+", "[REG]"),
        (old.as_str(), "[APP-2]"),
        (new.as_str(), "[APP-1]"),
    ]}, {
        insta::assert_snapshot!(stderr, @"warning: tag [REG]/mirror/layout:app-1 names [APP-2] now; this import would move it to [APP-1]");
    });
    let j = {
        let mut a = args.clone();
        a.push("--json");
        json(airlock(&a, t.path()))
    };
    assert_eq!(j["images"][0]["status"], "would push", "{j:#}");
    assert_eq!(j["images"][0]["tag_moves_from"], old.as_str(), "{j:#}");
}
