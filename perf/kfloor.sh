#!/usr/bin/env bash
# The Kafka floor of the order path at sustained rates (perf/flashsale-kfloor.c): a broker of
# its own (KRaft, one node, as make run and perf/run start it; own ports and run directory),
# nothing of flashsale running, each rate run KFLOOR_REPEATS times for KFLOOR_SECONDS; prints
# each run's JSON and a table of medians (answered/s, p50/p99, machine / broker / clients CPU).
#
#   perf/kfloor.sh [RATE ...]        (default 1000 2000 4000 5000 8000)
#   perf/kfloor.sh --table FILE      the table of an earlier run's perf/out/kfloor-*.jsonl
# Settings: KFLOOR_SECONDS (20), KFLOOR_REPEATS (3), KFLOOR_READERS (5; 4 with the saga), KFLOOR_SAGA (0; 1: the
# whole decisions-only flow, six records and two transactional hops per order, see
# flashsale-kfloor --saga), KFLOOR_WARMUP_S (60: one run at 2,000/s first, not counted: the
# broker's JIT compiler takes a core for its first minutes), FLASHSALE_PARTITIONS (6),
# FLASHSALE_BUILD_DIR (build), KFLOOR_HTTP (0; 1: an HTTP exchange per order besides: the
# trivial server (flashsale-baseline --mode trivial) answers POST /api/orders from
# flashsale-load, 2,000 connections, at the same rate and over the same window as each run,
# so the table shows what the design's Kafka work and a bare HTTP exchange leave of the
# machine; its p99 in the table), KFLOOR_SINKS (0; 1: the read models' least work besides:
# two of the readers write each order to PostgreSQL and to Redis, the stores this script
# starts, see flashsale-kfloor --sinks; their servers' CPU and the p99 lag of each in the
# table), KFLOOR_LIFECYCLE (0; 1: the whole lifecycle with auto-pay, fifteen records and three
# transactional loops per order, see flashsale-kfloor --lifecycle), KFLOOR_PRODUCTS (1000; 1:
# every command in one partition, as the hot-product step), KFLOOR_WORK (none; API,PROC,SAGA,READ:
# µs of CPU each of those roles burns per order besides, standing in for the order's own logic
# as flashsale-ledger times it, see flashsale-kfloor --work; several, space-separated, are
# arms that every repeat runs in turns on the same broker, each repeat starting from the next
# arm, a table row each), KFLOOR_ALTERNATE (0; 1: an arm without work besides, first in the
# turns). Run it alone on the machine, like every benchmark.
set -euo pipefail
table() { # the table of medians of a run file
  python3 - "$1" <<'PY'
import json, sys, statistics as st
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
http = any("http_p99_ms" in r for r in runs)
sinks = any(r.get("sinks") for r in runs)
work = lambda r: tuple(r.get("work_us") or (0, 0, 0, 0))
arms = any(any(work(r)) for r in runs)
print("| offered/s |" + (" work µs per order (API, processor, saga, readers) |" if arms else "") + " answered/s | p50 ms | p99 ms (runs) | machine CPU % | broker CPU % | clients CPU % |"
      + (" stores CPU % | lag p99 ms PostgreSQL / Redis (runs) |" if sinks else "")
      + (" HTTP p99 ms (runs) | HTTP errors |" if http else ""))
print("|---|---|---|---|---|---|---|" + ("---|" if arms else "") + ("---|---|" if sinks else "") + ("---|---|" if http else ""))
for rate, w in sorted({(r["rate"], work(r)) for r in runs}):
    rs = [r for r in runs if r["rate"] == rate and work(r) == w]
    m = lambda k: st.median(r[k] for r in rs)
    short = sum(1 for r in rs if r.get("short"))
    print("| %d%s |%s %.0f | %.2f | %.1f (%s) | %.0f | %.0f | %.0f |" % (
        rate, " (%d run(s) short)" % short if short else "",
        (" %s (%.1f) |" % (", ".join("%g" % x for x in w), sum(w)) if any(w) else " none |") if arms else "",
        m("answered_per_s"), m("p50_ms"), m("p99_ms"), " ".join("%.0f" % r["p99_ms"] for r in rs),
        m("machine_cpu_pct"), m("broker_cpu_pct"), m("clients_cpu_pct"))
        + (" %.0f | %.0f / %.0f (%s) |" % (m("stores_cpu_pct"), m("pg_lag_p99_ms"), m("redis_lag_p99_ms"),
           " ".join("%.0f/%.0f" % (r["pg_lag_p99_ms"], r["redis_lag_p99_ms"]) for r in rs)) if sinks else "")
        + (" %.1f (%s) | %d |" % (m("http_p99_ms"), " ".join("%.0f" % r["http_p99_ms"] for r in rs),
                                 sum(r["http_errors"] for r in rs)) if http else ""))
PY
}
if [ "${1:-}" = --table ]; then table "$2"; exit 0; fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${FLASHSALE_BUILD_DIR:-$root/build}
RATES=${*:-1000 2000 4000 5000 8000}
SECONDS_PER=${KFLOOR_SECONDS:-20}
REPEATS=${KFLOOR_REPEATS:-3}
# five readers of the events alone; with the order saga's hop four (the API's stream, the two
# projectors, the notifier's watch of the products) and the notifier's own
if [ "${KFLOOR_SAGA:-0}" = 1 ] || [ "${KFLOOR_LIFECYCLE:-0}" = 1 ]; then READERS=${KFLOOR_READERS:-4}; else READERS=${KFLOOR_READERS:-5}; fi
OPTS=()
if [ "${KFLOOR_SAGA:-0}" = 1 ]; then OPTS=(--saga); fi
if [ "${KFLOOR_LIFECYCLE:-0}" = 1 ]; then OPTS+=(--lifecycle); fi
OPTS+=(--products "${KFLOOR_PRODUCTS:-1000}")
if [ "${KFLOOR_SINKS:-0}" = 1 ]; then OPTS+=(--sinks); fi
ARMS=("") # what each repeat runs: --work's figures, "" for none
if [ -n "${KFLOOR_WORK:-}" ]; then
  read -r -a ARMS <<<"$KFLOOR_WORK"
  for a in "${ARMS[@]}"; do
    [[ $a =~ ^[0-9.]+(,[0-9.]+){3}$ ]] || { echo "kfloor: KFLOOR_WORK: '$a' is not API,PROC,SAGA,READ (µs)" >&2; exit 2; }
  done
  [ "${#ARMS[@]}" -gt 0 ] || ARMS=("")
  if [ "${KFLOOR_ALTERNATE:-0}" = 1 ]; then ARMS=("" "${ARMS[@]}"); fi
