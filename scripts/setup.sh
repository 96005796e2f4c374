#!/usr/bin/env bash
# Installs what building and testing shardpoint needs on a fresh Debian machine (run as root,
# or with sudo available). Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config capnproto libcapnp-dev zlib1g-dev libzstd-dev
          libcmocka-dev libgtest-dev googletest libopenmpi-dev openmpi-bin nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: Debian packages present"
