#!/usr/bin/env bash
# Builds the benchmarks in Release (in their own build directory), runs all of them and prints
# one table of every ratio against the performance targets, plus a PNG chart.
# Results (text, JSON, summary.md, chart.png) are kept in a timestamped folder of the build dir.
#
#   bench/run.sh                  full run: 2 GiB state, 5 reps, 1024 ranks x 2000 tensors
#   bench/run.sh --quick          256 MiB, 3 reps, load planning sampled on 64 ranks
#   bench/run.sh --size 512M --reps 3 --dir /data/scratch --no-peers
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
size=2G
reps=5
load_reps=9
dir="${TMPDIR:-/var/tmp}"
build="${SHARDPOINT_BENCH_BUILD:-/tmp/shardpoint-bench-build}"
# torch is never installed here (its wheels are ~5 GB): the test command's cached venv is used
# when it exists, or any interpreter given with --python that can import torch.
python="${SHARDPOINT_BENCH_PYTHON:-}"
[[ -z $python && -x "$HOME/.cache/shardpoint/torch-venv/bin/python" ]] && python="$HOME/.cache/shardpoint/torch-venv/bin/python"
peers=1
plan=1
io=1
dcp=1
compression=1
plan_args=()
dcp_args=(--mib 2048 --reshard-mib 256 --small 20000)
small=20000

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
options: --size SIZE (2G)  --reps N (5)  --load-reps N (9: warm reads are cheap)  --dir DIR (checkpoints go there; default \$TMPDIR or /var/tmp)
         --build-dir DIR ($build)  --python PY (interpreter for the Python benches; default the cached torch venv, else a private venv)
         --plan-ranks N  --plan-tensors N (planning scale; default 1024 x 2000)
         --quick  --no-peers  --no-plan  --no-io  --no-dcp  --no-compression
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        --load-reps) load_reps="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --build-dir) build="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --plan-ranks) plan_args+=(--ranks "$2"); shift 2 ;;
        --plan-tensors) plan_args+=(--tensors "$2"); shift 2 ;;
        --quick) size=256M; reps=3; load_reps=5; plan_args+=(--load-ranks 64); small=5000
                 dcp_args=(--mib 256 --reshard-mib 64 --small 5000); shift ;;
        --no-peers) peers=0; shift ;;
        --no-plan) plan=0; shift ;;
        --no-io) io=0; shift ;;
        --no-dcp) dcp=0; shift ;;
        --no-compression) compression=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "== building (Release) in $build"
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSHARDPOINT_BUILD_BENCH=ON \
      -DSHARDPOINT_BUILD_TESTS=OFF -DSHARDPOINT_WITH_MPI=OFF -DSHARDPOINT_BINDING_TESTS=OFF >"$build.cmake.log" 2>&1 \
    || { cat "$build.cmake.log"; exit 1; }
cmake --build "$build" -j2 --target shardpoint shardpoint_bench shardpoint_plan_bench >"$build.build.log" 2>&1 \
    || { cat "$build.build.log"; exit 1; }
bin="$build/bin"

out="$build/results-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out" "$dir"
echo "== results go to $out"
# Everything the benchmarks write goes into one folder that is removed however the run ends.
work="$(mktemp -d "$dir/shardpoint-run-XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
dir="$work"

if [[ $io == 1 ]]; then
    echo "== shardpoint_bench --size $size --reps $reps --load-reps $load_reps --dir $dir"
    "$bin/shardpoint_bench" --size "$size" --reps "$reps" --load-reps "$load_reps" --dir "$dir" --json "$out/io.json" \
        | tee "$out/io.txt"
fi

if [[ $plan == 1 ]]; then
    echo
    echo "== shardpoint_plan_bench ${plan_args[*]:-}"
    "$bin/shardpoint_plan_bench" --dir "$dir" --json "$out/plan.json" "${plan_args[@]}" | tee "$out/plan.txt"
fi

# The Python benches use the package from this checkout on the library just built.
export PYTHONPATH="$root/bindings/python/src${PYTHONPATH:+:$PYTHONPATH}"
export SHARDPOINT_LIBRARY="$build/lib/libshardpoint.so"
py_ok() { "$1" -c 'import numpy, safetensors, matplotlib' 2>/dev/null; }
if [[ $peers == 1 || $compression == 1 ]]; then
    if [[ -z $python ]] && py_ok python3; then python=python3; fi
    if [[ -z $python ]] || ! py_ok "$python"; then
        # A private venv in the build dir, so nothing is installed into the system's Python.
        if [[ ! -x "$build/venv/bin/python" ]] || ! py_ok "$build/venv/bin/python"; then
            echo "== installing numpy, safetensors and matplotlib into $build/venv"
            python3 -m venv "$build/venv" && "$build/venv/bin/pip" install -q numpy safetensors matplotlib \
                || { echo "   could not install them: peers and compression benches skipped"; peers=0; compression=0; }
        fi
        python="$build/venv/bin/python"
    fi
fi
has_torch=0
[[ -n $python ]] && "$python" -c 'import torch.distributed.checkpoint' 2>/dev/null && has_torch=1

if [[ $peers == 1 ]]; then
    echo
    echo "== peers.py (safetensors; torch.distributed.checkpoint if importable)"
    # shardpoint's side is re-measured rep by rep between the peers' reps (not taken from
    # io.json): on a shared machine only measurements taken side by side compare.
    "$python" "$here/peers.py" --bench "$bin/shardpoint_bench" --size "$size" --reps "$reps" --dir "$dir" \
        --small "$small" --json "$out/peers.json" | tee "$out/peers.txt"
fi

if [[ $dcp == 1 ]]; then
    echo
    if [[ $has_torch == 1 ]]; then
        echo "== dcp_bench.py ${dcp_args[*]} (shardpoint.torch against DCP's FileSystemWriter/Reader)"
        OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=lo "$python" "$here/dcp_bench.py" "${dcp_args[@]}" --reps "$reps" --dir "$dir" \
            --json "$out/dcp.json" | tee "$out/dcp.txt"
    else
        echo "== dcp_bench.py skipped: torch is not importable by ${python:-python3} (pass --python)"
    fi
fi

if [[ $compression == 1 ]]; then
    echo
    echo "== compression_bench.py (codecs on f32 and bf16 weights and f32 optimizer moments)"
    "$python" "$here/compression_bench.py" --mib 64 --reps "$reps" --dir "$dir" --json "$out/compression.json" \
        | tee "$out/compression.txt"
fi

echo
summary_python=python3
[[ -n $python ]] && summary_python="$python"
"$summary_python" "$here/summarize.py" --io "$out/io.json" --plan "$out/plan.json" --peers "$out/peers.json" \
    --dcp "$out/dcp.json" --compression "$out/compression.json" --markdown "$out/summary.md" --chart "$out/chart.png" \
    | tee "$out/summary.txt"
