#!/bin/sh
# run_pkgconfig.sh PREFIX WORKDIR CONSUMER_C
# Builds CONSUMER_C against the shardpoint installed in PREFIX using nothing but
# `pkg-config --cflags --libs shardpoint`, checks that it resolves the installed library, runs it;
# then does the same from a moved copy of the prefix (the .pc files are relocatable).
set -eu
prefix=$1
work=$2
src=$3

rm -rf "$work"
mkdir -p "$work"

build_and_run() {
  root=$1
  tag=$2
  pc=$(find "$root" -name shardpoint.pc -path '*/pkgconfig/*' | head -n 1)
  [ -n "$pc" ] || { echo "no shardpoint.pc under $root"; exit 1; }
  # Only this prefix's .pc files are visible, never the system's or the source tree's.
  PKG_CONFIG_LIBDIR=$(dirname "$pc")
  PKG_CONFIG_PATH=
  export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH
  flags=$(pkg-config --cflags --libs shardpoint)
  libdir=$(pkg-config --variable=libdir shardpoint)
  echo "[$tag] pkg-config --cflags --libs shardpoint: $flags"
  ${CC:-cc} -std=c11 -Wall -Wextra -Werror -o "$work/consumer-$tag" "$src" $flags
  resolved=$(LD_LIBRARY_PATH=$libdir ldd "$work/consumer-$tag" | awk '/libshardpoint\.so/ { print $3 }')
  case $(readlink -f "$resolved") in
    "$(readlink -f "$root")"/*) ;;
    *) echo "[$tag] the consumer resolved libshardpoint to '$resolved', outside $root"; exit 1 ;;
  esac
  LD_LIBRARY_PATH=$libdir "$work/consumer-$tag" "$work/ckpt-$tag"
  [ -f "$work/ckpt-$tag/shardpoint.meta" ] || { echo "[$tag] no checkpoint written"; exit 1; }
}

build_and_run "$prefix" installed
cp -a "$prefix" "$work/moved-prefix"
build_and_run "$work/moved-prefix" moved
echo "pkg-config consumers ok"
