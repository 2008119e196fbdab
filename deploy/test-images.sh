#!/usr/bin/env bash
# Builds the images kha's toolchain and architecture tests run in, once, into
# a cache that later runs on the same machine reuse (KHA_TEST_IMAGES, default
# /var/cache/kha/test-images):
#   otp27  Debian trixie, amd64, erlang-nox and rebar3 (Erlang/OTP 27)
#   arm64  Debian bookworm, arm64 (runs under qemu-user-static)
# An image is complete once its image.toml is there (kha-builder moves a
# finished image into place in one rename); a complete one is kept.
# Usage: deploy/test-images.sh [KHA_BUILDER_BINARY]   (as root)
set -euo pipefail
bin=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/kha-builder}
cache=${KHA_TEST_IMAGES:-/var/cache/kha/test-images}
mkdir -p "$cache"
# The containers' root must reach the images.
chmod 755 "$cache"
d=$cache
while [ "$d" != / ]; do d=$(dirname "$d"); chmod o+x "$d"; done

image() {
  local name=$1
  shift
  if [ -f "$cache/$name/image.toml" ]; then
    echo "kha: test image $name: cached in $cache/$name"
    return
  fi
  local start=$SECONDS
  "$bin" --data-dir "$cache/.builder" --images-dir "$cache" image create "$name" "$@"
  echo "kha: test image $name: built in $((SECONDS - start)) s"
}

image otp27 --suite trixie --packages "erlang-nox rebar3"
image arm64 --suite bookworm --arch arm64
