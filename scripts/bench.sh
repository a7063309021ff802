#!/usr/bin/env bash
# Compares airlock with the pipelines people use today, on the same data.
#
#   scripts/bench.sh [WORKDIR] [MiB]      default: ./bench-work, 1400 MiB
#
# pack:   airlock pack  vs  tar -c | zstd -T0 -3 (the floor, to /dev/null and
#         to a file)  vs  skopeo copy oci: oci: per image + tar | zstd
# verify: airlock verify  vs  openssl dgst -sha256 over the same blobs
# memory: peak RSS of pack and verify, also for an image with a 2.2 GiB layer
# Needs hyperfine, umoci, skopeo, zstd, openssl, python3 (scripts/setup.sh).
# BASELINE=/path/to/older/airlock adds that binary to the same runs, for
# before/after figures measured side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
mib=${2:-1400}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
A=$PWD/target/release/airlock
B=${BASELINE:-}
out=$work/out
mkdir -p "$out"

if [ ! -f "$work/fixtures/big/index.json" ]; then
  scripts/make-fixtures.sh "$work/fixtures" --big "$mib" >/dev/null
fi
big=$work/fixtures/big
bytes=$(du -sb "$big/blobs" | cut -f1)
echo "data: $(numfmt --to=iec "$bytes") in $(ls "$big/blobs/sha256" | wc -l) blobs, 6 images sharing a base; $(nproc) cores"
cat "$big"/blobs/sha256/* >/dev/null # warm the page cache for every contender

tags=$(python3 -c 'import json,sys; print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$big/index.json")
skopeo_pipeline="rm -rf $out/sk; for t in $tags; do skopeo copy -q oci:$big:\$t oci:$out/sk:\$t; done; tar -c -C $out sk | zstd -T0 -3 -q > $out/sk.tar.zst"

hyperfine -N -w 1 -r 5 --export-json "$out/pack.json" \
  --prepare "rm -f $out/b.airlock $out/floor.tar.zst $out/sk.tar.zst" \
  -n "airlock pack (file)" "$A pack -q oci:$big -o $out/b.airlock" \
  ${B:+-n "baseline pack (file)" "$B pack -q oci:$big -o $out/b.airlock"} \
  -n "airlock pack -o - (null)" "sh -c '$A pack -q oci:$big -o - > /dev/null'" \
  -n "floor: tar | zstd -T0 -3 (null)" "sh -c 'tar -c -C $work/fixtures big | zstd -T0 -3 -q > /dev/null'" \
  -n "floor: tar | zstd -T0 -3 (file)" "sh -c 'tar -c -C $work/fixtures big | zstd -T0 -3 -q > $out/floor.tar.zst'" \
  -n "skopeo copy + tar | zstd (file)" "sh -c '$skopeo_pipeline'" >/dev/null

"$A" pack -q oci:"$big" -o "$out/b.airlock"
hyperfine -N -w 1 -r 7 --export-json "$out/verify.json" \
  -n "airlock verify" "$A verify -q --allow-unsigned $out/b.airlock" \
  ${B:+-n "baseline verify" "$B verify -q --allow-unsigned $out/b.airlock"} \
  -n "openssl dgst -sha256 (1 core)" "openssl dgst -sha256 $(ls "$big"/blobs/sha256/* | tr '\n' ' ')" >/dev/null

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
pack_rss=$(rss "$A" pack -q oci:"$big" -o "$out/rss.airlock")
verify_rss=$(rss "$A" verify -q --allow-unsigned "$out/rss.airlock")

# One image whose single layer is 2.2 GiB (a plain tar of random data).
huge=$work/fixtures/huge
if [ ! -f "$huge/index.json" ]; then
  rm -rf "$huge" && mkdir -p "$huge/blobs/sha256" "$work/hugeroot"
  (openssl enc -aes-256-ctr -pass pass:huge -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c $((2200 * 1024 * 1024)) > "$work/hugeroot/data"
  tar -c -C "$work/hugeroot" data > "$work/layer.tar"
  rm -rf "$work/hugeroot"
  python3 - "$huge" "$work/layer.tar" <<'PY'
import hashlib, json, os, shutil, sys
root, layer = sys.argv[1], sys.argv[2]
def put(data=None, path=None):
    h = hashlib.sha256()
    if path:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size = os.path.getsize(path)
        shutil.move(path, os.path.join(root, "blobs/sha256", h.hexdigest()))
    else:
        h.update(data); size = len(data)
        open(os.path.join(root, "blobs/sha256", h.hexdigest()), "wb").write(data)
    return "sha256:" + h.hexdigest(), size
ld, ls = put(path=layer)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
cd, cs = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}]}).encode()
md, ms = put(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "huge"}}]},
    open(os.path.join(root, "index.json"), "w"))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
fi
huge_pack_rss=$(rss "$A" pack -q oci:"$huge" -o "$out/huge.airlock")
huge_verify_rss=$(rss "$A" verify -q --allow-unsigned "$out/huge.airlock")
rm -f "$out/huge.airlock" "$out/rss.airlock"

python3 - "$out" "$bytes" "$(nproc)" "$pack_rss" "$verify_rss" "$huge_pack_rss" "$huge_verify_rss" <<'PY'
import json, sys
out, size, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pack_rss, verify_rss, huge_pack, huge_verify = (int(x) // 1024 for x in sys.argv[4:8])
def load(name):
    return {r["command"]: (r["mean"], r["stddev"]) for r in json.load(open(f"{out}/{name}.json"))["results"]}
p, v = load("pack"), load("verify")
print("\n## pack (mean ± sd over 5 runs)")
for k, (m, s) in p.items():
    print(f"  {k:34s} {m:6.2f} s ± {s:4.2f}   {size / m / 1e9:5.2f} GB/s")
floor_null = p["floor: tar | zstd -T0 -3 (null)"][0]
floor_file = p["floor: tar | zstd -T0 -3 (file)"][0]
print(f"  airlock to /dev/null / floor to /dev/null: {p['airlock pack -o - (null)'][0] / floor_null:.2f}x  (target <= 1.25x)")
print(f"  airlock to a file    / floor to a file:    {p['airlock pack (file)'][0] / floor_file:.2f}x")
print(f"  airlock to a file    / floor to /dev/null: {p['airlock pack (file)'][0] / floor_null:.2f}x")
print(f"  skopeo pipeline / airlock (both to files): {p['skopeo copy + tar | zstd (file)'][0] / p['airlock pack (file)'][0]:.2f}x faster")
ours, (ssl, _) = v["airlock verify"][0], v["openssl dgst -sha256 (1 core)"]
print("\n## verify (mean over 7 runs)")
print(f"  airlock verify  {ours:.3f} s  {size / ours / 1e9:.2f} GB/s")
print(f"  openssl sha256  {ssl:.3f} s  {size / ssl / 1e9:.2f} GB/s on one core")
print(f"  airlock / (openssl x {cores} cores): {ssl / ours / cores * 100:.0f}%  (target >= 80%)")
print("\n## peak RSS")
print(f"  pack {size >> 20} MiB: {pack_rss} MiB; verify: {verify_rss} MiB")
print(f"  pack of one 2.2 GiB layer: {huge_pack} MiB; verify: {huge_verify} MiB  (target < 200 MiB)")
PY
