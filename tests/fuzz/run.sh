#!/usr/bin/env bash
# Runs fuzz harnesses for a bounded time each and prints, per harness, the executions, the
# executions per second and libFuzzer's coverage (cov: edges, ft: features) at the end.
# Called by `make fuzz` (every harness, FUZZ_SECONDS, default 60) and by ctest (label fuzz,
# one harness each, tests/fuzz/CMakeLists.txt).
#
#   run.sh BUILD_DIR [HARNESS...]   (default: every harness with a seed corpus)
#   FUZZ_SECONDS  seconds per harness (60)
#   FUZZ_ARGS     extra libFuzzer flags, e.g. "-only_ascii=1"
#
# Per harness, tests/fuzz/<harness>.dict is passed as its dictionary and the flags on the
# first line of tests/fuzz/<harness>.options are added (the sequence harnesses take long
# inputs from the start: -len_control=0 finds more features per minute there).
#
# The checked-in seeds (tests/fuzz/corpus/<harness>) are read, never written: what a run
# finds goes to a throw-away working corpus. A crash, a leak, a failed check, a timeout
# (an input taking over 10 s) or running out of memory fails the run; the input is kept in
# BUILD_DIR/fuzz-artifacts/ and the log in BUILD_DIR/fuzz-logs/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR [HARNESS...]}
shift
seconds=${FUZZ_SECONDS:-60}
if (($# == 0)); then
  set -- $(cd "$here/corpus" && ls)
fi
artifacts=$build/fuzz-artifacts
logs=$build/fuzz-logs
mkdir -p "$artifacts" "$logs"
work=$(mktemp -d /tmp/flashsale-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

failed=()
rows=()
for h in "$@"; do
  bin=$build/tests/fuzz/fuzz_$h
  [ -x "$bin" ] || { echo "fuzz: no harness $bin (build with make build-fuzz)" >&2; exit 2; }
  mkdir -p "$work/$h"
  dict=() opts=()
  [ -f "$here/$h.dict" ] && dict=(-dict="$here/$h.dict")
  [ -f "$here/$h.options" ] && read -r -a opts <"$here/$h.options"
  log=$logs/$h.log
  echo "== fuzz $h: ${seconds} s"
  rc=0
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$h-" "${dict[@]}" "${opts[@]}" ${FUZZ_ARGS:-} \
    "$work/$h" "$here/corpus/$h" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -E ' cov: ' | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  verdict=ok
  if ((rc != 0)); then
    verdict="FAILED ($rc)"
    failed+=("$h")
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed|.*: .* != |artifact_prefix|Test unit written)' "$log" |
      head -n 20 >&2 || true
    echo "   log: $log" >&2
  fi
  rows+=("$(printf '%-10s %12s %9s %7s %7s %12s  %s' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$verdict")")
done

printf '%-10s %12s %9s %7s %7s %12s  %s\n' harness execs exec/s cov ft corpus result
printf '%s\n' "${rows[@]}"
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]} (inputs in $artifacts, logs in $logs)" >&2
  exit 1
fi
