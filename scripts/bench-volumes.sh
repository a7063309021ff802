#!/usr/bin/env bash
# Time and size overhead of --split and --parity on the benchmark set of
# scripts/bench.sh, and parity encode throughput.
#
#   scripts/bench-volumes.sh [WORKDIR] [MiB]     default: ./bench-work, 1400 MiB
#
# Packs the same layout four ways (plain, --split, --parity 5, both), then
# verifies each, and verifies once more with damage repaired in memory.
# Needs hyperfine, umoci, skopeo, python3 (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
mib=${2:-1400}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
A=$PWD/target/release/airlock
out=$work/vol
rm -rf "$out" && mkdir -p "$out"/{plain,split,parity,both}
if [ ! -f "$work/fixtures/big/index.json" ]; then
  scripts/make-fixtures.sh "$work/fixtures" --big "$mib" >/dev/null
fi
big=$work/fixtures/big
cat "$big"/blobs/sha256/* >/dev/null
split=300M # 4 volumes of the 1.2 GB set

hyperfine -N -w 1 -r 5 --export-json "$out/pack.json" \
  -n "pack" "$A pack -q oci:$big -o $out/plain/b" \
  -n "pack --split $split" "$A pack -q oci:$big -o $out/split/b --split $split" \
  -n "pack --parity 5" "$A pack -q oci:$big -o $out/parity/b --parity 5" \
  -n "pack --split $split --parity 5" "$A pack -q oci:$big -o $out/both/b --split $split --parity 5" >/dev/null

hyperfine -N -w 1 -r 5 --export-json "$out/verify.json" \
  -n "verify" "$A verify -q --allow-unsigned $out/plain/b" \
  -n "verify (volumes)" "$A verify -q --allow-unsigned $out/split/b.001" \
  -n "verify (parity)" "$A verify -q --allow-unsigned $out/parity/b" \
  -n "verify (volumes + parity)" "$A verify -q --allow-unsigned $out/both/b.001" >/dev/null

# Damage within the parity: the last 40 MB of volume 2 (3.4% of the set) cut off.
cp "$out/both/b.002" "$out/keep.002"
truncate -s -40000000 "$out/both/b.002"
hyperfine -N -r 3 --export-json "$out/repair.json" \
  -n "verify, 40 MB of volume 2 lost (in-memory repair)" "$A verify -q --allow-unsigned $out/both/b.001" >/dev/null
mv "$out/keep.002" "$out/both/b.002"

size() { du -cb "$@" | tail -1 | cut -f1; }
python3 - "$out" "$(size $out/plain/b)" "$(size $out/split/b.0*)" "$(size $out/parity/b*)" "$(size $out/both/b.*)" <<'PY'
import json, sys
out, plain, split, parity, both = sys.argv[1], *map(int, sys.argv[2:])
print(f"sizes: plain {plain/1e6:.1f} MB; split +{split-plain} bytes "
      f"({(split-plain)/plain*100:.3f}%); parity 5 +{(parity-plain)/1e6:.1f} MB "
      f"({(parity-plain)/plain*100:.2f}%); split + parity +{(both-plain)/plain*100:.2f}%")
for name in ("pack", "verify", "repair"):
    rows = json.load(open(f"{out}/{name}.json"))["results"]
    base = rows[0]["mean"]
    for r in rows:
        print(f"{r['command']:<48} {r['mean']:.2f} s ± {r['stddev']:.2f}  ({r['mean']/base:.2f}×)")
PY
