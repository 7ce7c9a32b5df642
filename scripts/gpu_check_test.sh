#!/usr/bin/env bash
# Dry run of scripts/gpu-check.sh: the real script, with nvidia-smi, nvcc, cmake,
# compute-sanitizer, python and the built binaries replaced by fakes on PATH, so
# that its logic is checked without a GPU: the order of the steps, their
# timeouts, going on after a failure, the CUDA-graph peer always running, the
# budget, the dependency probes and unpacking, and one tarball holding every log.
# Each scenario runs in its own temporary folder; nothing is written to the tree.
set -uo pipefail
SCRIPT=$(cd "$(dirname "$0")" && pwd)/gpu-check.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"' EXIT
failures=0

# --- fakes -------------------------------------------------------------------
FAKES=$TMP/fakes
mkdir -p "$FAKES/bin" "$FAKES/built" "$TMP/nccl/include" "$TMP/nccl/lib"
touch "$TMP/nccl/include/nccl.h"
fake() { cat > "$1"; chmod +x "$1"; }

# Every fake appends "<what> <args>" to $FAKE_CALLS, so the order can be checked.
fake "$FAKES/bin/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
echo "nvidia-smi $*" >> "$FAKE_CALLS"
echo "NVIDIA H100 80GB HBM3 (fake), 81559 MiB, 580.00"
EOF
fake "$FAKES/bin/nvcc" <<'EOF'
#!/usr/bin/env bash
echo "Cuda compilation tools, release 13.0 (fake)"
EOF
fake "$FAKES/bin/compute-sanitizer" <<'EOF'
#!/usr/bin/env bash
echo "compute-sanitizer $*" >> "$FAKE_CALLS"
shift 4  # --tool memcheck --error-exitcode N
"$@"; rc=$?
echo "========= ERROR SUMMARY: 0 errors"
exit $rc
EOF
# cmake: configure records its arguments and writes a CUDA cache; --build
# "builds" each named target by copying its fake, after FAKE_BUILD_SLEEP seconds.
fake "$FAKES/bin/cmake" <<'EOF'
#!/usr/bin/env bash
if [ "$1" = --version ]; then echo "cmake version 3.28.3 (fake)"; exit 0; fi
if [ "$1" = --build ]; then
  dir=$2
  echo "build $*" >> "$FAKE_CALLS"
  targets=()
  for ((i = 1; i <= $#; i++)); do
    if [ "${!i}" = --target ]; then
      for ((j = i + 1; j <= $#; j++)); do
        [ "${!j}" = -- ] && break
        targets+=("${!j}")
      done
    fi
  done
  case " ${targets[*]} " in
    *" inference_cuda_decode_bench "*) [ -n "${FAKE_BUILD_SLEEP:-}" ] && sleep "$FAKE_BUILD_SLEEP" ;;
  esac
  [ -n "${FAKE_BUILD_FAIL:-}" ] && { echo "kernels.cu(1): error: fake"; exit 1; }
  mkdir -p "$dir/bin"
  for t in "${targets[@]}"; do cp "$FAKE_BUILT/$t" "$dir/bin/$t"; done
  exit 0
fi
echo "configure $*" >> "$FAKE_CALLS"
echo "configure args: $*"
[ -n "${FAKE_CONFIGURE_FAIL:-}" ] && { echo "CMake Error: Could NOT find Boost (fake)"; exit 1; }
while [ $# -gt 0 ]; do [ "$1" = -B ] && dir=$2; shift; done
mkdir -p "$dir" && echo "LOOM_WITH_CUDA:BOOL=ON" > "$dir/CMakeCache.txt"
EOF
# python: answers the preflight's and the NCCL probe's -c, and "runs" a peer
# by writing its JSON into $OUT the way the real peers do.
fake "$FAKES/bin/python" <<'EOF'
#!/usr/bin/env bash
case "$1" in
  -c) case "$2" in *nvidia.nccl*) echo "$FAKE_NCCL" ;; *) echo "3.12.3 torch 2.11.0 (fake) cuda 13.0 True" ;; esac
      exit 0 ;;
esac
name=$(basename "$1" .py)
echo "python $name OUT=$OUT" >> "$FAKE_CALLS"
echo "batch 1: 423 tok/s  batch 16: 5623 tok/s  batch 64: 19992 tok/s ($name, fake)"
case $name in torch_graph_decode) json=graph_bench.json ;; *) json=hf_bench.json ;; esac
echo '{"fake": true}' > "$OUT/$json"
sleep "${FAKE_PEER_SLEEP:-0}"
EOF
fake "$FAKES/built/inference_cuda_backend_test" <<'EOF'
#!/usr/bin/env bash
echo "test $*" >> "$FAKE_CALLS"
echo "LOOM_FIXTURES_DIR=$LOOM_FIXTURES_DIR"
for a in "$@"; do case "$a" in --gtest_output=xml:*) echo "<testsuites/>" > "${a#--gtest_output=xml:}" ;; esac; done
case "$*" in *--gtest_filter=-*) [ -n "${FAKE_TEST_HANG:-}" ] && exec sleep 613 ;; esac
echo "[==========] 7 tests from 1 test suite ran. (12 ms total)"
if [ -n "${FAKE_TEST_SKIP:-}" ]; then
  echo "[  PASSED  ] 0 tests."
  echo "[  SKIPPED ] 7 tests, listed below:"
  exit 0
