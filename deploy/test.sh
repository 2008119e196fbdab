#!/usr/bin/env bash
# Runs kha's whole test suite on a Debian 12 machine, as root: installs what
# is missing, checks formatting and lints, then runs every test, the
# end-to-end ones included (real processes over loopback, real lxc, and a
# real headless chromium for the web UI).
. "$(dirname "$0")/common.sh"
need_root
install_packages
install_browser
install_notify_servers
# The full-disk test puts the control node's data dir on a small ext4 file
# system of its own (mkfs.ext4, mount -o loop).
install_missing e2fsprogs mount
install_image_tools
install_rust
cd "$KHA_ROOT"
# The test images (a trixie image with OTP 27, an arm64 image) download
# from Debian's mirror: kha-builder is built first, then they are made in
# the background while the rest compiles, once per machine (cached in
# /var/cache/kha/test-images), and waited for before the tests.
images_pid=
if [ -z "${KHA_SKIP_IMAGES:-}" ]; then
  echo "==> building kha-builder for the test images"
  cargo build -p kha-builder --bin kha-builder --quiet
  images_bin=$(mktemp /tmp/kha-builder-images.XXXXXX)
  # mktemp makes the file 0600, and cp onto it keeps that mode.
  install -m 0755 target/debug/kha-builder "$images_bin"
  echo "==> test images, in the background (log: target/test-images.log)"
  # In its own session, so that a failure below stops it and its
  # mmdebstrap too; niced, so it takes the cycles the compile leaves.
  setsid nice -n 19 "$KHA_ROOT/deploy/test-images.sh" "$images_bin" >target/test-images.log 2>&1 &
  images_pid=$!
  trap 'kill -- "-$images_pid" 2>/dev/null || true; rm -f "$images_bin"' EXIT
fi
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
build debug
if [ -n "$images_pid" ]; then
  echo "==> waiting for the test images"
  if ! wait "$images_pid"; then
    tail -n 30 target/test-images.log >&2
    echo "kha: the test images could not be built (see target/test-images.log); set KHA_SKIP_IMAGES=1 to report their tests as ignored" >&2
    exit 1
  fi
  trap - EXIT
  rm -f "$images_bin"
  grep '^kha: test image' target/test-images.log || true
fi
echo "==> cargo test"
cargo test --workspace --quiet
# Fuzzing, briefly: each target for 10 s from its committed corpus.
echo "==> fuzzing (crates/kha-core/fuzz)"
"$KHA_ROOT/deploy/fuzz.sh" 10
# A smoke test of the benchmark harness: every scenario at small sizes,
# figures printed, no thresholds (speed is never checked by tests).
echo "==> kha-bench --quick"
target/debug/kha-bench --quick --json target/kha-bench-quick.json
