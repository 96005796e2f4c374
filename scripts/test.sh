#!/usr/bin/env bash
# README's second command: set up, build and run every test suite: C (cmocka), C++ (GoogleTest),
# MPI (mpirun), golden cross-language matrix, fault injection, CLI, README examples, the Rust, Go,
# Python and Julia bindings and the pip-built Python wheel; then the Debian packages; then the C,
# C++ and MPI suites again under AddressSanitizer + UndefinedBehaviorSanitizer; then a short
# fuzzing run of the untrusted-input paths.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

status=0
passed=0
failed=0
run_ctest() {  # build dir, extra ctest args...
  local dir=$1; shift
  local log; log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # "100% tests passed, 0 tests failed out of 57"
  local line; line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    local f t
    f=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    t=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + t - f)); failed=$((failed + f))
  fi
  [ "$rc" = 0 ] || status=1
  rm -f "$log"
}

echo "=== build (RelWithDebInfo) ==="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build build -j "$jobs" || exit 1
echo "=== tests ==="
rm -f build/golden-matrix.txt
run_ctest build

if [ -f build/golden-matrix.txt ]; then
  echo "=== cross-language matrix (writer x reader) ==="
  cat build/golden-matrix.txt
fi

# Installs system packages (and removes them after), so it runs alone, not inside ctest.
echo "=== Debian packages: cpack, apt-get install, pkg-config and find_package users (tests/package) ==="
if bash tests/package/deb-test.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

echo "=== build (ASan + UBSan) ==="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHARDPOINT_SANITIZE=ON -DSHARDPOINT_BUILD_BENCH=OFF \
      -DSHARDPOINT_BINDING_TESTS=OFF >/dev/null && cmake --build build-asan -j "$jobs" || exit 1
echo "=== tests under ASan + UBSan ==="
# OpenMPI's own allocations are not ours to report.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp run_ctest build-asan -LE slow

echo "=== fuzzing (libFuzzer, ASan + UBSan, 60 s per target; tests/fuzz/README.md) ==="
if bash scripts/fuzz.sh 60; then passed=$((passed + 1)); else failed=$((failed + 1)); status=1; fi

echo
echo "total: $passed passed, $failed failed"
exit $status
