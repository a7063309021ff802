//! Delta bundles into real registries: the update loop (a base imported,
//! then a delta packed against the base bundle or against an inventory of
//! the target, imported from a file and from a stream), and a delta whose
//! base the target lacks (or an inventory that lies about the target),
//! which must fail naming the blobs and leave no tag of the images that
//! need them.

use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::util::*;

/// A source registry with two versions of an app sharing a base layer:
/// `team/app:1` (layout's app-1) and `team/app:2` (app-2).
struct Versions {
    src: Registry,
    dir: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
}

impl Versions {
    fn new() -> Versions {
        let src = Registry::start(Config::default());
        let layout = layout();
        src.push(&format!("oci:{}:app-1", layout.display()), "team/app:1");
        src.push(&format!("oci:{}:app-2", layout.display()), "team/app:2");
        let dir = scratch();
        let (key, public) = keys(dir.path(), "signer");
        Versions {
            src,
            dir,
            key,
            public,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn image(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.src.host)
    }

    /// `airlock pack -q -o OUT --key KEY SOURCES… EXTRA…`.
    fn pack(&self, out: &str, sources: &[&str], extra: &[&str]) -> Run {
        let mut args = vec!["pack", "-q", "-o", out, "--key", self.key.to_str().unwrap()];
        let flags = self.src.plain_flags();
        args.extend(flags.iter().map(String::as_str));
        let images: Vec<String> = sources.iter().map(|s| self.image(s)).collect();
        args.extend(images.iter().map(String::as_str));
        args.extend_from_slice(extra);
        airlock(&args, self.dir.path())
    }

    /// `airlock import BUNDLE --pub PUB --to HOST --json EXTRA…`.
    fn import(&self, bundle: &str, target: &Registry, extra: &[&str]) -> Run {
        let plain = format!("--plain-http={}", target.host);
        let state = self.path("state");
        let mut args = vec![
            "import",
            bundle,
            "--pub",
            self.public.to_str().unwrap(),
            "--to",
            &target.host,
            "--state",
            state.to_str().unwrap(),
            "--json",
            &plain,
        ];
        args.extend_from_slice(extra);
        airlock(&args, self.dir.path())
    }

    /// The shell command of `airlock import -` into `target`, with its
    /// journal in `state`: a delta read from standard input.
    fn import_stdin(&self, target: &Registry, state: &str) -> String {
        format!(
            "{bin} import - --pub {public} --to {host} --plain-http={host} --state {state}",
            bin = env!("CARGO_BIN_EXE_airlock"),
            public = self.public.display(),
            host = target.host,
            state = self.path(state).display(),
        )
    }

    /// `airlock inventory docker://TARGET -o held.json`: what `target` holds.
    fn inventory(&self, target: &Registry) -> PathBuf {
        let inventory = self.path("held.json");
        let plain = format!("--plain-http={}", target.host);
        airlock(
            &[
                "inventory",
                &format!("docker://{}", target.host),
                "-o",
                inventory.to_str().unwrap(),
                &plain,
            ],
            self.dir.path(),
        )
        .ok();
        inventory
    }

    /// The source's digest of `repo_tag`, as skopeo reads it.
    fn source_digest(&self, repo_tag: &str) -> String {
        self.src.digest(repo_tag, &["--tls-verify=false"])
    }

    /// The digest of the first layer of layout's `app-1`: the base layer
    /// every version shares.
    fn base_layer(&self) -> String {
        let out = skopeo(
            &["inspect", &format!("oci:{}:app-1", layout().display())],
            self.dir.path(),
        )
        .ok()
        .stdout();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["Layers"][0].as_str().unwrap().to_string()
    }
}

fn json(run: Run) -> serde_json::Value {
    serde_json::from_str(&run.ok().stdout()).unwrap()
}

/// Every image of the new set pulls from `target` with its source digest.
fn assert_set_is_there(v: &Versions, target: &Registry, set: &[&str]) {
    for image in set {
        assert_eq!(
            target.digest(image, &["--tls-verify=false"]),
            v.source_digest(image),
            "{image} on the target"
        );
    }
}

/// The tags `repo` has on a plain-HTTP registry; empty when it has none.
fn tags(target: &Registry, repo: &str) -> Vec<String> {
    let code = format!(
        "import urllib.request,json,sys\ntry:\n  print(json.dumps(json.load(urllib.request.urlopen('http://{}/v2/{repo}/tags/list')).get('tags') or []))\nexcept urllib.error.HTTPError as e:\n  print('[]' if e.code == 404 else sys.exit(e.code))",
        target.host
    );
    let out = run("python3", &["-c", &code], Path::new("/")).ok().stdout();
    serde_json::from_str(&out).unwrap()
}

/// v1 packed and imported into a fresh target.
fn imported_v1(v: &Versions) -> Registry {
    let target = Registry::start(Config::default());
    let v1 = v.path("v1.airlock");
    v.pack(v1.to_str().unwrap(), &["team/app:1"], &[]).ok();
    json(v.import(v1.to_str().unwrap(), &target, &[]));
    target
}

#[test]
fn a_delta_against_the_base_bundle_imports_and_sends_only_the_changed_blobs() {
    let v = Versions::new();
    let target = imported_v1(&v);
    let (v1, v2) = (v.path("v1.airlock"), v.path("v2.airlock"));
    // The next version's set, kept in a file: every tag of the app.
    let set = v.path("set.yaml");
    std::fs::write(
        &set,
        format!(
            "apiVersion: airlock/v1\nkind: ImageSet\nimages:\n  - ref: {}/team/app\n    tags: {{include: '^[0-9]+$'}}\n",
            v.src.host
        ),
    )
    .unwrap();
    v.pack(
        v2.to_str().unwrap(),
        &[],
        &[
            "-f",
            set.to_str().unwrap(),
            "--against",
            v1.to_str().unwrap(),
            "--pub",
            v.public.to_str().unwrap(),
        ],
    )
    .ok();
    let whole = v.path("whole.airlock");
    v.pack(whole.to_str().unwrap(), &["team/app:1", "team/app:2"], &[])
        .ok();
    let (delta_size, whole_size) = (
        std::fs::metadata(&v2).unwrap().len(),
        std::fs::metadata(&whole).unwrap().len(),
    );
    assert!(
        delta_size < whole_size,
        "a delta of {delta_size} bytes against a whole bundle of {whole_size}"
    );

    let r = json(v.import(v2.to_str().unwrap(), &target, &[]));
    assert_set_is_there(&v, &target, &["team/app:1", "team/app:2"]);
    let statuses: Vec<&str> = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["exists", "pushed"], "{r}");
    // Sent: app-2's own layer and config, never the base layer again.
    let sent = r["bytes_pushed"].as_u64().unwrap();
    assert!(
        sent > 0 && sent <= r["bytes_total"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(r["blob_counts"]["pushed"], 2, "{r}");
}

#[test]
fn a_delta_against_an_inventory_of_the_target_imports_from_a_stream() {
    let v = Versions::new();
    let target = imported_v1(&v);
    let inventory = v.inventory(&target);
    // pack -o - | import -: the delta never touches the disk.
    let pack = format!(
        "{bin} pack -q -o - --key {key} {flags} {a} {b} --against {inv}",
        bin = env!("CARGO_BIN_EXE_airlock"),
        key = v.key.display(),
        flags = v.src.plain_flags().join(" "),
        a = v.image("team/app:1"),
        b = v.image("team/app:2"),
        inv = inventory.display(),
    );
    let import = format!("{} --json", v.import_stdin(&target, "state"));
    let r = json(run(
        "bash",
        &["-o", "pipefail", "-c", &format!("{pack} | {import}")],
        v.dir.path(),
    ));
    assert_set_is_there(&v, &target, &["team/app:1", "team/app:2"]);
    assert_eq!(r["blob_counts"]["pushed"], 2, "{r}");
}

#[test]
fn a_delta_into_a_registry_without_its_base_fails_naming_the_blobs_and_tags_nothing() {
    let v = Versions::new();
    let (v1, v2) = (v.path("v1.airlock"), v.path("v2.airlock"));
    v.pack(v1.to_str().unwrap(), &["team/app:1"], &[]).ok();
    v.pack(
        v2.to_str().unwrap(),
        &["team/app:1", "team/app:2"],
        &[
            "--against",
            v1.to_str().unwrap(),
            "--pub",
            v.public.to_str().unwrap(),
        ],
    )
    .ok();
    let empty = Registry::start(Config::default());

    // The dry run says so too, and sends nothing.
    let dry = v
        .import(v2.to_str().unwrap(), &empty, &["--dry-run"])
        .fails();
    assert!(dry.contains(&v.base_layer()), "{dry}");

    let err = v.import(v2.to_str().unwrap(), &empty, &[]).fails();
    assert!(err.contains(&v.base_layer()), "{err}");
    assert!(err.contains("import that base first"), "{err}");
    assert!(err.contains("base bundle sha256:"), "the base's id: {err}");
    assert!(err.contains("v1.airlock"), "the base's name: {err}");
    assert_eq!(tags(&empty, "team/app"), Vec::<String>::new());

    // From a stream, the same: the expected blobs are asked for before the
    // first blob is sent, and no tag appears.
    let stream = format!("{} < {}", v.import_stdin(&empty, "state2"), v2.display());
    let streamed = run("bash", &["-c", &stream], v.dir.path());
    // Each image's reason is on stdout, the summary on stderr.
    let out = streamed.stdout();
    let err = streamed.fails();
    assert!(out.contains(&v.base_layer()), "{out}\n{err}");
    assert!(out.contains("import that base first"), "{out}");
    assert_eq!(tags(&empty, "team/app"), Vec::<String>::new());
}

#[test]
fn an_inventory_that_lies_is_caught_at_import_and_nothing_is_tagged() {
    let v = Versions::new();
    let held = imported_v1(&v);
    let inventory = v.inventory(&held);
    let v2 = v.path("v2.airlock");
    v.pack(
        v2.to_str().unwrap(),
        &["team/app:1", "team/app:2"],
        &["--against", inventory.to_str().unwrap()],
    )
    .ok();
    // The inventory described another registry: this one holds nothing.
    let other = Registry::start(Config::default());
    let err = v.import(v2.to_str().unwrap(), &other, &[]).fails();
    assert!(err.contains(&v.base_layer()), "{err}");
    assert!(err.contains("base inventory"), "{err}");
    assert_eq!(tags(&other, "team/app"), Vec::<String>::new());
}

#[test]
fn an_expected_blob_held_in_another_repository_is_mounted_from_there() {
    let v = Versions::new();
    let target = imported_v1(&v);
    v.src
        .push(&format!("oci:{}:app-2", layout().display()), "other/tool:2");
    let (v1, delta) = (v.path("v1.airlock"), v.path("tool.airlock"));
    v.pack(
        delta.to_str().unwrap(),
        &["other/tool:2"],
        &[
            "--against",
            v1.to_str().unwrap(),
            "--pub",
            v.public.to_str().unwrap(),
        ],
    )
    .ok();
    let r = json(v.import(delta.to_str().unwrap(), &target, &[]));
    assert_set_is_there(&v, &target, &["other/tool:2"]);
    // The base layer lives in team/app only: found there, mounted across.
    assert_eq!(r["blob_counts"]["mounted"], 1, "{r}");
    assert_eq!(r["blob_counts"]["pushed"], 2, "{r}");
}

#[test]
fn a_delta_whose_expected_list_was_altered_is_refused_at_import_and_nothing_goes_in() {
    use crate::hostile::craft::{entries, write, Parts};
    let v = Versions::new();
    let target = imported_v1(&v);
    let (v1, v2) = (v.path("v1.airlock"), v.path("v2.airlock"));
    v.pack(
        v2.to_str().unwrap(),
        &["team/app:1", "team/app:2"],
        &[
            "--against",
            v1.to_str().unwrap(),
            "--pub",
            v.public.to_str().unwrap(),
        ],
    )
    .ok();
    // One expectation dropped from the signed manifest, not re-signed.
    let mut parts = Parts::of(&v2);
    let env: serde_json::Value = serde_json::from_slice(&parts.members[0].1).unwrap();
    parts.manifest["delta"]["expected"]
        .as_array_mut()
        .unwrap()
        .pop();
    let mut env = env;
    let payload = serde_json::to_vec(&parts.manifest).unwrap();
    env["payload"] = serde_json::Value::String(base64(&payload));
    parts.members[0].1 = serde_json::to_vec(&env).unwrap();
    let tampered = v.path("tampered.airlock");
    std::fs::write(&tampered, write(&entries(&parts.frames()))).unwrap();

    let err = v.import(tampered.to_str().unwrap(), &target, &[]).fails();
    assert!(err.contains("the manifest was altered"), "{err}");
    let stream = format!(
        "{} < {}",
        v.import_stdin(&target, "state2"),
        tampered.display()
    );
    let err = run("bash", &["-c", &stream], v.dir.path()).fails();
    assert!(err.contains("the manifest was altered"), "{err}");
    // v1 is all the target has: app:2 never appeared.
    assert_eq!(tags(&target, "team/app"), ["1"]);
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
