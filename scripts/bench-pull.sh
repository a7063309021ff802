#!/usr/bin/env bash
# Pulling from a registry: airlock pack against skopeo copy per image + tar |
# zstd, on the same images in a throwaway CNCF distribution on 127.0.0.1.
#
#   scripts/bench-pull.sh [WORKDIR] [MiB]      default: ./bench-work, 600 MiB
#
# Both start cold: airlock with an empty blob cache, skopeo with an empty
# destination and no blob-info cache.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
mib=${2:-600}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
A=$PWD/target/release/airlock
B=${BASELINE:-} # an older airlock to measure beside this one
fx=$work/pull-fixtures
[ -f "$fx/big/index.json" ] || scripts/make-fixtures.sh "$fx" --big "$mib" >/dev/null
out=$work/pull-out
rm -rf "$out" && mkdir -p "$out/registry"

. scripts/registry.sh
trap stop_registry EXIT
start_registry "$out"
tags=$(ref_names "$fx/big/index.json")
refs=""
for t in $tags; do
  skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$fx/big:$t" "docker://$host/bench/app:$t"
  refs="$refs $host/bench/app:$t"
done
bytes=$(du -sb "$fx/big/blobs" | cut -f1)
echo "data: $(numfmt --to=iec "$bytes") in $(echo $tags | wc -w) images sharing a base, served by distribution on $host; $(nproc) cores"

skopeo_pipeline="rm -rf $out/sk; for t in $tags; do skopeo copy -q --src-tls-verify=false docker://$host/bench/app:\$t oci:$out/sk:\$t; done; tar -c -C $out sk | zstd -T0 -3 -q > $out/sk.tar.zst"
hyperfine -N -w 2 -r 10 --export-json "$out/pull.json" \
  --prepare "rm -rf $out/cache $out/sk $out/b.airlock $out/sk.tar.zst /var/lib/containers/cache/blob-info-cache-v1.boltdb" \
  -n "airlock pack (cold cache)" "$A pack -q --plain-http=$host --cache $out/cache -o $out/b.airlock $refs" \
  ${B:+-n "baseline pack (cold cache)" "$B pack -q --plain-http=$host --cache $out/cache -o $out/b.airlock $refs"} \
  -n "skopeo copy per image + tar | zstd" "sh -c '$skopeo_pipeline'" >/dev/null
peak=$( { /usr/bin/time -f %M "$A" pack -q --plain-http="$host" --cache "$out/cache-rss" -o "$out/rss.airlock" $refs >/dev/null; } 2>&1 | tail -1)

python3 - "$out/pull.json" "$bytes" "$peak" <<'PY'
import json, sys
r = {x["command"]: (x["mean"], x["stddev"]) for x in json.load(open(sys.argv[1]))["results"]}
size = int(sys.argv[2])
for x in json.load(open(sys.argv[1]))["results"]:
    m, s = x["mean"], x["stddev"]
    print(f"  {x['command']:36s} {m:6.2f} s ± {s:4.2f} (median {x['median']:.2f})   {size / m / 1e9:5.2f} GB/s")
a, sk = r["airlock pack (cold cache)"][0], r["skopeo copy per image + tar | zstd"][0]
print(f"  airlock is {sk / a:.2f}x faster (target >= 3x); peak RSS {int(sys.argv[3]) // 1024} MiB")
PY
