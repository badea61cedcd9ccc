#!/usr/bin/env bash
# The edge: an nginx instance of its own (Debian's nginx binary, our configuration, our
# directory; never the system's nginx service) in front of flashsale-api.
#
#   infra/edge.sh start     renders the configuration, checks it (nginx -t), starts nginx
#                           under its supervisor (infra/supervise.sh: a crashed nginx is
#                           started again at once, the workers a killed master left behind
#                           killed first); harmless when it already runs
#   infra/edge.sh stop      stops it (graceful, then TERM) and its supervisor
#   infra/edge.sh reload    re-renders and reloads without dropping connections
#   infra/edge.sh status    exit 0 when it runs; 3 when its supervisor is starting it again
#   infra/edge.sh run       renders, then runs nginx in the foreground with its logs on
#                           stdout/stderr (containers: docker-compose.yml's edge)
#
# Settings (environment):
#   FLASHSALE_EDGE_DIR              its directory: configuration, pid, temporary files (required)
#   FLASHSALE_EDGE_LOG_DIR          edge-access.log (JSON lines) and edge-error.log ($FLASHSALE_EDGE_DIR)
#   FLASHSALE_EDGE_ADDR             listen address (127.0.0.1; 0.0.0.0 to serve other hosts)
#   FLASHSALE_EDGE_PORT             listen port (8080)
#   FLASHSALE_API_ADDR / _PORT      the API behind it (127.0.0.1 / 18080)
#   FLASHSALE_SSE_ADDR / _PORT      the API's event-stream listener, where /api/events goes
#                                   (FLASHSALE_API_ADDR / 18081)
#   FLASHSALE_ORDER_ADDR / _PORT    the API's order front, where POST /api/orders goes
#                                   (FLASHSALE_API_ADDR / 0: none, the API itself takes it)
#   FLASHSALE_EDGE_CONN_PER_ADDR    open requests per client address (256)
#   FLASHSALE_EDGE_RATE_PER_ADDR    requests per second per client address (200)
#   FLASHSALE_EDGE_BURST_PER_ADDR   requests above that rate let through at once (400)
#   FLASHSALE_EDGE_HEADER_TIMEOUT_S whole request header within (5)
#   FLASHSALE_EDGE_BODY_TIMEOUT_S   longest pause while a body is read (5)
#   FLASHSALE_EDGE_SEND_TIMEOUT_S   longest pause while a response is written (10)
#   FLASHSALE_EDGE_KEEPALIVE_S      idle client connections are closed after (15)
#   FLASHSALE_EDGE_MAX_BODY         largest request body (16k, the API's own limit)
#   FLASHSALE_EDGE_UPSTREAM_KEEPALIVE idle connections to the API kept per worker (16)
#   FLASHSALE_EDGE_WORKERS          worker processes (2). civetweb gives every connection a
#                                   thread, idle kept-alive ones too: keep workers x keepalive
#                                   well below the API's FLASHSALE_HTTP_THREADS (128 under
#                                   make run); edge.sh refuses more than half of it when
#                                   FLASHSALE_HTTP_THREADS is set
#   The upstream idle timeout is 50 s: the API's keep-alive must be longer (make run: 60 s).
#   FLASHSALE_EDGE_METRICS_ALLOW    addresses or CIDRs that may read /metrics, space or comma
#                                   separated ("127.0.0.0/8 ::1": loopback)
#   FLASHSALE_WEB_ROOT              static files served before the API is asked (web/)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

