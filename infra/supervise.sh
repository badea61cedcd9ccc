#!/usr/bin/env bash
# Keeps one service running, as docker-compose.yml's `restart: on-failure` does: the service is
# started again when it dies by a signal or exits with an error; a clean exit (0: it was asked
# to stop) ends the supervision. infra/flashsale.sh runs every flashsale service under it.
#
#   infra/supervise.sh NAME PIDFILE -- COMMAND [ARG...]
#
# Run it in the background with its output going to the service's log: the service inherits
# that output, and the supervisor's own lines go there too, one JSON object per line
# ("svc":"supervisor"). PIDFILE names the service while it runs: written as soon as it has
# been started, removed as soon as it has died (and when the supervision ends).
#
# Restarts: at once after the first death; while the service keeps dying within
# FLASHSALE_SUPERVISE_STEADY_MS (10000) of its start, after 0.5, 1, 2, 4, ... s, at most 30 s,
# and never giving up (a run that lasts that long starts the count again).
#
# Each start is a process group (a session) of its own. When the service has died, whatever
# it left behind in that group is killed before the next start: a forking service such as
# nginx leaves its workers serving when its master is killed (with reuseport they would share
# the port with the next master's, under the old configuration, and outlive every stop).
#
# Signals: SIGTERM stops the supervision: it is passed on to the service (also to one started
# as it came), whose exit the supervisor waits for (however long: the caller decides when to
# SIGKILL the service), and nothing is started again. A SIGTERM during a wait between
# restarts ends it at once. SIGHUP is ignored, by the service too (as nohup would), unless it
# sets a handler of its own (nginx: HUP reloads).
# All of it in one function, read whole before it runs: bash reads a script as it goes, so a
# supervisor running while this file is edited in place would otherwise go on with new bytes.
main() {
  child="" waiter="" stopping=""
  trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; [ -n "$waiter" ] && kill "$waiter" 2>/dev/null' TERM
  trap '' HUP
  set -uo pipefail
  [ $# -ge 4 ] && [ "$3" = "--" ] || { echo "usage: $0 NAME PIDFILE -- COMMAND [ARG...]" >&2; exit 2; }
  name=$1 pidfile=$2
  shift 3
  steady_ms=${FLASHSALE_SUPERVISE_STEADY_MS:-10000}
  case "$steady_ms" in '' | *[!0-9]*) echo "FLASHSALE_SUPERVISE_STEADY_MS: a number of ms, got '$steady_ms'" >&2; exit 2 ;; esac

  # EPOCHREALTIME is seconds and microseconds, with the locale's decimal point
  now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
  say() { # say LEVEL MESSAGE [JSON fields, each ,"key":value]
    local t=$EPOCHREALTIME
    local sec=${t%%[!0-9]*} frac=${t##*[!0-9]}
    printf '{"ts":"%s.%sZ","level":"%s","svc":"supervisor","msg":"%s","service":"%s"%s}\n' \
      "$(date -u -d "@$sec" +%Y-%m-%dT%H:%M:%S)" "${frac:0:3}" "$1" "$2" "$name" "${3:-}"
  }

  quick=0 # deaths in a row, each within steady_ms of its start
  while [ -z "$stopping" ]; do
    began=$(now_ms)
    [ -n "$stopping" ] && break # (a SIGTERM while the clock was read)
    # setsid execs the command (this background child is not a group leader): $! is the service
    setsid "$@" &
    child=$!
    echo "$child" >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
    # a SIGTERM that came before child was set found nothing to pass on to
    [ -n "$stopping" ] && kill -TERM "$child" 2>/dev/null
    # wait returns early when the TERM trap runs; then wait again for the service's own exit
    while :; do
      wait "$child" 2>/dev/null; status=$? # (bash's "Killed" notice: the line below says it)
      [ -n "$stopping" ] && kill -0 "$child" 2>/dev/null && continue
      break
    done
    rm -f "$pidfile"
    # what it left behind in its group (its number stays taken while any member is alive)
    left=false
    kill -KILL -- "-$child" 2>/dev/null && left=true
    child=""
    [ -n "$stopping" ] && break
    if [ "$status" -eq 0 ]; then
      say info "the service exited cleanly; not started again" ',"status":0'
      break
    fi
    lived=$(($(now_ms) - began))
    if [ "$lived" -lt "$steady_ms" ]; then quick=$((quick + 1)); else quick=1; fi
    delay=0
    [ "$quick" -ge 2 ] && delay=$((500 << (quick - 2 < 6 ? quick - 2 : 6)))
    [ "$delay" -gt 30000 ] && delay=30000
    if [ "$status" -gt 128 ]; then
      how=",\"signal\":\"$(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128)))\""
    else
      how=",\"status\":$status"
    fi
    say error "the service died; starting it again" "$how,\"ran_ms\":$lived,\"deaths_in_a_row\":$quick,\"restart_in_ms\":$delay,\"left_behind_killed\":$left"
    if [ "$delay" -gt 0 ] && [ -z "$stopping" ]; then
      sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))" &
      waiter=$!
      # from here a SIGTERM ends the sleep itself; one that came before waiter was set, here
      [ -n "$stopping" ] && kill "$waiter" 2>/dev/null
      wait "$waiter" 2>/dev/null
      waiter=""
    fi
  done
  rm -f "$pidfile"
}
main "$@"
exit 0
