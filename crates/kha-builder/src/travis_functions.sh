# Travis's shell functions, as travis-build defines them
# (lib/travis/build/bash/travis_*.bash), rewritten in POSIX sh: the driver
# runs under /bin/sh, which is dash on Debian. No `local`: each function
# keeps its scratch variables under its own prefix.
ANSI_RED='\033[31;1m'
ANSI_GREEN='\033[32;1m'
ANSI_YELLOW='\033[33;1m'
ANSI_RESET='\033[0m'
ANSI_CLEAR='\033[0K'
export ANSI_RED ANSI_GREEN ANSI_YELLOW ANSI_RESET ANSI_CLEAR

# travis_retry CMD...: up to three tries, a second apart.
travis_retry() {
  _ktr_result=0
  _ktr_count=1
  while [ "$_ktr_count" -le 3 ]; do
    [ "$_ktr_result" -ne 0 ] &&
      printf '\n\033[31;1mThe command "%s" failed. Retrying, %s of 3.\033[0m\n\n' "$*" "$_ktr_count" >&2
    "$@"
    _ktr_result=$?
    [ "$_ktr_result" -eq 0 ] && break
    _ktr_count=$((_ktr_count + 1))
    sleep 1
  done
  [ "$_ktr_count" -gt 3 ] &&
    printf '\n\033[31;1mThe command "%s" failed 3 times.\033[0m\n\n' "$*" >&2
  return "$_ktr_result"
}

# travis_jigger PID MINUTES CMD...: the keep-alive line of travis_wait, once
# a minute (KHA_TRAVIS_WAIT_TICK seconds, for tests); kills PID at the end.
travis_jigger() {
  _ktj_pid=$1
  _ktj_timeout=$2
  shift 2
  _ktj_count=0
  _ktj_sleep=
  trap 'kill "$_ktj_sleep" 2>/dev/null; exit 0' TERM
  printf '\n\n'
  while [ "$_ktj_count" -lt "$_ktj_timeout" ]; do
    _ktj_count=$((_ktj_count + 1))
    printf 'Still running (%s of %s): %s\r' "$_ktj_count" "$_ktj_timeout" "$*"
    # In the background and waited for, so the TERM trap runs at once.
    sleep "${KHA_TRAVIS_WAIT_TICK:-60}" </dev/null >/dev/null 2>&1 &
    _ktj_sleep=$!
    wait "$_ktj_sleep"
  done
  printf '\n\033[31;1mTimeout (%s minutes) reached. Terminating "%s"\033[0m\n\n' "$_ktj_timeout" "$*"
  kill -9 "$_ktj_pid"
}

# travis_wait [MINUTES] CMD...: runs CMD with its output in a file, saying
# it still runs once a minute, killed after MINUTES (20); then the file.
travis_wait() {
  _ktw_timeout=20
  case "${1:-}" in
    '' | *[!0-9]*) ;;
    *) _ktw_timeout=$1; shift ;;
  esac
  _ktw_log="travis_wait_$$.log"
  "$@" >"$_ktw_log" 2>&1 &
  _ktw_cmd=$!
  travis_jigger "$_ktw_cmd" "$_ktw_timeout" "$@" &
  _ktw_jigger=$!
  wait "$_ktw_cmd" 2>/dev/null
  _ktw_result=$?
  kill "$_ktw_jigger" 2>/dev/null
  wait "$_ktw_jigger" 2>/dev/null
  if [ "$_ktw_result" -eq 0 ]; then
    printf '\n\033[32;1mThe command %s exited with %s.\033[0m\n' "$*" "$_ktw_result"
  else
    printf '\n\033[31;1mThe command %s exited with %s.\033[0m\n' "$*" "$_ktw_result"
  fi
  printf '\n\033[32;1mLog:\033[0m\n\n'
  cat "$_ktw_log"
  return "$_ktw_result"
}

# travis_fold start|end NAME
travis_fold() {
  printf 'travis_fold:%s:%s\r\033[0K' "$1" "$2"
}

travis_nanoseconds() {
  _ktn=$(date -u +%s%N 2>/dev/null)
  case "$_ktn" in
    '' | *[!0-9]*) _ktn="$(date -u +%s)000000000" ;;
  esac
  printf '%s\n' "$_ktn"
}

_kha_timer_id() {
  _kti=$(od -An -N4 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')
  if [ -z "$_kti" ]; then
    _kti=$(date +%s)
    _kti=$(printf '%08x' $(( (_kti + $$ * 2654435761) % 4294967296 )))
  fi
  printf '%s\n' "$_kti"
}

# travis_time_start [NAME]: a timer; with NAME its id and start are also
# kept in TRAVIS_TIMER_ID_NAME and TRAVIS_TIMER_START_TIME_NAME.
travis_time_start() {
  TRAVIS_TIMER_ID=$(_kha_timer_id)
  TRAVIS_TIMER_START_TIME=$(travis_nanoseconds)
  export TRAVIS_TIMER_ID TRAVIS_TIMER_START_TIME
  case "${1:-}" in
    '' | *[!A-Za-z0-9_]*) ;;
    *)
      eval "TRAVIS_TIMER_ID_$1=\$TRAVIS_TIMER_ID TRAVIS_TIMER_START_TIME_$1=\$TRAVIS_TIMER_START_TIME"
      export "TRAVIS_TIMER_ID_$1" "TRAVIS_TIMER_START_TIME_$1"
      ;;
  esac
  printf 'travis_time:start:%s\r\033[0K' "$TRAVIS_TIMER_ID"
}

# travis_time_finish: ends the last timer; keeps the exit status before it.
travis_time_finish() {
  _ktt_result=$?
  _ktt_end=$(travis_nanoseconds)
  _ktt_start=${TRAVIS_TIMER_START_TIME:-$_ktt_end}
  printf 'travis_time:end:%s:start=%s,finish=%s,duration=%s\r\033[0K' \
    "${TRAVIS_TIMER_ID:-0}" "$_ktt_start" "$_ktt_end" "$((_ktt_end - _ktt_start))"
  return "$_ktt_result"
}

# travis_terminate [CODE]: ends the job now with CODE (the last command's
# status by default): 0 passed, 1 failed, anything else errored.
travis_terminate() {
  _ktx_code=${1:-$?}
  for _ktx_pid in $(jobs -p); do kill "$_ktx_pid" 2>/dev/null; done
  case "$_ktx_code" in
    0) kha_state 'result passed' ;;
    1) kha_state 'result failed' ;;
    *) kha_state 'result errored' ;;
  esac
  kha_state done
  exit "$_ktx_code"
}
