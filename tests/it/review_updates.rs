//! Review of `inventory`, `diff` and image sets (#13): each test here
//! failed on the code as it was merged, and names the defect it caught.

use std::path::Path;

use crate::harness::*;
use crate::util::*;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// An inventory of `blobs` (sorted, each once), all of one image.
fn inventory(blobs: &[(char, u64)]) -> String {
    let blobs: Vec<_> = blobs
        .iter()
        .map(|(c, size)| serde_json::json!({"digest": digest(*c), "size": size}))
        .collect();
    serde_json::json!({
        "version": 1, "kind": "airlock-inventory", "created": "2026-12-01T00:00:00Z",
        "source": {"type": "registry", "registry": "reg.local", "prefix": ""},
        "images": [{"name": "app:1", "digest": digest('a')}],
        "blobs": blobs,
    })
    .to_string()
}

/// Two sizes that fit a u64 each but not their sum: `diff` added them up
/// unchecked and panicked (debug) or printed a wrapped byte count
/// (release). The reader now refuses such an inventory.
#[test]
fn an_inventory_whose_blob_sizes_overflow_when_added_is_refused_not_a_panic() {
    let t = scratch();
    std::fs::write(t.path().join("a.json"), inventory(&[('a', 1)])).unwrap();
    std::fs::write(
        t.path().join("huge.json"),
        inventory(&[('a', 1), ('b', u64::MAX), ('c', u64::MAX)]),
    )
    .unwrap();
    let err = airlock(&["diff", "a.json", "huge.json"], t.path()).fails();
    insta::assert_snapshot!(err, @r"
    airlock: error: inventory huge.json: the blob sizes add up to more than 18446744073709551615 bytes (at sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb)
      hint: make it again with this release's `airlock inventory`, or read it with the release that wrote it (docs/inventory.md describes the format)
    ");
    // One size at the limit alone is a number, not an overflow.
    std::fs::write(
        t.path().join("max.json"),
        inventory(&[('a', 1), ('b', u64::MAX - 1)]),
    )
    .unwrap();
    let out = airlock(&["diff", "--json", "a.json", "max.json"], t.path()).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(v["delta_bytes"].as_u64(), Some(u64::MAX - 1));
}

/// A catalog whose kept repositories hold no tag (every manifest deleted;
/// distribution still lists the repository) resolved to nothing, and the
/// pack went on with the other entries as if the catalog were there.
#[test]
fn a_catalog_whose_repositories_hold_no_tag_is_an_error_not_nothing() {
    let t = scratch();
    let reg = Registry::start(Config::default());
    let app = format!("oci:{}:app-1", layout().display());
    reg.push(&app, "team/app:1");
    reg.push(&format!("oci:{}:base", layout().display()), "gone:1");
    let gone = reg.digest("gone:1", &["--tls-verify=false"]);
    skopeo(
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{}/gone@{gone}", reg.host),
        ],
        Path::new("/"),
    )
    .ok();
    assert!(reg.catalog().contains("\"gone\""), "{}", reg.catalog());
    let set = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: {host}/team/app:1\ncatalogs:\n  - registry: {host}\n    repositories: {{include: '^gone$'}}\n",
        host = reg.host
    );
    std::fs::write(t.path().join("set.yaml"), set).unwrap();
    let plain = format!("--plain-http={}", reg.host);
    let err = airlock(
        &[
            "pack",
            "-q",
            &plain,
            "--cache",
            "cache",
            "-f",
            "set.yaml",
            "-o",
            "out.airlock",
        ],
        t.path(),
    )
    .fails_usage();
    let err = err.replace(&reg.host, "[REG]");
    insta::assert_snapshot!(err, @r#"
    airlock: error: set.yaml:6: catalogs[0]: the repositories kept on [REG] (include "^gone$" exclude "") hold no tag: gone
      hint: tag an image in one of them, or change the repositories filter
    "#);
    assert!(!t.path().join("out.airlock").exists());
}

