#!/usr/bin/env bash
# Tests the Python binding against an installed libshardpoint.
#
#   bindings/python/run-tests.sh PREFIX
#
# PREFIX is the install prefix of the library (PREFIX/lib/libshardpoint.so.0). The script makes a
# venv under build/python/ of the repository (override with SHARDPOINT_PY_BUILD_DIR), installs
# numpy and pytest from PyPI plus this package, runs pytest, then a golden round trip (write with
# 3 ranks, read back). Idempotent; exits non-zero on any failure.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
PREFIX=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${SHARDPOINT_PY_BUILD_DIR:-$REPO/build/python}
PYTHON=${PYTHON:-python3}

export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig:$PREFIX/lib64/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
libdir=""
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists shardpoint; then
    libdir=$(pkg-config --variable=libdir shardpoint)
fi
if [ ! -e "$libdir/libshardpoint.so.0" ]; then
    for d in "$PREFIX/lib" "$PREFIX/lib64"; do
        [ -e "$d/libshardpoint.so.0" ] && libdir=$d
    done
fi
if [ ! -e "$libdir/libshardpoint.so.0" ]; then
    echo "run-tests.sh: no libshardpoint.so.0 under $PREFIX" >&2
    exit 1
fi
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset SHARDPOINT_LIBRARY # the tests must use the library of PREFIX, found by its SONAME
export PYTHONDONTWRITEBYTECODE=1

# A venv of our own, so nothing goes into the system Python; where the venv module is missing
# (Debian without python3-venv) fall back to the user site.
VENV=$BUILD_DIR/venv
if "$VENV/bin/python" -c "import sys" >/dev/null 2>&1 || { rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"; }; then
    PY=$VENV/bin/python
    PIP=("$PY" -m pip --disable-pip-version-check -q install)
else
    echo "run-tests.sh: no venv module; installing into the user site" >&2
    rm -rf "$VENV"
    PY=$(command -v "$PYTHON")
    PIP=("$PY" -m pip --disable-pip-version-check -q install --user)
    export PIP_BREAK_SYSTEM_PACKAGES=1
fi
"${PIP[@]}" "numpy>=1.22" "pytest>=7" "setuptools>=64" wheel

# Build from a copy so the source tree stays free of build/ and *.egg-info.
STAGE=$BUILD_DIR/stage
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -R "$HERE/pyproject.toml" "$HERE/README.md" "$HERE/src" "$STAGE/"
"${PIP[@]}" --no-build-isolation --no-deps --force-reinstall "$STAGE"

cd "$HERE"
timeout 600 "$PY" -m pytest -p no:cacheprovider tests

# The golden round trip of tests/golden/README.md: write with 3 ranks, read it back.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
timeout 300 "$PY" tests/golden.py write "$WORK/golden" 3
timeout 300 "$PY" tests/golden.py read "$WORK/golden"