fi
WARMUP_S=${KFLOOR_WARMUP_S:-60}
export FLASHSALE_RUN_DIR=$root/.run-kfloor FLASHSALE_KAFKA_PORT=${KFLOOR_KAFKA_PORT:-25092}
export FLASHSALE_KAFKA_CONTROLLER_PORT=$((FLASHSALE_KAFKA_PORT + 1)) FLASHSALE_PG_PORT=25532
export FLASHSALE_REDIS_PORT=25379 FLASHSALE_KAFKA_HEAP=${FLASHSALE_KAFKA_HEAP:-1g}
export FLASHSALE_BUILD_DIR=$BUILD
rm -rf "$FLASHSALE_RUN_DIR"
out=$root/perf/out/kfloor-$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p "$root/perf/out"
"$root/infra/flashsale.sh" start --infra-only >/dev/null
trap '"$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true' EXIT
. "$FLASHSALE_RUN_DIR/env"
bpid=$(cat "$FLASHSALE_RUN_DIR/pids/kafka.pid" 2>/dev/null || cat "$FLASHSALE_RUN_DIR/pids/kafka-1.pid")
echo "kfloor: broker pid $bpid, rates: $RATES, $REPEATS x ${SECONDS_PER}s, $READERS readers, options: ${OPTS[*]:-none}, arms of work per order ([]: none): $(printf "[%s]" "${ARMS[@]}"); runs in $out" >&2
HTTP=${KFLOOR_HTTP:-0}
if [ "$HTTP" = 1 ]; then
  ulimit -n "$(ulimit -Hn)" # 2,000 connections on each side
  hport=25190
  while ss -Htan "( sport = :$hport )" | grep -q .; do hport=$((hport + 1)); done
  "$BUILD/perf/flashsale-baseline" --mode trivial --port "$hport" >"$FLASHSALE_RUN_DIR/logs/trivial.log" 2>&1 &
  tpid=$!
  trap 'kill $tpid 2>/dev/null; "$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true' EXIT
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "kfloor: with an HTTP exchange per order (trivial server on port $hport)" >&2
fi
if [ "$WARMUP_S" -gt 0 ]; then
  # A warm-up cut short (e.g. a reader that asked for the watermarks of a topic the broker had
  # not finished creating) leaves its records behind for the first measured run to read and
  # the broker half warm: it is run again, and without a whole one nothing is measured.
  warmed=false
  for try in 1 2 3; do
    echo "kfloor: warming the broker up (2000/s for ${WARMUP_S}s, not counted; try $try of 3)" >&2
    if "$BUILD/perf/flashsale-kfloor" --rate 2000 --seconds "$WARMUP_S" --readers "$READERS" "${OPTS[@]}" >/dev/null; then
      warmed=true
      break
    fi
    echo "kfloor: the warm-up run fell short" >&2
    sleep 5
  done
  $warmed || { echo "kfloor: no whole warm-up in three tries: nothing measured" >&2; exit 1; }
