#!/usr/bin/env bash
# airlock's main job, end to end, on sample images:
#   connected side: pack an OCI layout, an oci-archive and a docker save tar
#                   into one signed bundle;
#   isolated side:  verify it offline, inspect it, export it, and import the
#                   images into a throwaway local registry (CNCF distribution),
#                   then check them there with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q
A=$PWD/target/release/airlock
work=$(mktemp -d)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "sample images, built with umoci and skopeo"
scripts/make-fixtures.sh "$work/images"

step "connected side: a signing key and one bundle"
"$A" keygen -o "$work/site-key"
"$A" pack -o "$work/images.airlock" --key "$work/site-key" \
  "oci:$work/images/layout" \
  "oci-archive:$work/images/app1.oci.tar" \
  "docker-archive:$work/images/app2.docker.tar.gz"
ls -l "$work/images.airlock"

step "isolated side: verify (offline), inspect"
"$A" verify "$work/images.airlock" --pub "$work/site-key.pub"
"$A" inspect "$work/images.airlock"

step "export to an OCI layout and to a docker load tar"
"$A" export "$work/images.airlock" --pub "$work/site-key.pub" --to "oci:$work/export"
"$A" export "$work/images.airlock" --pub "$work/site-key.pub" --to "docker-archive:$work/app2.tar" example.com/team/app2:2
skopeo inspect "docker-archive:$work/app2.tar" | grep -m1 '"Digest"'

step "a throwaway registry on 127.0.0.1"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1); break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("the registry did not start")
PY
"$A" import "$work/images.airlock" --pub "$work/site-key.pub" --to "127.0.0.1:$port/mirror" \
  --plain-http "127.0.0.1:$port" --state "$work/state"
step "check with skopeo: every image, with the digest it has in the bundle"
names=$(python3 -c 'import json,sys; print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$work/export/index.json")
for name in $names; do
  target="127.0.0.1:$port/mirror/${name#*/}"
  pushed=$(skopeo inspect --raw --tls-verify=false "docker://$target" | sha256sum | cut -d' ' -f1)
  bundled=$(skopeo inspect --raw "oci:$work/export:$name" | sha256sum | cut -d' ' -f1)
  [ "$pushed" = "$bundled" ] || { echo "digest changed for $name" >&2; exit 1; }
  echo "  $target  sha256:$pushed"
done
step "done: every image arrived with the digest it had at the source"
