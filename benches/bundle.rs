//! In-process benchmarks of pack and verify on a synthetic OCI layout
//! (64 MiB: half incompressible like gzip layers, half repetitive text).
//! `scripts/bench.sh` compares whole commands against other tools on 1+ GiB.

use std::io::Write;
use std::path::Path;

use airlock::bundle::parity;
use airlock::bundle::store::{BundleBytes, Part};
use airlock::bundle::{Bundle, PackOptions};
use airlock::model::Digest;
use airlock::progress::Progress;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{RngCore, SeedableRng};

const MIB: usize = 1024 * 1024;

fn blob(dir: &Path, bytes: &[u8]) -> serde_json::Value {
    let d = Digest::of(bytes);
    std::fs::File::create(dir.join("blobs/sha256").join(d.hex()))
        .unwrap()
        .write_all(bytes)
        .unwrap();
    serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": bytes.len()})
}

/// One image: a config, two 16 MiB random layers and two 16 MiB text layers.
fn layout(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut layers = Vec::new();
    for i in 0..4 {
        let mut data = vec![0u8; 16 * MIB];
        if i % 2 == 0 {
            rng.fill_bytes(&mut data);
        } else {
            let text = b"All work and no play makes a dull registry. ";
            for (j, b) in data.iter_mut().enumerate() {
                *b = text[j % text.len()];
            }
        }
        layers.push(blob(dir, &data));
    }
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut config_desc = blob(dir, config);
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": layers,
    }))
    .unwrap();
    let mut m = blob(dir, &manifest);
    m["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "bench"});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
    (4 * 16 * MIB) as u64
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("layout");
    let bytes = layout(&src);
    let out = tmp.path().join("b.airlock");
    let spec = format!("oci:{}", src.display());
    let pack = |out: &Path| {
        let options = PackOptions {
            level: 3,
            key: None,
            created: 0,
            split: None,
            parity: None,
        };
        airlock::ops::pack(airlock::ops::PackRequest {
            sources: vec![spec.clone()],
            all_tags: vec![],
            catalogs: vec![],
            set: None,
            output: out.to_path_buf(),
            platforms: vec![],
            options,
            registry: Default::default(),
            cache: None,
            referrers: true,
            // Packs the same output again and again.
            force: true,
            dry_run: false,
            quiet: true,
            against: Default::default(),
        })
        .unwrap();
    };
    let mut g = c.benchmark_group("bundle");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("pack 64 MiB", |b| b.iter(|| pack(&out)));
    pack(&out);
    g.bench_function("verify 64 MiB", |b| {
        b.iter(|| {
            let bundle = Bundle::open(&out)
                .unwrap()
                .without_signature_check()
                .unwrap();
            bundle.verify(&Progress::hidden()).unwrap()
        })
    });
    g.finish();

    // Parity encode: reading the bundle, hashing every shard, Reed-Solomon,
    // writing the parity file; the figure `--parity 5` adds to a pack.
    let len = std::fs::metadata(&out).unwrap().len();
    let mut g = c.benchmark_group("parity");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len));
    for percent in [5, 20] {
        g.bench_function(format!("encode {percent}% of a 64 MiB bundle"), |b| {
            b.iter(|| {
                let part = Part::open(&out, 0, 0, None).unwrap();
                let bytes = BundleBytes::new(vec![part]);
                let layout = parity::Layout::new(len, percent);
                let files =
                    parity::encode(&bytes, &layout, &Digest::of(b"b"), &[], &out, None).unwrap();
                drop(files); // uncommitted: removed
            })
        });
    }
    g.finish();
}

criterion_group!(all, benches);
criterion_main!(all);
