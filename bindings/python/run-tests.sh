#!/usr/bin/env bash
# Tests the Python binding against an installed libshardpoint.
#
#   bindings/python/run-tests.sh PREFIX
#
# PREFIX is the install prefix of the library (PREFIX/lib/libshardpoint.so.0). The script makes a
# venv under build/python/ of the repository (override with SHARDPOINT_PY_BUILD_DIR), installs
# numpy, pytest, mypy and safetensors from PyPI plus this package (and mpi4py, built against the
# system MPI, when mpicc and mpirun exist), runs pytest, `mypy --strict` over the package and
# examples/, the typed example, then a golden round trip (write with 3 ranks, read back).
# Idempotent; exits non-zero on any failure.
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
# mypy pinned: another version may find other errors (or stop finding some).
MYPY_SPEC="mypy==2.4.1"
# safetensors pinned: tests/test_convert.py checks conversions against this release's reader and
# writer (its dtype list, e.g. C64, grows between releases).
SAFETENSORS_SPEC="safetensors==0.8.0"
"${PIP[@]}" "numpy>=1.22" "pytest>=7" "scikit-build-core>=0.10" "$MYPY_SPEC" "$SAFETENSORS_SPEC"

# mpi4py for the multi-process tests (tests/test_mpi.py), where an MPI is installed (mpicc and
# mpirun): built from its PyPI source against that MPI, once; skipped while it imports (pip also
# keeps the built wheel in its cache). SHARDPOINT_PY_MPI=0 skips MPI; otherwise the MPI tests
# must run (SHARDPOINT_REQUIRE_MPI=1 turns their skip into a failure).
if [ "${SHARDPOINT_PY_MPI:-1}" != 0 ] && command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
    mpi4py_imports() {
        "$PY" -c "import mpi4py; mpi4py.rc(initialize=False, finalize=False); from mpi4py import MPI" >/dev/null 2>&1
    }
    if ! mpi4py_imports; then
        echo "run-tests.sh: building mpi4py against $(command -v mpicc) (minutes, the first time)" >&2
        MPICC=$(command -v mpicc) "${PIP[@]}" --no-binary mpi4py "mpi4py>=3.1"
        mpi4py_imports || { echo "run-tests.sh: mpi4py installed but does not import" >&2; exit 1; }
    fi
    export SHARDPOINT_REQUIRE_MPI=1
fi

# Build from a copy so the source tree stays free of build/ and *.egg-info.
STAGE=$BUILD_DIR/stage
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -R "$HERE/pyproject.toml" "$HERE/README.md" "$HERE/CMakeLists.txt" "$HERE/src" "$STAGE/"
# The package without its bundled library (SHARDPOINT_PY_BUNDLE=OFF): these tests are of the
# library installed in PREFIX, found by its SONAME. wheel-test.sh tests the bundled build.
"${PIP[@]}" --no-build-isolation --no-deps --force-reinstall -C cmake.define.SHARDPOINT_PY_BUNDLE=OFF "$STAGE"

cd "$HERE"
timeout 600 "$PY" -m pytest -p no:cacheprovider tests

# The package ships py.typed, so it must type-check as users' code sees it: `mypy --strict` over
# src/shardpoint and examples/ (pyproject.toml [tool.mypy]; here without torch and ml_dtypes,
# whose absence the configuration allows). The cache stays out of the source tree.
echo "run-tests.sh: mypy --strict src/shardpoint examples ($MYPY_SPEC)" >&2
if ! timeout 300 "$PY" -m mypy --strict --cache-dir "$BUILD_DIR/mypy-cache"; then
    echo "run-tests.sh: FAILED: mypy --strict reports type errors in src/shardpoint or examples/ (above)" >&2
    exit 1
fi
# The typed example must also work, against the installed package.
timeout 120 "$PY" examples/typed_example.py

# ml_dtypes changes what bf16/f8 reads return: its tests run in a venv of their own that has it
# (the main venv has not, so the raw-carrier behaviour is what the tests above see).
MLVENV=$BUILD_DIR/venv-ml-dtypes
if ! "$MLVENV/bin/python" -c "import ml_dtypes, pytest" >/dev/null 2>&1; then
    rm -rf "$MLVENV"
    "$PYTHON" -m venv "$MLVENV"
    "$MLVENV/bin/python" -m pip --disable-pip-version-check -q install "numpy>=1.22" "pytest>=7" ml_dtypes
fi
SHARDPOINT_REQUIRE_ML_DTYPES=1 PYTHONPATH="$HERE/src" timeout 300 "$MLVENV/bin/python" -m pytest -p no:cacheprovider \
    tests/test_ml_dtypes.py

# The golden round trip of tests/golden/README.md: write with 3 ranks, read it back.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
timeout 300 "$PY" tests/golden.py write "$WORK/golden" 3
timeout 300 "$PY" tests/golden.py read "$WORK/golden"
