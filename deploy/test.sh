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
install_rust
cd "$KHA_ROOT"
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
build debug
echo "==> cargo test"
cargo test --workspace --quiet
# A smoke test of the benchmark harness: every scenario at small sizes,
# figures printed, no thresholds (speed is never checked by tests).
echo "==> kha-bench --quick"
target/debug/kha-bench --quick --json target/kha-bench-quick.json
