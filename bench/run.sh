#!/usr/bin/env bash
# Builds the benchmarks in Release (in their own build directory), runs all of them and prints
# a summary table. Results (text and JSON) are kept in a timestamped folder of the build dir.
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
peers=1
plan=1
io=1
plan_args=()

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
options: --size SIZE (2G)  --reps N (5)  --load-reps N (9: warm reads are cheap)  --dir DIR (checkpoints go there; default \$TMPDIR or /var/tmp)
         --build-dir DIR ($build)  --quick  --no-peers  --no-plan  --no-io
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        --load-reps) load_reps="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --build-dir) build="$2"; shift 2 ;;
        --quick) size=256M; reps=3; load_reps=5; plan_args=(--load-ranks 64); shift ;;
        --no-peers) peers=0; shift ;;
        --no-plan) plan=0; shift ;;
        --no-io) io=0; shift ;;
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
cmake --build "$build" -j2 --target shardpoint_bench shardpoint_plan_bench >"$build.build.log" 2>&1 \
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

if [[ $peers == 1 ]]; then
    echo
    echo "== peers.py (safetensors; torch.distributed.checkpoint if importable)"
    py=python3
    if ! python3 -c 'import numpy, safetensors' 2>/dev/null; then
        # A private venv in the build dir, so nothing is installed into the system's Python.
        if [[ ! -x "$build/venv/bin/python" ]] || ! "$build/venv/bin/python" -c 'import numpy, safetensors' 2>/dev/null; then
            echo "   installing numpy and safetensors into $build/venv"
            python3 -m venv "$build/venv" && "$build/venv/bin/pip" install -q numpy safetensors \
                || { echo "   could not install numpy/safetensors: peers skipped"; peers=0; }
        fi
        py="$build/venv/bin/python"
    fi
    if [[ $peers == 1 ]]; then
        # shardpoint's side is re-measured rep by rep between the peers' reps (not taken from
        # io.json): on a shared machine only measurements taken side by side compare.
        "$py" "$here/peers.py" --bench "$bin/shardpoint_bench" --size "$size" --reps "$reps" --dir "$dir" \
            --json "$out/peers.json" | tee "$out/peers.txt"
    fi
fi

echo
python3 "$here/summarize.py" --io "$out/io.json" --plan "$out/plan.json" --peers "$out/peers.json" | tee "$out/summary.txt"
