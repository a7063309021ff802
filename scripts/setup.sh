#!/usr/bin/env bash
# Installs what airlock's tests, demo and benchmarks use, from Debian's
# packages. Needs root or sudo; a Rust toolchain (rustup, 1.85+) is assumed.
set -euo pipefail
packages="docker-registry skopeo umoci podman curl zstd openssl python3 apache2-utils hyperfine ca-certificates man-db groff-base"
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
