# Shared by quickstart.sh and test.sh: installs what kha needs on a Debian 12
# machine (as root) and builds it. Sourced, not run.

set -euo pipefail

KHA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "kha: run this as root (it installs packages and runs lxc containers)" >&2
    exit 1
  fi
}

# Installs those of the Debian packages named that are missing, and says
# whether it did in $KHA_INSTALLED (1 or 0). Called plainly, never as a
# condition, so that a failing apt-get stops the script (set -e).
install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  KHA_INSTALLED=0
  [ ${#missing[@]} -gt 0 ] || return 0
  KHA_INSTALLED=1
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian packages: lxc for the containers, uidmap for unprivileged ones, git
# for the tests' repositories, a C compiler for libgit2.
# subversion: svn for Subversion projects (control node and builders), and
# svnadmin, svnserve and svnlook for the tests.
install_packages() {
  local want=(lxc uidmap git gcc libc6-dev make pkg-config libssl-dev ca-certificates curl python3 openssl)
  # CVS projects: the control node reads history, builders check out.
  want+=(cvs)
  # Subversion projects: the control node polls, builders check out.
  want+=(subversion)
  # Jobs whose project asks for network: a bridge (ip) and NAT rules (nft).
  want+=(iproute2 nftables)
  install_missing "${want[@]}"
  # Unprivileged containers map their ids to 100000-165535 on the host;
  # root needs that range reserved (lxc uses newuidmap when uidmap is in).
  grep -q '^root:100000:65536' /etc/subuid 2>/dev/null || usermod --add-subuids 100000-165535 root
  grep -q '^root:100000:65536' /etc/subgid 2>/dev/null || usermod --add-subgids 100000-165535 root
}

# Debian's chromium and its WebDriver, for the web UI's browser tests and
# kha-bench's web scenario (test.sh only: running kha needs no browser).
install_browser() {
  local want=(chromium chromium-driver)
  install_missing "${want[@]}"
}

# The real servers the notification tests talk to on loopback: SMTP
# (aiosmtpd), XMPP (prosody) and IRC (ngircd); and the Prometheus project's
# OpenMetrics parser the metrics tests read /metrics with. test.sh only. Their packages
# would start system-wide daemons; the tests run their own instances, so
# those are stopped (the machine's boot does not start them: no systemd).
install_notify_servers() {
  local want=(python3-aiosmtpd prosody ngircd python3-prometheus-client)
  install_missing "${want[@]}"
  if [ "$KHA_INSTALLED" = 1 ]; then
    service prosody stop >/dev/null 2>&1 || true
    service ngircd stop >/dev/null 2>&1 || true
  fi
}

# What the toolchain, image and architecture tests use (test.sh only):
# mmdebstrap builds Debian images, qemu-user-static (with arch-test, which
# mmdebstrap uses to check emulation) runs foreign ones, and Debian's
# Erlang/OTP 25 with rebar3 is the host OTP the tests make a kerl
# installation of. A builder that makes full images needs mmdebstrap (and
# qemu-user-static for other architectures); `kha-builder image create`
# says so when they are missing.
install_image_tools() {
  local want=(mmdebstrap qemu-user-static arch-test erlang-nox rebar3)
  install_missing "${want[@]}"
}

# Rust: the machine's toolchain if it is recent enough, else rustup.
install_rust() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  local v
  v=$(cargo --version 2>/dev/null | awk '{print $2}' || true)
  if [ -z "$v" ] || [ "$(printf '%s\n' 1.88.0 "$v" | sort -V | head -1)" != 1.88.0 ]; then
    echo "==> installing Rust (rustup, stable)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >/dev/null
    . "$HOME/.cargo/env"
  fi
}

# release: only the three binaries that are installed (kha-control, kha,
# kha-builder), not the test crate and the benchmark; debug: everything,
# for the test suite.
build() {
  echo "==> building kha ($1)"
  cd "$KHA_ROOT"
  if [ "$1" = release ]; then
    cargo build --release -p kha-control -p kha-builder --bins --quiet
  else
    cargo build --workspace --quiet
  fi
}
