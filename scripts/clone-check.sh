#!/usr/bin/env bash
# A fresh clone passes its tests wherever a user puts it. Clones this repository's
# HEAD (committed work only) into each place below and runs the README's two
# commands there, as written:
#
#   tmp       a 0700 directory from mktemp -d under /tmp, no ../shared beside it
#   home      a 0700 directory under $HOME (/root for root: a 0700 parent)
#   odd       a path with spaces and non-ASCII characters
#   readonly  a read-only source tree, built in a separate directory
#             (LOOM_BUILD_DIR=..., then ctest --test-dir that directory)
#
# Usage: scripts/clone-check.sh [--tests REGEX] [PLACE...]   (default: every place)
#   --tests REGEX  run only the ctest tests matching REGEX in each place (ctest -R);
#                  the demo command always runs in full
#
# Each place's output goes to its log under $CLONE_CHECK_LOGS (default: a new temp
# dir); a failing place prints the log's tail. Exits non-zero when any place fails.
# Builds go through ccache when it is installed, so a place after the first whose
# build dir is inside its clone compiles little (readonly's out-of-tree build sees
# other relative paths and compiles in full). The clones are removed at the end
# unless KEEP=1.
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD

tests_regex=""
places=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) tests_regex=$2; shift 2 ;;
    tmp | home | odd | readonly) places+=("$1"); shift ;;
    *) echo "usage: $0 [--tests REGEX] [tmp|home|odd|readonly]..." >&2; exit 2 ;;
  esac
done
[ ${#places[@]} -gt 0 ] || places=(tmp home odd readonly)

logs=${CLONE_CHECK_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
made=()
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do umount "$m"; done
  [ "${KEEP:-0}" = 1 ] && return
  for d in "${made[@]}"; do
    chmod -R u+w "$d" 2>/dev/null
    rm -rf "$d"
  done
}
trap cleanup EXIT

ctest_filter=()
[ -n "$tests_regex" ] && ctest_filter=(-R "$tests_regex")

# run_place NAME CLONE_DIR BUILD_DIR: clone, then the README's two commands.
run_place() {
  local name=$1 clone=$2 build=$3 log="$logs/$1.log" start=$SECONDS
  echo "clone-check: $name: $clone"
  git clone -q "$src" "$clone" > "$log" 2>&1 || { cat "$log"; return 1; }
  local env=()
  if [ "$name" = readonly ]; then
    env=(LOOM_BUILD_DIR="$build")
    # Mode bits do not stop root: a read-only bind mount does.
    if [ "$(id -u)" -eq 0 ] && mount --bind "$clone" "$clone" 2>>"$log"; then
      mounted+=("$clone")
      mount -o remount,bind,ro "$clone" 2>>"$log" || { cat "$log"; return 1; }
    else
      chmod -R a-w "$clone"
    fi
  fi
  (
    cd "$clone" || exit 1
    echo "== $(date +%T) ./scripts/setup.sh && $build/bin/loom demo"
    env "${env[@]}" ./scripts/setup.sh && "$build/bin/loom" demo || exit 1
    echo "== $(date +%T) ./scripts/setup.sh --tests && ctest --test-dir $build"
    env "${env[@]}" ./scripts/setup.sh --tests &&
      ctest --test-dir "$build" --output-on-failure -j2 "${ctest_filter[@]}"
  ) >> "$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "clone-check: $name: ok in $((SECONDS - start)) s ($(grep -E 'tests passed' "$log" | tail -1))"
  else
    echo "clone-check: $name: FAILED (exit $rc) after $((SECONDS - start)) s; the end of $log:"
    tail -40 "$log"
  fi
  return $rc
}

failed=0
for place in "${places[@]}"; do
  case "$place" in
    tmp)
      parent=$(mktemp -d)  # mode 0700
      made+=("$parent")
      run_place tmp "$parent/loom" "$parent/loom/build" || failed=1
      ;;
    home)
      parent=$(mktemp -d -p "${HOME:-/root}" loom-clone-check.XXXXXX)
      made+=("$parent")
      run_place home "$parent/loom" "$parent/loom/build" || failed=1
      ;;
    odd)
      parent=$(mktemp -d)
      made+=("$parent")
      run_place odd "$parent/wörk trée ✓/loom" "$parent/wörk trée ✓/loom/build" || failed=1
      ;;
    readonly)
      parent=$(mktemp -d)
      made+=("$parent")
      run_place readonly "$parent/src/loom" "$parent/build dir" || failed=1
      ;;
  esac
done
exit $failed
