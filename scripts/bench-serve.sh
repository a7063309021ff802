#!/usr/bin/env bash
# Serving: `airlock serve` straight from a bundle against CNCF distribution
# holding the same images (imported into it first), in the same run, on
# 127.0.0.1.
#
#   scripts/bench-serve.sh [WORKDIR] [MiB] [RUNS]   default: ./bench-work, 1024 MiB, 7
#
# Measures, for each server: skopeo copy of every image (one after the
# other, into a fresh OCI layout), and a fetch of every blob with 4 curls
# in parallel; then airlock's peak RSS while serving 4 parallel skopeo
# pulls, and its time from start to the first answered request.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
mib=${2:-1024}
runs=${3:-7}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
A=$PWD/target/release/airlock
fx=$work/serve-fixtures
[ -f "$fx/big/index.json" ] || scripts/make-fixtures.sh "$fx" --big "$mib" >/dev/null
out=$work/serve-out
rm -rf "$out" && mkdir -p "$out"

. scripts/registry.sh
serve_pid=
cleanup() { stop_registry; [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true; }
trap cleanup EXIT

tags=$(ref_names "$fx/big/index.json")
srcs=""
for t in $tags; do srcs="$srcs oci:$fx/big:$t"; done
(cd "$out" && "$A" keygen -o k >/dev/null)
"$A" pack -q --key "$out/k" -o "$out/b.airlock" $srcs
bundle_bytes=$(stat -c %s "$out/b.airlock")

start_registry "$out"
dist=$host
"$A" import -q --pub "$out/k.pub" --to "$dist" --plain-http="$dist" --state "$out/state" "$out/b.airlock"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ours=127.0.0.1:$port
# Start to first answer, three times (the median): python spawns serve
# and asks /v2/ over a raw socket every 2 ms, so its own start is not
# counted.
python3 - "$A" "$out" "$port" > "$out/first.txt" <<'PY'
import socket, subprocess, sys, time
airlock, out, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(3):
    t0 = time.monotonic()
    p = subprocess.Popen([airlock, "serve", "--pub", f"{out}/k.pub", "--listen", f"127.0.0.1:{port}", f"{out}/b.airlock"],
                         stderr=subprocess.DEVNULL)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if c.recv(12).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            time.sleep(0.002)
    times.append(time.monotonic() - t0)
    p.terminate(); p.wait()
print(f"{sorted(times)[1]:.3f}")
PY
"$A" serve --pub "$out/k.pub" --listen "$ours" "$out/b.airlock" 2>"$out/serve.log" &
serve_pid=$!
python3 -c "
import time, urllib.request
for _ in range(500):
    try: urllib.request.urlopen('http://$ours/v2/', timeout=1); break
    except Exception: time.sleep(0.01)"

# Every blob of every image, by repository path: the same on both servers.
python3 - "$fx/big" > "$out/blobs.txt" <<'PY'
import json, os, sys
lay = sys.argv[1]
seen = set()
for m in json.load(open(os.path.join(lay, "index.json")))["manifests"]:
    man = json.load(open(os.path.join(lay, "blobs", *m["digest"].split(":"))))
    for d in [man["config"]] + man["layers"]:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            print(f"/v2/big/blobs/{d['digest']}")
PY
nblobs=$(wc -l < "$out/blobs.txt")
data=$(du -sb "$fx/big/blobs" | cut -f1)

# One script per measured command, so hyperfine needs no nested quoting.
for side in ours dist; do
  h=${!side}
  printf 'rm -rf %s/copy-%s\nfor t in %s; do skopeo copy -q --src-tls-verify=false docker://%s/big:$t oci:%s/copy-%s:$t; done\n' \
    "$out" "$side" "$tags" "$h" "$out" "$side" > "$out/copy-$side.sh"
  printf 'sed "s|^|http://%s|" %s/blobs.txt | xargs -P4 -n1 curl -sf -o /dev/null\n' "$h" "$out" > "$out/curl-$side.sh"
done
hyperfine -N -w 1 -r "$runs" --export-json "$out/serve.json" \
  --prepare "rm -rf /var/lib/containers/cache/blob-info-cache-v1.boltdb" \
  -n "skopeo copy, airlock serve" "sh $out/copy-ours.sh" \
  -n "skopeo copy, distribution" "sh $out/copy-dist.sh" \
  -n "4 x curl, airlock serve" "sh $out/curl-ours.sh" \
  -n "4 x curl, distribution" "sh $out/curl-dist.sh" >/dev/null

# CPU seconds of one 4-curl fetch: the server's own (utime + stime from
# /proc) and the whole machine's busy time, which on 2 cores bounds the
# wall time from below.
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
: > "$out/cpu.txt"
for side in ours dist; do
  pid=$serve_pid; [ "$side" = dist ] && pid=$registry_pid
  p0=$(cpu_of "$pid"); b0=$(busy)
  sh "$out/curl-$side.sh"
  p1=$(cpu_of "$pid"); b1=$(busy)
  echo "$side $((p1 - p0)) $((b1 - b0)) $hz" >> "$out/cpu.txt"
done

# Peak RSS while serving 4 parallel pulls (fresh process, so its high-water
# mark is this load's).
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
"$A" serve --pub "$out/k.pub" --listen "$ours" "$out/b.airlock" 2>>"$out/serve.log" &
serve_pid=$!
python3 -c "
import time, urllib.request
for _ in range(500):
    try: urllib.request.urlopen('http://$ours/v2/', timeout=1); break
    except Exception: time.sleep(0.01)"
pulls=""
for i in 1 2 3 4; do
  (rm -rf "$out/par-$i"; for t in $tags; do skopeo copy -q --src-tls-verify=false "docker://$ours/big:$t" "oci:$out/par-$i:$t"; done) &
  pulls="$pulls $!"
done
wait $pulls
peak=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")

# 64 connections at once (the thread-per-connection question): 64 curls
# each fetch the largest blob, on a fresh process; time, peak RSS, threads.
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
"$A" serve --pub "$out/k.pub" --listen "$ours" "$out/b.airlock" 2>>"$out/serve.log" &
serve_pid=$!
python3 -c "
import time, urllib.request
for _ in range(500):
    try: urllib.request.urlopen('http://$ours/v2/', timeout=1); break
    except Exception: time.sleep(0.01)"
largest=$(python3 - "$fx/big" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], "blobs", "sha256")
print("sha256:" + max(os.listdir(d), key=lambda f: os.path.getsize(os.path.join(d, f))))
PY
)
t1=$(date +%s.%N)
threads=0
fetches=""
for i in $(seq 64); do
  curl -sf -o /dev/null "http://$ours/v2/big/blobs/$largest" &
  fetches="$fetches $!"
