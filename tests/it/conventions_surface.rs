//! The command line as other tools meet it (#15): shell completions driven
//! through bash's own completion machinery, man pages rendered by man(1),
//! and every `--json` output, good or failed, checked against the field
//! tables of docs/json.md (read from the doc itself, so doc and code cannot
//! drift apart unnoticed).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;
use crate::util::*;

// ---- completions and man pages ------------------------------------------

/// The command names `airlock --help` lists.
fn command_names(dir: &Path) -> Vec<String> {
    let names = subcommands(dir, &[]);
    assert!(names.contains(&"pack".to_string()), "{names:?}");
    names
}

/// The subcommands `airlock PATH… --help` lists (none for a leaf).
fn subcommands(dir: &Path, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = airlock(&args, dir).ok().stdout();
    let Some((_, list)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues further in.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// `airlock-pack.1`, … for every command at every depth, as `--help`
/// lists them.
fn man_page_names(dir: &Path, path: &[&str], out: &mut Vec<String>) {
    for name in subcommands(dir, path) {
        let mut p = path.to_vec();
        p.push(&name);
        out.push(format!("airlock-{}.1", p.join("-")));
        man_page_names(dir, &p, out);
    }
}

/// Sources the bash script, then calls the function it registered for
/// `airlock` as bash's completion would (COMP_WORDS, COMP_CWORD, and the
/// command, word and previous word as arguments); returns COMPREPLY.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let program = format!(
        r#"source {script}
spec=$(complete -p airlock) || exit 3
func=$(sed -n 's/.*-F \([^ ]*\) .*/\1/p' <<<"$spec")
[ -n "$func" ] || exit 4
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
"$func" airlock "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let r = run("bash", &["-c", &program], script.parent().unwrap()).ok();
    r.stdout().lines().map(str::to_string).collect()
}

#[test]
fn the_bash_completion_script_is_valid_bash_and_completes_commands_and_flags() {
    let t = scratch();
    let script = t.path().join("airlock.bash");
    let r = airlock(&["completion", "bash"], t.path()).ok();
    std::fs::write(&script, r.out.stdout).unwrap();
    run("bash", &["-n", script.to_str().unwrap()], t.path()).ok();

    assert_eq!(bash_complete(&script, &["airlock", "pa"]), ["pack"]);
    assert_eq!(bash_complete(&script, &["airlock", "ma"]), ["man"]);
    assert_eq!(
        bash_complete(&script, &["airlock", "pack", "--no-r"]),
        ["--no-referrers"]
    );
    let mut shells = bash_complete(&script, &["airlock", "completion", ""]);
    shells.sort();
    assert_eq!(
        shells,
        [
            "--help",
            "--verbose",
            "-h",
            "-v",
            "bash",
            "elvish",
            "fish",
            "powershell",
            "zsh"
        ]
    );
}

#[test]
fn zsh_fish_and_powershell_scripts_name_every_command() {
    let t = scratch();
    let names = command_names(t.path());
    for shell in ["zsh", "fish", "powershell"] {
        let script = airlock(&["completion", shell], t.path()).ok().stdout();
        assert!(script.lines().count() > 20, "{shell}:\n{script}");
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "{shell} script lacks {name}:\n{script}"
            );
        }
    }
    let err = airlock(&["completion", "tcsh"], t.path()).fails_usage();
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// `airlock man ARGS | man --warnings -l -`: the page as man(1) shows it.
fn rendered_man_page(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["man"];
    all.extend_from_slice(args);
    let roff = airlock(&all, dir).ok().out.stdout;
    let mut man = Command::new("man")
        .args(["--warnings", "-l", "-"])
        .env("MANWIDTH", "100")
        // UTF-8: where groff is not told otherwise, a bare `-` there comes out
        // as a hyphen (U+2010), and a copied example would not run.
        .env("LC_ALL", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("man (scripts/setup.sh installs man-db and groff-base)");
    man.stdin.take().unwrap().write_all(&roff).unwrap();
    let out = man.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "man failed: {stderr}");
    assert_eq!(stderr, "", "groff warned");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn man_pack_renders_with_man_and_documents_every_pack_flag() {
    let t = scratch();
    let page = rendered_man_page(t.path(), &["pack"]);
    assert!(page.starts_with("airlock-pack(1)"), "{page}");
    assert!(
        page.contains("airlock-pack - Pack images into one signed bundle"),
        "{page}"
    );
    let help = airlock(&["pack", "--help"], t.path()).ok().stdout();
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        // `--insecure=HOST` in a description: the flag is its name.
        .map(|w| w.split(['=', '[']).next().unwrap_or(w))
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()))
        .collect();
    assert!(flags.len() > 20, "{flags:?}");
    for flag in flags {
        assert!(page.contains(flag), "man page lacks {flag}:\n{page}");
    }
    // The examples of --help, each a line that runs when copied.
    let examples = help.split_once("Examples:\n").unwrap().1;
    let section = page
        .split_once("\nEXAMPLES\n")
        .expect("an EXAMPLES section")
        .1;
    for example in examples.lines().filter(|l| !l.is_empty()) {
        assert!(
            section.lines().any(|l| l.trim() == example.trim()),
            "{example:?} not in:\n{section}"
        );
    }

    let top = rendered_man_page(t.path(), &[]);
    assert!(top.starts_with("airlock(1)"), "{top}");
    for name in command_names(t.path()) {
        assert!(
            top.contains(&format!("airlock-{name}(1)")),
            "{name}:\n{top}"
        );
    }
}

