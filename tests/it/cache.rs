//! Packs that share one blob cache at the same time: each blob is fetched
//! once, a pack that needs a blob another is fetching waits for it, one
//! that is killed hands its partial download to the one waiting, and every
//! bundle verifies.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::model::Digest;

use crate::harness::*;
use crate::util::*;

const MIB: usize = 1 << 20;

/// Pseudo-random bytes (xorshift, 8 at a time): incompressible, and made
/// in well under a second.
fn random(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Pushes a blob with the monolithic upload (test fixtures only).
fn put_blob(host: &str, repo: &str, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let resp = agent()
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send_empty()
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{host}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = agent()
        .put(format!("{url}{sep}digest={digest}"))
        .send(bytes)
        .unwrap();
    assert_eq!(resp.status(), 201);
    digest
}

/// An image `demo/big:1` with one layer of `layer` bytes; returns the
/// layer's digest.
fn push_big_image(reg: &Registry, layer: &[u8]) -> Digest {
    let h = reg.host.as_str();
    let digest = put_blob(h, "demo/big", layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
    }))
    .unwrap();
    let config_digest = put_blob(h, "demo/big", &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}],
    }))
    .unwrap();
    let resp = agent()
        .put(format!("http://{h}/v2/demo/big/manifests/1"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send(&manifest[..])
        .unwrap();
    assert_eq!(resp.status(), 201);
    digest
}

/// A pack running in the background, its stderr collected as it comes.
struct Pack {
    name: String,
    child: Child,
    started: Instant,
    stderr: Arc<Mutex<String>>,
    /// End with the pipes.
    readers: Vec<std::thread::JoinHandle<()>>,
    stdout: Arc<Mutex<String>>,
}

struct Packed {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `airlock pack --json --cache CACHE --plain-http HOST -o OUT --key KEY
/// HOST/demo/big:1`, without `-q`, so that its notes show.
fn spawn_pack(name: &str, host: &str, cache: &Path, out: &Path, key: &Path) -> Pack {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "pack",
            "--json",
            &*format!("--plain-http={host}"),
            "--cache",
        ])
        .arg(cache)
        .arg("-o")
        .arg(out)
        .arg("--key")
        .arg(key)
        .arg(format!("{host}/demo/big:1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut pipe = child.stdout.take().unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let sink = stdout.clone();
    let out_reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut sink.lock().unwrap());
    });
    Pack {
        name: name.to_string(),
        child,
        started: Instant::now(),
        stderr,
        readers: vec![err_reader, out_reader],
        stdout,
    }
}

impl Pack {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the pack to exit; kills it (and fails the test) if it runs
    /// past `limit`, as a pack that hangs or spins would.
    fn finish(mut self, limit: Duration) -> Packed {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still ran after {limit:?}: killed\n--- stderr\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Packed {
            status,
            stdout,
            stderr,
            took,
        }
    }
}

/// A test that fails leaves no pack running.
impl Drop for Pack {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Packed {
    fn ok(self, name: &str) -> Packed {
        assert!(
            self.status.success(),
            "{name} failed ({})\n--- stderr\n{}",
            self.status,
            self.stderr
        );
        self
    }

