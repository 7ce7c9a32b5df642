#!/usr/bin/env bash
# The GPU checks of loom-infer as one script, for a GPU node with only a stock
# CUDA image (Ubuntu 24.04, nvcc, cmake, ninja, cuBLAS; NCCL inside PyTorch's
# wheels): configure loom-infer alone with CUDA, build, run the `gpu` tests,
# the decode benchmark and the PyTorch peers. Everything lands in $OUT:
#   nvidia-smi.txt configure.log build.log gpu-tests.log bench.log loom.json
#   torch_graph.log hf_eager.log (+ the peers' JSON files)
#
# From a development machine, with the device tool:
#   mkdir -p .gpu && cp -r ../shared/fixtures ../shared/peers .gpu/
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=560)
#
# Environment: LOOM_NCCL_ROOT (default: PyTorch's nvidia/nccl), PYTHON (the
# interpreter with torch + transformers), LOOM_FIXTURES_DIR (default
# .gpu/fixtures), PEERS (default .gpu/peers), BENCH_RUNS (default 3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
site=/opt/torch/.venv/lib/python3.12/site-packages
NCCL_ROOT=${LOOM_NCCL_ROOT:-$site/nvidia/nccl}
PY=${PYTHON:-/opt/torch/.venv/bin/python}
export LOOM_FIXTURES_DIR=${LOOM_FIXTURES_DIR:-$PWD/.gpu/fixtures}
PEERS=${PEERS:-$PWD/.gpu/peers}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
step() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.log"; }

step "device"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

# GoogleTest may be there as sources only: build it once into .gpu/gtest.
gtest_args=()
if ! ls /usr/lib/*/libgtest.a /usr/lib/libgtest.a >/dev/null 2>&1 && [ -d /usr/src/googletest ]; then
  step "building GoogleTest from /usr/src/googletest"
  cmake -S /usr/src/googletest -B .gpu/gtest-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$PWD/.gpu/gtest" > "$OUT/gtest.log" 2>&1 &&
    cmake --build .gpu/gtest-build --target install >> "$OUT/gtest.log" 2>&1
  gtest_args=(-DGTest_ROOT="$PWD/.gpu/gtest")
fi
targets=(inference_cuda_backend_test inference_cuda_decode_bench loom-infer)
if ! ls /usr/lib/*/libgtest.a /usr/lib/libgtest.a .gpu/gtest/lib*/libgtest.a >/dev/null 2>&1; then
  step "no GoogleTest here: building the benchmark and loom-infer only"
  gtest_args=(-DLOOM_BUILD_TESTS=OFF)
  targets=(inference_cuda_decode_bench loom-infer)
fi

step "configure (LOOM_INFER_ONLY, CUDA, NCCL from $NCCL_ROOT)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOOM_INFER_ONLY=ON \
  -DLOOM_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" -DLOOM_NCCL_ROOT="$NCCL_ROOT" \
  "${gtest_args[@]}" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }

step "build"
cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" > "$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log"; exit 1; }

if [ -x build-gpu/bin/inference_cuda_backend_test ]; then
  step "gpu tests"
  ./build-gpu/bin/inference_cuda_backend_test 2>&1 | tee "$OUT/gpu-tests.log" | tail -25
fi

step "loom-infer decode benchmark"
timeout 300 ./build-gpu/bin/inference_cuda_decode_bench --runs "${BENCH_RUNS:-3}" \
  --json "$OUT/loom.json" 2>&1 | tee "$OUT/bench.log"

step "peers (same GPU, same run)"
(cd "$OUT" && OUT="$OUT" timeout 200 "$PY" "$PEERS/torch_graph_decode.py" > torch_graph.log 2>&1)
tail -5 "$OUT/torch_graph.log"
(cd "$OUT" && OUT="$OUT" timeout 150 "$PY" "$PEERS/hf_eager_decode.py" > hf_eager.log 2>&1)
tail -5 "$OUT/hf_eager.log"
step "done"