#[test]
fn man_dir_writes_a_page_per_command_and_an_unknown_command_is_named() {
    let t = scratch();
    let dir = t.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    airlock(&["man", "--dir", dir.to_str().unwrap()], t.path()).ok();
    let mut want = vec!["airlock.1".to_string()];
    man_page_names(t.path(), &[], &mut want);
    assert!(want.contains(&"airlock-pack.1".to_string()), "{want:?}");
    want.sort();
    assert_eq!(entries(&dir), want);

    let err = airlock(&["man", "nope"], t.path()).fails_usage();
    let names = command_names(t.path()).join(", ");
    assert_eq!(
        err,
        format!("airlock: error: no command \"nope\" has a man page; the commands are: {names}\n")
    );
}

// ---- JSON against docs/json.md --------------------------------------------

/// One row of a field table: its type and whether it is always there.
#[derive(Debug, Clone)]
struct Field {
    ty: String,
    always: bool,
}

/// docs/json.md's tables: for each `## ` section, its fields by path; and
/// the error kinds it lists.
struct Doc {
    sections: BTreeMap<String, BTreeMap<String, Field>>,
    kinds: Vec<String>,
}

fn doc() -> Doc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut sections: BTreeMap<String, BTreeMap<String, Field>> = BTreeMap::new();
    let mut kinds = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            current = h.trim_matches('`').to_string();
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue; // not a table row, or a header
        };
        match cells.len() {
            4 => {
                let always = match cells[2] {
                    "always" => true,
                    "optional" => false,
                    p => panic!("docs/json.md: {name}: presence {p:?}"),
                };
                let field = Field {
                    ty: cells[1].to_string(),
                    always,
                };
                sections
                    .entry(current.clone())
                    .or_default()
                    .insert(name.to_string(), field);
            }
            2 if current == "Errors" => kinds.push(name.to_string()),
            _ => {}
        }
    }
    Doc { sections, kinds }
}

