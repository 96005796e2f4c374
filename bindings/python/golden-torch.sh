#!/usr/bin/env bash
# The torch golden program (bindings/python/tests_torch/golden_torch.py) against an installed
# libshardpoint, in the torch venv of torch-env.sh, with the package from src/ of this checkout:
#
#   bindings/python/golden-torch.sh PREFIX write DIR WORLD
#   bindings/python/golden-torch.sh PREFIX read DIR
#
# The same environment as run-torch-tests.sh (the library of PREFIX found by its SONAME, gloo on
# the loopback interface), without pytest and without staging: nothing is written into the
# checkout (no bytecode). Usable as a matrix.py command prefix: --lang torch="bash golden-torch.sh PREFIX".
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 PREFIX write DIR WORLD | $0 PREFIX read DIR" >&2
    exit 2
fi
PREFIX=$(cd "$1" && pwd)
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

libdir=""
for d in "$PREFIX/lib" "$PREFIX/lib64"; do
    [ -e "$d/libshardpoint.so.0" ] && libdir=$d
done
if [ -z "$libdir" ]; then
    echo "golden-torch.sh: no libshardpoint.so.0 under $PREFIX" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset SHARDPOINT_LIBRARY # the library of PREFIX, found by its SONAME
export PYTHONDONTWRITEBYTECODE=1

PY=$("$HERE/torch-env.sh")

export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}"
export GLOO_SOCKET_IFNAME=lo
export OMP_NUM_THREADS=1
exec "$PY" "$HERE/tests_torch/golden_torch.py" "$@"
