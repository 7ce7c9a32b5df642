#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run through traps, "have_$1" and bash -c
# The first GPU run of loom-infer as one command that cannot waste itself: on a
# GPU node with only a stock CUDA image (nvcc, cmake, ninja, cuBLAS, PyTorch with
# NCCL inside its wheels; no network), configure loom-infer alone with CUDA,
# build the GPU test and the decode benchmark, run them, then the PyTorch peers.
#
# Two modes:
#   bash scripts/gpu-check.sh prepare   here, with a network: fills .gpu/ with the
#       Debian header packages the GPU image may lack (.gpu/debs: Boost, nlohmann,
#       CLI11, GoogleTest; ~10 MB) and the peers from ../shared/peers (.gpu/peers).
#   bash scripts/gpu-check.sh           on the GPU node, from the device tool:
#       run(command="bash scripts/gpu-check.sh", carry=[".gpu"], timeout_s=590)
#
# The steps, must-haves first. Each runs under `timeout`, and every step before
# the CUDA-graph peer is cut short so that the peer keeps its time; a failed step
# never stops the script (later steps skip only what they cannot do without it):
#   preflight   tool versions, the GPU, where each dependency was found
#   deps        dpkg -x the missing header packages from .gpu/debs into .gpu/sysroot
#   configure   LOOM_INFER_ONLY + CUDA, NCCL from PyTorch's wheel
#   build       inference_cuda_backend_test and inference_cuda_decode_bench only
#   gpu-tests   the test binary without the NCCL tests
#   bench       the decode benchmark (--runs $BENCH_RUNS)
#   peer-graph  torch_graph_decode.py: ALWAYS runs, whatever failed before
#   nccl-tests  the NCCL tests (they start NCCL inside a VM: last, so a hang costs nothing else)
#   memcheck    compute-sanitizer memcheck on a few tiny-fixture tests, if time is left
#   peer-hf     hf_eager_decode.py, only if LOOM_GPU_HF_MIN_LEFT_S remain
#   loom-infer  a compile check of the server with this compiler, if time is left
#
# Only 8 files come back from a device run, so $OUT holds two: summary.txt (also
# printed at the end) and gpu-run.tar.gz with every log, the JSON results and the
# summary, rewritten after each step so that a run cut short still returns its logs.
# Exit status: 0 when every must-have step (configure .. peer-graph) passed, else 1.
#
# Environment (defaults in brackets):
#   OUT [./gpu-out]; PYTHON [/opt/torch/.venv/bin/python, else python3];
#   LOOM_NCCL_ROOT [PyTorch's nvidia/nccl, else the CUDA toolkit's];
#   LOOM_FIXTURES_DIR [tests/fixtures, else .gpu/fixtures]; PEERS [.gpu/peers];
#   BENCH_RUNS [3]; LOOM_GPU_ATTENTION [1,2]: the attention kernels the benchmark
#   times, one after the other; LOOM_BENCH_ARGS [none]: more arguments for the benchmark;
#   LOOM_GPU_BUDGET_S [540]: the whole run; LOOM_GPU_T_<STEP>_S: one step's limit;
#   LOOM_GPU_DIR [.gpu]; LOOM_GPU_BUILD_DIR [build-gpu]; LOOM_GPU_LOGS [build-gpu/gpu-run];
#   LOOM_GPU_SYSTEM_ROOT [/]: where system headers are looked for.
# scripts/gpu_check_test.sh runs this script with fakes of nvidia-smi, nvcc, cmake,
# python and the binaries to check its logic here (ctest: GpuCheckScript.*).
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
GPU_DIR=${LOOM_GPU_DIR:-$ROOT/.gpu}

