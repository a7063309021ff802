//! Image sets in a file (`pack -f SET.yaml`, `copy -f`, docs/image-sets.md)
//! against a real distribution registry: tag filters over a repository of
//! several tags, per-entry platforms beside `--platform`, paths relative to
//! the set file, catalogs with a repositories filter, standard input, the
//! old list format, and filters that select nothing. Fixtures are pushed
//! with skopeo; bundles are read back with `inspect --json`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;
use crate::util::*;

fn inspect_json(bundle: &Path) -> serde_json::Value {
    let run = airlock(
        &["inspect", "--json", bundle.to_str().unwrap()],
        Path::new("/"),
    )
    .ok();
    serde_json::from_str(&run.stdout()).unwrap()
}

/// `name platforms…` of every image of a bundle, sorted; the registry's
/// address as `REG`.
fn images(bundle: &Path, reg: &Registry) -> Vec<String> {
    let report = inspect_json(bundle);
    let mut v: Vec<String> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let platforms: Vec<&str> = i["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            format!("{} {}", i["name"].as_str().unwrap(), platforms.join(","))
        })
        .map(|s| s.replace(&reg.host, "REG"))
        .collect();
    v.sort();
    v
}

/// Runs airlock with `input` on its standard input.
fn airlock_stdin(args: &[&str], cwd: &Path, input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses before it reads (`-f -` beside `bundle:-`)
    // may have exited already: a broken pipe here is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    Run {
        cmd: format!("airlock {} < (stdin)", args.join(" ")),
        out: child.wait_with_output().unwrap(),
    }
}

