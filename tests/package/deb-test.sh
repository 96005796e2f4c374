#!/usr/bin/env bash
# The Debian packages as a C or C++ user gets them: `cpack -G DEB` of a Release build for /usr,
# `apt-get install ./*.deb`, then a program built with pkg-config and a project built with
# find_package(shardpoint) against the installed packages only, and the installed tool. The
# packages are removed again at the end (whatever happens), so that no later test can pick up
# the system copy by accident.
#
#   tests/package/deb-test.sh       (runs README's commands: builds in build-deb/; needs root or sudo, dpkg-dev)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
build=build-deb  # README's directory
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive

# README's commands, exactly (sudo dropped when root; apt-get answers yes).
mapfile -t commands < <(python3 - README.md <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text[text.index("### Debian packages"):]
print(re.search(r"^```sh\n(.*?)^```", section, re.S | re.M).group(1).strip())
PY
)
[ "${#commands[@]}" = 3 ] || { echo "README's Debian section changed: ${commands[*]}"; exit 1; }
apt_config=$(mktemp)
log=$(mktemp)
echo 'APT::Get::Assume-Yes "true";' >"$apt_config"
export APT_CONFIG=$apt_config
cleanup() { $sudo apt-get purge -y -qq libshardpoint-dev libshardpoint0 >/dev/null 2>&1 || true; rm -f "$apt_config" "$log"; }
trap cleanup EXIT
rm -f "$build"/*.deb
for c in "${commands[@]:0:2}"; do
    echo "\$ $c"
    bash -c "$c" >"$log" 2>&1 || { tail -n 40 "$log"; exit 1; }
done
runtime=$(ls "$build"/libshardpoint0_*.deb)
dev=$(ls "$build"/libshardpoint-dev_*.deb)
echo "packages: $(basename "$runtime") $(basename "$dev")"

# The split: the runtime package holds the libraries and the tool, the dev package the rest.
dpkg-deb -c "$runtime" | awk '{print $6}' >"$build/runtime.list"
dpkg-deb -c "$dev" | awk '{print $6}' >"$build/dev.list"
grep -Eq '/usr/lib/.*/libshardpoint\.so\.0$' "$build/runtime.list" || { echo "runtime package lacks libshardpoint.so.0"; exit 1; }
grep -q '^\./usr/bin/shardpoint$' "$build/runtime.list" || { echo "runtime package lacks the tool"; exit 1; }
if grep -Eq '\.h$|\.hpp$|\.pc$|\.cmake$|libshardpoint\.so$' "$build/runtime.list"; then
    echo "runtime package holds development files:"; grep -E '\.h$|\.hpp$|\.pc$|\.cmake$|\.so$' "$build/runtime.list"; exit 1
fi
for f in '/usr/include/shardpoint.h$' '/usr/include/shardpoint.hpp$' '/pkgconfig/shardpoint.pc$' \
         '/cmake/shardpoint/shardpointConfig.cmake$' 'libshardpoint\.so$'; do
    grep -Eq "$f" "$build/dev.list" || { echo "dev package lacks $f"; exit 1; }
done
dpkg-deb -f "$runtime" Depends | grep -q libcapnp || { echo "runtime Depends lacks Cap'n Proto: $(dpkg-deb -f "$runtime" Depends)"; exit 1; }
dpkg-deb -f "$dev" Depends | grep -q 'libshardpoint0 (= ' || { echo "dev does not depend on the runtime"; exit 1; }

install=${commands[2]}
[ -z "$sudo" ] && install=${install#sudo }
echo "\$ $install"
bash -c "$install" >"$log" 2>&1 || { tail -n 40 "$log"; exit 1; }

work=$(mktemp -d)
trap 'cleanup; rm -rf "$work"' EXIT
# README's first C example, as README says to build it, in an empty environment.
python3 - "$repo/README.md" "$work/app.c" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
open(sys.argv[2], "w").write(re.findall(r"^```c\n(.*?)^```", text, re.S | re.M)[0])
PY
echo "--- pkg-config"
(cd "$work" && cc app.c $(pkg-config --cflags --libs shardpoint) -o app-pc && env -i ./app-pc >/dev/null)
echo "app built with pkg-config runs: $(pkg-config --modversion shardpoint), libdir $(pkg-config --variable=libdir shardpoint)"
echo "--- find_package(shardpoint)"
mkdir -p "$work/cm"
cp "$work/app.c" "$work/cm/"
cat >"$work/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(app C)
find_package(shardpoint 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app PRIVATE shardpoint::shardpoint)
CM
cmake -S "$work/cm" -B "$work/cm/build" >/dev/null && cmake --build "$work/cm/build" >/dev/null
(cd "$work" && env -i ./cm/build/app >/dev/null)
echo "app built with find_package runs"
echo "--- the installed tool"
(cd "$work" && env -i /usr/bin/shardpoint --version && env -i /usr/bin/shardpoint inspect --help >/dev/null)
echo "deb-test.sh: all passed"
