#!/usr/bin/env bash
# Start, stop and inspect a local flashsale: Kafka (KRaft: one node, or three), PostgreSQL, Redis,
# every flashsale service that has been built, and the edge (nginx, infra/edge.sh) in front of
# the API, all on loopback under one run directory. Each flashsale service runs under a
# supervisor (infra/supervise.sh): one that crashes or is killed is started again at once, as
# docker-compose.yml's `restart: on-failure` does; `stop` ends the supervision first.
#
#   infra/flashsale.sh start [--infra-only]   idempotent; waits until ready; prints where things are
#   infra/flashsale.sh stop                   stops everything it started (data is kept)
#   infra/flashsale.sh status                 health of each part; exit 1 if any is down
#   infra/flashsale.sh env                    prints the environment file path
#
# Settings (environment): FLASHSALE_RUN_DIR (.run), FLASHSALE_BUILD_DIR (build),
# FLASHSALE_KAFKA_PORT (19092), FLASHSALE_KAFKA_CONTROLLER_PORT (19093), FLASHSALE_PG_PORT
# (15432), FLASHSALE_REDIS_PORT (16379), FLASHSALE_HTTP_PORT (8080: the public port, the
# edge's), FLASHSALE_API_PORT (18080: the API itself, behind the edge; for benchmarks),
# FLASHSALE_SSE_PORT (18081: its event streams), FLASHSALE_ORDER_PORT (18082: its order front,
# where the edge sends POST /api/orders; 0: none, civetweb takes them),
# FLASHSALE_HTTP_THREADS (128: the API's worker threads, sized for the edge's connections),
# FLASHSALE_PARTITIONS (6), FLASHSALE_KAFKA_HEAP (768m, per node), FLASHSALE_KAFKA_JVM_OPTS
# (more options for the broker's JVM, e.g. GC logging), FLASHSALE_KAFKA_GC (its collector:
# "-XX:+UseG1GC -XX:MaxGCPauseMillis=20"), FLASHSALE_KAFKA_PROPERTIES (more broker settings,
# key=value separated by spaces, after ours: for measuring one), FLASHSALE_KAFKA_NODES (1;
# 3 or 5: a KRaft cluster on loopback, node i on FLASHSALE_KAFKA_PORT + 2(i-1), every topic
# with three replicas and min.insync.replicas 2), FLASHSALE_BACKGROUND_NICE (5: the niceness
# added to the services that follow a decision, the sagas, projectors and notifier, so that a
# full machine schedules the API and the inventory processor first; 5 cut the whole
# lifecycle's answers' p50 at 700 orders/s by 37 % and raised the read models' lag p99 by
# 14-22 %, to ~0.3 s; 10 about doubled or tripled the lag; 0 schedules all alike;
# perf/RESULTS.md, 2026-12-05); the edge's own settings are
# infra/edge.sh's. Defaults stay away from 9092/5432/6379 so that servers already running on
# a machine are never touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

