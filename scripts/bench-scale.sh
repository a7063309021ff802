#!/usr/bin/env bash
# Times verify (file and stream) and export of a 60,000-blob bundle (2,000 images of 28 tiny
# layers, a config and a manifest each) with one or more airlock binaries,
# and the peak memory of `verify --pub` refusing a huge manifest signed by
# an untrusted key. Issue #11: both must scale linearly.
#
#   scripts/bench-scale.sh [BINARY…]   (default: target/release/airlock)
#
# Timings are printed, not asserted; tests/it/scale.rs checks the outcomes.
set -euo pipefail
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/airlock)
work=$(mktemp -d "${TMPDIR:-/tmp}/airlock-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$work/layout" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
os.makedirs(f"{d}/blobs/sha256")
open(f"{d}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
def blob(mt, b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(b)
    return {"mediaType": mt, "digest": "sha256:" + h, "size": len(b)}
entries = []
for i in range(2000):
    layers = [blob("application/vnd.oci.image.layer.v1.tar", f"image {i} layer {l}\n".encode()) for l in range(28)]
    cfg = blob("application/vnd.oci.image.config.v1+json",
               ('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"i":%d}' % i).encode())
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cfg, "layers": layers}).encode()
    md = blob("application/vnd.oci.image.manifest.v1+json", m)
    md["annotations"] = {"org.opencontainers.image.ref.name": f"img{i}"}
    entries.append(md)
open(f"{d}/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": entries}))
PY

first=${bins[0]}
"$first" keygen -o "$work/k" >/dev/null
"$first" pack -q -o "$work/b.airlock" --key "$work/k" "oci:$work/layout"
echo "bundle: $(du -h "$work/b.airlock" | cut -f1), 60000 blobs, 2000 images"
for bin in "${bins[@]}"; do
    echo "== $bin"
    /usr/bin/time -f "verify: %e s wall, %U s user, %S s sys, peak %M KiB" \
        "$bin" verify -q --pub "$work/k.pub" "$work/b.airlock" >/dev/null
    /usr/bin/time -f "verify -: %e s wall, %U s user, %S s sys, peak %M KiB" \
        "$bin" verify -q --pub "$work/k.pub" - <"$work/b.airlock" >/dev/null
    rm -rf "$work/out"
    /usr/bin/time -f "export: %e s wall, %U s user, %S s sys, peak %M KiB" \
        "$bin" export -q --pub "$work/k.pub" --to "oci:$work/out" "$work/b.airlock" >/dev/null
    /usr/bin/time -f "inspect: %e s wall, %U s user, %S s sys, peak %M KiB" \
        "$bin" inspect --json "$work/b.airlock" >/dev/null
done
