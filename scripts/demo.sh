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
step "done: every image arrived with the digest it had at the source"
