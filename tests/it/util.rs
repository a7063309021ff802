//! Shared test helpers: fixture images built by umoci and skopeo, and a
//! command runner whose failure message shows everything needed to debug.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

/// Fixture images (see scripts/make-fixtures.sh), built once per test run.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("airlock-fixtures")
            .tempdir()
            .unwrap()
            .keep();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-fixtures.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run make-fixtures.sh");
        assert!(
            out.status.success(),
            "building fixtures failed (are umoci, skopeo and openssl installed? see README):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn layout() -> PathBuf {
    fixtures().join("layout")
}

/// A scratch directory for one test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("airlock-test")
        .tempdir()
        .unwrap()
}

pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).to_string()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).to_string()
    }

    fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Asserts success and returns self.
    pub fn ok(self) -> Run {
        assert!(
            self.out.status.success(),
            "expected success\n{}",
            self.dump()
        );
        self
    }

    /// Asserts a failure with exit code 1, no panic, and a rendered error;
    /// returns stderr.
    pub fn fails(self) -> String {
        assert_eq!(
            self.out.status.code(),
            Some(1),
            "expected exit 1\n{}",
            self.dump()
        );
        let err = self.stderr();
        assert!(!err.contains("panicked"), "panicked\n{}", self.dump());
        assert!(
            err.contains("airlock:"),
            "no rendered error\n{}",
            self.dump()
        );
        err
    }
}

impl Run {
    /// Asserts a usage mistake: exit code 2, no panic, a rendered error;
    /// returns stderr.
    pub fn fails_usage(self) -> String {
        assert_eq!(
            self.out.status.code(),
            Some(2),
            "expected exit 2\n{}",
            self.dump()
        );
        let err = self.stderr();
        assert!(!err.contains("panicked"), "panicked\n{}", self.dump());
        err
    }
}

pub fn run(program: &str, args: &[&str], cwd: &Path) -> Run {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        cmd: format!("{program} {}", args.join(" ")),
        out,
    }
}

pub fn airlock(args: &[&str], cwd: &Path) -> Run {
    run(env!("CARGO_BIN_EXE_airlock"), args, cwd)
}

pub fn skopeo(args: &[&str], cwd: &Path) -> Run {
    run("skopeo", args, cwd)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `sha256:<hex>` of what `skopeo inspect --raw` returns: the manifest digest
/// as an independent tool sees it.
pub fn skopeo_digest(image: &str, cwd: &Path) -> String {
    let raw = skopeo(&["inspect", "--raw", image], cwd).ok().out.stdout;
    format!("sha256:{}", sha256_hex(&raw))
}

/// Makes a key pair in `dir`; returns (private, public).
pub fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    airlock(&["keygen", "-o", name], dir).ok();
    (dir.join(name), dir.join(format!("{name}.pub")))
}

/// Packs `sources` signed by a fresh key; returns (bundle, public key).
pub fn packed(dir: &Path, sources: &[&str]) -> (PathBuf, PathBuf) {
    let (key, public) = keys(dir, "signer");
    let bundle = dir.join("b.airlock");
    let mut args = vec![
        "pack",
        "-q",
        "-o",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(sources);
    airlock(&args, dir).ok();
    (bundle, public)
}

/// Copies a directory tree (to damage a copy, not the shared fixtures).
pub fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Names of the entries in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// `airlock verify BUNDLE --pub PUBLIC`.
pub fn verify_signed(bundle: &Path, public: &Path) -> Run {
    let dir = bundle.parent().unwrap();
    airlock(
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--pub",
            public.to_str().unwrap(),
        ],
        dir,
    )
}

/// `airlock export -q BUNDLE --pub PUBLIC --to TARGET EXTRA…`.
pub fn export(bundle: &Path, public: &Path, target: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "export",
        "-q",
        bundle.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
        "--to",
        target,
    ];
    args.extend_from_slice(extra);
    airlock(&args, bundle.parent().unwrap())
}

/// Writes `bytes` into the layout at `dir` as a blob and returns its
/// descriptor.
pub fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = airlock::model::Digest::of(bytes);
    std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": d, "size": bytes.len()})
}

/// The largest blob of an OCI layout: its size and path (its file name is
/// the digest's hex).
pub fn largest_blob(layout: &Path) -> (u64, PathBuf) {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.metadata().unwrap().len(), p)
        })
        .max()
        .unwrap()
}
