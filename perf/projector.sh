#!/usr/bin/env bash
# Read-model benchmark on a dedicated system (own run directory and ports; infrastructure
# only, no workers: the events come from perf/flashsale-synth).
#
#   perf/projector.sh [ORDERS] [RATES]       (50000 orders = 6 events each; "5000 10000 20000")
#
# 1. apply rate: ORDERS orders' events written as fast as possible, then each projector
#    started on the full log alone; events/s from start to "caught up" (its own log);
# 2. lag under sustained load: both projectors running while flashsale-synth writes each
#    RATE events/s for 20 s in turn (waiting for both to catch up in between); the
#    projectors' own lag percentiles (commit time - record time) over 2 s windows: the
#    median window's p50 and p99, the worst window's p99, the largest lag seen;
# 3. GET /api/products/{id}/stock (Redis read model with the API's 10 ms product cache and
#    without it, then PostgreSQL after the Redis model is unset) next to GET /healthz of the
#    same server, with wrk, side by side.
# Writes perf/out/projector-<time>.json and prints a summary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/infra/lib.sh"
ORDERS=${1:-50000}
RATES=${2:-5000 10000 20000}
BUILD="$root/build"
cd "$root"
make -s build >/dev/null
command -v wrk >/dev/null || fs_die "wrk is missing (make deps installs it)"

export FLASHSALE_RUN_DIR="$root/.run-perf-projector"
export FLASHSALE_KAFKA_PORT=$(free_port 32092)
export FLASHSALE_KAFKA_CONTROLLER_PORT=$(free_port $((FLASHSALE_KAFKA_PORT + 1)))
export FLASHSALE_PG_PORT=$(free_port 32432) FLASHSALE_REDIS_PORT=$(free_port 32379)
export FLASHSALE_HTTP_PORT=$(free_port 32080) FLASHSALE_API_PORT=$(free_port 32180) FLASHSALE_ORDER_PORT=$(free_port 32182) FLASHSALE_KAFKA_HEAP=1g
export FLASHSALE_PROJECTOR_REPORT_MS=2000
rm -rf "$FLASHSALE_RUN_DIR"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$root/infra/flashsale.sh" start --infra-only >/dev/null
. "$FLASHSALE_RUN_DIR/env"
logs="$FLASHSALE_RUN_DIR/logs"
out="$here/out"
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
proj="$BUILD/projections/flashsale-projector"

fs_say "writing $ORDERS orders ($((ORDERS * 6)) events + 1000 products) as fast as the broker takes them"
"$BUILD/perf/flashsale-synth" --orders "$ORDERS" >"$out/synth-load-$stamp.json"
events=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"] + 1000)' "$out/synth-load-$stamp.json")

# time from a projector's "started" to "caught up with the log", from its own log lines
catch_up() { # catch_up TARGET -> seconds
  local t=$1 log="$logs/bench-$1.log"
  "$proj" --target "$t" >"$log" 2>&1 &
  local pid=$!
  until grep -q '"caught up with the log"' "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$log" >&2; fs_die "projector $t died"; }
    sleep 0.2
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  /usr/bin/python3 - "$log" <<'PY'
import json, sys, datetime
t = {}
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") in ("started", "caught up with the log"):
        t.setdefault(r["msg"], datetime.datetime.fromisoformat(r["ts"].replace("Z", "+00:00")))
print("%.3f" % (t["caught up with the log"] - t["started"]).total_seconds())
PY
}
for t in postgres redis; do
  fs_say "$t: applying $events events from offset 0"
  secs=$(catch_up "$t")
  echo "$t $secs" >>"$out/apply-$stamp.txt"
  fs_say "$t: $events events in ${secs}s = $(/usr/bin/python3 -c "print(round($events / $secs))") events/s"
done

"$proj" --target postgres >"$logs/sustained-postgres.log" 2>&1 & pids+=($!)
"$proj" --target redis >"$logs/sustained-redis.log" 2>&1 & pids+=($!)
sleep 3
caught_up() { # both projectors have applied everything written so far
  local pg rd
  pg=$(psql "$FLASHSALE_PG_URL" -Atc "SELECT lag_ms FROM projector_status WHERE projector = 'postgres'")
  rd=$(REDISCLI_AUTH=$FLASHSALE_REDIS_PASSWORD redis-cli -p "$FLASHSALE_REDIS_PORT" --no-auth-warning \
       EVAL "return redis.call('HGET', 'fs:rm:' .. redis.call('GET', 'fs:rm:gen') .. ':meta', 'lag_ms')" 0)
  [ "$pg" = 0 ] && [ "$rd" = 0 ]
}
: >"$out/steps-$stamp.txt"
for rate in $RATES; do
  fs_say "sustained: both projectors running, $rate events/s for 20 s"
  t0=$(date +%s.%N)
  "$BUILD/perf/flashsale-synth" --orders $((rate * 20 / 6)) --rate "$rate" >"$out/synth-$rate-$stamp.json" 2>/dev/null
  t1=$(date +%s.%N)
  for _ in $(seq 300); do sleep 1; caught_up && break; done
  echo "$rate $t0 $t1 $(date +%s.%N)" >>"$out/steps-$stamp.txt"