fi
for rate in $RATES; do
  for i in $(seq "$REPEATS"); do
    # the arms in turns: repeat i starts from arm i - 1 (with as many repeats as arms, each
    # arm runs once in every place)
    order=()
    for k in $(seq 0 $((${#ARMS[@]} - 1))); do order+=("${ARMS[$(((k + i - 1) % ${#ARMS[@]}))]}"); done
    for work in "${order[@]}"; do
      WOPTS=()
      [ -z "$work" ] || WOPTS=(--work "$work")
      echo "kfloor: rate $rate, run $i/$REPEATS, work: ${work:-none}" >&2
      hjson=
      if [ "$HTTP" = 1 ]; then
        # over kfloor's 3 s warm-up and its measured window
        hjson=$FLASHSALE_RUN_DIR/http-$rate-$i.json
        "$BUILD/perf/flashsale-load" --url "http://127.0.0.1:$hport" --product floor --members 10000 \
          --connections 2000 --rate "$rate" --duration $((SECONDS_PER + 4)) --json "$hjson" --quiet >/dev/null 2>&1 &
        lpid=$!
      fi
      short=false
      line=$("$BUILD/perf/flashsale-kfloor" --rate "$rate" --seconds "$SECONDS_PER" --readers "$READERS" \
        "${OPTS[@]}" "${WOPTS[@]}" --broker-pid "$bpid") || { short=true; echo "kfloor: run at $rate/s (work: ${work:-none}) fell short (see its line)" >&2; }
      if [ -z "$line" ]; then # it stopped before measuring: nothing to count
        [ -z "$hjson" ] || wait "$lpid" || true
        continue
      fi
      line=$(python3 -c 'import json,sys; k=json.loads(sys.argv[1]); k["short"]=sys.argv[2]=="true"; print(json.dumps(k))' \
        "$line" "$short")
      if [ -n "$hjson" ]; then
        wait "$lpid" || true
        line=$(python3 -c 'import json,sys; k=json.loads(sys.argv[1]); h=json.load(open(sys.argv[2]))
k["http_p99_ms"]=h["latency_ms"]["p99"]; k["http_rps"]=h["rps"]; k["http_errors"]=h["errors"]; print(json.dumps(k))' \
          "$line" "$hjson")
      fi
      echo "$line" >>"$out"
      sleep 2
    done
  done
done
table "$out"