# Step limits (seconds). The sum exceeds the budget on purpose: each step before
# the peer is capped at what is left minus RESERVE, so only a slow run loses its tail.
T_PREFLIGHT=${LOOM_GPU_T_PREFLIGHT_S:-60}
T_DEPS=${LOOM_GPU_T_DEPS_S:-60}
T_CONFIGURE=${LOOM_GPU_T_CONFIGURE_S:-90}
T_BUILD=${LOOM_GPU_T_BUILD_S:-300}
T_TESTS=${LOOM_GPU_T_TESTS_S:-150}
T_BENCH=${LOOM_GPU_T_BENCH_S:-180}
T_PEER=${LOOM_GPU_T_PEER_S:-120}
T_NCCL=${LOOM_GPU_T_NCCL_S:-60}
T_MEMCHECK=${LOOM_GPU_T_MEMCHECK_S:-90}
T_HF=${LOOM_GPU_T_HF_S:-150}
T_INFER=${LOOM_GPU_T_INFER_S:-120}
BUDGET=${LOOM_GPU_BUDGET_S:-540}
TAIL_S=10                          # the final tar and summary
RESERVE=$((T_PEER + TAIL_S + 10))  # kept free for the peer until it has run; +10 for timeout's -k
HF_MIN_LEFT=${LOOM_GPU_HF_MIN_LEFT_S:-100}
MIN_STEP_S=3