done

fs_say "GET stock (Redis with and without the 10 ms product cache, then PostgreSQL) next to GET /healthz, wrk -t2 -c64 -d8s each"
url="http://127.0.0.1:$FLASHSALE_HTTP_PORT"
api_pid=
start_api() { # start_api CACHE_MS
  [ -n "$api_pid" ] && { kill "$api_pid"; wait "$api_pid" 2>/dev/null || true; }
  FLASHSALE_STOCK_CACHE_MS=$1 "$BUILD/command-api/flashsale-api" >>"$logs/bench-api.log" 2>&1 &
  api_pid=$!
  pids+=("$api_pid")
  for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fs_die "flashsale-api did not start"
}
start_api 10
pid=$(psql "$FLASHSALE_PG_URL" -Atc "SELECT product_id FROM products ORDER BY product_id LIMIT 1")
curl -fsS "$url/api/products/$pid/stock" | grep -q '"source":"redis"' || fs_die "stock not served from redis"
bench() { wrk -t2 -c64 -d8s "$1" | awk '/Requests\/sec/ {print $2}'; }
triv1=$(bench "$url/healthz"); redis1=$(bench "$url/api/products/$pid/stock")
triv2=$(bench "$url/healthz"); redis2=$(bench "$url/api/products/$pid/stock")
start_api 0
nocache1=$(bench "$url/api/products/$pid/stock"); triv3=$(bench "$url/healthz")
kill "${pids[1]}" 2>/dev/null || true   # the Redis projector, so the model stays unset
REDISCLI_AUTH=$FLASHSALE_REDIS_PASSWORD redis-cli -p "$FLASHSALE_REDIS_PORT" --no-auth-warning DEL fs:rm:gen >/dev/null
curl -fsS "$url/api/products/$pid/stock" | grep -q '"source":"postgres"' || fs_die "stock not served from postgres"
pg1=$(bench "$url/api/products/$pid/stock")

/usr/bin/python3 - "$out" "$stamp" "$events" "$logs" "$triv1" "$redis1" "$triv2" "$redis2" "$pg1" "$nocache1" "$triv3" <<'PY'
import datetime, json, sys
out, stamp, events, logs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
triv1, redis1, triv2, redis2, pg1, nocache1, triv3 = (float(x) for x in sys.argv[5:12])
apply = dict(l.split() for l in open("%s/apply-%s.txt" % (out, stamp)))
steps = []
for line in open("%s/steps-%s.txt" % (out, stamp)):
    rate, t0, t1, t2 = line.split()
    synth = json.load(open("%s/synth-%s-%s.json" % (out, rate, stamp)))
    step = {"rate": int(rate), "written_events_per_s": synth["events_per_s"],
            "caught_up_after_s": round(float(t2) - float(t1), 1)}
    for t in ("postgres", "redis"):
        windows = []
        for l in open("%s/sustained-%s.log" % (logs, t)):
            try:
                r = json.loads(l)
            except ValueError:
                continue
            ts = datetime.datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
            if r.get("msg") in ("progress", "catching up") and float(t0) < ts <= float(t2) + 2 \
                    and r.get("events_per_s", 0) > 0:
                windows.append((r["lag_p50_ms"], r["lag_p99_ms"], r["lag_max_ms"]))
        p99s = sorted(w[1] for w in windows)
        step[t] = {"windows": len(windows), "lag_p50_ms_median": sorted(w[0] for w in windows)[len(windows) // 2],
                   "lag_p99_ms_median": p99s[len(p99s) // 2], "lag_p99_ms_worst": p99s[-1],
                   "lag_max_ms": max(w[2] for w in windows)}
    steps.append(step)
res = {"events": events,
       "apply_events_per_s": {t: round(events / float(s)) for t, s in apply.items()},
       "sustained": steps,
       "stock_rps": {"trivial": [triv1, triv2, triv3], "redis_cached_10ms": [redis1, redis2],
                     "redis_uncached": [nocache1], "postgres": [pg1]},
       "redis_cached_vs_trivial": [round(redis1 / triv1, 2), round(redis2 / triv2, 2)],
       "redis_uncached_vs_trivial": round(nocache1 / triv3, 2),
       "postgres_vs_trivial": round(pg1 / triv3, 2)}
json.dump(res, open("%s/projector-%s.json" % (out, stamp), "w"), indent=2)
print(json.dumps(res, indent=2))
PY
