#!/usr/bin/env bash
# Sets up a Debian 12 machine for Loom and builds it in ./build.
# Installs only what is missing (apt-get update first), configures with CMake and
# builds with all cores. With CI=true warnings are errors. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libsqlite3-dev libgit2-dev libcurl4-openssl-dev libssl-dev libseccomp-dev
  libgtest-dev libgmock-dev
  bubblewrap unicode-data python3 curl wrk procps
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

cmake_args=(-S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${CI:-}" = "true" ]; then
  cmake_args+=(-DLOOM_WERROR=ON)
fi
if [ -x /usr/local/cuda/bin/nvcc ] && [ "${LOOM_WITH_CUDA:-auto}" != "OFF" ]; then
  cmake_args+=(-DLOOM_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
cmake "${cmake_args[@]}" >/dev/null
cmake --build build -j "$(nproc)"
echo "setup: built into ./build (binaries in ./build/bin)"
