use std::path::{Path, PathBuf};

use super::parse::names_tag_or_digest;
use super::*;

const HEAD: &str = "apiVersion: airlock/v1\nkind: ImageSet\n";

fn parsed(text: &str) -> ImageSet {
    parse(text, Path::new("sets/set.yaml"), Path::new("/sets")).unwrap_or_else(|e| panic!("{e}"))
}

/// The message of the refusal of `HEAD` + `body` (lines 1 and 2 are HEAD).
fn refused(body: &str) -> String {
    refused_whole(&format!("{HEAD}{body}"))
}

fn refused_whole(text: &str) -> String {
    let e = parse(text, Path::new("sets/set.yaml"), Path::new("/sets")).unwrap_err();
    assert_eq!(e.kind(), "image_set", "{e}");
    assert!(e.is_usage(), "{e}");
    assert!(e.hint().is_some(), "{e}");
    e.to_string()
}

#[test]
fn the_example_file_parses_into_what_it_says() {
    let text = include_str!("../../../examples/imageset.yaml");
    let set = parse(
        text,
        Path::new("examples/imageset.yaml"),
        Path::new("examples"),
    )
    .unwrap();
    let refs: Vec<&str> = set.images.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        refs,
        [
            "registry.example.com/team/app:2.1",
            "docker.io/library/nginx",
            "oci:./layout:app-1"
        ]
    );
    let platforms: Vec<String> = set.images[0]
        .platforms
        .iter()
        .flatten()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert!(set.images[1].platforms.is_none());
    let tags = set.images[1].tags.as_ref().unwrap();
    assert!(tags.keeps("1.25.3"));
    assert!(tags.keeps("1.27.0-bookworm"));
    assert!(!tags.keeps("1.25.3-alpine"));
    assert!(!tags.keeps("1.24.0"));
    assert!(!tags.keeps("latest"));
    assert_eq!(
        set.images[2].spec,
        SourceSpec::OciDir {
            path: PathBuf::from("examples/./layout"),
            reference: Some("app-1".into())
        }
    );
    assert_eq!(set.catalogs.len(), 1);
    assert_eq!(set.catalogs[0].registry, "registry.example.com");
    assert!(set.catalogs[0].repositories.keeps("team/app"));
    assert!(!set.catalogs[0].repositories.keeps("other/team"));
    assert!(set.catalogs[0].tags.is_none());
    assert_eq!(set.referrers, Some(true));
    assert!(set.needs_registry());
    assert_eq!(
        set.hosts(),
        ["registry.example.com", "docker.io", "registry.example.com"]
    );
}

#[test]
fn local_paths_are_the_set_files_and_absolute_ones_stay() {
    let set = parsed(&format!(
        "{HEAD}images:\n  - ref: oci-archive:a.tar\n  - ref: docker-archive:/abs/b.tar:x:1\n  - ref: oci:/abs/dir\n"
    ));
    let specs: Vec<SourceSpec> = set.images.into_iter().map(|e| e.spec).collect();
    assert_eq!(
        specs,
        [
            SourceSpec::OciArchive {
                path: "/sets/a.tar".into(),
                reference: None
            },
            SourceSpec::DockerArchive {
                path: "/abs/b.tar".into(),
                reference: Some("x:1".into())
            },
            SourceSpec::OciDir {
                path: "/abs/dir".into(),
                reference: None
            },
        ]
    );
}

#[test]
fn a_bare_repository_without_a_filter_is_its_latest_tag_and_filters_default_to_everything() {
    let set = parsed(&format!(
        "{HEAD}images:\n  - ref: docker://reg.local:5000/app\n  - ref: reg.local:5000/b\n    tags: {{}}\n  - ref: reg.local:5000/c\n    tags: {{exclude: '^v0'}}\n"
    ));
    assert!(set.images[0].tags.is_none());
    assert_eq!(
        set.images[0].spec,
        SourceSpec::Registry("reg.local:5000/app".into())
    );
    let all = set.images[1].tags.as_ref().unwrap();
    assert!(all.keeps("anything") && all.keeps("v0.1"));
    let c = set.images[2].tags.as_ref().unwrap();
    assert!(c.keeps("v1.0") && !c.keeps("v0.9"));
    assert!(set.needs_registry());
    assert_eq!(set.hosts(), ["reg.local:5000"; 3]);
}

