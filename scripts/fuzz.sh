#!/usr/bin/env bash
# Fuzzes the untrusted-input paths (tests/fuzz/README.md): builds the libFuzzer targets with clang,
# ASan and UBSan in build-fuzz/, writes the seed corpus from real checkpoints, replays every saved
# regression input, then runs each target for SECONDS.
#
#   bash scripts/fuzz.sh [SECONDS] [extra libFuzzer args...]     (SECONDS defaults to 60)
#
# Prints one summary line per target and exits non-zero on any crash, sanitizer report, leak,
# timeout or out-of-memory finding, naming the reproducer.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
[ $# -gt 0 ] && shift
extra=("$@")
targets=(metadata datafile)

bash scripts/setup.sh >/dev/null || exit 1
# clang-14 and its runtimes (libclang-rt-14-dev holds libFuzzer and the sanitizers on bookworm).
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "fuzz: installing ${missing[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null || exit 1
fi

build=$root/build-fuzz
echo "=== fuzz: build (clang-14, libFuzzer, ASan + UBSan) in $build ==="
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
      -DSHARDPOINT_SANITIZE=ON -DSHARDPOINT_FUZZ=ON -DSHARDPOINT_BUILD_BENCH=OFF \
      -DSHARDPOINT_BINDING_TESTS=OFF -DSHARDPOINT_WITH_MPI=OFF >/dev/null || exit 1
if ! cmake --build "$build" --target fuzz_seeds fuzz_metadata fuzz_datafile >"$build/fuzz-build.log" 2>&1; then
  grep -E 'error|FAILED' -A3 "$build/fuzz-build.log" | head -n 40
  echo "fuzz: build failed (full log: $build/fuzz-build.log)"
  exit 1
fi

work=$build/fuzz
export SHARDPOINT_FUZZ_POOL=$build/tests/fuzz/pool
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$work/artifacts"
"$build/bin/fuzz_seeds" "$SHARDPOINT_FUZZ_POOL" "$work/seeds/metadata" "$work/seeds/datafile" || exit 1

limits=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20)
status=0

echo "=== fuzz: replaying tests/fuzz/regressions ==="
for t in "${targets[@]}"; do
  dir=$root/tests/fuzz/regressions/$t
  [ -d "$dir" ] || continue
  for f in "$dir"/*; do
    [ -f "$f" ] || continue
    if "$build/bin/fuzz_$t" "${limits[@]}" "$f" >"$work/replay.log" 2>&1; then
      echo "fuzz_$t: regression ${f#$root/}: ok"
    else
      echo "fuzz_$t: regression ${f#$root/}: FAILS"
      grep -E 'ERROR|runtime error|SUMMARY|fuzz harness|fuzz_'"$t"':|#[0-9]+ 0x' "$work/replay.log" | grep -v 'Running 1 inputs' | head -n 15
      echo "  reproduce: $build/bin/fuzz_$t $f"
      status=1
    fi
  done
done

for t in "${targets[@]}"; do
  echo "=== fuzz: fuzz_$t for $seconds s ==="
  corpus=$work/corpus/$t
  mkdir -p "$corpus"
  log=$work/fuzz_$t.log
  "$build/bin/fuzz_$t" -max_total_time="$seconds" "${limits[@]}" -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/$t-" "${extra[@]}" "$corpus" "$work/seeds/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
  line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED|RELOAD)' "$log" | tail -n 1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$line")
  speed=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$line")
  # libFuzzer names every reproducer it writes: "Test unit written to PATH".
  mapfile -t units < <(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log")
  found=${#units[@]}
  if [ "$rc" = 0 ] && [ "$found" = 0 ]; then crashes=0; else crashes=$((found > 0 ? found : 1)); fi
  echo "fuzz_$t: ${execs:-0} executions in $seconds s (${speed:-0}/s), coverage ${cov:-0} edges, ${ft:-0} features, corpus ${corp:-0}, crashes: $crashes"
  if [ "$crashes" != 0 ]; then
    status=1
    grep -E 'ERROR|runtime error|SUMMARY|fuzz harness|fuzz_'"$t"':|#[0-9]+ 0x' "$log" | head -n 20
    for a in "${units[@]}"; do
      echo "  reproducer: $a  (replay: $build/bin/fuzz_$t $a)"
    done
    echo "  full log: $log"
  fi
done

if [ "$status" = 0 ]; then echo "fuzz: all targets clean"; else echo "fuzz: FINDINGS (see above)"; fi
exit $status
