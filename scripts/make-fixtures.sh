#!/usr/bin/env bash
# Builds test images with tools other than airlock (umoci, skopeo), so a bug
# in airlock cannot cancel itself out.
#
#   scripts/make-fixtures.sh OUT            small images for tests and the demo
#   scripts/make-fixtures.sh OUT --big MB   plus images with MB MiB of layers
#
# OUT/layout        OCI layout: base, app-1, app-2 (share base's layer),
#                   arm-1 (linux/arm64), multi (index: app-1 amd64, arm-1
#                   arm64, app-2 labelled ppc64le)
# OUT/large         OCI layout: large (one 6 MiB incompressible layer)
# OUT/app1.oci.tar  oci-archive of app-1
# OUT/app2.docker.tar(.gz)  docker save-style archive of app-2, legacy form
# OUT/big           (with --big) OCI layout: big-1..big-6 sharing one large base
set -euo pipefail

out=${1:?usage: make-fixtures.sh OUT [--big MB]}
big_mb=0
if [ "${2:-}" = "--big" ]; then big_mb=${3:?--big needs a size in MiB}; fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Deterministic pseudo-random bytes: tests and benchmarks see the same data.
# (The generators die of SIGPIPE when head has enough; that is expected.)
random_bytes() { # SEED BYTES
  (openssl enc -aes-256-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$2"
}
text_bytes() { # BYTES of real, compressible text
  (while cat /usr/share/common-licenses/*; do :; done 2>/dev/null || true) | head -c "$1"
}

derive() { # LAYOUT FROM TO (a command run in the unpacked rootfs as $1)
  local layout=$1 from=$2 to=$3 action=$4
  rm -rf "$work/b"
  umoci unpack --rootless --image "$layout:$from" "$work/b" >/dev/null
  (cd "$work/b/rootfs" && eval "$action")
  umoci repack --image "$layout:$to" "$work/b" >/dev/null
}

L=$out/layout
rm -rf "$L"
umoci init --layout "$L"
umoci new --image "$L:empty"
derive "$L" empty base 'mkdir -p usr/share/doc && cp -r /usr/share/doc/tar /usr/share/doc/gzip usr/share/doc/ 2>/dev/null || cp -r /usr/share/doc/tar usr/share/doc/'
umoci config --image "$L:base" --os linux --architecture amd64 --config.env PATH=/usr/bin
derive "$L" base app-1 'mkdir -p app && echo "app one" > app/version && random_bytes app1 65536 > app/data'
umoci config --image "$L:app-1" --config.entrypoint /app/version
derive "$L" base app-2 'mkdir -p app && echo "app two" > app/version && random_bytes app2 98304 > app/data'
umoci config --image "$L:app-2" --config.entrypoint /app/version
derive "$L" base arm-1 'mkdir -p app && echo "arm one" > app/version'
umoci config --image "$L:arm-1" --architecture arm64 --config.entrypoint /app/version
umoci rm --image "$L:empty"

# A multi-platform index, written by hand as FIXTURES.md describes.
python3 - "$L" <<'PY'
import hashlib, json, os, sys
layout = sys.argv[1]
index_path = os.path.join(layout, "index.json")
index = json.load(open(index_path))
by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
def entry(tag, arch):
    m = dict(by_tag[tag]); m.pop("annotations", None)
    m["platform"] = {"os": "linux", "architecture": arch}
    return m
multi = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [entry("app-1", "amd64"), entry("arm-1", "arm64"), entry("app-2", "ppc64le")]}
raw = json.dumps(multi, separators=(",", ":")).encode()
digest = hashlib.sha256(raw).hexdigest()
open(os.path.join(layout, "blobs", "sha256", digest), "wb").write(raw)
index["manifests"].append({"mediaType": multi["mediaType"], "digest": "sha256:" + digest,
    "size": len(raw), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
json.dump(index, open(index_path, "w"))
PY

# A layout with one 6 MiB incompressible layer, for resume tests.
rm -rf "$out/large"
umoci init --layout "$out/large"
umoci new --image "$out/large:empty"
derive "$out/large" empty large 'random_bytes large 6291456 > blob'
umoci config --image "$out/large:large" --os linux --architecture amd64
umoci rm --image "$out/large:empty"

rm -f "$out"/app1.oci.tar "$out"/app2.docker.tar "$out"/app2.docker.tar.gz
skopeo copy -q "oci:$L:app-1" "oci-archive:$out/app1.oci.tar:app-1"
skopeo copy -q "oci:$L:app-2" "docker-archive:$out/app2.docker.tar:example.com/team/app2:2"
gzip -k -1 "$out/app2.docker.tar"

if [ "$big_mb" -gt 0 ]; then
  B=$out/big
  rm -rf "$B"
  umoci init --layout "$B"
  umoci new --image "$B:empty"
  base_mb=$((big_mb / 2))
    per_mb=$(( (big_mb - base_mb) / 6 ))
  # Half the data is incompressible (like real gzip layers), half is text.
  derive "$B" empty base "mkdir -p data && random_bytes base $((base_mb * 1024 * 1024 / 2)) > data/random && text_bytes $((base_mb * 1024 * 1024 / 2)) > data/text"
  umoci config --image "$B:base" --os linux --architecture amd64
    for n in 1 2 3 4 5 6; do
    derive "$B" base "big-$n" "random_bytes big$n $((per_mb * 1024 * 1024)) > data/own"
  done
  umoci rm --image "$B:empty"
  umoci rm --image "$B:base"
fi
echo "fixtures in $out"
