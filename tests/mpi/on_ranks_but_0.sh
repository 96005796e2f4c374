#!/bin/sh
# on_ranks_but_0.sh SHIM FAULTS PROGRAM [ARGS...]
# Runs PROGRAM with the fault-injection shim preloaded and SHARDPOINT_FAULT=FAULTS on every MPI
# rank except rank 0, which runs it untouched (see tests/fault/shim.c for FAULTS).
set -eu
shim=$1
faults=$2
shift 2
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-}}
if [ -z "$rank" ]; then
  echo "on_ranks_but_0.sh: no MPI rank in the environment" >&2
  exit 2
fi
if [ "$rank" != 0 ]; then
  export LD_PRELOAD="$shim" SHARDPOINT_FAULT="$faults"
fi
exec "$@"
