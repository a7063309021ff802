//! Names at the far side: two images that a target would tag alike.
//!
//! `team/app:1` from two registries, with different content, packed into
//! one bundle. Imported without `--keep-registry`, both went to
//! `DST/team/app:1` and the second replaced the first, while the report
//! said both were pushed. Every way to the far side (import of a file and
//! of a stream, copy into a registry, serve) now refuses before anything
//! is sent, naming both images; `--keep-registry` or `--map` keeps them
//! apart.

use std::path::Path;

use crate::harness::{Config, Registry};
use crate::util::*;

/// Two registries holding `team/app:1` (app-1 in the first, app-2 in the
/// second), and a signed bundle of both.
fn two_of_a_name(dir: &Path) -> (Registry, Registry, std::path::PathBuf, std::path::PathBuf) {
    let (one, two) = (
        Registry::start(Config::default()),
        Registry::start(Config::default()),
    );
    let l = layout();
    one.push(&format!("oci:{}:app-1", l.display()), "team/app:1");
    two.push(&format!("oci:{}:app-2", l.display()), "team/app:1");
    let (key, public) = keys(dir, "signer");
    let bundle = dir.join("b.airlock");
    let (p1, p2) = (
        format!("--plain-http={}", one.host),
        format!("--plain-http={}", two.host),
    );
    airlock(
        &[
            "pack",
            "-q",
            &p1,
            &p2,
            "--cache",
            "cache",
            "--key",
            key.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            &format!("{}/team/app:1", one.host),
            &format!("{}/team/app:1", two.host),
        ],
        dir,
    )
    .ok();
    (one, two, bundle, public)
}

fn refusal(err: &str, one: &Registry, two: &Registry, dst: &Registry) -> String {
    err.replace(&one.host, "ONE")
        .replace(&two.host, "TWO")
        .replace(&dst.host, "DST")
}

#[test]
fn two_images_a_target_would_tag_alike_are_refused_everywhere_before_anything_is_sent() {
    let t = scratch();
    let dir = t.path();
    let (one, two, bundle, public) = two_of_a_name(dir);
    let dst = Registry::start(Config::default());
    let plain = format!("--plain-http={}", dst.host);
    let (b, p) = (bundle.to_str().unwrap(), public.to_str().unwrap());
    let want = "airlock: error: images ONE/team/app:1 and TWO/team/app:1 would both be tagged DST/team/app:1, and the second would replace the first; give --keep-registry, or --map one of them to another repository";

    let err = airlock(
        &["import", "-q", b, "--pub", p, "--to", &dst.host, &plain],
        dir,
    )
    .fails_usage();
    assert!(refusal(&err, &one, &two, &dst).starts_with(want), "{err}");
    let stream = format!(
        "{} import -q - --pub {p} --to {} {plain} < {b}",
        env!("CARGO_BIN_EXE_airlock"),
        dst.host
    );
    let err = run("sh", &["-c", &stream], dir).fails_usage();
    assert!(refusal(&err, &one, &two, &dst).starts_with(want), "{err}");
    let err = airlock(
        &[
            "copy",
            "-q",
            "--pub",
            p,
            &plain,
            &format!("bundle:{b}"),
            &format!("docker://{}", dst.host),
        ],
        dir,
    )
    .fails_usage();
    assert!(refusal(&err, &one, &two, &dst).starts_with(want), "{err}");
    assert_eq!(dst.catalog().trim(), r#"{"repositories":[]}"#);

    // serve names them as import would, so it refuses to start.
    let port = crate::harness::free_port();
    let listen = format!("127.0.0.1:{port}");
    let err = run(
        "timeout",
        &[
            "60",
            env!("CARGO_BIN_EXE_airlock"),
            "serve",
            "--listen",
            &listen,
            "--pub",
            p,
            b,
        ],
        dir,
    )
    .fails_usage();
    assert!(
        err.contains(&format!(
            "images {}/team/app:1 and {}/team/app:1 would both be tagged",
            one.host, two.host
        )),
        "{err}"
    );

    // Kept apart, each arrives with the digest it had at its source.
    airlock(
        &[
            "import",
            "-q",
            b,
            "--pub",
            p,
            "--to",
            &dst.host,
            &plain,
            "--keep-registry",
        ],
        dir,
    )
    .ok();
    let under = |r: &Registry| format!("{}/team/app:1", r.host.replace(':', "-"));
    assert_eq!(
        dst.digest(&under(&one), &["--tls-verify=false"]),
        one.digest("team/app:1", &["--tls-verify=false"])
    );
    assert_eq!(
        dst.digest(&under(&two), &["--tls-verify=false"]),
        two.digest("team/app:1", &["--tls-verify=false"])
    );
    let map = format!("--map={}/team/app=second/app", two.host);
    airlock(
        &[
            "import", "-q", b, "--pub", p, "--to", &dst.host, &plain, &map,
        ],
        dir,
    )
    .ok();
    assert_eq!(
        dst.digest("team/app:1", &["--tls-verify=false"]),
        one.digest("team/app:1", &["--tls-verify=false"])
    );
    assert_eq!(
        dst.digest("second/app:1", &["--tls-verify=false"]),
        two.digest("team/app:1", &["--tls-verify=false"])
    );
}
