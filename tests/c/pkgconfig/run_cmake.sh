#!/bin/sh
# run_cmake.sh CMAKE GENERATOR PREFIX WORKDIR SOURCEDIR
# Configures, builds and runs SOURCEDIR/cmake_consumer, a CMake project that finds shardpoint in
# PREFIX with find_package(shardpoint) and links shardpoint::shardpoint.
set -eu
cmake=$1
generator=$2
prefix=$3
work=$4
srcdir=$5

rm -rf "$work"
"$cmake" -S "$srcdir/cmake_consumer" -B "$work" -G "$generator" \
  -DCMAKE_PREFIX_PATH="$prefix" -DSP_EXPECTED_PREFIX="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
"$cmake" --build "$work"
# The imported target carries the library's location: no LD_LIBRARY_PATH (build-tree RPATH).
env -u LD_LIBRARY_PATH "$work/consumer" "$work/ckpt"
echo "CMake consumer ok"
