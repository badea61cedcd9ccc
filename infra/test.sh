#!/usr/bin/env bash
# Runs the whole test suite against throw-away Kafka, PostgreSQL and Redis instances:
# own run directory (under /tmp), own free ports, torn down afterwards even when a test
# fails. Called by `make test` after the plain and ASan+UBSan builds.
#
#   FLASHSALE_BUILD_DIR       plain build (build)
#   FLASHSALE_ASAN_BUILD_DIR  sanitizer build (build-asan); its unit tests run too
#   FLASHSALE_FUZZ_BUILD_DIR  fuzz harnesses (build-fuzz); each runs for 30 s (ctest -L fuzz)
#   FLASHSALE_KEEP_TEST_RUN=1 keep the run directory (logs, data) for inspection
#   CTEST_ARGS                extra ctest arguments, e.g. "-R eos" or "-L unit"
#   FLASHSALE_KAFKA_NODES=3   the whole suite on a three-node Kafka cluster
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$FS_ROOT"
BUILD=${FLASHSALE_BUILD_DIR:-build}
ASAN=${FLASHSALE_ASAN_BUILD_DIR:-build-asan}
FUZZ=${FLASHSALE_FUZZ_BUILD_DIR:-build-fuzz}


run=$(mktemp -d /tmp/flashsale-test.XXXXXX)
chmod 755 "$run"
export FLASHSALE_RUN_DIR=$run FLASHSALE_BUILD_DIR=$BUILD
# FLASHSALE_KAFKA_NODES=3 runs the suite on a three-node cluster: node i on base + 2(i-1)
export FLASHSALE_KAFKA_NODES=${FLASHSALE_KAFKA_NODES:-1}
export FLASHSALE_KAFKA_PORT=$(free_range 29092 $((2 * FLASHSALE_KAFKA_NODES)))
export FLASHSALE_KAFKA_CONTROLLER_PORT=$((FLASHSALE_KAFKA_PORT + 1))
# each port free and not picked before (pick_port, infra/lib.sh): with free_port alone, when
# 28181 was taken the event streams and the order front both got 28182, and every API a test
# started by itself failed to listen
FS_PICKED_PORTS=" $(seq -s ' ' "$FLASHSALE_KAFKA_PORT" $((FLASHSALE_KAFKA_PORT + 2 * FLASHSALE_KAFKA_NODES - 1))) "
pick_port FLASHSALE_PG_PORT 25432
pick_port FLASHSALE_REDIS_PORT 26379
pick_port FLASHSALE_HTTP_PORT 28080
pick_port FLASHSALE_API_PORT 28180
# the API's event-stream and order-front listeners, for APIs a test starts by itself (the
# harness's own System picks ports of its own): away from a `make run` on this machine
pick_port FLASHSALE_SSE_PORT 28181
pick_port FLASHSALE_ORDER_PORT 28182
export FLASHSALE_KAFKA_HEAP=${FLASHSALE_KAFKA_HEAP:-1g}
# every response the Python integration tests get, checked against docs/openapi.json at the end
# (tests/openapi/validate-responses.mjs, ctest openapi.responses)
export FLASHSALE_OPENAPI_RECORD_DIR=$run/openapi-responses
# the burst tests hold 10,000 connections open at once, on both sides
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status=1
cleanup() {
  "$here/flashsale.sh" stop >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    fs_say "test run failed; last broker log lines:"
    tail -n 15 "$run"/logs/kafka*.out 2>/dev/null || true
  fi
  if [ "${FLASHSALE_KEEP_TEST_RUN:-0}" = 1 ]; then
    fs_say "kept $run"
  else
    [ -f "$run/postgres.location" ] && case "$(cat "$run/postgres.location")" in
      /var/tmp/flashsale-pg-*) rm -rf "$(cat "$run/postgres.location")" ;; esac
    rm -rf "$run"
  fi
}
trap cleanup EXIT

fs_say "test instances in $run: Kafka $FLASHSALE_KAFKA_PORT ($FLASHSALE_KAFKA_NODES node(s)), PostgreSQL $FLASHSALE_PG_PORT, Redis $FLASHSALE_REDIS_PORT"
"$here/flashsale.sh" start --infra-only
# shellcheck disable=SC1091
. "$run/env"

rc=0
echo "== ctest: unit, valgrind, interop, integration ($BUILD)"
# shellcheck disable=SC2086
# the three-broker fault test (label cluster) runs in `make test-cluster`, not by default
ctest --test-dir "$BUILD" --output-on-failure -j 2 ${CTEST_ARGS:--LE cluster} || rc=1
if [ -d "$ASAN" ]; then
  echo "== ctest: unit tests under AddressSanitizer + UndefinedBehaviorSanitizer ($ASAN)"
  ctest --test-dir "$ASAN" -L unit --output-on-failure -j 2 || rc=1
fi
if [ -d "$FUZZ" ] && [ -z "${CTEST_ARGS:-}" ]; then  # (a filtered run is about other tests)
  echo "== ctest: fuzz harnesses, one after another ($FUZZ)"
  ctest --test-dir "$FUZZ" -L fuzz --output-on-failure -j 1 || rc=1
fi
status=$rc
exit $rc