impl Doc {
    /// The fields of `sections` together (the first naming a field wins).
    fn fields(&self, sections: &[&str]) -> BTreeMap<String, Field> {
        let mut all = BTreeMap::new();
        for s in sections {
            let fields = self
                .sections
                .get(*s)
                .unwrap_or_else(|| panic!("docs/json.md has no section {s:?}"));
            for (k, f) in fields {
                all.entry(k.clone()).or_insert_with(|| f.clone());
            }
        }
        all
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "integer" => v.is_u64() || v.is_i64(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "string or null" => v.is_string() || v.is_null(),
        other => panic!("docs/json.md: unknown type {other:?}"),
    }
}

/// Everything in `v` (at `path`) that the documented `fields` do not allow.
fn check(v: &Value, path: &str, fields: &BTreeMap<String, Field>, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match fields.get(&p) {
                    None => problems.push(format!("{p}: not in docs/json.md")),
                    Some(f) if !type_matches(&f.ty, child) => {
                        problems.push(format!("{p}: {child} is not a {}", f.ty))
                    }
                    Some(_) => check(child, &p, fields, problems),
                }
            }
            for (name, f) in fields {
                let parent = name.rsplit_once('.').map_or("", |(p, _)| p);
                let key = name.rsplit_once('.').map_or(name.as_str(), |(_, k)| k);
                if f.always && parent == path && !key.ends_with("[]") && !map.contains_key(key) {
                    problems.push(format!("{name}: documented as always there, missing"));
                }
            }
        }
        Value::Array(items) => {
            let p = format!("{path}[]");
            for item in items {
                if let Some(f) = fields.get(&p) {
                    if !type_matches(&f.ty, item) {
                        problems.push(format!("{p}: {item} is not a {}", f.ty));
                    }
                }
                check(item, &p, fields, problems);
            }
        }
        _ => {}
    }
}

/// Parses `stdout` as one JSON object and checks it against `sections`;
/// returns it.
fn valid(doc: &Doc, sections: &[&str], stdout: &str) -> Value {
    let v: Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{stdout}"));
    assert_eq!(v["version"], 1, "{stdout}");
    // serde_json's map here is sorted: read the order from the text.
    assert!(
        stdout.starts_with("{\n  \"version\": 1,"),
        "version comes first: {stdout}"
    );
    let mut problems = Vec::new();
    check(&v, "", &doc.fields(sections), &mut problems);
    assert!(problems.is_empty(), "{problems:#?}\nin:\n{stdout}");
    if let Some(kind) = v["error"]["kind"].as_str() {
        assert!(
            doc.kinds.iter().any(|k| k == kind),
            "kind {kind} undocumented"
        );
    }
    v
}

#[test]
fn the_checker_refuses_what_the_doc_does_not_say() {
    // The checker itself: it must see an unknown field, a wrong type and a
    // missing one, or the tests below could pass on anything.
    let doc = doc();
    let fields = doc.fields(&["airlock export --json"]);
    let mut problems = Vec::new();
    let v = serde_json::json!({"version": 1, "image_count": "2", "extra": true});
    check(&v, "", &fields, &mut problems);
    problems.sort();
    assert_eq!(
        problems,
        [
            "extra: not in docs/json.md",
            "image_count: \"2\" is not a integer",
            "to: documented as always there, missing",
        ]
    );
    assert!(doc.kinds.len() > 20, "{:?}", doc.kinds);
}

