#!/usr/bin/env bash
# Tests shardpoint.torch (the torch.distributed.checkpoint storage layer) against an installed
# libshardpoint, with real DCP saves and loads in real processes (gloo on 127.0.0.1).
#
#   bindings/python/run-torch-tests.sh PREFIX
#
# PREFIX is the install prefix of the library (PREFIX/lib/libshardpoint.so.0). torch comes from the
# venv of torch-env.sh (made once per machine, outside the checkout); this script does not change
# that venv: pytest goes into build/python-torch/site of the repository (override the directory
# with SHARDPOINT_PY_TORCH_BUILD_DIR) and the package is used from a staged copy of src/.
# Idempotent; exits non-zero on any failure.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
PREFIX=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${SHARDPOINT_PY_TORCH_BUILD_DIR:-$REPO/build/python-torch}

libdir=""
for d in "$PREFIX/lib" "$PREFIX/lib64"; do
    [ -e "$d/libshardpoint.so.0" ] && libdir=$d
done
if [ -z "$libdir" ]; then
    echo "run-torch-tests.sh: no libshardpoint.so.0 under $PREFIX" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset SHARDPOINT_LIBRARY # the tests must use the library of PREFIX, found by its SONAME
export PYTHONDONTWRITEBYTECODE=1

PY=$("$HERE/torch-env.sh")

SITE=$BUILD_DIR/site
if ! PYTHONPATH=$SITE "$PY" -c "import pytest" >/dev/null 2>&1; then
    rm -rf "$SITE"
    "$PY" -m pip --disable-pip-version-check -q install --target "$SITE" "pytest>=7"
fi
STAGE=$BUILD_DIR/stage
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -R "$HERE/src" "$STAGE/"

export PYTHONPATH="$STAGE/src:$SITE"
# gloo: the loopback interface only.
export GLOO_SOCKET_IFNAME=lo
export OMP_NUM_THREADS=1
cd "$HERE"
timeout 900 "$PY" -m pytest -p no:cacheprovider -q tests_torch