prepare() {
  local shared=${LOOM_SHARED_DIR:-$ROOT/../shared} boost
  rm -rf "$GPU_DIR/peers" && mkdir -p "$GPU_DIR/debs" "$GPU_DIR/peers" || return 1
  # libboost-dev is a metapackage; apt-get download takes no dependencies, so name the real one.
  boost=$(apt-cache depends libboost-dev 2>/dev/null | awk '/Depends: libboost[0-9.]+-dev/ {print $2; exit}')
  (cd "$GPU_DIR/debs" && rm -f ./*.deb &&
    apt-get download "${boost:-libboost1.74-dev}" nlohmann-json3-dev libcli11-dev libgtest-dev) || return 1
  cp -r "$shared/peers/." "$GPU_DIR/peers/" || return 1
  ls -l "$GPU_DIR/debs" "$GPU_DIR/peers"
  du -sh "$GPU_DIR"
  echo "ready: run(command=\"bash scripts/gpu-check.sh\", carry=[\".gpu\"], timeout_s=590)"
}
if [ "${1:-}" = prepare ]; then prepare; exit; fi

OUT=${OUT:-$ROOT/gpu-out}
BUILD=${LOOM_GPU_BUILD_DIR:-$ROOT/build-gpu}
LOGS=${LOOM_GPU_LOGS:-$BUILD/gpu-run}
SYSTEM_ROOT=${LOOM_GPU_SYSTEM_ROOT:-}
SYSROOT=$GPU_DIR/sysroot
PEERS=${PEERS:-$GPU_DIR/peers}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x /opt/torch/.venv/bin/python ]; then PY=/opt/torch/.venv/bin/python
else PY=python3; fi
# The fixtures travel with the tree (tests/fixtures); a .gpu/fixtures copy is the fallback.
if [ -z "${LOOM_FIXTURES_DIR:-}" ]; then
  LOOM_FIXTURES_DIR=$ROOT/tests/fixtures
  [ ! -d "$LOOM_FIXTURES_DIR/tiny-llama" ] && [ -d "$GPU_DIR/fixtures/tiny-llama" ] &&
    LOOM_FIXTURES_DIR=$GPU_DIR/fixtures
fi
export LOOM_FIXTURES_DIR
TEST_BIN=$BUILD/bin/inference_cuda_backend_test
BENCH_BIN=$BUILD/bin/inference_cuda_decode_bench
NCCL_FILTER='*Nccl*:*TensorParallel*'
MEMCHECK_FILTER=${LOOM_GPU_MEMCHECK_FILTER:-*CudaBackendTest.Prefill*:*CudaBackendTest.Greedy*:*CudaBackendTest.Batched*}

mkdir -p "$OUT"
rm -rf "$LOGS"
mkdir -p "$LOGS" || LOGS=$(mktemp -d)  # no exit before the peer, even here
START=$SECONDS
peer_done=0
must_failed=0
configured=0

elapsed() { echo $((SECONDS - START)); }
left() { echo $((BUDGET - (SECONDS - START))); }
say() { echo "== $(date +%T) [+$(elapsed)s] $*"; }

# One line per step in steps.tsv: name, status, exit code, seconds, note.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$LOGS/steps.tsv"; }

# Rewrites $OUT/gpu-run.tar.gz from $LOGS (atomically: a run killed mid-tar keeps the last one).
pack() {
  tar czf "$OUT/gpu-run.tar.gz.part" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" 2>/dev/null &&
    mv -f "$OUT/gpu-run.tar.gz.part" "$OUT/gpu-run.tar.gz"
}

# limit WANT: the timeout for the next step; before the peer has run, RESERVE stays free.
limit() {
  local keep=$TAIL_S t
  [ "$peer_done" = 1 ] || keep=$RESERVE
  t=$(( $(left) - keep ))
  (( t > $1 )) && t=$1
  echo "$t"
}

# run_step NAME KIND WANT CMD...: runs CMD under timeout with its output in
# $LOGS/NAME.log. KIND is must (a failure fails the run), peer (its limit is
# reserved, never cut) or extra. Returns CMD's status; never exits.
run_step() {
  local name=$1 kind=$2 want=$3 t rc status t0
  shift 3
  if [ "$kind" = peer ]; then t=$want; else t=$(limit "$want"); fi
  if (( t < MIN_STEP_S )); then
    skip "$name" "$kind" "no time left (${t}s for it; $(left)s of the budget)"
    return 1
  fi
  say "$name (limit ${t}s)"
  t0=$SECONDS
  # In the background, so that a TERM to this script is handled at once (on_term).
  timeout -k 10 "$t" "$@" > "$LOGS/$name.log" 2>&1 &
  step_pid=$!
  wait "$step_pid"
  rc=$?
  step_pid=
  status=$(verdict "$name" "$rc")
  [ "$status" != ok ] && [ "$kind" != extra ] && must_failed=1
  local note="limit ${t}s"
  [ "$rc" = 0 ] && [ "$status" = FAILED ] && note="$note; tests were skipped: no GPU seen?"
  record "$name" "$status" "$rc" $((SECONDS - t0)) "$note"
  say "$name: $status (rc $rc, $((SECONDS - t0))s)"
  pack
  return $rc
}

# verdict NAME RC: ok, TIMEOUT or FAILED. A test run whose tests were skipped
# (no device seen) proves nothing, so it counts as FAILED.
verdict() {
  case $2 in
    0) if [[ $1 == *tests || $1 == memcheck ]] && grep -q -E '^\[ +SKIPPED +\] [0-9]+ tests?' "$LOGS/$1.log"
       then echo FAILED; else echo ok; fi ;;
    124|137) echo TIMEOUT ;;
    *) echo FAILED ;;
  esac
}

# skip NAME KIND WHY: records a step that did not run; a skipped must-have fails the run.
skip() {
  [ "$2" != extra ] && must_failed=1
  record "$1" skipped - 0 "$3"
  say "$1: skipped: $3"
  pack
}

# Header probes under the system root (LOOM_GPU_SYSTEM_ROOT lets the dry run hide this host's).
sys_has() { compgen -G "$SYSTEM_ROOT/usr/$1" > /dev/null || compgen -G "$SYSTEM_ROOT/usr/local/$1" > /dev/null; }
root_has() { compgen -G "$SYSROOT/usr/$1" > /dev/null; }
# GoogleTest needs its header and a static library (multiarch or plain lib/).
gtest_in() { "$1" include/gtest/gtest.h && { "$1" 'lib/*/libgtest.a' || "$1" lib/libgtest.a || "$1" lib64/libgtest.a; }; }
have_boost() { "$1" include/boost/version.hpp; }
have_json() { "$1" include/nlohmann/json.hpp; }
have_cli11() { "$1" include/CLI/CLI.hpp; }
have_gtest() { gtest_in "$1"; }

# Where each dependency is: "system", "sysroot" (unpacked from .gpu/debs), or "MISSING".
where() {
  if "have_$1" sys_has; then echo system
  elif "have_$1" root_has; then echo sysroot
  else echo MISSING; fi
}

first_line() { timeout -k 2 10 "$@" 2>&1 | head -1; }

# Finds NCCL: LOOM_NCCL_ROOT, else the nvidia-nccl wheel next to PyTorch.
find_nccl() {
  local d
  if [ -n "${LOOM_NCCL_ROOT:-}" ]; then echo "$LOOM_NCCL_ROOT"; return; fi
  d=$(timeout -k 2 30 "$PY" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ -n "$d" ] && [ -e "$d/include/nccl.h" ]; then echo "$d"; return; fi
  for d in /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl \
           /usr/local/lib/python3*/dist-packages/nvidia/nccl; do
    [ -e "$d/include/nccl.h" ] && { echo "$d"; return; }
  done
  echo ""
}

preflight() {
  local d
  echo "budget ${BUDGET}s; repo $ROOT at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "host: $(uname -srm), $(nproc) cores, $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')"
  echo "gpu: $(first_line nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
  echo "nvcc: $(timeout -k 2 10 "$NVCC" --version 2>&1 | grep -m1 release || echo "MISSING ($NVCC)")"
  echo "cmake: $(first_line "$CMAKE" --version)"
  echo "ninja: ${NINJA:-MISSING (Unix Makefiles)} $( [ -n "$NINJA" ] && first_line "$NINJA" --version)"
  echo "c++: $(first_line "${CXX:-c++}" --version)"
  echo "python: $PY: $(timeout -k 2 40 "$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "compute-sanitizer: $(command -v compute-sanitizer || echo none)"
  if [ -n "$NCCL_ROOT" ]; then echo "nccl: $NCCL_ROOT"
  elif [ -e "$(dirname "$NVCC")/../include/nccl.h" ]; then echo "nccl: the CUDA toolkit's"
  else echo "nccl: MISSING (set LOOM_NCCL_ROOT): configure will fail"; fi
  for d in boost json cli11 gtest; do echo "dep $d: $(where "$d")"; done
  echo "debs carried: $(compgen -G "$GPU_DIR/debs/*.deb" | xargs -r -n1 basename | tr '\n' ' ')"
  echo "fixtures: $LOOM_FIXTURES_DIR $( [ -d "$LOOM_FIXTURES_DIR/tiny-llama" ] && echo ok || echo 'MISSING: the GPU tests will fail')"
  echo "peers: $PEERS $( [ -e "$PEERS/torch_graph_decode.py" ] && echo ok || echo 'MISSING: copy ../shared/peers to .gpu/peers')"
  echo
  timeout -k 2 20 nvidia-smi 2>&1
}

# Unpacks the .deb of each missing dependency into $SYSROOT (dpkg-deb, else ar + tar).
unpack_deb() {
  if command -v dpkg-deb > /dev/null; then dpkg-deb -x "$1" "$SYSROOT"; return; fi
  local member
  member=$(ar t "$1" | grep '^data\.tar') || return 1
  ar p "$1" "$member" | tar xf - -C "$SYSROOT"
}
deps() {
  local dep pattern deb rc=0
  mkdir -p "$SYSROOT"
  for dep in boost:libboost json:nlohmann-json cli11:libcli11-dev gtest:libgtest-dev; do
    pattern=${dep#*:}; dep=${dep%%:*}
    if [ "$(where "$dep")" != MISSING ]; then echo "$dep: $(where "$dep")"; continue; fi
    deb=$(compgen -G "$GPU_DIR/debs/${pattern}*.deb" | head -1)
    if [ -z "$deb" ]; then echo "$dep: MISSING and no $pattern*.deb in $GPU_DIR/debs"; rc=1; continue; fi
    echo "$dep: unpacking $(basename "$deb")"
    unpack_deb "$deb" || rc=1
    echo "$dep: $(where "$dep")"
  done
  return "$rc"
}

# Each step and what it needs; the must-haves first.
CMAKE=$(command -v cmake || { [ -x "$(dirname "$PY")/cmake" ] && echo "$(dirname "$PY")/cmake"; } || echo cmake)
NINJA=$(command -v ninja || { [ -x "$(dirname "$PY")/ninja" ] && echo "$(dirname "$PY")/ninja"; })
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
NCCL_ROOT=$(find_nccl)

# The EXIT trap is the last guard of the peer: should anything end the script
# early, the peer still runs before the logs are packed.
on_exit() {
  trap - EXIT
  [ "$peer_done" = 1 ] || run_peer_graph
  finish
}
# TERM (the device tool's limit, say): stop the step, keep its log, pack, go.
on_term() {
  trap - EXIT TERM INT
  [ -n "$step_pid" ] && kill -TERM "$step_pid" 2> /dev/null && wait "$step_pid"
  say "terminated"
  record terminated - 143 "$(elapsed)" "by a signal"
  summarize
  pack
  cat "$OUT/summary.txt"
  exit 143
}
step_pid=
trap on_exit EXIT
trap on_term TERM INT

run_peer_graph() {
  peer_done=1
  if [ ! -e "$PEERS/torch_graph_decode.py" ]; then
    skip peer-graph peer "no $PEERS/torch_graph_decode.py: copy ../shared/peers to .gpu/peers"
    return
  fi
  run_step peer-graph peer "$T_PEER" env OUT="$LOGS" PYTHONUNBUFFERED=1 "$PY" "$PEERS/torch_graph_decode.py"
}

# summary: the step table and the lines that matter from each log.
summarize() {
  local f=$LOGS/summary.txt
  {
    echo "loom-infer GPU check: $( [ "$must_failed" = 0 ] && echo 'all must-have steps passed' || echo 'SOME MUST-HAVE STEPS FAILED'), $(elapsed)s of ${BUDGET}s"
    grep -E '^(gpu|nvcc|cmake|ninja|c\+\+|python|nccl|dep |fixtures|peers):' "$LOGS/preflight.log" 2>/dev/null
    echo
    column -t -s $'\t' "$LOGS/steps.tsv" 2>/dev/null || cat "$LOGS/steps.tsv"
    if [ -s "$LOGS/configure.log" ] && ! grep -q $'^configure\tok' "$LOGS/steps.tsv"; then
      echo; echo "-- configure.log (tail)"; tail -15 "$LOGS/configure.log"
    fi
    if [ -s "$LOGS/build.log" ] && ! grep -q $'^build\tok' "$LOGS/steps.tsv"; then
      echo; echo "-- build.log (errors)"; grep -m 15 -E 'error|Error|FAILED' "$LOGS/build.log"
    fi
    for s in gpu-tests nccl-tests memcheck; do
      [ -s "$LOGS/$s.log" ] || continue
      echo; echo "-- $s"
      grep -E '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?|^\[ +FAILED +\] [^ (]+$|tests? ran|ERROR SUMMARY' \
        "$LOGS/$s.log" | head -20
    done
    for s in bench peer-graph peer-hf; do
      [ -s "$LOGS/$s.log" ] || continue
      echo; echo "-- $s (tail)"; tail -12 "$LOGS/$s.log"
    done
  } > "$f" 2>&1
  cp "$f" "$OUT/summary.txt"
}

finish() {
  summarize
  pack
  echo
  cat "$OUT/summary.txt"
  exit $(( must_failed ? 1 : 0 ))
}

# --- the run ---------------------------------------------------------------

# preflight and deps are functions: run them under timeout through bash -c.
export -f preflight deps unpack_deb first_line where sys_has root_has gtest_in \
  have_boost have_json have_cli11 have_gtest
export BUDGET ROOT NVCC CMAKE NINJA PY NCCL_ROOT GPU_DIR SYSROOT SYSTEM_ROOT PEERS
run_step preflight extra "$T_PREFLIGHT" bash -c preflight
grep -E '^(gpu|nvcc|cmake|python|nccl|dep |fixtures|peers):' "$LOGS/preflight.log"
run_step deps extra "$T_DEPS" bash -c deps
grep -E '^[a-z0-9]+: ' "$LOGS/deps.log"

cmake_args=(-S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DLOOM_INFER_ONLY=ON
            -DLOOM_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
[ -n "$NINJA" ] && cmake_args+=(-G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA")
[ -n "$NCCL_ROOT" ] && cmake_args+=(-DLOOM_NCCL_ROOT="$NCCL_ROOT")
[ -d "$SYSROOT/usr" ] && cmake_args+=(-DCMAKE_PREFIX_PATH="$SYSROOT/usr")
targets=(inference_cuda_backend_test inference_cuda_decode_bench)
if [ "$(where gtest)" = MISSING ]; then
  cmake_args+=(-DLOOM_BUILD_TESTS=OFF)
  targets=(inference_cuda_decode_bench)
fi
# A cache from a build without CUDA or of another checkout would win or fail: drop it.
if [ -e "$BUILD/CMakeCache.txt" ] && ! { grep -q -x "LOOM_WITH_CUDA:BOOL=ON" "$BUILD/CMakeCache.txt" &&
    grep -q -x "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$BUILD/CMakeCache.txt"; }; then
  rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
fi
run_step configure must "$T_CONFIGURE" "$CMAKE" "${cmake_args[@]}" && configured=1

keep_going=(-- -k 0)
[ -n "$NINJA" ] || keep_going=(-- -k)
if [ "$configured" = 1 ]; then
  run_step build must "$T_BUILD" "$CMAKE" --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" "${keep_going[@]}"
else
  skip build must "configure failed"
fi

export LD_LIBRARY_PATH=${NCCL_ROOT:+$NCCL_ROOT/lib:}${LD_LIBRARY_PATH:-}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN} NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-lo}
if [ -x "$TEST_BIN" ]; then
  run_step gpu-tests must "$T_TESTS" "$TEST_BIN" --gtest_filter="-$NCCL_FILTER" \
    --gtest_output="xml:$LOGS/gpu-tests.xml"
else
  skip gpu-tests must "no $TEST_BIN (see build and preflight's dep gtest)"
fi

if [ -x "$BENCH_BIN" ]; then
  # shellcheck disable=SC2086  # LOOM_BENCH_ARGS is a list of words
  run_step bench must "$T_BENCH" "$BENCH_BIN" --runs "${BENCH_RUNS:-3}" \
    --attention "${LOOM_GPU_ATTENTION:-1,2}" --json "$LOGS/loom.json" ${LOOM_BENCH_ARGS:-}
else
  skip bench must "no $BENCH_BIN (see build)"
fi

run_peer_graph

# --- extras: only in the time that is left --------------------------------
if [ -x "$TEST_BIN" ]; then
  run_step nccl-tests extra "$T_NCCL" "$TEST_BIN" --gtest_filter="$NCCL_FILTER" \
    --gtest_output="xml:$LOGS/nccl-tests.xml"
  if command -v compute-sanitizer > /dev/null; then
    run_step memcheck extra "$T_MEMCHECK" compute-sanitizer --tool memcheck --error-exitcode 3 \
      "$TEST_BIN" --gtest_filter="$MEMCHECK_FILTER"
  else
    skip memcheck extra "no compute-sanitizer"
  fi
fi
if [ ! -e "$PEERS/hf_eager_decode.py" ]; then
  skip peer-hf extra "no $PEERS/hf_eager_decode.py"
elif (( $(left) - TAIL_S >= HF_MIN_LEFT )); then
  run_step peer-hf extra "$T_HF" env OUT="$LOGS" PYTHONUNBUFFERED=1 "$PY" "$PEERS/hf_eager_decode.py"
else
  skip peer-hf extra "only $(left)s left (needs $HF_MIN_LEFT)"
fi
if [ "$configured" = 1 ]; then
  run_step loom-infer extra "$T_INFER" "$CMAKE" --build "$BUILD" -j "$(nproc)" --target loom-infer
fi
exit  # on_exit summarizes, packs and sets the status
