#!/usr/bin/env bash
# Registry to registry: `airlock copy --all-tags` against `skopeo sync --src
# docker --dest docker` and a loop of `skopeo copy --all`, between two
# throwaway CNCF distribution registries on 127.0.0.1, plus airlock's peak RSS.
#
#   scripts/bench-copy.sh [WORKDIR] [MiB]      default: ./bench-work, 720 MiB (≥ 500 MB of gzip layers)
#
# The set is six images sharing one large base (make-fixtures.sh --big).
# Every run copies into a fresh repository prefix of the target, so nothing
# is skipped as already present there.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
mib=${2:-720}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
A=$PWD/target/release/airlock
fx=$work/pull-fixtures
[ -f "$fx/big/index.json" ] || scripts/make-fixtures.sh "$fx" --big "$mib" >/dev/null
out=$work/copy-out
rm -rf "$out" && mkdir -p "$out/src" "$out/dst"

. scripts/registry.sh
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start_registry "$out/src"; src=$host; pids+=("$registry_pid")
start_registry "$out/dst"; dst=$host; pids+=("$registry_pid")
names=$(ref_names "$fx/big/index.json")
for name in $names; do
  skopeo copy -q --dest-tls-verify=false "oci:$fx/big:$name" "docker://$src/bench/app:${name#big-}"
done
bytes=$(du -sb "$fx/big/blobs" | cut -f1)
echo "data: $(numfmt --to=iec "$bytes") in $(echo $names | wc -w) images sharing a base; $src -> $dst; $(nproc) cores"

echo 0 > "$out/n"
cat > "$out/next.sh" <<'SH'
n=$(cat "$1"); echo $((n+1)) > "$1"; echo "r$n"
SH
# skopeo's blob-info cache would mount blobs from earlier runs: start cold.
cold='rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb'
cat > "$out/airlock.sh" <<SH
p=\$(sh $out/next.sh $out/n)
"$A" copy -q --all-tags "$src/bench/app" "docker://$dst/\$p" --plain-http="$src" --plain-http="$dst" --state "$out/state-\$p"
SH
cat > "$out/sync.sh" <<SH
$cold
p=\$(sh $out/next.sh $out/n)
skopeo sync --all --src docker --dest docker --src-tls-verify=false --dest-tls-verify=false "$src/bench/app" "$dst/\$p"
SH
cat > "$out/loop.sh" <<SH
$cold
p=\$(sh $out/next.sh $out/n)
for name in $names; do t=\${name#big-}; skopeo copy -q --all --src-tls-verify=false --dest-tls-verify=false "docker://$src/bench/app:\$t" "docker://$dst/\$p/app:\$t"; done
SH

hyperfine -N -w 1 -r 5 --export-json "$out/copy.json" \
  -n "airlock copy" "sh $out/airlock.sh" \
  -n "skopeo sync" "sh $out/sync.sh" \
  -n "skopeo copy --all loop" "sh $out/loop.sh" >/dev/null
p=$(sh "$out/next.sh" "$out/n")
peak=$( { /usr/bin/time -f %M "$A" copy -q --all-tags "$src/bench/app" "docker://$dst/$p" \
  --plain-http="$src" --plain-http="$dst" --state "$out/state-rss" >/dev/null; } 2>&1 | tail -1)

# Where the time goes: one more run of each, counting the CPU seconds of
# the tool and of each registry (utime + stime from /proc, in clock ticks).
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
: > "$out/cpu.txt"
for name in airlock sync loop; do
  s0=$(cpu_of "${pids[0]}"); d0=$(cpu_of "${pids[1]}")
  tool=$( { /usr/bin/time -f "%e %U %S" sh "$out/$name.sh" >/dev/null; } 2>&1 | tail -1)
  s1=$(cpu_of "${pids[0]}"); d1=$(cpu_of "${pids[1]}")
  echo "$name $tool $(( s1 - s0 )) $(( d1 - d0 )) $hz" >> "$out/cpu.txt"
done

python3 - "$out/copy.json" "$bytes" "$peak" "$out/cpu.txt" <<'PY'
import json, sys
r = {x["command"]: (x["mean"], x["stddev"]) for x in json.load(open(sys.argv[1]))["results"]}
size = int(sys.argv[2])
for k, (m, s) in r.items():
    print(f"  {k:24s} {m:6.2f} s ± {s:4.2f}   {size / m / 1e9:5.2f} GB/s")
ours = r["airlock copy"][0]
best = min(r["skopeo sync"][0], r["skopeo copy --all loop"][0])
print(f"  faster skopeo / airlock: {best / ours:.2f}x (target >= 2x)")
print(f"  peak RSS of airlock copy: {int(sys.argv[3]) // 1024} MiB (target <= 200 MiB)")
print("  CPU seconds of one run: wall, the tool, source registry, target registry, all")
for line in open(sys.argv[4]):
    name, wall, user, sys_, src, dst, hz = line.split()
    tool = float(user) + float(sys_)
    src, dst = int(src) / int(hz), int(dst) / int(hz)
    print(f"  {name:8s} wall {float(wall):5.2f}  tool {tool:5.2f}  source {src:5.2f}  target {dst:5.2f}  all {tool + src + dst:5.2f}")
PY
rm -rf "$out/src" "$out/dst"
