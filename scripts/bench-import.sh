#!/usr/bin/env bash
# Pushing into a registry: airlock import against `skopeo copy oci: docker://`
# per image (from the unpacked bundle) and against raw parallel curl uploads
# of the same blobs, the registry's own ceiling (1, 4 and 8 at once).
#
#   scripts/bench-import.sh [WORKDIR] [MiB]      default: ./bench-work, 600 MiB
#
# Every run pushes into fresh repositories of one throwaway CNCF
# distribution on 127.0.0.1, so nothing is skipped as already present.
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
out=$work/import-out
rm -rf "$out" && mkdir -p "$out/registry" "$out/unpacked"
"$A" pack -q "oci:$fx/big" -o "$out/b.airlock"
zstd -dc "$out/b.airlock" | tar -x -C "$out/unpacked"

. scripts/registry.sh
trap stop_registry EXIT
start_registry "$out"
echo 0 > "$out/n"
bytes=$(du -sb "$out/unpacked/blobs" | cut -f1)
names=$(ref_names "$out/unpacked/index.json")
echo "data: $(numfmt --to=iec "$bytes") in $(echo $names | wc -w) images sharing a base; distribution on $host; $(nproc) cores"

# A fresh repository prefix per run.
cat > "$out/next.sh" <<'SH'
n=$(cat "$1"); echo $((n+1)) > "$1"; echo "r$n"
SH
# skopeo remembers where blobs live (its blob-info cache) and would mount
# them from earlier runs' repositories: start it cold every time.
cat > "$out/skopeo.sh" <<SH
rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
p=\$(sh $out/next.sh $out/n)
for name in $names; do skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$out/unpacked:\$name" "docker://$host/\$p/\${name#*/}"; done
SH
cat > "$out/curl.sh" <<SH
# Monolithic POST + PUT of every blob file, \$1 at a time.
p=\$(sh $out/next.sh $out/n)
ls $out/unpacked/blobs/sha256 | xargs -P "\$1" -I{} sh -c '
  loc=\$(curl -s -o /dev/null -D - -X POST "http://$host/v2/'\$p'/ceiling/blobs/uploads/" | tr -d "\r" | sed -n "s/^[Ll]ocation: //p")
  case "\$loc" in http*) ;; *) loc="http://$host\$loc";; esac
  curl -s -f -o /dev/null -X PUT -H "Content-Type: application/octet-stream" --data-binary @$out/unpacked/blobs/sha256/{} "\$loc&digest=sha256:{}"'
SH
for bin in airlock:$A ${B:+baseline:$B}; do cat > "$out/${bin%%:*}.sh" <<SH
p=\$(sh $out/next.sh $out/n)
"${bin#*:}" import -q --allow-unsigned "$out/b.airlock" --to "$host/\$p" --plain-http="$host" --state "$out/state-\$p"
SH
done

hyperfine -N -w 1 -r 5 --export-json "$out/import.json" \
  -n "airlock import" "sh $out/airlock.sh" \
  ${B:+-n "baseline import" "sh $out/baseline.sh"} \
  -n "skopeo copy per image" "sh $out/skopeo.sh" \
  -n "curl x1 (ceiling)" "sh $out/curl.sh 1" \
  -n "curl x4 (ceiling)" "sh $out/curl.sh 4" \
  -n "curl x8 (ceiling)" "sh $out/curl.sh 8" >/dev/null
p=$(sh "$out/next.sh" "$out/n")
peak=$( { /usr/bin/time -f %M "$A" import -q --allow-unsigned "$out/b.airlock" --to "$host/$p" --plain-http="$host" --state "$out/state-rss" >/dev/null; } 2>&1 | tail -1)

python3 - "$out/import.json" "$bytes" "$peak" <<'PY'
import json, sys
r = {x["command"]: (x["mean"], x["stddev"]) for x in json.load(open(sys.argv[1]))["results"]}
size = int(sys.argv[2])
for k, (m, s) in r.items():
    print(f"  {k:24s} {m:6.2f} s ± {s:4.2f}   {size / m / 1e9:5.2f} GB/s")
ours, sk = r["airlock import"][0], r["skopeo copy per image"][0]
best = min(v[0] for k, v in r.items() if k.startswith("curl"))
print(f"  airlock / best curl: {ours / best:.2f}x (target <= 1.15x); skopeo / airlock: {sk / ours:.2f}x (target >= 1.6x)")
print(f"  peak RSS of airlock import: {int(sys.argv[3]) // 1024} MiB (target <= 200 MiB)")
PY
