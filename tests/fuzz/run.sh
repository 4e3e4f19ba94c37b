#!/usr/bin/env bash
# Builds the fuzz preset, writes the seed corpora and runs the libFuzzer targets
# (docs/TESTING.md "Fuzzing"):
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs among idx cifar safetensors model_file run_config
# (default: all). Each target's corpus is build/fuzz/corpus/<target>: it keeps what earlier runs
# found, and gets the fresh seeds (tests/fuzz/make_seeds.cpp) and the saved regression inputs
# (tests/fuzz/regressions/<target>/) added each run. Crash, timeout, leak and out-of-memory
# inputs are written to build/fuzz/artifacts/<target>/; logs to build/fuzz/logs/<target>.log.
# Prints a summary table and exits 1 when any target failed.
#
# Environment: WREN_FUZZ_PARALLEL targets at a time (default 1; each libFuzzer process uses
# one core), WREN_FUZZ_JOBS build jobs (default nproc), WREN_FUZZ_NO_BUILD=1 to skip the
# configure and build steps.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
all_targets=(idx cifar safetensors model_file run_config)

seconds=60
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  if [[ ! " ${all_targets[*]} " =~ " $t " ]]; then
    echo "run.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done
parallel="${WREN_FUZZ_PARALLEL:-1}"

build=build/fuzz
if [ "${WREN_FUZZ_NO_BUILD:-0}" != 1 ]; then
  cmake --preset fuzz >/dev/null || { echo "run.sh: configure failed" >&2; exit 1; }
  build_targets=(fuzz_make_seeds)
  for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
  cmake --build "$build" -j "${WREN_FUZZ_JOBS:-$(nproc)}" --target "${build_targets[@]}" ||
    { echo "run.sh: build failed" >&2; exit 1; }
fi

rm -rf "$build/seeds"
"$build/fuzz_make_seeds" "$build/seeds" "$root" || { echo "run.sh: make_seeds failed" >&2; exit 1; }

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_target() {
  local t="$1"
  local corpus="$build/corpus/$t" artifacts="$build/artifacts/$t/" log="$build/logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$build/logs"
  cp -n "$build/seeds/$t"/* "$corpus"/ 2>/dev/null
  if [ -d "tests/fuzz/regressions/$t" ]; then
    cp -n "tests/fuzz/regressions/$t"/* "$corpus"/ 2>/dev/null
  fi
  local dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=("-dict=tests/fuzz/$t.dict")
  local start end status
  start=$(date +%s)
  "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" "$corpus" >"$log" 2>&1
  status=$?
  end=$(date +%s)
  echo "$status $((end - start))" >"$build/logs/$t.result"
}

echo "run.sh: ${#targets[@]} target(s), ${seconds} s each, $parallel at a time; logs in $build/logs/"
running=0
for t in "${targets[@]}"; do
  rm -f "$build/logs/$t.result"
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
printf '\n%-12s %8s %12s %8s  %s\n' target seconds executions corpus crashes
for t in "${targets[@]}"; do
  log="$build/logs/$t.log"
  read -r status wall <"$build/logs/$t.result"
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
  corpus=$(find "$build/corpus/$t" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=0
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="1 (exit $status): ${artifact:-no artifact; see $log}"
  fi
  printf '%-12s %8s %12s %8s  %s\n' "$t" "$wall" "${execs:-?}" "$corpus" "$result"
done
if [ "$failed" -ne 0 ]; then
  echo
  echo "run.sh: a target failed. Reproduce: $build/fuzz_<target> <artifact>; minimize:"
  echo "  $build/fuzz_<target> -minimize_crash=1 -max_total_time=60 -exact_artifact_path=min <artifact>"
  echo "then fix the reader and add the input to tests/fuzz/regressions/<target>/ (docs/TESTING.md)."
  exit 1
fi
