#!/usr/bin/env bash
# README's first command: set up, build, and run the demo (4 ranks save a sharded model, 3 ranks
# load it back resharded), then inspect and verify the checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDPOINT_BUILD_TESTS=OFF -DSHARDPOINT_BUILD_BENCH=OFF >/dev/null
cmake --build build-demo >/dev/null
dir="${SHARDPOINT_DEMO_DIR:-$(mktemp -d)/checkpoint}"
build-demo/bin/shardpoint demo --size-mb "${SHARDPOINT_DEMO_MB:-512}" "$dir"
echo
build-demo/bin/shardpoint inspect "$dir" | head -n 12
echo "..."
build-demo/bin/shardpoint verify "$dir"
