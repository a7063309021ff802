#!/usr/bin/env bash
# Delta bundles (#13): a series of versions of an application on a shared
# base, built by umoci, each version changing one layer. For each update it
# reports the delta bundle's size against the bytes of the blobs that
# changed (target: at most 1% above them plus the manifest), against a full
# bundle of the version, and against what a Zarf-style by-reference
# differential would carry (every image whose reference changed, whole).
#
#   scripts/bench-delta.sh [WORKDIR] [VERSIONS] [BASE_MiB]   default: ./bench-work, 4, 48
#
# The set of each version: app (base layer + libs layer + its own layer,
# rebuilt each version) and sidecar (base layer + its own layer, never
# changed). v2 is packed against v1's full bundle; each later version
# against the previous delta (a delta as a base holds what it carries and
# what it expects). Sizes do not depend on the build: AIRLOCK=path picks a
# binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-work}
versions=${2:-4}
base_mib=${3:-48}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ -z "${AIRLOCK:-}" ]; then
  cargo build --release -q
  AIRLOCK=$PWD/target/release/airlock
fi
A=$AIRLOCK
out=$work/delta
rm -rf "$out" && mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rand() { # SEED BYTES: deterministic, incompressible
  (openssl enc -aes-256-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$2"
}
derive() { # LAYOUT FROM TO ACTION
  rm -rf "$tmp/b"
  umoci unpack --rootless --image "$1:$2" "$tmp/b" >/dev/null
  (cd "$tmp/b/rootfs" && eval "$4")
  umoci repack --image "$1:$3" "$tmp/b" >/dev/null
}

# v1: base, libs, app and sidecar; each later version a copy of the one
# before with app's own layer rebuilt.
L=$out/v1/set
mkdir -p "$out/v1"
umoci init --layout "$L"
umoci new --image "$L:empty"
derive "$L" empty base "mkdir -p usr/lib && rand base $((base_mib << 20)) > usr/lib/base.so"
umoci config --image "$L:base" --os linux --architecture amd64
derive "$L" base libs "mkdir -p opt && rand libs $((16 << 20)) > opt/libs.so"
derive "$L" base sidecar "mkdir -p side && rand side $((4 << 20)) > side/bin"
derive "$L" libs app "mkdir -p app && rand app-1 $((4 << 20)) > app/bin"
for t in empty base; do umoci rm --image "$L:$t"; done
for n in $(seq 2 "$versions"); do
  cp -r "$out/v$((n - 1))" "$out/v$n"
  L=$out/v$n/set
  # app again from libs (kept as a tag, not packed): one new layer.
  derive "$L" libs app "mkdir -p app && rand app-$n $((4 << 20)) > app/bin"
done

echo "| update | changed blobs | delta bundle | over changed | full bundle | by reference (Zarf-style) |"
echo "|---|---|---|---|---|---|"
"$A" pack -q -o "$out/v1.full" "oci:$out/v1/set:app" "oci:$out/v1/set:sidecar"
prev=$out/v1.full
for n in $(seq 2 "$versions"); do
  set_dir=$out/v$n/set
  "$A" pack -q -o "$out/v$n.full" "oci:$set_dir:app" "oci:$set_dir:sidecar"
  "$A" pack -q -o "$out/v$n.delta" --against "$prev" --allow-unsigned \
    "oci:$set_dir:app" "oci:$set_dir:sidecar"
  "$A" verify -q --allow-unsigned "$out/v$n.delta" --with "$prev" >/dev/null
  python3 - "$out/v$((n - 1))/set" "$set_dir" "$out/v$n.delta" "$out/v$n.full" "$n" <<'PY'
import json, os, sys
old, new, delta, full, n = sys.argv[1:]
def images(layout):
    index = json.load(open(os.path.join(layout, "index.json")))
    out = {}
    for m in index["manifests"]:
        if m["annotations"]["org.opencontainers.image.ref.name"] not in ("app", "sidecar"):
            continue  # libs is a step of the build, not packed
        man = json.load(open(os.path.join(layout, "blobs", "sha256", m["digest"].split(":")[1])))
        blobs = {m["digest"]: m["size"], man["config"]["digest"]: man["config"]["size"]}
        blobs.update({l["digest"]: l["size"] for l in man["layers"]})
        out[m["annotations"]["org.opencontainers.image.ref.name"]] = (m["digest"], blobs)
    return out
a, b = images(old), images(new)
held = {d for _, bl in a.values() for d in bl}
every = {d: s for _, bl in b.values() for d, s in bl.items()}
changed = sum(s for d, s in every.items() if d not in held)
# Zarf-style: every image whose reference now names another digest, whole.
by_ref = {}
for tag, (digest, bl) in b.items():
    if a.get(tag, (None,))[0] != digest:
        by_ref.update(bl)
by_ref = sum(by_ref.values())
d, f = os.path.getsize(delta), os.path.getsize(full)
mib = lambda x: f"{x / 2**20:.2f} MiB"
print(f"| v{int(n) - 1} → v{n} | {mib(changed)} | {mib(d)} | {100 * (d - changed) / changed:+.2f}% ({d - changed} B) | {mib(f)} | {mib(by_ref)} |")
PY
  prev=$out/v$n.delta
done
