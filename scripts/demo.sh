#!/usr/bin/env bash
# README's first command: set up, build, then the real thing with MPI processes: 4 ranks save a
# sharded model, 3 ranks load it back resharded and check every value; then inspect and verify the
# checkpoint with the command-line tool.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDPOINT_BUILD_BENCH=OFF \
      -DSHARDPOINT_BINDING_TESTS=OFF >/dev/null
cmake --build build-demo --target shardpoint_cli mpi_demo >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir="${SHARDPOINT_DEMO_DIR:-$(mktemp -d)/checkpoint}"
mib="${SHARDPOINT_DEMO_MIB_PER_RANK:-128}"

echo "== 4 MPI ranks save, $mib MiB of layers each =="
mpirun --oversubscribe -np 4 build-demo/bin/mpi_demo save "$dir" "$mib"
echo
echo "== 3 MPI ranks load it back, resharded =="
mpirun --oversubscribe -np 3 build-demo/bin/mpi_demo load "$dir"
echo
echo "== shardpoint inspect $dir (first lines) =="
build-demo/bin/shardpoint inspect "$dir" | head -n 14
echo "..."
echo
echo "== shardpoint verify $dir =="
build-demo/bin/shardpoint verify "$dir"