macro_rules! snapshot {
    ($t:expr, $text:expr, @$snap:literal) => {
        let dir = $t.display().to_string();
        insta::with_settings!({filters => vec![
            (regex_escape(&dir).leak() as &str, "[DIR]"),
            (r"127\.0\.0\.1:\d+", "[REG]"),
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

/// A registry holding `team/app` under several tags (app-1, app-2 and
/// arm-1 of the fixture layout), and the multi-platform index as
/// `team/multi:1`.
fn tagged_registry() -> Registry {
    let reg = Registry::start(Config::default());
    let l = layout();
    for (image, tag) in [
        ("app-1", "1.24.9"),
        ("app-1", "1.25.0"),
        ("app-1", "1.25.1-alpine"),
        ("app-2", "1.26.3"),
        ("app-2", "1.28.0"),
        ("app-1", "latest"),
    ] {
        reg.push(
            &format!("oci:{}:{image}", l.display()),
            &format!("team/app:{tag}"),
        );
    }
    reg.push(&format!("oci:{}:multi", l.display()), "team/multi:1");
    reg
}

#[test]
fn a_set_packs_the_tags_its_filter_keeps_with_per_entry_platforms_beside_the_command_lines() {
    let t = scratch();
    let reg = tagged_registry();
    // The layout sits beside the set's folder; the command runs elsewhere,
    // so only a path taken from the set's folder finds it.
    copy_dir(&layout(), &t.path().join("layout"));
    std::fs::create_dir_all(t.path().join("sets")).unwrap();
    std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
    let set = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n\
         - ref: {h}/team/app\n  tags: {{include: '^1\\.2[5-7]\\.', exclude: '-alpine$'}}\n\
         - ref: {h}/team/multi:1\n  platforms: [linux/arm64, linux/ppc64le]\n\
         - ref: oci:../layout:multi\n",
        h = reg.host
    );
    std::fs::write(t.path().join("sets/set.yaml"), set).unwrap();
    let plain = format!("--plain-http={}", reg.host);
    let bundle = t.path().join("set.airlock");
    let cache = t.path().join("cache");
    let pack = |extra: &[&str]| {
        let mut args = vec![
            "pack",
            &plain,
            "--cache",
            cache.to_str().unwrap(),
            "--platform",
            "linux/amd64",
            "-f",
            "../sets/set.yaml",
            "-o",
            bundle.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        airlock(&args, &t.path().join("elsewhere")).ok()
    };
    // A dry run shows what the set resolved to and writes nothing.
    let dry = pack(&["--dry-run"]).stdout().replace(&reg.host, "REG");
    let mut names: Vec<&str> = dry
        .lines()
        .filter(|l| !l.contains(" image(s), "))
        .filter_map(|l| l.strip_prefix("would pack ")?.split(' ').next())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "REG/team/app:1.25.0",
            "REG/team/app:1.26.3",
            "REG/team/multi:1",
            "localhost/layout:multi"
        ],
        "{dry}"
    );
    assert!(dry.contains(" from oci:../layout:multi\n"), "{dry}");
    assert!(dry.contains("would pack 4 image(s), "), "{dry}");
    assert!(!bundle.exists());
    let dry_json: serde_json::Value =
        serde_json::from_str(&pack(&["--dry-run", "--json"]).stdout()).unwrap();
    assert_eq!(dry_json["dry_run"], true, "{dry_json}");
    assert_eq!(
        dry_json["images"].as_array().unwrap().len(),
        4,
        "{dry_json}"
    );
    assert!(!bundle.exists());
    pack(&["-q"]);
    // 1.25.0 and 1.26.3 match; 1.24.9, 1.28.0, latest do not; -alpine is
    // excluded. team/multi keeps its own platforms, the layout's index
    // --platform's.
    assert_eq!(
        images(&bundle, &reg),
        [
            "REG/team/app:1.25.0 linux/amd64",
            "REG/team/app:1.26.3 linux/amd64",
            "REG/team/multi:1 linux/arm64,linux/ppc64le",
            "localhost/layout:multi linux/amd64",
        ]
    );
    let report = inspect_json(&bundle);
    let digest_of = |name: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"].as_str().unwrap().ends_with(name))
            .map(|i| i["digest"].as_str().unwrap().to_string())
            .unwrap()
    };
    let l = layout();
    assert_eq!(
        digest_of("team/app:1.25.0"),
        skopeo_digest(&format!("oci:{}:app-1", l.display()), t.path())
    );
    assert_eq!(
        digest_of("team/app:1.26.3"),
        skopeo_digest(&format!("oci:{}:app-2", l.display()), t.path())
    );
    let sources: Vec<&str> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert!(sources.contains(&"oci:../layout:multi"), "{sources:?}");
}

#[test]
fn a_filter_that_selects_no_tag_fails_naming_the_repository_and_the_tags_it_saw() {
    let t = scratch();
    let reg = tagged_registry();
    let set = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: {}/team/app\n    tags: {{include: '^2\\.'}}\n",
        reg.host
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
    snapshot!(t.path(), err, @r#"
    airlock: error: set.yaml:5: images[0].tags: selects no tag of [REG]/team/app (include "^2\\." exclude ""); its tags: 1.24.9, 1.25.0, 1.25.1-alpine, 1.26.3, 1.28.0, latest
      hint: change the filter's include or exclude so that it keeps a tag
    "#);
    assert!(!t.path().join("out.airlock").exists());
}

#[test]
fn a_catalog_keeps_the_repositories_its_filter_keeps_and_copy_reads_the_set_too() {
    let t = scratch();
    let src = Registry::start(Config::default());
    let dst = Registry::start(Config::default());
    let l = layout();
    src.push(&format!("oci:{}:app-1", l.display()), "team/app:1");
    src.push(&format!("oci:{}:app-2", l.display()), "team/web:2");
    src.push(&format!("oci:{}:app-2", l.display()), "team/web:2-rc");
    src.push(&format!("oci:{}:arm-1", l.display()), "other/arm:1");
    let set = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\ncatalogs:\n  - registry: {}\n    repositories: {{include: '^team/'}}\n    tags: {{exclude: '-rc$'}}\n",
        src.host
    );
    std::fs::write(t.path().join("set.yaml"), set).unwrap();
    let (plain_src, plain_dst) = (
        format!("--plain-http={}", src.host),
        format!("--plain-http={}", dst.host),
    );
    airlock(
        &[
            "pack",
            "-q",
            &plain_src,
            "--cache",
            "cache",
            "-f",
            "set.yaml",
            "-o",
            "c.airlock",
        ],
        t.path(),
    )
    .ok();
    assert_eq!(
        images(&t.path().join("c.airlock"), &src),
        ["REG/team/app:1 linux/amd64", "REG/team/web:2 linux/amd64"]
    );

    let to = format!("docker://{}/backup", dst.host);
    airlock(
        &[
            "copy", "-q", &plain_src, &plain_dst, "--state", "state", "-f", "set.yaml", &to,
        ],
        t.path(),
    )
    .ok();
    assert_eq!(
        dst.catalog().trim(),
        r#"{"repositories":["backup/team/app","backup/team/web"]}"#
    );
    assert_eq!(
        dst.digest("backup/team/web:2", &["--tls-verify=false"]),
        skopeo_digest(&format!("oci:{}:app-2", l.display()), t.path())
    );
    let tags = skopeo(
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/backup/team/web", dst.host),
        ],
        t.path(),
    )
    .ok()
    .stdout();
    assert!(tags.contains("\"2\"") && !tags.contains("2-rc"), "{tags}");

    // A repositories filter that keeps nothing names what the catalog holds.
    let none = format!(
        "apiVersion: airlock/v1\nkind: ImageSet\ncatalogs:\n  - registry: {}\n    repositories: {{include: '^nope/'}}\n",
        src.host
    );
    std::fs::write(t.path().join("none.yaml"), none).unwrap();
    let err = airlock(
        &[
            "pack",
            "-q",
            &plain_src,
            "--cache",
            "cache",
            "-f",
            "none.yaml",
            "-o",
            "n.airlock",
        ],
        t.path(),
    )
    .fails_usage();
    snapshot!(t.path(), err, @r#"
    airlock: error: none.yaml:5: catalogs[0].repositories: selects no repository of [REG] (include "^nope/" exclude ""); it lists: other/arm, team/app, team/web
      hint: change the filter's include or exclude so that it keeps a repository
    "#);
}

#[test]
fn a_set_or_a_list_on_standard_input_and_the_old_list_format_still_work() {
    let t = scratch();
    copy_dir(&layout(), &t.path().join("layout"));
    // Standard input's relative paths are the current directory's.
    let set = "# the set\n---\napiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: oci:layout:multi\n    platforms: [linux/arm64]\n";
    airlock_stdin(
        &["pack", "-q", "-f", "-", "-o", "stdin.airlock"],
        t.path(),
        set,
    )
    .ok();
    let report = inspect_json(&t.path().join("stdin.airlock"));
    assert_eq!(report["images"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        report["images"][0]["platforms"],
        serde_json::json!(["linux/arm64"])
    );

    let list = "# one source a line\noci:layout:app-1\n\noci:layout:app-2  # and a comment\n";
    std::fs::write(t.path().join("images.txt"), list).unwrap();
    airlock(
        &["pack", "-q", "-f", "images.txt", "-o", "list.airlock"],
        t.path(),
    )
    .ok();
    airlock_stdin(
        &["pack", "-q", "-f", "-", "-o", "stdin-list.airlock"],
        t.path(),
        list,
    )
    .ok();
    for bundle in ["list.airlock", "stdin-list.airlock"] {
        let report = inspect_json(&t.path().join(bundle));
        let names: Vec<&str> = report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["localhost/layout:app-1", "localhost/layout:app-2"],
            "{bundle}"
        );
    }
}

#[test]
fn a_mistake_in_the_set_is_reported_before_any_registry_is_asked() {
    let t = scratch();
    // Nothing listens on port 1: a connection attempt would fail otherwise.
    let set = "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: 127.0.0.1:1/team/app\n    tags: {include: '^1', exlude: 'rc'}\n";
    std::fs::write(t.path().join("set.yml"), set).unwrap();
    let err = airlock(
        &["pack", "-q", "-f", "set.yml", "-o", "out.airlock"],
        t.path(),
    )
    .fails_usage();
    snapshot!(t.path(), err, @r"
    airlock: error: set.yml:5: images[0].tags.exlude: unknown field; the fields here are include, exclude
      hint: docs/image-sets.md lists every field of an image set
    ");
    // The same through copy, as the JSON error scripts branch on.
    let run = airlock(&["copy", "--json", "-f", "set.yml", "oci:out"], t.path());
    assert_eq!(run.out.status.code(), Some(2), "{}", run.stderr());
    let report: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["error"]["kind"], "image_set", "{report}");
    let err =
        airlock_stdin(&["copy", "-f", "-", "bundle:-", "oci:out"], t.path(), set).fails_usage();
    snapshot!(t.path(), err, @"airlock: error: -f - and bundle:- both read standard input; write the image set or list to a file");
    let err = airlock_stdin(&["pack", "-f", "-", "-o", "out.airlock"], t.path(), set).fails_usage();
    snapshot!(t.path(), err, @r"
    airlock: error: (standard input):5: images[0].tags.exlude: unknown field; the fields here are include, exclude
      hint: docs/image-sets.md lists every field of an image set
    ");
    assert!(!t.path().join("out").exists());
}

#[test]
fn referrers_travel_unless_the_set_or_the_command_line_turns_them_off_and_their_tags_are_never_filtered(
) {
    let t = scratch();
    let reg = Registry::start(Config::default());
    let l = layout();
    reg.push(&format!("oci:{}:app-1", l.display()), "team/app:1");
    let subject = skopeo_digest(&format!("oci:{}:app-1", l.display()), t.path());
    // A cosign-style signature: an image tagged after its subject's digest.
    let sig_tag = format!("sha256-{}.sig", subject.strip_prefix("sha256:").unwrap());
    reg.push(
        &format!("oci:{}:base", l.display()),
        &format!("team/app:{sig_tag}"),
    );
    let plain = format!("--plain-http={}", reg.host);
    // `tags: {}` keeps every tag: the signature's tag is not one of them,
    // yet the signature travels with its subject.
    let write = |name: &str, extra: &str| {
        let set = format!(
            "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: {}/team/app\n    tags: {{}}\n{extra}",
            reg.host
        );
        std::fs::write(t.path().join(name), set).unwrap();
    };
    write("default.yaml", "");
    write("off.yaml", "referrers: false\n");
    write("on.yaml", "referrers: true\n");
    let pack = |set: &str, extra: &[&str]| {
        let mut args = vec![
            "pack", "--json", &plain, "--cache", "cache", "--force", "-f", set,
        ];
        args.extend_from_slice(&["-o", "out.airlock"]);
        args.extend_from_slice(extra);
        let run = airlock(&args, t.path()).ok();
        let summary: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let mut images: Vec<String> = summary["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| match i["subject"].as_str() {
                Some(s) => format!("referrer of {s}"),
                None => i["name"].as_str().unwrap().replace(&reg.host, "REG"),
            })
            .collect();
        images.sort();
        images
    };
    // A cosign-style referrer keeps its tag as its name. Without referrers
    // it is absent although `tags: {}` keeps every tag: the filter never
    // saw it.
    let with = [
        "REG/team/app:1".to_string(),
        format!("REG/team/app:{sig_tag}"),
    ];
    let without = ["REG/team/app:1".to_string()];
    assert_eq!(pack("default.yaml", &[]), with);
    assert_eq!(pack("on.yaml", &[]), with);
    assert_eq!(pack("off.yaml", &[]), without);
    assert_eq!(pack("on.yaml", &["--no-referrers"]), without);
}

/// One image named twice in a set was refused by the plan as "given
/// twice, by X and by X", naming no line of the set. By two entries with
/// other platforms, it is now refused at the second's line, naming the
/// first's, before any registry is asked, with nothing written; with the
/// same platforms it is carried once. By an entry and a `tags` filter, the
/// filter leaves it to the entry and its platforms (as a catalog does). By
/// two filters: refused, naming both filters' lines.
#[test]
fn an_image_named_twice_in_a_set_is_refused_at_its_line_or_left_to_its_entry() {
    let t = scratch();
    let reg = tagged_registry();
    let plain = format!("--plain-http={}", reg.host);
    let pack = |set: &str| {
        std::fs::write(
            t.path().join("set.yaml"),
            format!(
                "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n{}",
                set.replace("REG", &reg.host)
            ),
        )
        .unwrap();
        airlock(
            &["pack", "-q", &plain, "-f", "set.yaml", "-o", "out.airlock"],
            t.path(),
        )
    };

    let err = pack(
        "  - ref: REG/team/multi:1\n    platforms: [linux/arm64]\n  - ref: REG/team/multi:1\n    platforms: [linux/ppc64le]\n",
    )
    .fails_usage();
    snapshot!(t.path(), err, @r#"
    airlock: error: set.yaml:6: images[1]: "[REG]/team/multi:1" names the image images[0] (line 4) names, with other platforms
      hint: name each image once; list every platform it needs in that entry
    "#);
    assert!(!t.path().join("out.airlock").exists());

    // The same entry twice, however written, is one image.
    pack(
        "  - ref: REG/team/multi:1\n    platforms: [linux/arm64]\n  - ref: docker://REG/team/multi:1\n    platforms: [linux/arm64]\n",
    )
    .ok();
    assert_eq!(
        images(&t.path().join("out.airlock"), &reg),
        ["REG/team/multi:1 linux/arm64"]
    );
    std::fs::remove_file(t.path().join("out.airlock")).unwrap();

    pack(
        "  - ref: REG/team/multi\n    tags: {include: '^1$'}\n    platforms: [linux/amd64]\n  - ref: REG/team/multi:1\n    platforms: [linux/arm64]\n  - ref: REG/team/app\n    tags: {include: '^1\\.26\\.'}\n",
    )
    .ok();
    assert_eq!(
        images(&t.path().join("out.airlock"), &reg),
        [
            "REG/team/app:1.26.3 linux/amd64",
            "REG/team/multi:1 linux/arm64"
        ]
    );
    std::fs::remove_file(t.path().join("out.airlock")).unwrap();

    let err = pack(
        "  - ref: REG/team/app\n    tags: {include: '^1\\.25\\.'}\n  - ref: REG/team/app\n    tags: {include: '^1\\.25\\.0$'}\n",
    )
    .fails_usage();
    snapshot!(t.path(), err, @r"
    airlock: error: set.yaml:7: images[1].tags: keeps [REG]/team/app:1.25.0, which the filter of images[0] (line 5) keeps already
      hint: name each image once: change one of the two filters so that they keep different tags
    ");
    assert!(!t.path().join("out.airlock").exists());
}