DIR=${FLASHSALE_EDGE_DIR:?FLASHSALE_EDGE_DIR is required}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
LOGS=${FLASHSALE_EDGE_LOG_DIR:-$DIR}
mkdir -p "$LOGS"
LOGS=$(cd "$LOGS" && pwd)
ADDR=${FLASHSALE_EDGE_ADDR:-127.0.0.1}
PORT=${FLASHSALE_EDGE_PORT:-8080}
API_ADDR=${FLASHSALE_API_ADDR:-127.0.0.1}
API_PORT=${FLASHSALE_API_PORT:-18080}
SSE_ADDR=${FLASHSALE_SSE_ADDR:-$API_ADDR}
SSE_PORT=${FLASHSALE_SSE_PORT:-18081}
ORDER_ADDR=${FLASHSALE_ORDER_ADDR:-$API_ADDR}
ORDER_PORT=${FLASHSALE_ORDER_PORT:-0}
if [ "$ORDER_PORT" = 0 ]; then ORDER_ADDR=$API_ADDR ORDER_PORT=$API_PORT; fi
WEB_ROOT=${FLASHSALE_WEB_ROOT:-$FS_ROOT/web}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fs_die "nginx is not installed (run infra/bootstrap.sh)"

conf="$DIR/nginx.conf"
pidf="$DIR/nginx.pid"          # nginx's own: written once its sockets are open
masterf="$DIR/master.pid"      # the supervisor's: the master it started, while it lives
supf="$DIR/supervisor.pid"
alive() { fs_running "$@"; }
pid_of() { fs_read_pid "$1"; } # (the process the file names, not a later one with its number)
# nginx's own pid file, when it names an nginx ("nginx: master process ...")
nginx_pid() {
  local p cmd; p=$(pid_of "$pidf") || return 1
  cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == nginx* || "$cmd" == */nginx* ]] && echo "$p"
}
# it runs: its master is up and has written its pid file (an older, unsupervised nginx:
# nginx's pid file alone)
running() {
  local p; p=$(nginx_pid) || return 1
  if pid_of "$supf" >/dev/null; then [ "$(pid_of "$masterf")" = "$p" ]; fi
}

int_setting() { # int_setting NAME DEFAULT -> the value, or dies naming the setting
  local v=${!1:-$2}
  [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -gt 0 ] || fs_die "$1=\"$v\": expected a positive integer"
  echo "$v"
}

