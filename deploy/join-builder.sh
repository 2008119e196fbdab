#!/usr/bin/env bash
# Joins this machine (Debian 12, root) to a kha control node as a builder:
#   KHA_ENROL_TOKEN=khaet_… ./join-builder.sh http://control.example:7700 [slots]
# (the token in the environment, not on the command line, where every
# local user can read it in ps).
# Expects kha-builder in /usr/local/bin; installs lxc, makes the default
# image, and runs the builder under systemd when there is one.
set -euo pipefail
USAGE="usage: KHA_ENROL_TOKEN=TOKEN join-builder.sh CONTROL_URL [SLOTS]"
CONTROL=${1:?$USAGE}
TOKEN=${KHA_ENROL_TOKEN:-}
SLOTS=${2:-}
if [ -n "$SLOTS" ] && ! [[ "$SLOTS" =~ ^[0-9]+$ ]]; then
  # The older form, join-builder.sh CONTROL_URL TOKEN [SLOTS], still works.
  echo "join-builder.sh: a token on the command line is visible to every local user in ps; give it in KHA_ENROL_TOKEN" >&2
  TOKEN=$SLOTS
  SLOTS=${3:-}
fi
SLOTS=${SLOTS:-$(nproc)}
DATA=/var/lib/kha-builder
[ -n "$TOKEN" ] || [ -f "$DATA/identity.json" ] || { echo "$USAGE" >&2; exit 2; }
command -v lxc-execute >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lxc uidmap; }
command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2; }
grep -q '^root:100000:65536' /etc/subuid || usermod --add-subuids 100000-165535 root
grep -q '^root:100000:65536' /etc/subgid || usermod --add-subgids 100000-165535 root
mkdir -p "$DATA" && chmod 755 "$DATA"
kha-builder --data-dir "$DATA" image create default
if [ ! -f "$DATA/identity.json" ]; then
  # Enrol once, in the foreground, so a bad token is reported here.
  KHA_ENROL_TOKEN=$TOKEN timeout 10 kha-builder --control "$CONTROL" --data-dir "$DATA" --slots "$SLOTS" &
  for _ in $(seq 100); do [ -f "$DATA/identity.json" ] && break; sleep 0.1; done
  kill %1 2>/dev/null || true
  [ -f "$DATA/identity.json" ] || { echo "enrolment failed: check the token and the control URL" >&2; exit 1; }
fi
if [ -d /run/systemd/system ]; then
  mkdir -p /etc/kha
  printf 'control = "%s"\nslots = %s\n' "$CONTROL" "$SLOTS" >/etc/kha/builder.toml
  cp "$(dirname "$0")/kha-builder.service" /etc/systemd/system/
  systemctl daemon-reload && systemctl enable --now kha-builder
  echo "kha-builder runs under systemd (journalctl -u kha-builder)"
else
  nohup kha-builder --control "$CONTROL" --data-dir "$DATA" --slots "$SLOTS" >>/var/log/kha-builder.log 2>&1 &
  echo "kha-builder runs in the background (log: /var/log/kha-builder.log)"
fi
