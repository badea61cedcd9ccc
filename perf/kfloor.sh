#!/usr/bin/env bash
# The Kafka floor of the order path at sustained rates (perf/flashsale-kfloor.c): a broker of
# its own (KRaft, one node, as make run and perf/run start it; own ports and run directory),
# nothing of flashsale running, each rate run KFLOOR_REPEATS times for KFLOOR_SECONDS; prints
# each run's JSON and a table of medians (answered/s, p50/p99, machine / broker / clients CPU).
#
#   perf/kfloor.sh [RATE ...]        (default 1000 2000 4000 5000 8000)
# Settings: KFLOOR_SECONDS (20), KFLOOR_REPEATS (3), KFLOOR_READERS (5), KFLOOR_SAGA (0; 1: the
# whole decisions-only flow, six records and two transactional hops per order, see
# flashsale-kfloor --saga), KFLOOR_WARMUP_S (60: one run at 2,000/s first, not counted: the
# broker's JIT compiler takes a core for its first minutes), FLASHSALE_PARTITIONS (6),
# FLASHSALE_BUILD_DIR (build). Run it alone on the machine, like every benchmark.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
BUILD=${FLASHSALE_BUILD_DIR:-$root/build}
RATES=${*:-1000 2000 4000 5000 8000}
SECONDS_PER=${KFLOOR_SECONDS:-20}
REPEATS=${KFLOOR_REPEATS:-3}
READERS=${KFLOOR_READERS:-5}
SAGA=()
if [ "${KFLOOR_SAGA:-0}" = 1 ]; then SAGA=(--saga); fi
WARMUP_S=${KFLOOR_WARMUP_S:-60}
export FLASHSALE_RUN_DIR=$root/.run-kfloor FLASHSALE_KAFKA_PORT=${KFLOOR_KAFKA_PORT:-34092}
export FLASHSALE_KAFKA_CONTROLLER_PORT=$((FLASHSALE_KAFKA_PORT + 1)) FLASHSALE_PG_PORT=34432
export FLASHSALE_REDIS_PORT=34379 FLASHSALE_KAFKA_HEAP=${FLASHSALE_KAFKA_HEAP:-1g}
export FLASHSALE_BUILD_DIR=$BUILD
rm -rf "$FLASHSALE_RUN_DIR"
out=$root/perf/out/kfloor-$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p "$root/perf/out"
"$root/infra/flashsale.sh" start --infra-only >/dev/null
trap '"$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true' EXIT
. "$FLASHSALE_RUN_DIR/env"
bpid=$(cat "$FLASHSALE_RUN_DIR"/pids/kafka*.pid | head -1)
echo "kfloor: broker pid $bpid, rates: $RATES, $REPEATS x ${SECONDS_PER}s, $READERS readers${SAGA:+, with the order saga hop}; runs in $out" >&2
if [ "$WARMUP_S" -gt 0 ]; then
  echo "kfloor: warming the broker up (2000/s for ${WARMUP_S}s, not counted)" >&2
  "$BUILD/perf/flashsale-kfloor" --rate 2000 --seconds "$WARMUP_S" --readers "$READERS" "${SAGA[@]}" >/dev/null ||
    echo "kfloor: the warm-up run fell short" >&2
fi
for rate in $RATES; do
  for i in $(seq "$REPEATS"); do
    echo "kfloor: rate $rate, run $i/$REPEATS" >&2
    "$BUILD/perf/flashsale-kfloor" --rate "$rate" --seconds "$SECONDS_PER" --readers "$READERS" \
      "${SAGA[@]}" --broker-pid "$bpid" >>"$out" || echo "kfloor: run at $rate/s fell short (see its line)" >&2
    sleep 2
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| offered/s | answered/s | p50 ms | p99 ms (runs) | machine CPU % | broker CPU % | clients CPU % |")
print("|---|---|---|---|---|---|---|")
for rate in sorted({r["rate"] for r in runs}):
    rs = [r for r in runs if r["rate"] == rate]
    m = lambda k: st.median(r[k] for r in rs)
    print("| %d | %.0f | %.2f | %.1f (%s) | %.0f | %.0f | %.0f |" % (
        rate, m("answered_per_s"), m("p50_ms"), m("p99_ms"), " ".join("%.0f" % r["p99_ms"] for r in rs),
        m("machine_cpu_pct"), m("broker_cpu_pct"), m("clients_cpu_pct")))
PY
