#!/bin/sh
# check_exports.sh LIBRARY HEADER
# The dynamic symbols a library defines are exactly the functions its header declares: nothing
# else leaks (no C++ runtime, no core internals), nothing declared is missing. The SONAME carries
# the major version.
set -eu
lib=$1
header=$2

exports=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u)
declared=$(grep -E '^SHARDPOINT_API' "$header" | grep -oE 'shardpoint_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
status=0

for s in $exports; do
  case $s in
    shardpoint_*) ;;
    *) echo "exported symbol outside the API: $s"; status=1 ;;
  esac
  if ! printf '%s\n' "$declared" | grep -qx "$s"; then
    echo "exported but not declared in $(basename "$header"): $s"; status=1
  fi
done
for f in $declared; do
  if ! printf '%s\n' "$exports" | grep -qx "$f"; then
    echo "declared but not exported: $f"; status=1
  fi
done

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
case $soname in
  lib*.so.0) ;;
  *) echo "unexpected SONAME '$soname' (want lib<name>.so.0)"; status=1 ;;
esac

echo "$(printf '%s\n' "$exports" | wc -l) exported, $(printf '%s\n' "$declared" | wc -l) declared, SONAME $soname"
exit $status
