#!/usr/bin/env bash
# kha quickstart: on a Debian 12 machine, as root. Installs what is missing,
# builds kha, starts a control node and one local lxc builder with the
# embedded defaults, adds a demo project and runs its first build.
#
#   ./deploy/quickstart.sh          start (again) and run a demo build
#   ./deploy/quickstart.sh stop     stop both daemons
. "$(dirname "$0")/common.sh"
need_root

DATA=${KHA_DATA_DIR:-/var/lib/kha}
BDATA=${KHA_BUILDER_DATA_DIR:-/var/lib/kha-builder}
LOGS=${KHA_LOG_DIR:-/var/log/kha}
LISTEN=${KHA_LISTEN:-127.0.0.1:7700}
BIN=/usr/local/bin

stop() {
  for d in kha-builder kha-control; do
    if [ -f "/run/kha/$d.pid" ] && kill "$(cat "/run/kha/$d.pid")" 2>/dev/null; then
      echo "stopped $d"
    fi
    rm -f "/run/kha/$d.pid"
  done
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

install_packages
install_rust
build release
install -m 0755 "$KHA_ROOT"/target/release/{kha-control,kha-builder,kha} "$BIN"/
# The notifier plugins kha ships (notifications: chat: … in .travis.yml).
install -d /usr/local/lib/kha/notify
install -m 0755 "$KHA_ROOT"/deploy/plugins/kha-notify-* /usr/local/lib/kha/notify/
stop
sleep 0.5
mkdir -p "$DATA" "$BDATA" "$LOGS" /run/kha
chmod 755 "$BDATA"

echo "==> starting kha-control on $LISTEN (data in $DATA)"
nohup "$BIN/kha-control" --data-dir "$DATA" --listen "$LISTEN" >>"$LOGS/control.log" 2>&1 &
echo $! >/run/kha/kha-control.pid
for _ in $(seq 50); do
  "$BIN/kha" --server "$LISTEN" --data-dir "$DATA" builder list >/dev/null 2>&1 && break
  sleep 0.1
done
export KHA_SERVER=$LISTEN KHA_DATA_DIR=$DATA

echo "==> starting a local lxc builder (data in $BDATA)"
"$BIN/kha-builder" --data-dir "$BDATA" image create default
TOKEN=
[ -f "$BDATA/identity.json" ] || TOKEN=$("$BIN/kha" builder token create --description "local builder" 2>/dev/null)
# The token goes in the environment: on the command line, ps shows it.
KHA_ENROL_TOKEN=$TOKEN nohup "$BIN/kha-builder" --control "http://$LISTEN" --data-dir "$BDATA" >>"$LOGS/builder.log" 2>&1 &
echo $! >/run/kha/kha-builder.pid

DEMO=$DATA/demo-repo
if [ ! -d "$DEMO/.git" ]; then
  echo "==> creating the demo project's repository in $DEMO"
  mkdir -p "$DEMO"
  git -C "$DEMO" init -q -b master
  cat >"$DEMO/.travis.yml" <<'YML'
language: shell
env:
  - GREETING=hello
  - GREETING=hej
script:
  - echo "$GREETING from $(hostname), a container on $(uname -m)"
  - git log --oneline -1
YML
  git -C "$DEMO" add .travis.yml
  git -C "$DEMO" -c user.name=kha -c user.email=kha@localhost commit -q -m "A first build"
fi
"$BIN/kha" project show demo >/dev/null 2>&1 || "$BIN/kha" project add demo "file://$DEMO"

echo "==> running the demo build"
"$BIN/kha" build trigger demo --force --wait || true
JOB=$("$BIN/kha" --json build list demo --per-page 1 | sed -n 's/.*"id": \([0-9]*\),$/\1/p' | tail -1)
[ -n "$JOB" ] && { echo "--- log of job $JOB"; "$BIN/kha" log "$JOB"; echo "---"; }

cat <<EOT

kha is running: control node on $LISTEN, one lxc builder.
Web UI: http://127.0.0.1:7701/ (public projects are open to read)
$(if [ -s "$DATA/setup.url" ]; then
    echo "Create the first admin account (one-time link): $(cat "$DATA/setup.url")"
  else
    echo "Sign in with your account (or the break-glass admin token in $DATA/admin.token)"
  fi)
  kha project list                      projects
  kha build list demo                   the demo project's builds
  kha build trigger demo --wait         build it again (add --force to rebuild the same commit)
  kha log JOB --follow                  tail a job's log
  kha builder list                      builders
  kha builder token create              a token to join a builder on another machine
Logs: $LOGS/control.log and $LOGS/builder.log.   Stop: $0 stop
The kha CLI finds the admin token in $DATA/admin.token when run as root here.
EOT
