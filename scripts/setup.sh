#!/usr/bin/env bash
# Sets up a Debian 12 machine for Loom and builds it. Idempotent.
#
#   ./scripts/setup.sh           installs what is missing, builds loomd and loom:
#                                what `loom demo` needs, nothing more
#   ./scripts/setup.sh --tests   the same, then everything else: loom-infer, every
#                                test suite and benchmark (what ctest runs)
#
# The build goes to ./build, or to $LOOM_BUILD_DIR (for a read-only source tree).
# The CUDA backend of loom-infer is built when asked (LOOM_WITH_CUDA=ON), when a GPU
# is present (nvidia-smi lists one), or under CI=true where nvcc is installed (CI
# keeps it compiling); LOOM_WITH_CUDA=OFF turns it off in every case.
# With CI=true warnings are errors. ccache, when installed, makes a second clone's
# build cheap (paths are hashed relative to the source tree).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=demo
case "${1:-}" in
  "") ;;
  --tests) mode=tests ;;
  *)
    echo "usage: $0 [--tests]" >&2
    exit 2
    ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config git ccache
  libboost-dev nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libsqlite3-dev libgit2-dev libssh2-1-dev libcurl4-openssl-dev libssl-dev libseccomp-dev
  libsystemd-dev
  zlib1g-dev libbrotli-dev
  libgtest-dev libgmock-dev
  bubblewrap unicode-data python3 curl procps
)
if [ "$mode" = tests ]; then
  # clang: the thread-safety analysis test (scripts/thread_safety_check.py).
  # lighttpd, openssh-server: the real git servers on loopback that
  # tests/repos/remote_server_test.cc starts (tests/support/git_server.h).
  packages+=(wrk clang lighttpd openssh-server)
  # systemd: systemd-analyze checks the units in packaging/ (package_test.sh).
  packages+=(systemd)
  # chromium: the browser the widget's tests drive (tests/web/), with Node.js and
  # npm from Debian unless some node and npm are there already (a nodejs package
  # from elsewhere brings its own npm, which Debian's would fight).
  packages+=(chromium)
  # slurm-wlm, munge: the single-node Slurm on localhost that the Slurm executor's
  # tests start (tests/support/slurm_cluster.h; slurmctld, slurmd, munged, srun).
  packages+=(slurm-wlm munge)
  # prometheus: promtool checks and tests the alert rules (tests/monitoring/).
  packages+=(prometheus)
  # python3-sentry-sdk: a real Sentry SDK (it sends gzip to the store endpoint)
  # for the crash report tests (tests/feedback/sentry_sdk_test.py).
  packages+=(python3-sentry-sdk)
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
fi

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

build_dir="${LOOM_BUILD_DIR:-build}"
cmake_args=(-S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${CI:-}" = "true" ]; then
  cmake_args+=(-DLOOM_WERROR=ON)
fi
if command -v ccache >/dev/null; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
fi

cuda="${LOOM_WITH_CUDA:-auto}"
nvcc=/usr/local/cuda/bin/nvcc
if [ "$cuda" = auto ]; then
  cuda=OFF
  if [ -x "$nvcc" ]; then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
      cuda=ON
    elif [ "${CI:-}" = "true" ]; then
      cuda=ON
    fi
  fi
fi
if [ "$cuda" = ON ]; then
  cmake_args+=(-DLOOM_WITH_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc")
else
  cmake_args+=(-DLOOM_WITH_CUDA=OFF)
fi

cmake "${cmake_args[@]}" >/dev/null
if [ "$mode" = demo ]; then
  cmake --build "$build_dir" -j "$(nproc)" --target loomd loom
  echo "setup: built loomd and loom into $build_dir/bin (./scripts/setup.sh --tests builds the rest)"
else
  cmake --build "$build_dir" -j "$(nproc)"
  # playwright-core (the version tests/web/package.json pins) drives the system's
  # chromium; Sentry's SDKs (@sentry/node, @sentry/browser, with esbuild to bundle the
  # browser one) are the crash report tests' apps. They go into the build dir, never
  # into the source tree.
  mkdir -p "$build_dir/web-tests"
  cp tests/web/package.json "$build_dir/web-tests/package.json"
  (cd "$build_dir/web-tests" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  echo "setup: built everything into $build_dir (binaries in $build_dir/bin)"
fi