RUN=${FLASHSALE_RUN_DIR:-.run}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
BUILD=${FLASHSALE_BUILD_DIR:-build}
case "$BUILD" in /*) ;; *) BUILD="$FS_ROOT/$BUILD" ;; esac
KAFKA_PORT=${FLASHSALE_KAFKA_PORT:-19092}
KAFKA_CPORT=${FLASHSALE_KAFKA_CONTROLLER_PORT:-19093}
PG_PORT=${FLASHSALE_PG_PORT:-15432}
REDIS_PORT=${FLASHSALE_REDIS_PORT:-16379}
HTTP_PORT=${FLASHSALE_HTTP_PORT:-8080}
API_PORT=${FLASHSALE_API_PORT:-18080}
SSE_PORT=${FLASHSALE_SSE_PORT:-18081}
ORDER_PORT=${FLASHSALE_ORDER_PORT:-18082}
API_THREADS=${FLASHSALE_HTTP_THREADS:-128}
PARTITIONS=${FLASHSALE_PARTITIONS:-6}
KAFKA_HEAP=${FLASHSALE_KAFKA_HEAP:-768m}
NODES=${FLASHSALE_KAFKA_NODES:-1}
case "$NODES" in 1|3|5) ;; *) fs_die "FLASHSALE_KAFKA_NODES: 1, 3 or 5 (a KRaft quorum needs an odd count), not '$NODES'" ;; esac
# a service is an instance name; svc_exe/svc_args say what it runs
SERVICES=(flashsale-api flashsale-inventory flashsale-orders flashsale-payments
          flashsale-projector-postgres flashsale-projector-redis flashsale-notifier)
BACKGROUND_NICE=${FLASHSALE_BACKGROUND_NICE:-5} # checked when services start (cmd_start)
svc_exe() { case "$1" in flashsale-projector-*) echo flashsale-projector ;; *) echo "$1" ;; esac; }
# services without an HTTP server of their own serve /metrics (per-stage timing) here
METRICS_BASE=${FLASHSALE_METRICS_BASE_PORT:-18100}
svc_metrics_port() {
  case "$1" in
    flashsale-inventory) echo $((METRICS_BASE + 1)) ;;
    flashsale-orders) echo $((METRICS_BASE + 2)) ;;
    flashsale-payments) echo $((METRICS_BASE + 3)) ;;
  esac
}
svc_args() {
  case "$1" in
    flashsale-projector-postgres) echo "--target postgres" ;;
    flashsale-projector-redis) echo "--target redis" ;;
  esac
}

mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/secrets"
chmod 700 "$RUN/secrets"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
running() { fs_running "$@"; } # running PID: the process exists and is not a zombie
# read_pid FILE: the pid in FILE when that process runs and is the one FILE names (a zombie
# is dead; lib.sh's fs_read_pid checks a supervisor's and a supervised process's identity);
# pid_alive FILE: whether it does
read_pid() { fs_read_pid "$1"; }
pid_alive() { read_pid "$1" >/dev/null; }
secret() { # secret NAME -> prints it, generating it on first use
  local f="$RUN/secrets/$1"
  [ -s "$f" ] || (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 40 >"$f")
  cat "$f"
}
secret_hex() { # secret_hex NAME -> 64 hex characters (32 random bytes), generated on first use
  local f="$RUN/secrets/$1"
  [ -s "$f" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  cat "$f"
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt $((secs * 5)) ]; then fs_say "$what did not become ready in ${secs}s"; return 1; fi
    sleep 0.2
  done
}

# supervised NAME LOG -- COMMAND...: lib.sh's fs_supervised with $RUN/pids/NAME.pid and
# NAME.supervisor.pid
supervised() { local name=$1 log=$2; shift 3; fs_supervised "$name" "$RUN/pids/$name.pid" "$RUN/pids/$name.supervisor.pid" "$log" -- "$@"; }
# sup_stop NAME SIGNAL TENTHS: stops a supervised process for good: its supervisor ends (TERM:
# it passes the TERM on and starts nothing again; KILL: it dies at once, as its process does)
# and the process gets SIGNAL; whatever is left is SIGKILLed after TENTHS tenths of a second.
# A process left from an older run without a supervisor just gets SIGNAL.
sup_stop() {
  local name=$1 sig=$2 n=$3 spid pid
  spid=$(read_pid "$RUN/pids/$name.supervisor.pid") || spid=""
  pid=$(read_pid "$RUN/pids/$name.pid") || pid=""
  if [ -n "$spid" ]; then
    if [ "$sig" = KILL ]; then kill -9 "$spid" 2>/dev/null || true; else kill -TERM "$spid" 2>/dev/null || true; fi
  fi
  [ -z "$pid" ] || kill -s "$sig" "$pid" 2>/dev/null || true
  for _ in $(seq "$n"); do
    { [ -n "$pid" ] && running "$pid"; } || { [ -n "$spid" ] && running "$spid"; } || break
    sleep 0.1
  done
  [ -z "$pid" ] || ! running "$pid" || kill -9 "$pid" 2>/dev/null || true
  # (one its supervisor was just starting)
  pid=$(read_pid "$RUN/pids/$name.pid") && kill -9 "$pid" 2>/dev/null || true
  [ -z "$spid" ] || ! running "$spid" || kill -9 "$spid" 2>/dev/null || true
  rm -f "$RUN/pids/$name.pid" "$RUN/pids/$name.supervisor.pid"
}

# ---- PostgreSQL -------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PG_USER_OS=""
if [ "$(id -u)" -eq 0 ]; then PG_USER_OS=postgres; fi
as_pg() { if [ -n "$PG_USER_OS" ]; then runuser -u "$PG_USER_OS" -- "$@"; else "$@"; fi; }
pg_datadir() {
  # PostgreSQL refuses to run as root: when we are root it runs as the 'postgres' user, which
  # must be able to reach the data directory. If the run directory is not reachable for it
  # (e.g. under /root), the data lives in /var/tmp, named after the run directory.
  local d="$RUN/postgres"
  if [ -f "$RUN/postgres.location" ]; then cat "$RUN/postgres.location"; return; fi
  if [ -n "$PG_USER_OS" ]; then
    mkdir -p "$d"; chown "$PG_USER_OS" "$d"
    if ! runuser -u "$PG_USER_OS" -- test -w "$d" 2>/dev/null; then
      d="/var/tmp/flashsale-pg-$(printf %s "$RUN" | md5sum | cut -c1-12)"
      mkdir -p "$d"; chown "$PG_USER_OS" "$d"; chmod 700 "$d"
    fi
  fi
  echo "$d" >"$RUN/postgres.location"
  echo "$d"
}
pg_start() {
  local bin; bin=$(pg_bin); [ -n "$bin" ] || fs_die "PostgreSQL server binaries not found (run infra/bootstrap.sh)"
  local d; d=$(pg_datadir)
  local pass; pass=$(secret pg-password)
  if [ ! -f "$d/data/PG_VERSION" ]; then
    fs_say "PostgreSQL: initdb in $d/data"
    local pwfile="$d/.pw"
    (umask 077; printf '%s\n' "$pass" >"$pwfile")
    [ -z "$PG_USER_OS" ] || chown "$PG_USER_OS" "$pwfile"
    as_pg "$bin/initdb" -D "$d/data" -U flashsale --pwfile="$pwfile" --auth-local=scram-sha-256 \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$RUN/logs/postgres-initdb.log" 2>&1 ||
      { rm -f "$pwfile"; tail -20 "$RUN/logs/postgres-initdb.log"; fs_die "initdb failed"; }
    rm -f "$pwfile"
  fi
  if pid_alive "$RUN/pids/postgres.supervisor.pid" || as_pg "$bin/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then
    wait_for 60 PostgreSQL pg_up || fs_die "PostgreSQL does not answer (see $d/postgres.log)"
    return 0
  fi
  port_listened "$PG_PORT" && fs_die "PostgreSQL: port $PG_PORT is already listened on by another program (ss -ltnp 'sport = :$PG_PORT')"
  fs_say "PostgreSQL: starting on 127.0.0.1:$PG_PORT"
  # the postmaster in the foreground under its supervisor (as the postgres user when we are
  # root: setpriv execs it, where runuser would stay in between and SIGKILL it 2 s after a
  # SIGTERM); it restarts crashed backends itself, the supervisor a killed postmaster
  local user=()
  [ -z "$PG_USER_OS" ] || user=(setpriv --reuid="$PG_USER_OS" --regid="$PG_USER_OS" --init-groups --)
  supervised postgres "$d/postgres.log" -- "${user[@]}" "$bin/postgres" -D "$d/data" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=200 \
    -c shared_buffers=256MB -c synchronous_commit=on -c fsync=on
  ln -sf "$d/postgres.log" "$RUN/logs/postgres.log" 2>/dev/null || true
  wait_for 60 PostgreSQL pg_up || { tail -20 "$d/postgres.log"; pg_stop; fs_die "PostgreSQL did not start"; }
  if ! PGPASSWORD=$pass psql -h 127.0.0.1 -p "$PG_PORT" -U flashsale -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='flashsale'" | grep -q 1; then
    PGPASSWORD=$pass psql -h 127.0.0.1 -p "$PG_PORT" -U flashsale -d postgres -qc "CREATE DATABASE flashsale" >/dev/null
  fi
}
pg_stop() {
  local bin d; bin=$(pg_bin); [ -f "$RUN/postgres.location" ] || return 0
  d=$(cat "$RUN/postgres.location")
  # fast shutdown: the postmaster exits 0, which ends its supervisor; then whatever is left
  if [ -n "$bin" ] && [ -f "$d/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  sup_stop postgres TERM 100
}
pg_up() { PGPASSWORD=$(secret pg-password) psql -h 127.0.0.1 -p "$PG_PORT" -U flashsale -d postgres -tAc 'SELECT 1' 2>/dev/null | grep -q 1; }
pg_ok() { PGPASSWORD=$(secret pg-password) psql -h 127.0.0.1 -p "$PG_PORT" -U flashsale -d flashsale -tAc 'SELECT 1' 2>/dev/null | grep -q 1; }

# ---- Redis ------------------------------------------------------------------------------
redis_start() {
  if pid_alive "$RUN/pids/redis.pid" || pid_alive "$RUN/pids/redis.supervisor.pid"; then
    # (its supervisor may be between two restarts: up to 30 s)
    wait_for 35 Redis redis_ok || fs_die "Redis does not answer (see $RUN/logs/redis.log)"
    return 0
  fi
  mkdir -p "$RUN/redis"
  local pass; pass=$(secret redis-password)
  port_listened "$REDIS_PORT" && fs_die "Redis: port $REDIS_PORT is already listened on by another program (ss -ltnp 'sport = :$REDIS_PORT')"
  fs_say "Redis: starting on 127.0.0.1:$REDIS_PORT (AOF on)"
  # The password goes through a config file (mode 600), never on a command line.
  (umask 077; cat >"$RUN/redis/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
dir $RUN/redis
appendonly yes
appendfsync everysec
# The read model is rewritten all the time while its AOF's base (an RDB image) compresses
# about 10:1, so Redis's default trigger (the AOF doubled, at least 64 MB) forked a rewrite
# every ~80 s in a 200 orders/s sale; each one took 0.5-13 s on two cores and slowed
# the Redis projector (make soak, perf/RESULTS.md). Rewrite when the AOF is 5 times its base
# and at least 256 MB: every ~4.5 min at 200 orders/s, 1-3 s each (the projector's lag up to
# ~+130 ms for a few seconds), the AOF on disk below ~300 MB.
auto-aof-rewrite-percentage 400
auto-aof-rewrite-min-size 256mb
save ""
daemonize no
logfile $RUN/logs/redis.log
requirepass $pass
CONF
)
  # in the foreground under its supervisor; a killed Redis is started again from its AOF
  supervised redis "$RUN/logs/redis.log" -- redis-server "$RUN/redis/redis.conf"
  wait_for 20 Redis redis_ok || { tail -5 "$RUN/logs/redis.log" >&2; redis_stop; fs_die "Redis did not start (see $RUN/logs/redis.log)"; }
}
redis_ok() { REDISCLI_AUTH=$(secret redis-password) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
redis_stop() { sup_stop redis TERM 50; } # (SIGTERM: Redis syncs its AOF and exits 0)

# ---- Kafka ------------------------------------------------------------------------------
# One node (default), or FLASHSALE_KAFKA_NODES combined broker+controller nodes: node i
# listens on KAFKA_PORT + 2(i-1) (clients) and KAFKA_CPORT + 2(i-1) (its controller), keeps
# its data in $RUN/kafka-i and its pid in kafka-i.pid (one node: $RUN/kafka, kafka.pid).
kafka_nodes() { seq 1 "$NODES"; }
kafka_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
kafka_cport() { echo $((KAFKA_CPORT + 2 * ($1 - 1))); }
kafka_name() { if [ "$NODES" -eq 1 ]; then echo kafka; else echo "kafka-$1"; fi; }
kafka_brokers() {
  local out="" i
  for i in $(kafka_nodes); do out="${out:+$out,}127.0.0.1:$(kafka_port "$i")"; done
  echo "$out"
}
kafka_voters() {
  local out="" i
  for i in $(kafka_nodes); do out="${out:+$out,}$i@127.0.0.1:$(kafka_cport "$i")"; done
  echo "$out"
}
kafka_cluster_id() { # shared by every node of the run directory, drawn on first use
  local f="$RUN/kafka.cluster"
  if [ ! -s "$f" ]; then
    # a KRaft cluster id is 16 random bytes, URL-safe base64; one starting with '-' would be
    # read as an option by the storage tool (1 in 32 runs failed so), so draw again
    local cluster=-
    while [ "${cluster#-}" != "$cluster" ]; do
      cluster=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    echo "$cluster" >"$f"
  fi
  cat "$f"
}
kafka_node_start() {
  local i=$1 name; name=$(kafka_name "$1")
  if pid_alive "$RUN/pids/$name.pid" || pid_alive "$RUN/pids/$name.supervisor.pid"; then
    if [ -n "${FLASHSALE_KAFKA_PROPERTIES:-}" ]; then
      fs_say "Kafka node $i already runs: FLASHSALE_KAFKA_PROPERTIES takes effect at its next start"
    fi
    return 0
  fi
  local k="$RUN/$name" rf=1 minisr=1
  if [ "$NODES" -ge 3 ]; then rf=3; minisr=2; fi
  mkdir -p "$k/data"
  sed -e "s|@PORT@|$(kafka_port "$i")|g" -e "s|@CPORT@|$(kafka_cport "$i")|g" -e "s|@DATA@|$k/data|g" \
      -e "s|@PARTITIONS@|$PARTITIONS|g" -e "s|@NODE@|$i|g" -e "s|@VOTERS@|$(kafka_voters)|g" \
      -e "s|@RF@|$rf|g" -e "s|@MINISR@|$minisr|g" "$here/kafka/server.properties.in" >"$k/server.properties"
  # With three nodes, a node that stops answering is fenced (its partitions led elsewhere, its
  # replicas out of the in-sync sets) after 4 s without a heartbeat, not Kafka's default 9 s:
  # every acks=all write to a partition it held waits until then. One node keeps Kafka's
  # 2 s / 9 s. 1 s / 4 s brought orders back 12.0-13.4 s after a broker SIGKILL instead of
  # 18.2-20.7 s, but in `make test` the controller fenced its own live broker once ("its
  # session has timed out", 17 s after a restart, two tests on two cores), and with one node
  # a fence takes every partition's leader away (perf/RESULTS.md 2026-12-07, session 36).
  # (Before the properties below: the last of a key wins.)
  if [ "$NODES" -gt 1 ]; then
    printf '%s\n' broker.heartbeat.interval.ms=1000 broker.session.timeout.ms=4000 \
      replica.lag.time.max.ms=10000 >>"$k/server.properties"
  fi
  local prop props=()
  read -ra props <<<"${FLASHSALE_KAFKA_PROPERTIES:-}"
  for prop in "${props[@]}"; do
    case "$prop" in
      [a-z]*=*) printf '%s\n' "$prop" >>"$k/server.properties" ;;
      *) fs_die "FLASHSALE_KAFKA_PROPERTIES: \"$prop\" is not key=value" ;;
    esac
  done
  cp "$here/kafka/log4j.properties" "$k/log4j.properties"
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$k/data/meta.properties" ]; then
    local cluster; cluster=$(kafka_cluster_id)
    fs_say "Kafka node $i: formatting KRaft storage (cluster $cluster)"
    java -cp "$cp" -Dlog4j.configuration="file:$k/log4j.properties" -Dkafka.logs.dir="$RUN/logs" \
      kafka.tools.StorageTool format -t "$cluster" -c "$k/server.properties" \
      >"$RUN/logs/$name-format.log" 2>&1 || { cat "$RUN/logs/$name-format.log"; fs_die "Kafka storage format failed"; }
  fi
  local p; for p in "$(kafka_port "$i")" "$(kafka_cport "$i")"; do
    # (else its supervisor would start a JVM that cannot listen again and again, while the
    # readiness check below saw the other program's port)
    port_listened "$p" && fs_die "Kafka node $i: port $p is already listened on by another program (ss -ltnp 'sport = :$p')"
  done
  fs_say "Kafka $KAFKA_VERSION node $i of $NODES: starting on 127.0.0.1:$(kafka_port "$i") (KRaft controller on $(kafka_cport "$i"))"
  # each node logs to its own directory (log4j's files are named by kafka.logs.dir)
  mkdir -p "$RUN/logs/$name"
  # shellcheck disable=SC2086 # FLASHSALE_KAFKA_GC, _JVM_OPTS: options, split on spaces
  # under its supervisor: a node that dies (a crash, the OOM killer) is started again
  supervised "$name" "$RUN/logs/$name.out" -- \
    java -Xms256m -Xmx"$KAFKA_HEAP" ${FLASHSALE_KAFKA_GC:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} ${FLASHSALE_KAFKA_JVM_OPTS:-} \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$k/log4j.properties" \
    -Dkafka.logs.dir="$( [ "$NODES" -eq 1 ] && echo "$RUN/logs" || echo "$RUN/logs/$name")" -cp "$cp" kafka.Kafka "$k/server.properties"
}
kafka_start() { # kafka_start [node]: every node, or one
  [ -f "$KAFKA_LIBS/.complete" ] || "$here/kafka/fetch.sh"
  command -v java >/dev/null || fs_die "java is not installed (run infra/bootstrap.sh)"
  local i nodes; nodes=${1:-$(kafka_nodes)}
  for i in $nodes; do kafka_node_start "$i"; done
  for i in $nodes; do
    wait_for 90 "Kafka node $i" port_open "$(kafka_port "$i")" ||
      { tail -30 "$RUN/logs/$(kafka_name "$i").out"; kafka_stop "$i"; fs_die "Kafka node $i did not start"; }
  done
}
# kafka_stop [node [signal]]: every node (SIGTERM, then SIGKILL after 30 s), or one; with KILL
# its supervisor dies too: the node stays down until kafka_start (tests: an outage)
kafka_stop() {
  local i nodes sig=${2:-TERM}; nodes=${1:-$(kafka_nodes)}
  for i in $nodes; do sup_stop "$(kafka_name "$i")" "$sig" 300; done
}
kafka_ok() {
  if [ -x "$BUILD/tools/flashsale-topics" ]; then
    FLASHSALE_KAFKA_BROKERS=$(kafka_brokers) "$BUILD/tools/flashsale-topics" check >/dev/null 2>&1
  else
    port_open "$KAFKA_PORT"
  fi
}

# ---- environment file -------------------------------------------------------------------
write_env() {
  local jwt=${FLASHSALE_JWT_SECRET:-} pii=${FLASHSALE_PII_KEY:-}
  if [ -z "$jwt" ]; then jwt=$(secret jwt-secret); fi
  if [ -z "$pii" ]; then pii=$(secret_hex pii-key); fi
  (umask 077; cat >"$RUN/env" <<ENV
# flashsale environment for this run directory (generated by infra/flashsale.sh; mode 600)
export FLASHSALE_RUN_DIR='$RUN'
export FLASHSALE_KAFKA_BROKERS='$(kafka_brokers)'
export FLASHSALE_KAFKA_NODES='$NODES'
export FLASHSALE_REPLICATION='$( [ "$NODES" -ge 3 ] && echo 3 || echo 1)'
export FLASHSALE_PARTITIONS='$PARTITIONS'
export FLASHSALE_PG_URL='postgresql://flashsale:$(secret pg-password)@127.0.0.1:$PG_PORT/flashsale'
export FLASHSALE_REDIS_HOST='127.0.0.1'
export FLASHSALE_REDIS_PORT='$REDIS_PORT'
export FLASHSALE_REDIS_PASSWORD='$(secret redis-password)'
export FLASHSALE_HTTP_PORT='$HTTP_PORT'
export FLASHSALE_API_PORT='$API_PORT'
export FLASHSALE_SSE_PORT='$SSE_PORT'
export FLASHSALE_ORDER_PORT='$ORDER_PORT'
export FLASHSALE_JWT_SECRET='$jwt'
export FLASHSALE_PII_KEY='$pii'
export FLASHSALE_SPOOL_DIR='$RUN/mail'
ENV
)
}

# ---- the edge ---------------------------------------------------------------------------
edge() { FLASHSALE_EDGE_DIR="$RUN/edge" FLASHSALE_EDGE_LOG_DIR="$RUN/logs" FLASHSALE_EDGE_PORT="$HTTP_PORT" FLASHSALE_HTTP_THREADS="$API_THREADS" \
         FLASHSALE_API_PORT="$API_PORT" FLASHSALE_SSE_PORT="$SSE_PORT" FLASHSALE_ORDER_PORT="$ORDER_PORT" "$here/edge.sh" "$@"; }

# ---- services ---------------------------------------------------------------------------
svc_path() { find "$BUILD" -maxdepth 2 -type f -name "$1" -perm -u+x 2>/dev/null | head -n 1; }
svc_start() {
  local name=$1 exe; exe=$(svc_path "$(svc_exe "$name")")
  [ -n "$exe" ] || return 0
  # under its supervisor (infra/supervise.sh), which starts it again itself after a crash
  pid_alive "$RUN/pids/$name.supervisor.pid" && return 0
  pid_alive "$RUN/pids/$name.pid" && return 0 # (started unsupervised, by an older version)
  rm -f "$RUN/pids/$name.pid"
  fs_say "$name: starting (log $RUN/logs/$name.log)"
  # the API holds one descriptor per open connection: allow as many as the system does
  local mport; mport=$(svc_metrics_port "$name")
  # the order path (API, processor) at this script's priority; what follows a decision
  # FLASHSALE_BACKGROUND_NICE lower (nice adds it to the niceness this script runs at), so
  # that under a full machine the answers are scheduled first
  local prio=0
  case "$name" in flashsale-api | flashsale-inventory) ;; *) prio=$BACKGROUND_NICE ;; esac
  ( ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; . "$RUN/env"
    [ -n "$mport" ] && export FLASHSALE_METRICS_ADDR="127.0.0.1:$mport"
    if [ "$name" = flashsale-api ]; then
      # behind the edge: loopback only, the edge's address trusted for X-Forwarded-For, and
      # kept-alive upstream connections that outlive the edge's idle timeout (50 s), so the
      # API never closes one the edge is about to reuse
      export FLASHSALE_HTTP_ADDR=127.0.0.1 FLASHSALE_HTTP_PORT="$API_PORT"
      export FLASHSALE_SSE_PORT="$SSE_PORT" # GET /api/events, proxied by the edge
      export FLASHSALE_ORDER_PORT="$ORDER_PORT" # POST /api/orders, proxied by the edge
      export FLASHSALE_HTTP_THREADS="$API_THREADS"
      export FLASHSALE_TRUSTED_PROXIES="${FLASHSALE_TRUSTED_PROXIES:-127.0.0.1}"
      export FLASHSALE_HTTP_KEEPALIVE_MS="${FLASHSALE_HTTP_KEEPALIVE_MS:-60000}"
    fi
    # shellcheck disable=SC2046
    supervised "$name" "$RUN/logs/$name.log" -- nice -n "$prio" "$exe" $(svc_args "$name") )
}
svc_stop() { # svc_stop NAME...: SIGTERM to each, then waits for each (they stop side by side)
  local name spid pid waits
  local -A sups=() pids=()
  for name in "$@"; do
    # the supervisor first, so that it starts nothing again; it passes the SIGTERM on (to a
    # service it is starting as well), and one more to the service does no harm
    spid=$(read_pid "$RUN/pids/$name.supervisor.pid") && sups[$name]=$spid && kill "$spid" 2>/dev/null || true
    pid=$(read_pid "$RUN/pids/$name.pid") && pids[$name]=$pid && kill "$pid" 2>/dev/null || true
  done
  for name in "$@"; do
    pid=${pids[$name]:-} spid=${sups[$name]:-}
    # the API first answers what it has begun (FLASHSALE_DRAIN_MS, by default the decision
    # wait + 5 s, as the API reads it), then flushes its producers: that and 13 s more before
    # it is killed (20 s by default); the others 10 s. A supervisor ends once its service has.
    waits=100
    [ "$name" = flashsale-api ] &&
      waits=$(( (${FLASHSALE_DRAIN_MS:-$(( ${FLASHSALE_DECISION_WAIT_MS:-2000} + 5000 ))} + 13000) / 100 ))
    for _ in $(seq "$waits"); do
      { [ -n "$pid" ] && running "$pid"; } || { [ -n "$spid" ] && running "$spid"; } || break
      sleep 0.1
    done
    # what is left: the service (the one in the pid file now, if its supervisor was starting
    # one), then its supervisor
    # (and what it left in its process group, as its supervisor would have: the API's
    # audit child)
    [ -z "$pid" ] || ! running "$pid" || kill -9 -- "-$pid" "$pid" 2>/dev/null || true
    pid=$(read_pid "$RUN/pids/$name.pid") && kill -9 -- "-$pid" "$pid" 2>/dev/null || true
    [ -z "$spid" ] || ! running "$spid" || kill -9 "$spid" 2>/dev/null || true
    rm -f "$RUN/pids/$name.pid" "$RUN/pids/$name.supervisor.pid"
  done
}

cmd_start() {
  local infra_only=${1:-}
  if [ "$infra_only" != "--infra-only" ]; then # checked before anything starts
    case "$BACKGROUND_NICE" in [0-9] | 1[0-9]) ;; *) fs_die "FLASHSALE_BACKGROUND_NICE must be 0-19, got '$BACKGROUND_NICE'" ;; esac
  fi
  redis_start
  pg_start
  wait_for 30 PostgreSQL pg_ok
  kafka_start
  write_env
  if [ -x "$BUILD/tools/flashsale-topics" ]; then
    ( . "$RUN/env"; "$BUILD/tools/flashsale-topics" create ) || fs_die "topic creation failed"
  fi
  [ "$infra_only" = "--infra-only" ] && return 0
  for s in "${SERVICES[@]}"; do svc_start "$s"; done
  if [ -n "$(svc_path flashsale-api)" ]; then
    wait_for 30 flashsale-api curl -fsS "http://127.0.0.1:$API_PORT/healthz" ||
      { tail -20 "$RUN/logs/flashsale-api.log"; fs_die "flashsale-api did not start"; }
    edge start
    wait_for 10 edge curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" ||
      { tail -20 "$RUN/logs/edge-error.log"; fs_die "the edge does not answer"; }
    # ready: Kafka, PostgreSQL and Redis reachable and the decision stream caught up
    wait_for 60 readiness curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" ||
      fs_say "warning: not ready yet (curl http://127.0.0.1:$HTTP_PORT/readyz says why)"
  fi
  cat <<MSG

flashsale is running (run directory $RUN)
  HTTP         http://127.0.0.1:$HTTP_PORT   (the edge, nginx; try: curl http://127.0.0.1:$HTTP_PORT/readyz)
  API direct   http://127.0.0.1:$API_PORT  (behind the edge; for benchmarks)
  order front  http://127.0.0.1:$ORDER_PORT  (POST /api/orders, behind the edge; 0: none)
  Kafka        $(kafka_brokers)   ($NODES node(s); kcat -b 127.0.0.1:$KAFKA_PORT -L)
  PostgreSQL   127.0.0.1:$PG_PORT database flashsale, user flashsale
  Redis        127.0.0.1:$REDIS_PORT
  Environment  $RUN/env  (source it to use the tools; holds generated secrets, mode 600)
  JWT secret   $( [ -n "${FLASHSALE_JWT_SECRET:-}" ] && echo "from FLASHSALE_JWT_SECRET" || echo "generated into $RUN/secrets/jwt-secret" )
  A token      . $RUN/env && $BUILD/tools/flashsale-token --sub admin-1 --role admin
  Logs         $RUN/logs/
  Status       make status        Stop: make stop
MSG
}

cmd_stop() {
  edge stop
  # the API first, while the processor still decides what it has begun; then the rest side
  # by side (older runs: one flashsale-projector)
  svc_stop flashsale-api
  svc_stop "${SERVICES[@]:1}" flashsale-projector
  kafka_stop
  pg_stop
  redis_stop
  fs_say "stopped (data kept in $RUN)"
}

cmd_status() {
  local bad=0
  line() { printf '  %-30s %-5s %s\n' "$1" "$2" "$3"; }
  echo "flashsale status (run directory $RUN)"
  # (a process its supervisor is starting again)
  again() { local n p; for n in "$@"; do pid_alive "$RUN/pids/$n.supervisor.pid" || continue
    if p=$(read_pid "$RUN/pids/$n.pid"); then echo " (pid $p: starting, or not answering)"
    else echo " (being started again by its supervisor)"; fi; return; done; true; }
  if kafka_ok; then line kafka ok "$(kafka_brokers)"; else line kafka DOWN "$(kafka_brokers)$(again $(for i in $(kafka_nodes); do kafka_name "$i"; done))"; bad=1; fi
  if [ "$NODES" -gt 1 ]; then
    for i in $(kafka_nodes); do
      if pid_alive "$RUN/pids/kafka-$i.pid"; then line "  kafka node $i" ok "127.0.0.1:$(kafka_port "$i") pid $(cat "$RUN/pids/kafka-$i.pid")"
      else line "  kafka node $i" DOWN "log $RUN/logs/kafka-$i.out$(again "kafka-$i")"; bad=1; fi
    done
  fi
  if pg_ok; then line postgresql ok "127.0.0.1:$PG_PORT"; else line postgresql DOWN "127.0.0.1:$PG_PORT$(again postgres)"; bad=1; fi
  if redis_ok; then line redis ok "127.0.0.1:$REDIS_PORT"; else line redis DOWN "127.0.0.1:$REDIS_PORT$(again redis)"; bad=1; fi
  for s in "${SERVICES[@]}"; do
    [ -n "$(svc_path "$(svc_exe "$s")")" ] || continue
    local mp; mp=$(svc_metrics_port "$s")
    if pid_alive "$RUN/pids/$s.pid"; then
      local unsup=""; pid_alive "$RUN/pids/$s.supervisor.pid" || unsup=" (no supervisor: it will not be started again if it dies; make stop && make run)"
      line "$s" ok "pid $(cat "$RUN/pids/$s.pid")${mp:+, metrics http://127.0.0.1:$mp/metrics}$unsup"
    elif pid_alive "$RUN/pids/$s.supervisor.pid"; then line "$s" DOWN "being started again by its supervisor (log $RUN/logs/$s.log)"; bad=1
    else line "$s" DOWN "log $RUN/logs/$s.log"; bad=1; fi
  done
  if [ -n "$(svc_path flashsale-api)" ]; then
    local est=0; edge status || est=$?
    if [ "$est" -eq 0 ]; then
      local eunsup=""; pid_alive "$RUN/edge/supervisor.pid" || eunsup=" (no supervisor: it will not be started again if it dies; make stop && make run)"
      line edge ok "http://127.0.0.1:$HTTP_PORT (nginx pid $(cat "$RUN/edge/nginx.pid"), API behind it at 127.0.0.1:$API_PORT, log $RUN/logs/edge-access.log)$eunsup"
    elif [ "$est" -eq 3 ]; then line edge DOWN "being started again by its supervisor (log $RUN/logs/edge-error.log)"; bad=1
    else line edge DOWN "log $RUN/logs/edge-error.log"; bad=1; fi
    if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then line "http readiness" ok "http://127.0.0.1:$HTTP_PORT/readyz"; else line "http readiness" DOWN "http://127.0.0.1:$HTTP_PORT/readyz"; bad=1; fi
  fi
  return $bad
}

case "${1:-}" in
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "$RUN/env" ;;
  kafka-stop) kafka_stop "${2:-}" ;;          # (tests: a broker outage; [node])
  kafka-kill) kafka_stop "${2:?node}" KILL ;;  # (tests: SIGKILL one node and its supervisor)
  kafka-pause) kill -STOP "$(cat "$RUN/pids/$(kafka_name "${2:-1}").pid")" ;;  # (tests: a frozen node)
  kafka-resume) kill -CONT "$(cat "$RUN/pids/$(kafka_name "${2:-1}").pid")" ;;
  kafka-start) kafka_start "${2:-}" ;;
  pg-stop) pg_stop ;;            # (tests: PostgreSQL away; start brings it back)
  redis-stop) redis_stop ;;      # (tests: Redis away; start brings it back)
  edge-stop) edge stop ;;        # (tests: the edge away)
  edge-start) edge start ;;
  *) echo "usage: $0 start [--infra-only] | stop | status | env | kafka-stop [node] | kafka-kill node | kafka-pause [node] | kafka-resume [node] | kafka-start [node] | pg-stop | redis-stop | edge-stop | edge-start" >&2; exit 2 ;;
esac
