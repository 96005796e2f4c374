#!/usr/bin/env bash
# Builds and tests the Rust binding against an installed shardpoint.
#
#   bindings/rust/run-tests.sh PREFIX     # PREFIX as given to `cmake --install --prefix`
#
# Runs `cargo test` for the workspace, then the golden round trip: `golden write` with 3 ranks
# into a temporary directory and `golden read` of it. Exits non-zero on any failure.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
PREFIX=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The library directory of the prefix (lib, lib64 or a multiarch lib/<triple>).
LIBDIR=""
for d in "$PREFIX/lib" "$PREFIX/lib64" "$PREFIX"/lib/*-linux-gnu; do
    if [ -e "$d/libshardpoint.so" ]; then
        LIBDIR=$d
        break
    fi
done
if [ -z "$LIBDIR" ]; then
    echo "run-tests.sh: no libshardpoint.so under $PREFIX" >&2
    exit 1
fi

export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The prefix given here wins over any library directory set in the environment. Without a
# pkg-config program (a bare Rust machine) shardpoint-sys is pointed at the directory instead.
unset SHARDPOINT_LIB_DIR SHARDPOINT_SYS_NO_LINK
if ! command -v pkg-config >/dev/null 2>&1; then
    echo "run-tests.sh: pkg-config not found; using SHARDPOINT_LIB_DIR=$LIBDIR"
    export SHARDPOINT_LIB_DIR="$LIBDIR"
fi
cd "$HERE"
cargo fetch --locked
cargo build --locked --workspace --all-targets
cargo test --locked --workspace
# The optional features (half::f16/bf16 elements, ndarray arrays in and out).
cargo test --locked --workspace --features shardpoint/half,shardpoint/ndarray

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shardpoint-rust-golden.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cargo run --locked --quiet -p shardpoint --example golden -- write "$tmp/ckpt" 3
cargo run --locked --quiet -p shardpoint --example golden -- read "$tmp/ckpt"
echo "run-tests.sh: rust binding OK"