#[test]
fn referrers_travel_unless_the_set_or_the_command_line_says_no() {
    let with = |r: &str| parsed(&format!("{HEAD}images:\n  - ref: a/b:1\n{r}"));
    assert!(with("").referrers(true));
    assert!(!with("").referrers(false));
    assert!(with("referrers: true\n").referrers(true));
    assert!(!with("referrers: true\n").referrers(false));
    assert!(!with("referrers: false\n").referrers(true));
}

#[test]
fn a_set_is_told_from_a_list_by_its_name_or_its_first_line() {
    let list = "# images\nreg.local/a:1\noci:./x\n";
    let set = "# images\n\n---\napiVersion: airlock/v1\n";
    assert!(!is_set(Path::new("images.txt"), list));
    assert!(!is_set(Path::new("-"), list));
    assert!(is_set(Path::new("images.txt"), set));
    assert!(is_set(Path::new("-"), set));
    assert!(is_set(Path::new("images.yaml"), list));
    assert!(is_set(Path::new("images.YML"), ""));
    assert!(!is_set(
        Path::new("images"),
        "kind: ImageSet\napiVersion: airlock/v1\n"
    ));
}

#[test]
fn a_tag_or_digest_is_told_from_a_registry_port() {
    assert!(names_tag_or_digest("reg.local:5000/app:1"));
    assert!(names_tag_or_digest("app@sha256:00"));
    assert!(!names_tag_or_digest("reg.local:5000/app"));
    assert!(!names_tag_or_digest("docker.io/library/nginx"));
}

#[test]
fn stdin_is_refused_when_something_else_reads_it() {
    let e = check_stdin(Some(Path::new("-")), &["bundle:-"]).unwrap_err();
    insta::assert_snapshot!(e, @"-f - and bundle:- both read standard input; write the image set or list to a file");
    check_stdin(Some(Path::new("-")), &[]).unwrap();
    check_stdin(Some(Path::new("set.yaml")), &["bundle:-"]).unwrap();
}

#[test]
fn unknown_fields_are_refused_at_their_line() {
    insta::assert_snapshot!(refused("image:\n  - ref: a/b:1\n"), @"sets/set.yaml:3: image: unknown field; the fields here are apiVersion, kind, images, catalogs, referrers");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b\n    tag: {include: x}\n"), @"sets/set.yaml:5: images[0].tag: unknown field; the fields here are ref, platforms, tags");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b\n    tags: {includes: x}\n"), @"sets/set.yaml:5: images[0].tags.includes: unknown field; the fields here are include, exclude");
    insta::assert_snapshot!(refused("catalogs:\n  - registry: r.local\n    repository: {include: x}\n"), @"sets/set.yaml:5: catalogs[0].repository: unknown field; the fields here are registry, repositories, tags, platforms");
}

#[test]
fn wrong_types_are_refused_at_their_line() {
    insta::assert_snapshot!(refused("images: a/b:1\n"), @"sets/set.yaml:3: images: expected a list, found a string");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n    platforms: linux/amd64\n"), @"sets/set.yaml:5: images[0].platforms: expected a list, found a string");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\nreferrers: yes\n"), @"sets/set.yaml:5: referrers: expected true or false, found a string");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b\n    tags: {include: 1.25}\n"), @"sets/set.yaml:5: images[0].tags.include: expected a string (quote it when it looks like a number), found a number");
    insta::assert_snapshot!(refused("images:\n  - a/b:1\n"), @"sets/set.yaml:4: images[0]: expected a mapping, found a string");
    insta::assert_snapshot!(refused("images:\n  - ref:\n"), @"sets/set.yaml:4: images[0].ref: expected a string (quote it when it looks like a number), found no value");
    insta::assert_snapshot!(refused("images:\n  - ref: ''\n"), @"sets/set.yaml:4: images[0].ref: is empty");
    insta::assert_snapshot!(refused_whole("- a\n- b\n"), @"sets/set.yaml:1: (document): expected a mapping, found a list");
}

