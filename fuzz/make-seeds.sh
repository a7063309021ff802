#!/usr/bin/env bash
# Rebuilds the seed corpora in fuzz/seeds/ from real bundles, packed by the
# airlock binary from a tiny OCI layout that umoci builds:
#
#   fuzz/make-seeds.sh [path/to/airlock]     (default: target/debug/airlock)
#
# bundle_stream/  whole bundles, signed and unsigned, a few KB each
# volume_label/   the labels that start each volume of a split bundle
# envelope/       the airlock-bundle.json member of each bundle
set -euo pipefail
cd "$(dirname "$0")/.."
airlock=$(realpath "${1:-target/debug/airlock}")
seeds=$PWD/fuzz/seeds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export SOURCE_DATE_EPOCH=1700000000

umoci init --layout lay >/dev/null
umoci new --image lay:tiny >/dev/null
umoci unpack --rootless --image lay:tiny b >/dev/null
echo hello > b/rootfs/hello
umoci repack --image lay:tiny b >/dev/null
rm -rf b
"$airlock" keygen -o k >/dev/null
"$airlock" pack -q -o signed.airlock --key k oci:lay:tiny
"$airlock" pack -q -o unsigned.airlock oci:lay:tiny
# A layer of 1.5 MB incompressible bytes, so that --split 1M makes volumes.
umoci unpack --rootless --image lay:tiny b >/dev/null
head -c 1500000 /dev/urandom > b/rootfs/noise
umoci repack --image lay:big b >/dev/null
"$airlock" pack -q -o split.airlock --key k --split 1M oci:lay:big

rm -rf "$seeds"/{bundle_stream,volume_label,envelope}
mkdir -p "$seeds"/{bundle_stream,volume_label,envelope}
cp signed.airlock unsigned.airlock "$seeds/bundle_stream/"
for v in split.airlock.0*; do head -c 136 "$v" > "$seeds/volume_label/$v"; done
for b in signed unsigned; do
  zstd -dc "$b.airlock" | tar -xO airlock-bundle.json > "$seeds/envelope/$b.json"
done
ls -l "$seeds"/*
