#!/usr/bin/env bash
# README's first command: set up, build, then the real thing with MPI processes: 4 ranks save a
# sharded model, 3 ranks load it back resharded and check every value; then inspect and verify the
# checkpoint with the command-line tool.
#
# Environment (all optional):
#   SHARDPOINT_DEMO_DIR            where to save; kept afterwards. Default: a temporary directory,
#                                  removed when the demo ends (also on failure or Ctrl-C).
#   SHARDPOINT_DEMO_MIB_PER_RANK   MiB of layers each of the 4 saving ranks holds (default 128).
#   SHARDPOINT_DEMO_BIN_DIR        a directory holding already built `shardpoint` and `mpi_demo`:
#                                  skips setup and build (the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SHARDPOINT_DEMO_BIN_DIR:-}" ]; then
  bin=$SHARDPOINT_DEMO_BIN_DIR
else
  bash scripts/setup.sh
  cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDPOINT_BUILD_BENCH=OFF \
        -DSHARDPOINT_BINDING_TESTS=OFF >/dev/null
  cmake --build build-demo --target shardpoint_cli mpi_demo >/dev/null
  bin=build-demo/bin
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

if [ -n "${SHARDPOINT_DEMO_DIR:-}" ]; then
  dir=$SHARDPOINT_DEMO_DIR
  trap 'echo; echo "the checkpoint stays in $dir ($(du -sh "$dir" 2>/dev/null | cut -f1)); remove it with: rm -rf $dir"' EXIT
else
  tmp=$(mktemp -d)
  dir=$tmp/checkpoint
  # The checkpoint is hundreds of MiB: never leave it behind, whatever way the demo ends.
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
mib="${SHARDPOINT_DEMO_MIB_PER_RANK:-128}"

echo "== 4 MPI ranks save, $mib MiB of layers each =="
mpirun --oversubscribe -np 4 "$bin/mpi_demo" save "$dir" "$mib"
echo
echo "== 3 MPI ranks load it back, resharded =="
mpirun --oversubscribe -np 3 "$bin/mpi_demo" load "$dir"
echo
echo "== shardpoint inspect --limit 3 $dir =="
"$bin/shardpoint" inspect --limit 3 "$dir"
echo
echo "== shardpoint verify $dir =="
"$bin/shardpoint" verify "$dir"