/// Under the prefix `mirror`, the repository `mirror` keeps its whole
/// path and `mirror/mirror` loses the prefix: both were named `mirror:1`,
/// and `inventory` wrote a file that its own reader refused ("listed
/// twice"). The one under the prefix is listed; both images' blobs are.
#[test]
fn an_inventory_of_a_prefix_lists_a_name_once_when_the_prefix_repository_shares_it() {
    let t = scratch();
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "mirror:1");
    reg.push(
        &format!("oci:{}:app-2", layout().display()),
        "mirror/mirror:1",
    );
    let under = reg.digest("mirror/mirror:1", &["--tls-verify=false"]);
    let at_prefix = reg.digest("mirror:1", &["--tls-verify=false"]);
    assert_ne!(under, at_prefix);
    let plain = format!("--plain-http={}", reg.host);
    let place = format!("docker://{}/mirror", reg.host);
    airlock(
        &["inventory", "-q", &plain, &place, "-o", "inv.json"],
        t.path(),
    )
    .ok();
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("inv.json")).unwrap()).unwrap();
    assert_eq!(
        inv["images"],
        serde_json::json!([{"name": "mirror:1", "digest": under}])
    );
    let blobs: Vec<&str> = inv["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert!(blobs.contains(&at_prefix.as_str()), "{blobs:?}");
    assert!(blobs.contains(&under.as_str()), "{blobs:?}");
    // And it reads back: diff of the inventory against itself.
    let out = airlock(&["diff", "--json", "inv.json", "inv.json"], t.path()).ok();
    let diff: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(diff["unchanged_count"], 1);
}

/// `-f FILE` was read whole, however large: `-f /dev/zero` grew without
/// bound, and a mistaken 40 MiB file of NULs became one "source" that
/// the error printed back whole. Now refused by size, with its name.
#[test]
fn a_source_file_larger_than_any_set_is_refused_unread() {
    let t = scratch();
    let f = std::fs::File::create(t.path().join("huge.list")).unwrap();
    f.set_len(40 << 20).unwrap();
    let err = airlock(&["pack", "-f", "huge.list", "-o", "out.airlock"], t.path()).fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: -f huge.list: more than 32 MiB, larger than any image set or source list; check the file name");
    let err = airlock(&["pack", "-f", "/dev/zero", "-o", "out.airlock"], t.path()).fails_usage();
    assert!(err.contains("-f /dev/zero: more than 32 MiB"), "{err}");
    assert!(!t.path().join("out.airlock").exists());
}

/// Block nesting some thousands deep (`- - - …` on one line) overflowed
/// the stack of the YAML loader: the process aborted (no error, no file
/// name, exit 134). Now refused at its line before it is loaded.
#[test]
fn a_set_nested_thousands_deep_is_refused_not_a_stack_overflow() {
    let t = scratch();
    let deep = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: oci:./layout\n{}x\n",
        "- ".repeat(20_000)
    );
    std::fs::write(t.path().join("deep.yaml"), deep).unwrap();
    let err = airlock(&["pack", "-f", "deep.yaml", "-o", "out.airlock"], t.path()).fails_usage();
    insta::assert_snapshot!(err, @r"
    airlock: error: deep.yaml:5: (syntax): nests deeper than 512 columns of indentation; an image set needs a few
      hint: docs/image-sets.md lists every field of an image set
    ");
    // Indentation alone nests too.
    let mut indented = "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n".to_string();
    for i in 0..3000 {
        indented.push_str(&format!("{}a:\n", " ".repeat(i)));
    }
    std::fs::write(t.path().join("indented.yaml"), indented).unwrap();
    let err = airlock(
        &["pack", "-f", "indented.yaml", "-o", "out.airlock"],
        t.path(),
    )
    .fails_usage();
    assert!(
        err.contains("indented.yaml:517: (syntax): nests deeper"),
        "{err}"
    );
    assert!(!t.path().join("out.airlock").exists());
}