render() {
  local conn rate burst ht bt st ka body upka workers nofile wc allow="" user="" u="" g=""
  conn=$(int_setting FLASHSALE_EDGE_CONN_PER_ADDR 256)
  rate=$(int_setting FLASHSALE_EDGE_RATE_PER_ADDR 200)
  burst=$(int_setting FLASHSALE_EDGE_BURST_PER_ADDR 400)
  ht=$(int_setting FLASHSALE_EDGE_HEADER_TIMEOUT_S 5)
  bt=$(int_setting FLASHSALE_EDGE_BODY_TIMEOUT_S 5)
  st=$(int_setting FLASHSALE_EDGE_SEND_TIMEOUT_S 10)
  ka=$(int_setting FLASHSALE_EDGE_KEEPALIVE_S 15)
  upka=$(int_setting FLASHSALE_EDGE_UPSTREAM_KEEPALIVE 16)
  body=${FLASHSALE_EDGE_MAX_BODY:-16k}
  [[ "$body" =~ ^[0-9]+[kKmM]?$ ]] || fs_die "FLASHSALE_EDGE_MAX_BODY=\"$body\": expected a size such as 16k"
  workers=$(int_setting FLASHSALE_EDGE_WORKERS 2)
  if [ -n "${FLASHSALE_HTTP_THREADS:-}" ] && [ $((workers * upka * 2)) -gt "$FLASHSALE_HTTP_THREADS" ]; then
    fs_die "FLASHSALE_EDGE_WORKERS x FLASHSALE_EDGE_UPSTREAM_KEEPALIVE ($workers x $upka) idle connections would hold more than half of the API's $FLASHSALE_HTTP_THREADS threads"
  fi
  # descriptors: a proxied request holds two (client and API side), both counted in
  # worker_connections; the limit is the hard one we have (raising it needs privileges)
  nofile=$(ulimit -Hn 2>/dev/null || echo 65536)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nofile" -gt 1048576 ] && nofile=1048576
  wc=$((nofile - 100)); [ "$wc" -gt 65536 ] && wc=65536
  local allow_list=${FLASHSALE_EDGE_METRICS_ALLOW:-127.0.0.0/8 ::1}
  for a in ${allow_list//,/ }; do
    [[ "$a" =~ ^[0-9A-Fa-f.:/]+$ ]] || fs_die "FLASHSALE_EDGE_METRICS_ALLOW: \"$a\" is not an address or CIDR"
    allow+="            allow $a;"$'\n'
  done
  # As root, nginx's workers run as an unprivileged user; they write only its temporary files.
  if [ "$(id -u)" -eq 0 ]; then
    u=nobody g=nogroup
    id www-data >/dev/null 2>&1 && u=www-data g=www-data
    user="user $u $g;"
  fi
  local alog="$LOGS/edge-access.log" abuf=" buffer=64k flush=1s" elog="$LOGS/edge-error.log"
  if [ "${1:-}" = foreground ]; then alog=/dev/stdout abuf="" elog=stderr; fi
  local listen="$ADDR:$PORT"
  case "$ADDR" in *:*) listen="[$ADDR]:$PORT" ;; esac
  mkdir -p "$DIR/tmp/body" "$DIR/tmp/proxy" "$DIR/tmp/fastcgi" "$DIR/tmp/uwsgi" "$DIR/tmp/scgi"
  [ -z "$u" ] || chown -R "$u:$g" "$DIR/tmp"
  local somax; somax=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
  local tmp="$conf.new"
  # the allow lines go in through a file: sed cannot carry newlines in a replacement
  printf '%s' "$allow" >"$DIR/metrics-allow.inc"
  sed -e "s|@USER@|$user|" -e "s|@WORKERS@|$workers|" -e "s|@NOFILE@|$nofile|" \
      -e "s|@WORKER_CONNECTIONS@|$wc|" -e "s|@DIR@|$DIR|g" -e "s|@LOGS@|$LOGS|g" \
      -e "s|@HEADER_TIMEOUT@|$ht|" -e "s|@BODY_TIMEOUT@|$bt|" -e "s|@SEND_TIMEOUT@|$st|" \
      -e "s|@KEEPALIVE_TIMEOUT@|$ka|" -e "s|@MAX_BODY@|$body|g" -e "s|@RATE_PER_ADDR@|$rate|" \
      -e "s|@API@|$API_ADDR:$API_PORT|" -e "s|@SSE@|$SSE_ADDR:$SSE_PORT|" -e "s|@ORDERS@|$ORDER_ADDR:$ORDER_PORT|" -e "s|@UPSTREAM_KEEPALIVE@|$upka|" -e "s|@UPSTREAM_IDLE@|50|" \
      -e "s|@LISTEN@|$listen|" -e "s|@BACKLOG@|$somax|" -e "s|@CONN_PER_ADDR@|$conn|g" \
      -e "s|@BURST_PER_ADDR@|$burst|g" -e "s|@WEB_ROOT@|$WEB_ROOT|" \
      -e "s|@ACCESS_LOG@|$alog|" -e "s|@ACCESS_LOG_BUFFER@|$abuf|" -e "s|@ERROR_LOG@|$elog|" \
      -e "/@METRICS_ALLOW@/{r $DIR/metrics-allow.inc" -e "d}" \
      "$here/edge/nginx.conf.in" >"$tmp"
  if ! "$NGINX" -t -q -p "$DIR" -c "$tmp" -e "$LOGS/edge-error.log" 2>"$DIR/nginx-t.log"; then
    cat "$DIR/nginx-t.log" >&2
    fs_die "the edge configuration does not pass nginx -t (rendered into $tmp)"
  fi
  mv "$tmp" "$conf"
}

