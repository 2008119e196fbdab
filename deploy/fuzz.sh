#!/usr/bin/env bash
# Runs the cargo-fuzz targets of what kha reads from strangers
# (crates/kha-core/fuzz: `.travis.yml`, `if:` conditions, job output
# through the terminal renderer and the secret masker, `secure:`
# assignments), each for SECONDS (default 15; test.sh gives 10),
# starting from its committed corpus. What a run finds goes to a scratch
# directory, so the committed corpora change only by hand
# (`cargo +nightly fuzz cmin -O TARGET` in crates/kha-core/fuzz). A crash
# fails the script and names the input that made it. Installs a minimal
# nightly toolchain and cargo-fuzz when missing (cached in ~/.rustup and
# ~/.cargo like the rest).
#
#   deploy/fuzz.sh [SECONDS]
set -euo pipefail
secs=${1:-15}
cd "$(dirname "$0")/../crates/kha-core/fuzz"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing a nightly toolchain (cargo-fuzz's sanitizers need it)"
  rustup toolchain install nightly --profile minimal >/dev/null
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
for t in $(cargo +nightly fuzz list); do
  scratch=$(mktemp -d)
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "kha: fuzz target $t failed; the input is in crates/kha-core/fuzz/artifacts/$t" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz $t: $runs runs in ${secs} s, $cov, no crash"
  rm -rf "$scratch" "$log"
done
