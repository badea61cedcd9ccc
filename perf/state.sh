#!/usr/bin/env bash
# State after history: how long the API, the inventory processor and the order saga take to
# start, and how much memory they hold, after a long history of orders (a dedicated system:
# own run directory and ports; infrastructure only, the events come from perf/flashsale-synth).
#
#   perf/state.sh [ORDERS] [SPAN_DAYS] [OTHER_ORDERS_BIN]   (1000000 orders over 365 days)
#
# 1. flashsale-synth writes ORDERS paid orders (6 events each) whose ids and times are
#    spread evenly over the last SPAN_DAYS days, as a shop that has sold that long would
#    have them;
# 2. the inventory processor starts on that log: time to rebuild (its "partitions rebuilt"
#    line), then it is stopped and started again (the second rebuild can use the snapshot the
#    first one left, where the build has snapshots);
# 3. the API starts twice in the same way: time from exec to /readyz answering 200, and its
#    resident memory (VmRSS, and the peak VmHWM) once ready;
# 4. the order saga starts twice in the same way: time to its "orders rebuilt" line, the
#    orders it holds then (synth's orders are PAID, so all of those within its day), and its
#    resident memory then (the line's rss_kb, read before it handles any input: after it, it
#    forwards synth's StockReserved events, which would move the figure). Its memory with no
#    orders is read once before synth writes, so bytes per held order = (resident - empty) /
#    held. With OTHER_ORDERS_BIN (another build's flashsale-orders, e.g. the commit before a
#    change), that binary is started the same way, alternating with this build's, on the same
#    log: a side-by-side comparison. It must log rss_kb too (builds from 2026-12-05 on; for an
#    older one, add that field to its two log lines in a worktree), or the script stops.
# This build's API's resident memory is also read once on the empty log, before synth
# writes. Its view holds the orders of the last FLASHSALE_API_ORDER_MEMORY_MS (10 minutes), at
# most FLASHSALE_API_MAX_ORDERS (50,000): with SPAN_DAYS 0 and ORDERS up to that cap,
# (resident - empty) / ORDERS is its memory per held order (the view, its map, and what the
# catch-up leaves). OTHER_API_BIN=PATH (another build's flashsale-api) is started
# alternately with this build's, the same way: side by side (its empty-log memory is not
# read: assumed the same).
# Prints one JSON object; progress on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/infra/lib.sh"
ORDERS=${1:-1000000}
SPAN_DAYS=${2:-365}
BUILD="$root/build"
OTHER_ORDERS=${3:-}
[ -z "$OTHER_ORDERS" ] || [ -x "$OTHER_ORDERS" ] || { echo "not an executable: $OTHER_ORDERS" >&2; exit 2; }
OTHER_API=${OTHER_API_BIN:-}
[ -z "$OTHER_API" ] || [ -x "$OTHER_API" ] || { echo "not an executable: $OTHER_API" >&2; exit 2; }
cd "$root"
make -s build >/dev/null

export FLASHSALE_RUN_DIR="$root/.run-perf-state"
export FLASHSALE_KAFKA_PORT=$(free_port 24092)
export FLASHSALE_KAFKA_CONTROLLER_PORT=$(free_port $((FLASHSALE_KAFKA_PORT + 1)))
export FLASHSALE_PG_PORT=$(free_port 24432) FLASHSALE_REDIS_PORT=$(free_port 24379)
export FLASHSALE_HTTP_PORT=$(free_port 24080) FLASHSALE_API_PORT=$(free_port 24180) FLASHSALE_ORDER_PORT=$(free_port 24182) FLASHSALE_KAFKA_HEAP=1g
rm -rf "$FLASHSALE_RUN_DIR"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$root/infra/flashsale.sh" start --infra-only >/dev/null
. "$FLASHSALE_RUN_DIR/env"
logs="$FLASHSALE_RUN_DIR/logs"

saga_once() { # saga_once LABEL BINARY -> "rebuild_ms held rss_kb"
  local log="$logs/orders-$1.log"
  FLASHSALE_INSTANCE_ID=orders-state "$2" >"$log" 2>&1 & # one static member: rejoins at once
  pid=$!
  until grep -q '"orders rebuilt"' "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$log" >&2; fs_die "the order saga died"; }
    sleep 0.1
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  /usr/bin/python3 - "$log" <<'PY'
import json, sys
ms = held = None
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") == "orders rebuilt" and held is None:
        ms, held, kb = r["ms"], r["held"], r.get("rss_kb", -1)
if held is None or kb < 0:
    sys.exit("%s: no \"orders rebuilt\" line with rss_kb (a build that does not log it?)" % sys.argv[1])
print(ms, held, kb)
PY
}

rss() { awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "%d %d", r/1024, h/1024}' "/proc/$1/status"; }