done
sleep 0.5
threads=$(awk '/Threads/ {print $2}' "/proc/$serve_pid/status")
wait $fetches
t64=$(python3 -c "import time; print(f'{time.time() - $t1:.2f}')")
peak64=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
size64=$(stat -c %s "$fx/big/blobs/sha256/${largest#sha256:}")
echo "64 connections: 64 x $((size64 / 1048576)) MiB in $t64 s, $threads threads, peak RSS $((peak64 / 1024)) MiB"

python3 - "$out/serve.json" "$data" "$nblobs" "$peak" "$(cat "$out/first.txt")" "$bundle_bytes" "$(echo $tags | wc -w)" "$out/cpu.txt" <<'PY'
import json, sys
res = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
data, nblobs, peak, first, bundle, images = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
print(f"data: {data / 2**20:.0f} MiB in {images} images, {nblobs} blobs; bundle {bundle / 2**20:.0f} MiB")
# Medians: on a noisy VM one slow run moves a mean of a few.
for name, x in res.items():
    print(f"  {name:30s} median {x['median']:6.2f} s (mean {x['mean']:5.2f} ± {x['stddev']:4.2f})  {data / x['median'] / 1e6:7.1f} MB/s")
for what in ("skopeo copy", "4 x curl"):
    a, d = res[f"{what}, airlock serve"]["median"], res[f"{what}, distribution"]["median"]
    print(f"  {what}: airlock/distribution speed ratio {d / a:.2f} (target >= 1.0)")
for line in open(sys.argv[8]):
    side, server, machine, hz = line.split()
    who = "airlock serve" if side == "ours" else "distribution"
    print(f"  4 x curl, {who}: server {int(server) / int(hz):.2f} CPU s, whole machine {int(machine) / int(hz):.2f} CPU s")
print(f"  peak RSS serving 4 parallel pulls: {peak // 1024} MiB (target <= 100)")
print(f"  start to first answer: {first:.3f} s for a {bundle / 2**30:.2f} GiB bundle (target < 1 s)")
PY