#[test]
fn bad_values_are_refused_with_their_reason() {
    insta::assert_snapshot!(refused("images:\n  - ref: a/b\n    tags:\n      include: '^1\\.2['\n"), @r#"sets/set.yaml:6: images[0].tags.include: "^1\\.2[" is not a regular expression: unclosed character class"#);
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n    platforms: [linux/amd64, linux]\n"), @r#"sets/set.yaml:5: images[0].platforms[1]: "linux" is not os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"#);
    insta::assert_snapshot!(refused("images:\n  - ref: dir:/x\n"), @r#"sets/set.yaml:4: images[0].ref: "dir:/x": the dir: transport is not supported"#);
    insta::assert_snapshot!(refused("images:\n  - ref: bundle:x.airlock\n"), @"sets/set.yaml:4: images[0].ref: a bundle is not a source of an image set; copy it with `airlock copy bundle:FILE`");
    insta::assert_snapshot!(refused("catalogs:\n  - registry: reg.example.com/team\n"), @r#"sets/set.yaml:4: catalogs[0].registry: "reg.example.com/team" is not a registry host (write host[:port] alone, e.g. registry.example.com:5000)"#);
    insta::assert_snapshot!(refused("images: []\n"), @"sets/set.yaml:3: images: is an empty list; leave the field out instead");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n    platforms: []\n"), @"sets/set.yaml:5: images[0].platforms: is an empty list; leave the field out instead");
}

#[test]
fn a_tags_filter_needs_a_registry_repository_without_tag_or_digest() {
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n    tags: {include: x}\n"), @r#"sets/set.yaml:5: images[0].tags: "a/b:1" names a tag or digest already; a tags filter needs the repository alone"#);
    let digest = "0".repeat(64);
    insta::assert_snapshot!(refused(&format!("images:\n  - ref: a/b@sha256:{digest}\n    tags: {{include: x}}\n")), @r#"sets/set.yaml:5: images[0].tags: "a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000" names a tag or digest already; a tags filter needs the repository alone"#);
    insta::assert_snapshot!(refused("images:\n  - ref: oci:./layout\n    tags: {include: x}\n"), @r#"sets/set.yaml:5: images[0].tags: "oci:./layout" is not a registry repository; a tags filter lists a registry's tags"#);
}

#[test]
fn missing_fields_and_versions_are_refused() {
    insta::assert_snapshot!(refused("images:\n  - platforms: [linux/amd64]\n"), @"sets/set.yaml:4: images[0].ref: missing; every image names its ref");
    insta::assert_snapshot!(refused("catalogs:\n  - repositories: {include: x}\n"), @"sets/set.yaml:4: catalogs[0].registry: missing; name the registry host");
    insta::assert_snapshot!(refused("referrers: false\n"), @"sets/set.yaml:1: images: the set names no images and no catalogs");
    insta::assert_snapshot!(refused_whole("apiVersion: airlock/v2\nkind: ImageSet\nimages:\n  - ref: a/b:1\n"), @r#"sets/set.yaml:1: apiVersion: "airlock/v2" is not one this airlock reads (airlock/v1)"#);
    insta::assert_snapshot!(refused_whole("apiVersion: airlock/v1\nkind: ImageList\nimages:\n  - ref: a/b:1\n"), @r#"sets/set.yaml:2: kind: "ImageList" is not ImageSet"#);
    insta::assert_snapshot!(refused_whole("# a set\nkind: ImageSet\nimages:\n  - ref: a/b:1\n"), @"sets/set.yaml:2: apiVersion: missing; write apiVersion: airlock/v1");
    insta::assert_snapshot!(refused_whole("apiVersion: airlock/v1\nimages:\n  - ref: a/b:1\n"), @"sets/set.yaml:1: kind: missing; write kind: ImageSet");
}

#[test]
fn yaml_that_is_not_one_clean_document_is_refused() {
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n  - ref: [x\n"), @"sets/set.yaml:6: (syntax): not valid YAML: while parsing a flow sequence, expected ',' or ']'");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\nimages:\n  - ref: c/d:1\n"), @"sets/set.yaml:5: (syntax): not valid YAML: duplicated key in mapping");
    insta::assert_snapshot!(refused("images:\n  - ref: a/b:1\n---\napiVersion: airlock/v1\n"), @"sets/set.yaml:6: (document): holds more than one YAML document; an image set is one");
    insta::assert_snapshot!(refused_whole(""), @"sets/set.yaml:1: (document): the file is empty");
}

#[test]
fn anchors_and_aliases_are_read_as_copies() {
    let set = parsed(&format!(
        "{HEAD}images:\n  - {{ref: a/b:1, platforms: &p [linux/arm64]}}\n  - {{ref: c/d:1, platforms: *p}}\n"
    ));
    let platforms: Vec<_> = set.images.iter().map(|e| e.platforms.clone()).collect();
    assert_eq!(platforms[0], platforms[1]);
    assert_eq!(platforms[0].as_ref().map(Vec::len), Some(1));
    // A whole entry repeated by an alias is one image.
    let set = parsed(&format!("{HEAD}images:\n  - &a {{ref: a/b:1}}\n  - *a\n"));
    let refs: Vec<&str> = set.images.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(refs, ["a/b:1"]);
}

/// Two entries naming one image, however its reference or path is written:
/// with the same platforms, carried once; with others, refused at the
/// second's line, naming the first's.
#[test]
fn an_image_named_twice_is_carried_once_or_refused_with_both_lines() {
    insta::assert_snapshot!(refused("images:\n  - ref: r.local/a:1\n    platforms: [linux/amd64]\n  - ref: docker://r.local/a:1\n    platforms: [linux/arm64]\n"), @r#"sets/set.yaml:6: images[1]: "docker://r.local/a:1" names the image images[0] (line 4) names, with other platforms"#);
    insta::assert_snapshot!(refused("images:\n  - ref: oci:layout:app\n  - ref: oci:./layout:app\n    platforms: [linux/arm64]\n"), @r#"sets/set.yaml:5: images[1]: "oci:./layout:app" names the image images[0] (line 4) names, with other platforms"#);
    // In the current directory (`-f set.yaml`, `-f -`), where a leading
    // `./` stays in the joined path.
    let err = parse(
        &format!("{HEAD}images:\n  - ref: oci:layout:app\n  - ref: oci:./layout:app\n    platforms: [linux/arm64]\n"),
        Path::new("set.yaml"),
        Path::new(""),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("names the image images[0]"),
        "{err}"
    );
    let set = parsed(&format!(
        "{HEAD}images:\n  - ref: r.local/a:1\n  - ref: docker://r.local/a:1\n  - ref: r.local/a:2\n  - ref: r.local/a\n    tags: {{include: '^1$'}}\n"
    ));
    let refs: Vec<&str> = set.images.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(refs, ["r.local/a:1", "r.local/a:2", "r.local/a"]);
}

#[test]
fn the_set_describes_itself_for_a_journal() {
    let set = parsed(&format!(
        "{HEAD}images:\n  - ref: r.local/a\n    tags: {{include: '^1'}}\n    platforms: [linux/arm64]\ncatalogs:\n  - registry: r.local\n"
    ));
    assert_eq!(
        set.describe(),
        [
            r#"r.local/a tags include "^1" exclude "" --platform linux/arm64"#,
            r#"--catalog r.local repositories include "" exclude """#,
        ]
    );
}
