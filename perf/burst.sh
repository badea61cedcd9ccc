#!/usr/bin/env bash
# Flash burst benchmark: N members each order 1 unit of a product with S units, all at once,
# against a dedicated flashsale (own run directory and ports), next to the same burst on a
# trivial endpoint (GET /healthz of the same civetweb server) in the same run.
#
#   perf/burst.sh [MEMBERS] [STOCK]          (10000, 100)
#
# Prints both results, checks the invariants on the log (exactly STOCK reserved, no
# oversell or undersell, one decision per acknowledged order), shows where the time of the
# orders went (from the log's timestamps), and writes perf/out/burst-<time>.json.
# Settings: FLASHSALE_HTTP_THREADS (1000), FLASHSALE_COMMIT_INTERVAL_MS (20).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/infra/lib.sh"
MEMBERS=${1:-10000}
STOCK=${2:-100}
BUILD="$root/build"
cd "$root"
make -s build >/dev/null

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export FLASHSALE_RUN_DIR="$root/.run-perf"
export FLASHSALE_KAFKA_PORT=$(free_port 31092)
export FLASHSALE_KAFKA_CONTROLLER_PORT=$(free_port $((FLASHSALE_KAFKA_PORT + 1)))
export FLASHSALE_PG_PORT=$(free_port 31432) FLASHSALE_REDIS_PORT=$(free_port 31379)
export FLASHSALE_HTTP_PORT=$(free_port 31080) FLASHSALE_API_PORT=$(free_port 31180)
export FLASHSALE_ORDER_PORT=$(free_port 31182)
export FLASHSALE_HTTP_THREADS=${FLASHSALE_HTTP_THREADS:-1000} FLASHSALE_HTTP_QUEUE=20000
export FLASHSALE_KAFKA_HEAP=1g
rm -rf "$FLASHSALE_RUN_DIR"
trap '"$root/infra/flashsale.sh" stop >/dev/null 2>&1 || true' EXIT
"$root/infra/flashsale.sh" start >/dev/null
. "$FLASHSALE_RUN_DIR/env"
url="http://127.0.0.1:$FLASHSALE_API_PORT"  # the API itself (the edge would count 10,000 connections from one address against its per-address limit)
mkdir -p "$here/out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

fs_say "trivial endpoint: $MEMBERS x GET /healthz, all at once"
"$BUILD/perf/flashsale-burst" --url "$url" --members "$MEMBERS" --path /healthz \
  --json "$here/out/trivial-$stamp.json" 2>/dev/null >/dev/null
admin=$("$BUILD/tools/flashsale-token" --sub perf-admin --role admin)
pid=$(curl -fsS -X POST "$url/api/products" -H "Authorization: Bearer $admin" \
  -H 'Content-Type: application/json' \
  -d "{\"name\":\"burst\",\"price\":1000,\"stock\":$STOCK,\"per_user_limit\":1,\"sale_starts_at\":\"2020-01-01T00:00:00Z\"}" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["product_id"])')
fs_say "burst: $MEMBERS members x 1 unit of product $pid ($STOCK units), all at once, to the order front"
"$BUILD/perf/flashsale-burst" --url "http://127.0.0.1:$FLASHSALE_ORDER_PORT" --members "$MEMBERS" --product "$pid" \
  --json "$here/out/burst-$stamp.json" 2>/dev/null >/dev/null
sleep 1
"$BUILD/tools/flashsale-dump" inventory.events >"$here/out/events-$stamp.jsonl" 2>/dev/null
"$BUILD/tools/flashsale-dump" inventory.commands >"$here/out/commands-$stamp.jsonl" 2>/dev/null
curl -fsS "$url/metrics" >"$here/out/metrics-$stamp.txt"
/usr/bin/python3 "$here/burst_report.py" "$here/out" "$stamp" "$pid" "$STOCK" "$MEMBERS"
