#!/usr/bin/env bash
# Makes (once) the Python environment the torch tests of the binding run in, and prints its python.
#
#   PY=$(bindings/python/torch-env.sh)
#
# The venv lives outside the checkout, in ~/.cache/shardpoint/torch-venv (override the directory
# with SHARDPOINT_TORCH_VENV), so torch's large download happens once per machine. It holds
# torch==2.15.0, numpy and safetensors from PyPI. The marker file .complete is written only after
# every install succeeded: a venv without it (an interrupted run) is removed and made again.
# Progress goes to stderr and to install.log beside the venv; stdout carries only the python path.
set -euo pipefail

VENV=${SHARDPOINT_TORCH_VENV:-$HOME/.cache/shardpoint/torch-venv}
TORCH_SPEC=${SHARDPOINT_TORCH_SPEC:-torch==2.15.0}

if [ -f "$VENV/.complete" ] && "$VENV/bin/python" -c "import torch, numpy, safetensors" >/dev/null 2>&1; then
    echo "$VENV/bin/python"
    exit 0
fi

pick_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3.12 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c "import sys, venv; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

BASE=$(pick_python) || {
    echo "torch-env.sh: needs Python 3.10 to 3.13 with the venv module (python3-venv on Debian)" >&2
    exit 1
}
mkdir -p "$(dirname "$VENV")"
LOG=$(dirname "$VENV")/install.log
echo "torch-env.sh: creating $VENV with $TORCH_SPEC from PyPI (a large download, once)" >&2
rm -rf "$VENV"
{
    "$BASE" -m venv "$VENV"
    "$VENV/bin/python" -m pip --disable-pip-version-check install -q --upgrade pip
    "$VENV/bin/python" -m pip --disable-pip-version-check install -q "$TORCH_SPEC" numpy safetensors
} >"$LOG" 2>&1 || {
    echo "torch-env.sh: installing into $VENV failed; the end of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
}
"$VENV/bin/python" -c "import torch, numpy, safetensors" >&2
touch "$VENV/.complete"
echo "$VENV/bin/python"