/// An image named by an `images` entry and again by a catalog that keeps
/// its repository (a pinned tag beside the whole team) was refused as
/// "given twice", an error that named neither entry's line. The catalog
/// now leaves the tag to the entry, and the bundle holds each image once.
#[test]
fn a_catalog_leaves_an_image_that_an_entry_names_to_that_entry() {
    let t = scratch();
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "team/app:1");
    reg.push(&format!("oci:{}:base", layout().display()), "team/base:1");
    let set = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: {host}/team/app:1\ncatalogs:\n  - registry: {host}\n    repositories: {{include: '^team/'}}\n",
        host = reg.host
    );
    std::fs::write(t.path().join("set.yaml"), set).unwrap();
    let (key, public) = keys(t.path(), "site");
    let (key, public) = (key.display().to_string(), public.display().to_string());
    let plain = format!("--plain-http={}", reg.host);
    airlock(
        &[
            "pack",
            "-q",
            &plain,
            "--cache",
            "cache",
            "-f",
            "set.yaml",
            "-o",
            "out.airlock",
            "--key",
            &key,
        ],
        t.path(),
    )
    .ok();
    let out = airlock(
        &[
            "inventory",
            "-q",
            "--pub",
            &public,
            "out.airlock",
            "-o",
            "-",
        ],
        t.path(),
    )
    .ok();
    let inv: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let want = serde_json::json!([
        {"name": "team/app:1", "digest": reg.digest("team/app:1", &["--tls-verify=false"])},
        {"name": "team/base:1", "digest": reg.digest("team/base:1", &["--tls-verify=false"])},
    ]);
    assert_eq!(inv["images"], want);
}

/// A registry whose catalog's next-page link names the same page for ever.
fn circular_catalog() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pages = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = pages.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let (body, link) = if line.contains("/v2/_catalog") {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    r#"{"repositories":["team/app"]}"#,
                    "Link: </v2/_catalog?last=team%2Fapp&n=1>; rel=\"next\"\r\n",
                )
            } else {
                ("{}", "")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, pages)
}

#[test]
fn a_catalog_whose_pages_go_round_is_refused_not_followed_for_ever() {
    let (port, pages) = circular_catalog();
    let t = scratch();
    let host = format!("127.0.0.1:{port}");
    let r = run(
        "timeout",
        &[
            "60",
            env!("CARGO_BIN_EXE_airlock"),
            "inventory",
            &format!("docker://{host}"),
            &format!("--plain-http={host}"),
            "-o",
            "inv.json",
        ],
        t.path(),
    );
    let err = r.fails();
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "[REG]")]}, {
        insta::assert_snapshot!(err, @r"
        airlock: error: GET http://[REG]/v2/_catalog: protocol error (the registry's pages repeat: its next-page link names a page it sent already)
          hint: the registry's list goes round in a circle: ask its administrator, or name the repositories and tags one by one
        ");
    });
    // The first page, then its repeat, which is not asked for.
    assert_eq!(pages.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(!t.path().join("inv.json").exists());
}

#[test]
fn a_registry_named_without_docker_is_pointed_at_docker_not_read_as_a_bundle() {
    let t = scratch();
    let err = airlock(
        &[
            "inventory",
            "registry.internal:5000/mirror",
            "-o",
            "inv.json",
        ],
        t.path(),
    )
    .fails_usage();
    insta::assert_snapshot!(err, @"airlock: error: registry.internal:5000/mirror is neither a file nor a docker:// place: to list a registry, write docker://registry.internal:5000/mirror");
}

#[test]
fn an_inventory_of_a_prefix_that_holds_nothing_says_so() {
    let reg = Registry::start(Config::default());
    reg.push(&format!("oci:{}:app-1", layout().display()), "team/app:1");
    let t = scratch();
    let plain = format!("--plain-http={}", reg.host);
    let run = airlock(
        &[
            "inventory",
            &format!("docker://{}/mirror", reg.host),
            &plain,
            "-o",
            "-",
        ],
        t.path(),
    )
    .ok();
    let inv: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(inv["images"], serde_json::json!([]));
    let stderr = run.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("airlock: warning:"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"))
        .replace(&reg.host, "[REG]");
    insta::assert_snapshot!(warning, @"airlock: warning: registry [REG] lists no repository under mirror; the inventory is empty");
}
