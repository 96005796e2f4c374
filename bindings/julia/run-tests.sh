#!/usr/bin/env bash
# Tests of the Julia binding.
#
#   bindings/julia/run-tests.sh PREFIX
#
# PREFIX is where shardpoint is installed (PREFIX/lib/libshardpoint.so, PREFIX/include/shardpoint.h).
# Julia itself is usually not available on CI, so the binding is checked statically by
# check/check.js (Node.js, tree-sitter's Julia grammar): every .jl file parses, every ccall
# matches the header and the built library, and positions are 1-based everywhere but in the
# conversion helpers of src/positions.jl. check/selftest.js first proves that the checker catches
# deliberate mistakes. When `julia` is on PATH, test/runtests.jl also runs (Pkg.test).
#
# The last line is "N passed, N failed"; the exit status is non-zero when anything failed.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
PREFIX=$(cd "$1" 2>/dev/null && pwd) || { echo "FAIL no such prefix: $1"; echo "0 passed, 1 failed"; exit 1; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LIBRARY="$PREFIX/lib/libshardpoint.so.0"
HEADER="$PREFIX/include/shardpoint.h"

passed=0
failed=0

# Adds the "X passed, Y failed" counts a step printed on its last line; a step that ends without
# such a line (it crashed) counts as one failure.
count_from() {
    local line
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        [ "$2" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || failed=$((failed + 1))
    else
        failed=$((failed + 1))
    fi
}

# One pass/fail step.
single() {
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
    fi
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== prerequisites"
single "library $LIBRARY exists" test -e "$LIBRARY"
# The UUID the package reads its preferences under is the one its Project.toml declares.
uuid=$(sed -n 's/^uuid = "\(.*\)"$/\1/p' "$HERE/Project.toml")
single "LibShardpoint.package_uuid is Project.toml's uuid ($uuid)" grep -q "Base.UUID(\"$uuid\")" "$HERE/src/LibShardpoint.jl"
single "header $HEADER exists" test -f "$HEADER"
single "installed header is capi/include/shardpoint.h" cmp -s "$HEADER" "$REPO/capi/include/shardpoint.h"
if command -v pkg-config >/dev/null 2>&1; then
    single "pkg-config finds shardpoint" pkg-config --exists shardpoint
fi

echo "== npm ci (tree-sitter, tree-sitter-julia)"
if (cd "$HERE/check" && npm ci --no-audit --no-fund --loglevel=error); then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL npm ci"
    echo "$passed passed, $failed failed"
    exit 1
fi

echo "== checker self-test"
node "$HERE/check/selftest.js" --header "$HEADER" 2>&1 | tee "$log"
count_from "$log" "${PIPESTATUS[0]}"

echo "== static check of the Julia sources against the header and the library"
(cd "$HERE" && node check/check.js --root "$HERE" --header "$HEADER" --lib "$LIBRARY") 2>&1 | tee "$log"
count_from "$log" "${PIPESTATUS[0]}"

if command -v julia >/dev/null 2>&1; then
    echo "== julia: Pkg.test()"
    # The prefix's library through the package's preference, in a copy of the project.
    project=$(mktemp -d)
    cp -R "$HERE/Project.toml" "$HERE/src" "$HERE/test" "$project/"
    printf '[Shardpoint]\nlibrary = "%s"\n' "$LIBRARY" >"$project/LocalPreferences.toml"
    single "test/runtests.jl" julia --project="$project" -e 'using Pkg; Pkg.instantiate(); Pkg.test()'
    rm -rf "$project"
else
    echo "== julia not found: test/runtests.jl not run (it runs wherever Julia 1.9+ exists)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