#[test]
fn every_error_kind_the_code_names_is_documented_and_no_other() {
    // `Error::kind` is the one list in the code; read its arms.
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/error/mod.rs"))
            .unwrap();
    let body = src
        .split_once("pub fn kind(&self)")
        .expect("Error::kind")
        .1
        .split_once("\n    }\n")
        .unwrap()
        .0;
    let mut code: Vec<String> = body
        .split("=> \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    code.sort();
    let mut documented = doc().kinds;
    documented.sort();
    assert!(code.len() > 20, "{code:?}");
    assert_eq!(code, documented);
}

#[test]
fn every_local_json_output_is_versioned_and_documented_field_by_field() {
    let doc = doc();
    let t = scratch();
    let dir = t.path();
    let key_id = airlock(&["keygen", "-o", "signer"], dir).ok().stdout();
    let (key, public) = (dir.join("signer"), dir.join("signer.pub"));
    let source = format!("oci:{}", layout().display());
    let pack = airlock(
        &[
            "pack",
            "-q",
            "-o",
            "b.airlock",
            "--key",
            key.to_str().unwrap(),
            &source,
            "--json",
        ],
        dir,
    )
    .ok();
    let pack = valid(&doc, &["airlock pack --json"], &pack.stdout());
    assert_eq!(pack["signed_by"], serde_json::json!([key_id.trim()]));
    let images = pack["images"].as_array().unwrap();
    assert_eq!(images.len(), 5, "{pack}");
    let base = images
        .iter()
        .find(|i| i["name"] == "localhost/layout:base")
        .unwrap_or_else(|| panic!("{pack}"));
    assert_eq!(
        base["digest"],
        skopeo_digest(&format!("oci:{}:base", layout().display()), dir)
    );
    assert_eq!(base["source"], source.as_str());

    let pub_arg = public.to_str().unwrap();
    let verify = airlock(&["verify", "b.airlock", "--pub", pub_arg, "--json"], dir).ok();
    let verify = valid(&doc, &["airlock verify --json"], &verify.stdout());
    let inspect = airlock(&["inspect", "b.airlock", "--json"], dir).ok();
    let inspect = valid(&doc, &["airlock inspect --json"], &inspect.stdout());
    // One signer shape: the same list in all three.
    assert_eq!(verify["signed_by"], pack["signed_by"]);
    assert_eq!(inspect["signed_by"], pack["signed_by"]);
    // One name, one meaning: the same counts under the same names.
    assert_eq!(verify["blob_count"], pack["blob_count"]);
    assert_eq!(inspect["blob_count"], pack["blob_count"]);
    assert_eq!(inspect["bytes"], pack["bytes"]);
    let unsigned = airlock(&["verify", "b.airlock", "--allow-unsigned", "--json"], dir).ok();
    let unsigned = valid(&doc, &["airlock verify --json"], &unsigned.stdout());
    assert_eq!(unsigned["signed_by"], serde_json::json!([]));

    let repair = airlock(&["repair", "b.airlock", "--json"], dir).ok();
    valid(&doc, &["airlock repair --json"], &repair.stdout());
    let export = airlock(
        &[
            "export",
            "-q",
            "b.airlock",
            "--pub",
            pub_arg,
            "--to",
            "oci:out",
            "--json",
        ],
        dir,
    )
    .ok();
    let export = valid(&doc, &["airlock export --json"], &export.stdout());
    assert_eq!(export["image_count"], 5);
}

#[test]
fn import_and_dry_run_json_are_documented_and_a_partial_failure_keeps_the_report() {
    let doc = doc();
    let reg = Registry::start(Config::default());
    let t = scratch();
    let dir = t.path();
    let (bundle, public) = packed(dir, &[&format!("oci:{}", layout().display())]);
    let plain = format!("--plain-http={}", reg.host);
    let import = |to: &str, plain: &str, extra: &[&str]| {
        let mut args = vec![
            "import",
            bundle.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
            "--to",
            to,
            plain,
            "--state",
            "state",
            "--json",
        ];
        args.extend_from_slice(extra);
        airlock(&args, dir)
    };
    let dry = import(&reg.host, &plain, &["--dry-run"]).ok();
    let dry = valid(&doc, &["airlock import --json"], &dry.stdout());
    assert_eq!(dry["dry_run"], true);
    let done = import(&reg.host, &plain, &[]).ok();
    let done = valid(&doc, &["airlock import --json"], &done.stdout());
    assert_eq!(done["images"].as_array().unwrap().len(), 5, "{done}");

    // One manifest refused: the report of the rest, and the error, in one
    // object; exit 1.
    let proxy = StatusProxy::start(
        reg.port,
        "PUT ",
        "/manifests/app-1 ",
        "500 Internal Server Error",
        "UNKNOWN",
    );
    let to = format!("127.0.0.1:{}", proxy.port);
    let r = import(
        &format!("{to}/again"),
        &format!("--plain-http={to}"),
        &["--retries", "1"],
    );
    let stdout = r.stdout();
    r.fails();
    let v = valid(&doc, &["airlock import --json", "Errors"], &stdout);
    let status: BTreeMap<String, String> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(status["localhost/layout:app-1"], "failed", "{stdout}");
    assert_eq!(status["localhost/layout:base"], "pushed", "{stdout}");
    // The error comes last, after the report.
    let error = stdout.split_once("\n  \"error\": ").unwrap().1;
    insta::assert_snapshot!(error, @r#"
    {
        "kind": "images_failed",
        "message": "1 image(s) failed (listed above)",
        "hint": "run the same command again to retry them; what went in is not sent again"
      }
    }
    "#);
}

#[test]
fn a_failing_command_with_json_prints_one_json_error_on_stdout_and_exits_non_zero() {
    let doc = doc();
    let t = scratch();
    let dir = t.path();
    let filters = vec![(r"airlock-test[^/\s]*", "[DIR]")];

    // A failure of the work: exit 1, the text on stderr as without --json.
    let r = airlock(&["inspect", "--json", "missing.airlock"], dir);
    let stdout = r.stdout();
    let stderr = r.fails();
    let v = valid(&doc, &["Errors"], &stdout);
    assert_eq!(v["error"]["kind"], "io");
    insta::with_settings!({filters => filters.clone()}, {
        insta::assert_snapshot!(stdout, @r#"
        {
          "version": 1,
          "error": {
            "kind": "io",
            "message": "open bundle missing.airlock: entity not found",
            "hint": "check that missing.airlock exists"
          }
        }
        "#);
        insta::assert_snapshot!(stderr, @r"
        airlock: error: open bundle missing.airlock: entity not found
          hint: check that missing.airlock exists
        ");
    });

    // A mistake in the call, found by clap: exit 2, still JSON.
    let r = airlock(&["pack", "oci:x", "--json"], dir);
    let stdout = r.stdout();
    r.fails_usage();
    valid(&doc, &["Errors"], &stdout);
    insta::assert_snapshot!(stdout, @r#"
    {
      "version": 1,
      "error": {
        "kind": "usage",
        "message": "the following required arguments were not provided: --output <BUNDLE>",
        "hint": "see `airlock --help` for how to call it"
      }
    }
    "#);

    // Several problems: each one listed.
    let r = airlock(
        &[
            "pack",
            "-o",
            "b.airlock",
            "oci:nope1",
            "oci:nope2",
            "--json",
        ],
        dir,
    );
    let stdout = r.stdout();
    r.fails();
    let v = valid(&doc, &["Errors"], &stdout);
    assert_eq!(v["error"]["kind"], "many", "{stdout}");
    assert_eq!(
        v["error"]["errors"].as_array().unwrap().len(),
        2,
        "{stdout}"
    );
    assert!(!dir.join("b.airlock").exists());
}

#[test]
fn cache_json_outputs_are_versioned_and_documented_field_by_field() {
    let doc = doc();
    let t = scratch();
    let dir = t.path();
    // A cache with one complete blob and one partial download.
    let cache = dir.join("cache");
    let blob = b"cached blob";
    let hex = sha256_hex(blob);
    std::fs::create_dir_all(cache.join("blobs/sha256")).unwrap();
    std::fs::create_dir_all(cache.join("partial/sha256")).unwrap();
    std::fs::write(cache.join("blobs/sha256").join(&hex), blob).unwrap();
    std::fs::write(cache.join("partial/sha256").join(sha256_hex(b"x")), b"pa").unwrap();
    let c = cache.to_str().unwrap();
    let du = airlock(&["cache", "du", "--cache", c, "--json"], dir).ok();
    let du = valid(&doc, &["airlock cache du --json"], &du.stdout());
    assert_eq!(
        (du["entry_count"].clone(), du["partial_count"].clone()),
        (1.into(), 1.into())
    );
    let ls = airlock(&["cache", "ls", "--cache", c, "--json"], dir).ok();
    let ls = valid(&doc, &["airlock cache ls --json"], &ls.stdout());
    assert_eq!(ls["entries"].as_array().unwrap().len(), 2, "{ls}");
    let pruned = airlock(
        &["cache", "prune", "--cache", c, "--max-size", "0", "--json"],
        dir,
    )
    .ok();
    let pruned = valid(&doc, &["airlock cache prune --json"], &pruned.stdout());
    assert_eq!(pruned["left_count"], 0, "{pruned}");
}