    fn downloaded(&self) -> u64 {
        let summary: serde_json::Value = serde_json::from_str(&self.stdout).unwrap();
        summary["downloaded"].as_u64().unwrap()
    }
}

fn partial_len(cache: &Path, digest: &Digest) -> u64 {
    let path = cache.join("partial/sha256").join(digest.hex());
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn three_packs_sharing_a_cache_fetch_a_blob_once_and_all_verify() {
    let reg = Registry::start(Config::default());
    let layer = random(40 * MIB);
    let size = layer.len() as u64;
    push_big_image(&reg, &layer);
    // Slowed to a few seconds per download, so the three overlap for sure.
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(2)),
            ..Default::default()
        },
    );
    let host = format!("127.0.0.1:{}", slow.port);
    let t = scratch();
    let (key, public) = keys(t.path(), "signer");

    let alone = spawn_pack(
        "a single pack",
        &host,
        &t.path().join("cache-alone"),
        &t.path().join("alone.airlock"),
        &key,
    )
    .finish(LIMIT)
    .ok("a single pack");
    let before = slow.bytes_down.load(Ordering::SeqCst);

    let cache = t.path().join("cache");
    let outs: Vec<PathBuf> = (1..=3)
        .map(|i| t.path().join(format!("b{i}.airlock")))
        .collect();
    let packs: Vec<Pack> = outs
        .iter()
        .enumerate()
        .map(|(i, out)| spawn_pack(&format!("pack {}", i + 1), &host, &cache, out, &key))
        .collect();
    let done: Vec<Packed> = packs
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.finish(LIMIT).ok(&format!("pack {}", i + 1)))
        .collect();
    for out in &outs {
        verify_signed(out, &public).ok();
    }

    let wire = slow.bytes_down.load(Ordering::SeqCst) - before;
    let waited = done
        .iter()
        .filter(|p| {
            p.stderr
                .contains("another airlock process is downloading it")
        })
        .count();
    eprintln!(
        "single pack {:.1?}; three at once {:?}; downloaded {:?}; {wire} bytes on the wire for a {size}-byte layer; {waited} waited",
        alone.took,
        done.iter().map(|p| p.took).collect::<Vec<_>>(),
        done.iter().map(Packed::downloaded).collect::<Vec<_>>(),
    );
    assert!(
        wire < size + size / 2,
        "{wire} bytes crossed the wire: the layer was fetched more than once"
    );
    // One pack downloads the layer (and its small config); the others only
    // what is not the layer.
    let mut downloads: Vec<u64> = done.iter().map(Packed::downloaded).collect();
    downloads.sort_unstable();
    assert!(
        downloads[2] >= size && downloads[..2].iter().all(|&d| d < size / 100),
        "one pack downloads the layer, the others wait for it: {downloads:?}"
    );
    assert!(waited >= 1, "no pack said that it waits for another");
}

#[test]
fn a_pack_waiting_on_a_blob_takes_over_when_the_downloader_is_killed() {
    let reg = Registry::start(Config::default());
    let layer = random(40 * MIB);
    let size = layer.len() as u64;
    let digest = push_big_image(&reg, &layer);
    // The first pack crawls (about 4 MB/s), so it is killed mid-download.
    let slow = FaultProxy::start(
        reg.port,
        Faults {
            throttle: Some(Duration::from_millis(4)),
            ..Default::default()
        },
    );
    let counting = FaultProxy::start(reg.port, Faults::default());
    let t = scratch();
    let (key, public) = keys(t.path(), "signer");
    let cache = t.path().join("cache");
    let first = spawn_pack(
        "the first pack",
        &format!("127.0.0.1:{}", slow.port),
        &cache,
        &t.path().join("first.airlock"),
        &key,
    );
    wait_until("the first pack downloads", LIMIT, || {
        partial_len(&cache, &digest) > 4 * MIB as u64
    });
    let second_out = t.path().join("second.airlock");
    let second = spawn_pack(
        "the second pack",
        &format!("127.0.0.1:{}", counting.port),
        &cache,
        &second_out,
        &key,
    );
    wait_until("the second pack says it waits", LIMIT, || {
        second
            .stderr()
            .contains("another airlock process is downloading it")
    });
    // Measured before the kill: the first pack's share is at least this.
    let cut_at = partial_len(&cache, &digest);
    let mut first = first;
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert!(cut_at < size, "the first pack finished before the kill");

    let second = second.finish(LIMIT).ok("the second pack");
    verify_signed(&second_out, &public).ok();
    assert!(
        second.stderr.contains("stopped; continuing from its"),
        "{}",
        second.stderr
    );
    let downloaded = second.downloaded();
    assert!(
        downloaded <= size - cut_at + 4096,
        "the second pack fetched {downloaded} bytes; {cut_at} of {size} were in the partial file"
    );
    let wire = counting.bytes_down.load(Ordering::SeqCst);
    assert!(wire < size, "{wire} bytes on the wire: not resumed");
    assert!(!t.path().join("first.airlock").exists());
    let hex = digest.hex().to_string();
    assert!(entries(&cache.join("blobs/sha256")).contains(&hex));
    assert!(entries(&cache.join("partial/sha256")).is_empty());
}