api_once() { # api_once LABEL [BINARY] -> "ready_ms rss_mb hwm_mb"
  local log="$logs/api-$1.log" t0 t1
  t0=$(date +%s%3N)
  FLASHSALE_HTTP_ADDR=127.0.0.1 FLASHSALE_HTTP_PORT="$FLASHSALE_API_PORT" \
    "${2:-$BUILD/command-api/flashsale-api}" >"$log" 2>&1 &
  pid=$!
  until curl -fsS -o /dev/null "http://127.0.0.1:$FLASHSALE_API_PORT/readyz" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$log" >&2; fs_die "the API died"; }
    sleep 0.05
  done
  t1=$(date +%s%3N)
  sleep 1
  local r; r=$(rss "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "$((t1 - t0)) $r"
}

fs_say "API: start on an empty log"
read -r _ api_empty_mb _ < <(api_once empty)
fs_say "  ${api_empty_mb} MiB resident"

fs_say "order saga: start on an empty log"
r=$(saga_once empty "$BUILD/sagas/flashsale-orders") # (a failure stops the script)
read -r _ _ empty_kb <<<"$r"
fs_say "  ${empty_kb} kB resident"

fs_say "writing $ORDERS orders over $SPAN_DAYS days ($((ORDERS * 6)) events)"
"$BUILD/perf/flashsale-synth" --orders "$ORDERS" --span-days "$SPAN_DAYS" >"$logs/synth.json"

inventory_once() { # -> "rebuild_ms events rss_mb"
  local log="$logs/inventory-$1.log"
  "$BUILD/inventory-processor/flashsale-inventory" >"$log" 2>&1 &
  pid=$!
  until grep -q '"partitions rebuilt"' "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$log" >&2; fs_die "the processor died"; }
    sleep 0.1
  done
  sleep 2 # let a snapshot written after the rebuild commit
  local r; r=$(rss "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  /usr/bin/python3 - "$log" "$r" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("msg") == "partitions rebuilt":
        print(r["ms"], r["events"], sys.argv[2].split()[0])
        break
PY
}

inv=() api=() other_api=()
for n in 1 2; do
  fs_say "inventory processor: start $n"
  read -r ms ev mb < <(inventory_once "$n")
  fs_say "  rebuilt in $ms ms ($ev events), $mb MB"
  inv+=("{\"rebuild_ms\": $ms, \"events\": $ev, \"rss_mb\": $mb}")
done
for n in 1 2; do
  fs_say "API: start $n"
  read -r ms mb hwm < <(api_once "$n")
  fs_say "  ready in $ms ms, $mb MiB resident (peak $hwm MiB)"
  api+=("{\"ready_ms\": $ms, \"rss_mb\": $mb, \"peak_mb\": $hwm}")
  if [ -n "$OTHER_API" ]; then
    fs_say "other API ($OTHER_API): start $n"
    read -r ms mb hwm < <(api_once "other-$n" "$OTHER_API")
    fs_say "  ready in $ms ms, $mb MiB resident (peak $hwm MiB)"
    other_api+=("{\"ready_ms\": $ms, \"rss_mb\": $mb, \"peak_mb\": $hwm}")
  fi
done
saga=() other=()
saga_json() { # saga_json MS HELD KB -> a JSON object
  local per=null
  [ "$2" -gt 0 ] && per=$((($3 - empty_kb) * 1024 / $2))
  echo "{\"rebuild_ms\": $1, \"held\": $2, \"rss_mb\": $(($3 / 1024)), \"bytes_per_held_order\": $per}"
}
for n in 1 2; do
  fs_say "order saga: start $n"
  r=$(saga_once "$n" "$BUILD/sagas/flashsale-orders")
  read -r ms held kb <<<"$r"
  saga+=("$(saga_json "$ms" "$held" "$kb")")
  fs_say "  rebuilt in $ms ms, $held orders held, ${saga[-1]}"
  if [ -n "$OTHER_ORDERS" ]; then
    fs_say "other order saga ($OTHER_ORDERS): start $n"
    r=$(saga_once "other-$n" "$OTHER_ORDERS")
    read -r ms held kb <<<"$r"
    other+=("$(saga_json "$ms" "$held" "$kb")")
    fs_say "  rebuilt in $ms ms, $held orders held, ${other[-1]}"
  fi
done
echo "{\"orders\": $ORDERS, \"span_days\": $SPAN_DAYS, \"commit\": \"$(git describe --always --dirty)\","
echo " \"inventory\": [${inv[0]}, ${inv[1]}],"
echo " \"api_empty_rss_mb\": $api_empty_mb,"
echo " \"api\": [${api[0]}, ${api[1]}],"
[ -z "$OTHER_API" ] || echo " \"other_api\": {\"binary\": \"$OTHER_API\", \"runs\": [${other_api[0]}, ${other_api[1]}]},"
echo " \"orders_saga_empty_rss_kb\": $empty_kb,"
[ -z "$OTHER_ORDERS" ] || echo " \"other_orders_saga\": {\"binary\": \"$OTHER_ORDERS\", \"runs\": [${other[0]}, ${other[1]}]},"
echo " \"orders_saga\": [${saga[0]}, ${saga[1]}]}"