fi
echo "[  PASSED  ] 7 tests."
EOF
fake "$FAKES/built/inference_cuda_decode_bench" <<'EOF'
#!/usr/bin/env bash
echo "bench $*" >> "$FAKE_CALLS"
while [ $# -gt 0 ]; do [ "$1" = --json ] && echo '{"fake": true}' > "$2"; shift; done
echo "batch  tok/s  of bound"
echo "1      1700   78%"
EOF
fake "$FAKES/built/loom-infer" <<'EOF'
#!/usr/bin/env bash
EOF

# A system root with the four header packages, and one without GoogleTest.
mkroot() {
  mkdir -p "$1/usr/include/boost" "$1/usr/include/nlohmann" "$1/usr/include/CLI"
  touch "$1/usr/include/boost/version.hpp" "$1/usr/include/nlohmann/json.hpp" "$1/usr/include/CLI/CLI.hpp"
  if [ "${2:-}" != no-gtest ]; then
    mkdir -p "$1/usr/include/gtest" "$1/usr/lib/x86_64-linux-gnu"
    touch "$1/usr/include/gtest/gtest.h" "$1/usr/lib/x86_64-linux-gnu/libgtest.a"
  fi
}
mkroot "$TMP/full-root"
mkroot "$TMP/no-gtest-root" no-gtest
mkdir -p "$TMP/empty-root"

# --- running one scenario ------------------------------------------------------
# launch NAME [VAR=value...]: starts the script in the background in $TMP/NAME
# with the fakes; sets S (its folder) and PID.
launch() {
  NAME=$1; shift
  S=$TMP/$NAME
  mkdir -p "$S/gpu/peers" "$S/x"
  touch "$S/gpu/peers/torch_graph_decode.py" "$S/gpu/peers/hf_eager_decode.py"
  T0=$SECONDS
  env -u LOOM_FIXTURES_DIR -u LOOM_NCCL_ROOT -u PEERS PATH="$FAKES/bin:$PATH" \
    FAKE_CALLS="$S/calls" FAKE_BUILT="$FAKES/built" FAKE_NCCL="$TMP/nccl" \
    PYTHON="$FAKES/bin/python" OUT="$S/out" LOOM_GPU_DIR="$S/gpu" LOOM_GPU_BUILD_DIR="$S/build" \
    LOOM_GPU_SYSTEM_ROOT="$TMP/full-root" LOOM_GPU_T_PEER_S=5 LOOM_GPU_BUDGET_S=120 \
    "$@" bash "$SCRIPT" > "$S/stdout" 2>&1 &
  PID=$!
}
# finished: waits for the script; sets RC, SECS, and unpacks its tarball in $S/x.
finished() {
  wait "$PID"
  RC=$?
  SECS=$((SECONDS - T0))
  tar xzf "$S/out/gpu-run.tar.gz" -C "$S/x" 2>/dev/null
}
scenario() { launch "$@"; finished; }

# expect DESCRIPTION COMMAND...: one check of the current scenario.
expect() {
  local what=$1; shift
  if ! "$@" > /dev/null 2>&1; then
    echo "FAIL [$NAME] $what"
    failures=$((failures + 1))
  fi
}
# status_of STEP: the status steps.tsv recorded for STEP.
status_of() { awk -F'\t' -v s="$1" '$1 == s {print $2}' "$S/x/gpu-run/steps.tsv"; }
is() { [ "$(status_of "$1")" = "$2" ]; }
steps_in_order() { [ "$(cut -f1 "$S/x/gpu-run/steps.tsv" | tr '\n' ' ')" = "$1 " ]; }
in_log() { grep -q -e "$2" "$S/x/gpu-run/$1"; }
not_in_log() { ! grep -q -e "$2" "$S/x/gpu-run/$1"; }
called_before() {  # called_before A B: the first call matching A precedes the first matching B
  local a b
  a=$(grep -n -m1 -e "$1" "$S/calls" | cut -d: -f1); b=$(grep -n -m1 -e "$2" "$S/calls" | cut -d: -f1)
  [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]
}
only_two_files_out() { [ "$(find "$S/out" -type f | wc -l)" = 2 ] && [ -s "$S/out/summary.txt" ]; }
peer_ran() { grep -q "python torch_graph_decode" "$S/calls" && is peer-graph ok; }

# --- scenarios -----------------------------------------------------------------
scenario all-pass
expect "exits 0" test "$RC" = 0
expect "runs every step, must-haves first" steps_in_order \
  "preflight deps configure build gpu-tests bench peer-graph nccl-tests memcheck peer-hf loom-infer"
expect "every step ok" bash -c "! cut -f2 '$S/x/gpu-run/steps.tsv' | grep -v -x ok"
expect "the calls in order" called_before "^configure" "^build"
expect "tests after build" called_before "^build" "^test"
expect "bench after tests" called_before "^test" "^bench"
expect "the peer after the bench" called_before "^bench" "python torch_graph_decode"
expect "NCCL tests after the peer" called_before "python torch_graph_decode" "test.*filter=\*Nccl"
expect "first build has only the test and the bench" \
  grep -q -x "build --build $S/build -j [0-9]* --target inference_cuda_backend_test inference_cuda_decode_bench -- -k 0" "$S/calls"
expect "the first test run leaves out the NCCL tests" grep -q -e "--gtest_filter=-\*Nccl\*:\*TensorParallel\*" "$S/calls"
expect "fixtures default to tests/fixtures" in_log gpu-tests.log "LOOM_FIXTURES_DIR=$ROOT/tests/fixtures\$"
expect "NCCL found through python" in_log configure.log "LOOM_NCCL_ROOT=$TMP/nccl"
expect "no sysroot when the system has all" not_in_log configure.log "CMAKE_PREFIX_PATH"
expect "tests are on" not_in_log configure.log "LOOM_BUILD_TESTS=OFF"
expect "only summary + tarball in OUT" only_two_files_out
for f in preflight deps configure build gpu-tests bench peer-graph nccl-tests memcheck peer-hf loom-infer; do
  expect "tarball has $f.log" test -f "$S/x/gpu-run/$f.log"
done
for f in loom.json graph_bench.json hf_bench.json gpu-tests.xml steps.tsv summary.txt; do
  expect "tarball has $f" test -f "$S/x/gpu-run/$f"
done
expect "summary has the tests' result" grep -q "PASSED" "$S/out/summary.txt"
expect "summary has the bench table" grep -q "1700" "$S/out/summary.txt"
expect "summary printed at the end" grep -q "all must-have steps passed" "$S/stdout"

scenario configure-fails FAKE_CONFIGURE_FAIL=1
expect "exits 1" test "$RC" = 1
expect "configure FAILED" is configure FAILED
expect "build skipped" is build skipped
expect "tests skipped" is gpu-tests skipped
expect "bench skipped" is bench skipped
expect "the peer still ran" peer_ran
expect "the configure error comes back" grep -q "Could NOT find Boost" "$S/out/summary.txt"
expect "only summary + tarball in OUT" only_two_files_out

scenario build-fails FAKE_BUILD_FAIL=1
expect "exits 1" test "$RC" = 1
expect "build FAILED" is build FAILED
expect "the peer still ran" peer_ran
expect "the compile error comes back" grep -q "error: fake" "$S/out/summary.txt"

scenario tests-hang FAKE_TEST_HANG=1 LOOM_GPU_T_TESTS_S=3
expect "exits 1" test "$RC" = 1
expect "the hung tests are cut at their limit" is gpu-tests TIMEOUT
expect "the bench still ran" is bench ok
expect "the peer still ran" peer_ran
expect "the NCCL tests still ran" is nccl-tests ok
expect "within the tests' limit plus slack" test "$SECS" -lt 20

# Budget 30 s, peer limit 5 s and taking 4: the slow build is cut so that the
# peer keeps its time and the whole run stays within the budget.
scenario budget FAKE_BUILD_SLEEP=300 FAKE_PEER_SLEEP=4 LOOM_GPU_BUDGET_S=30
expect "exits 1" test "$RC" = 1
expect "the build is cut short" is build TIMEOUT
expect "the tests skipped (not built)" is gpu-tests skipped
expect "the peer ran to its end" peer_ran
expect "the HF peer skipped for time" is peer-hf skipped
build_limit=$(awk -F'\t' '$1 == "build" {sub(/^limit /, "", $5); sub(/s.*/, "", $5); print $5}' "$S/x/gpu-run/steps.tsv")
expect "the build's limit leaves the peer its 5 s + 20 s of slack" test "${build_limit:-99}" -le 5
expect "within the budget" test "$SECS" -le 32

# Tests that all skip (no device seen) pass nothing: the run fails, and goes on.
scenario tests-skip FAKE_TEST_SKIP=1
expect "exits 1" test "$RC" = 1
expect "skipped tests count as FAILED" is gpu-tests FAILED
expect "the bench still ran" is bench ok
expect "the peer still ran" peer_ran
expect "the summary shows the skips" grep -q "SKIPPED \] 7 tests" "$S/out/summary.txt"

# A TERM in the middle of a step (the device tool's own limit): the step is
# stopped, and what ran comes back packed, at once rather than at the step's limit.
launch terminated FAKE_TEST_HANG=1 LOOM_GPU_T_TESTS_S=60
for _ in $(seq 100); do grep -q "^test" "$S/calls" 2> /dev/null && break; sleep 0.1; done
kill -TERM "$PID"
finished
expect "exits 143" test "$RC" = 143
expect "at once" test "$SECS" -lt 15
expect "the hung step's log came back" test -f "$S/x/gpu-run/gpu-tests.log"
expect "the termination is recorded" in_log steps.tsv "^terminated"
expect "the summary came back" test -s "$S/out/summary.txt"
if command -v pgrep > /dev/null; then
  expect "the hung test is gone" bash -c "! pgrep -f '^sleep 613\$'"
fi

# Fixtures: tests/fixtures when the tree has them, else a copy carried in .gpu/fixtures.
mkdir -p "$TMP/fixtures-fallback/gpu/fixtures/tiny-llama"
scenario fixtures-fallback
if [ -d "$ROOT/tests/fixtures/tiny-llama" ]; then want=$ROOT/tests/fixtures; else want=$S/gpu/fixtures; fi
expect "fixtures from $want" in_log gpu-tests.log "LOOM_FIXTURES_DIR=$want\$"

scenario no-gtest LOOM_GPU_SYSTEM_ROOT="$TMP/no-gtest-root"
expect "exits 1 (no GPU tests is a failure)" test "$RC" = 1
expect "configures without tests" in_log configure.log "LOOM_BUILD_TESTS=OFF"
expect "builds the bench alone" grep -q -e "--target inference_cuda_decode_bench -- -k 0" "$S/calls"
expect "tests skipped" is gpu-tests skipped
expect "bench ran" is bench ok
expect "the peer still ran" peer_ran

if command -v dpkg-deb > /dev/null; then
  # Nothing on the system; the four packages come as .debs and are unpacked.
  mkdeb() {  # mkdeb NAME FILE...: a .deb holding empty FILEs
    local d=$TMP/deb-$1
    mkdir -p "$d/DEBIAN"
    printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n' "$1" > "$d/DEBIAN/control"
    shift 1
    for f in "$@"; do mkdir -p "$d/$(dirname "$f")"; touch "$d/$f"; done
    dpkg-deb --build --root-owner-group "$d" "$DEBS/" > /dev/null
  }
  DEBS=$TMP/debs && mkdir -p "$DEBS"
  mkdeb libboost1.74-dev usr/include/boost/version.hpp
  mkdeb nlohmann-json3-dev usr/include/nlohmann/json.hpp
  mkdeb libcli11-dev usr/include/CLI/CLI.hpp
  mkdeb libgtest-dev usr/include/gtest/gtest.h usr/lib/x86_64-linux-gnu/libgtest.a
  mkdir -p "$TMP/debs-run/gpu" && cp -r "$DEBS" "$TMP/debs-run/gpu/debs"
  scenario debs-run LOOM_GPU_SYSTEM_ROOT="$TMP/empty-root"
  expect "exits 0" test "$RC" = 0
  expect "preflight saw them missing" in_log preflight.log "dep boost: MISSING"
  expect "deps unpacked all four" test "$(grep -c ': sysroot$' "$S/x/gpu-run/deps.log")" = 4
  expect "configure points at the sysroot" in_log configure.log "CMAKE_PREFIX_PATH=$S/gpu/sysroot/usr"
  expect "tests are on" not_in_log configure.log "LOOM_BUILD_TESTS=OFF"
  expect "the tests ran" is gpu-tests ok
else
  echo "note: no dpkg-deb here, the .deb scenario is not run"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed; the last scenario's output:"
  cat "$S/stdout"
  exit 1
fi
echo "gpu-check dry run: all scenarios pass"