cmd_start() {
  # one start at a time (two would each start a supervisor, and with reuseport both nginx
  # instances would serve)
  exec 9>"$DIR/start.lock"
  flock -w 30 9 || fs_die "another infra/edge.sh start holds $DIR/start.lock"
  if running; then return 0; fi
  local mine=""
  if ! pid_of "$supf" >/dev/null; then
    mine=1
    # anything else on the port (a stray nginx, another program) would share it through
    # reuseport, or keep nginx from listening: refuse
    if port_listened "$PORT"; then
      fs_die "port $PORT is already listened on (ss -ltnp 'sport = :$PORT'); the edge was not started"
    fi
    render
    fs_say "edge (nginx): listening on $ADDR:$PORT, API behind it at $API_ADDR:$API_PORT (log $LOGS/edge-access.log)"
    rm -f "$pidf" "$masterf"
    # in the foreground under its supervisor, whose lines go to the error log with nginx's
    # (fs_supervised does not pass the lock's descriptor on: the lock is the open file's, and
    # would be held for as long as the supervisor and nginx live, hanging every later start)
    fs_supervised edge "$masterf" "$supf" "$LOGS/edge-error.log" -- \
      "$NGINX" -p "$DIR" -c "$conf" -e "$LOGS/edge-error.log" -g "daemon off;"
  fi
  # (a supervisor of an earlier start may be between two restarts: up to 30 s; it is left
  # alone, only one this call started is stopped when nginx does not come up)
  local n=100; [ -n "$mine" ] || n=350
  for _ in $(seq "$n"); do running && return 0; sleep 0.1; done
  tail -5 "$LOGS/edge-error.log" >&2 || true
  [ -z "$mine" ] || { cmd_stop; fs_die "nginx did not start within 10 s (see $LOGS/edge-error.log)"; }
  fs_die "nginx is not running; its supervisor keeps starting it again (see $LOGS/edge-error.log)"
}

cmd_stop() {
  local spid mpid
  # the master: the supervisor's record of it (nginx's own pid file outlives a killed
  # master); without a supervisor (an older run), nginx's pid file
  if spid=$(pid_of "$supf"); then mpid=$(pid_of "$masterf") || mpid=""
  else spid="" mpid=$(nginx_pid) || mpid=""; fi
  # graceful first: the master finishes the requests in flight and exits 0, which ends its
  # supervisor too
  [ -z "$mpid" ] || kill -QUIT "$mpid" 2>/dev/null || true
  for _ in $(seq 50); do alive "$mpid" || break; sleep 0.1; done
  # then TERM: the supervisor passes it on (also to a master it is just starting)
  [ -z "$spid" ] || kill -TERM "$spid" 2>/dev/null || true
  [ -z "$mpid" ] || kill -TERM "$mpid" 2>/dev/null || true
  for _ in $(seq 30); do alive "$spid" || alive "$mpid" || break; sleep 0.1; done
  # what is left, workers too (the master's process group), and a master the supervisor
  # started meanwhile
  # (a group's number is not reused while any member lives)
  [ -z "$mpid" ] || kill -KILL -- "-$mpid" 2>/dev/null || true
  [ -z "$mpid" ] || ! alive "$mpid" || kill -KILL "$mpid" 2>/dev/null || true
  mpid=$(pid_of "$masterf") && kill -KILL -- "-$mpid" "$mpid" 2>/dev/null || true
  [ -z "$spid" ] || ! alive "$spid" || kill -KILL "$spid" 2>/dev/null || true
  rm -f "$pidf" "$masterf" "$supf"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  reload) render; running && kill -HUP "$(cat "$pidf")" ;;
  status) running || { pid_of "$supf" >/dev/null && exit 3; } ;;
  run) render foreground; exec "$NGINX" -p "$DIR" -c "$conf" -e stderr -g "daemon off;" ;;
  *) echo "usage: $0 start | stop | reload | status | run" >&2; exit 2 ;;
esac
