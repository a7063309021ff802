#!/usr/bin/env bash
# airlock's main job, end to end, on sample images:
#   connected side: pack an OCI layout, an oci-archive and a docker save tar
#                   into one signed bundle;
#   isolated side:  verify it offline, inspect it, export it, and import the
#                   images into a throwaway local registry (CNCF distribution),
#                   then check them there with skopeo;
#   the next week:  list what the registry holds, pack only what it lacks
#                   (a delta), import it, and serve the bundles as a
#                   registry with no unpacking.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q
A=$PWD/target/release/airlock
work=$(mktemp -d)
. scripts/registry.sh
cleanup() {
  stop_registry
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
start_registry "$work"
"$A" import "$work/images.airlock" --pub "$work/site-key.pub" --to "$host/mirror" \
  --plain-http="$host" --state "$work/state"
step "check with skopeo: every image, with the digest it has in the bundle"
names=$(ref_names "$work/export/index.json")
for name in $names; do
  target="$host/mirror/${name#*/}"
  pushed=$(skopeo inspect --raw --tls-verify=false "docker://$target" | sha256sum | cut -d' ' -f1)
  bundled=$(skopeo inspect --raw "oci:$work/export:$name" | sha256sum | cut -d' ' -f1)
  [ "$pushed" = "$bundled" ] || { echo "digest changed for $name" >&2; exit 1; }
  echo "  $target  sha256:$pushed"
done

step "the next week: the isolated side lists what its registry holds"
"$A" inventory "docker://$host/mirror" --plain-http="$host" -o "$work/held.json"
step "connected side: the set plus one new image, packed against that list (a delta)"
"$A" pack -o "$work/week2.airlock" --key "$work/site-key" --against "$work/held.json" \
  "oci:$work/images/layout" \
  "oci-archive:$work/images/app1.oci.tar" \
  "docker-archive:$work/images/app2.docker.tar.gz" \
  "oci:$work/images/large:large"
"$A" diff "$work/held.json" "$work/week2.airlock" --pub "$work/site-key.pub"
step "isolated side: verify the delta, import it"
"$A" verify "$work/week2.airlock" --pub "$work/site-key.pub"
"$A" import "$work/week2.airlock" --pub "$work/site-key.pub" --to "$host/mirror" \
  --plain-http="$host" --state "$work/state"
pushed=$(skopeo inspect --raw --tls-verify=false "docker://$host/mirror/large:large" | sha256sum | cut -d' ' -f1)
source=$(skopeo inspect --raw "oci:$work/images/large:large" | sha256sum | cut -d' ' -f1)
[ "$pushed" = "$source" ] || { echo "digest changed for large:large" >&2; exit 1; }
echo "  $host/mirror/large:large  sha256:$pushed"

step "no registry yet? serve the bundles (base and delta together) as one"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$A" serve --pub "$work/site-key.pub" --listen "127.0.0.1:$port" "$work/images.airlock" "$work/week2.airlock" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
served=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/large:large" | sha256sum | cut -d' ' -f1)
[ "$served" = "$source" ] || { echo "serve changed large:large" >&2; exit 1; }
echo "  127.0.0.1:$port/large:large  sha256:$served"
skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/layout:app-1" "oci:$work/from-serve:app-1"
echo "  skopeo copied layout:app-1 from airlock serve"
kill "$serve_pid"

step "done: every image arrived with the digest it had at the source"
