#!/bin/sh
# Issue 25: file system calls one workspace operation makes on other tasks'
# worktree admin files (.git/worktrees/loom-*), with 10 and with 500 worktrees in
# the repository. A history-independent operation makes none, whatever the count.
#
#   bench/repos/worktree_walk.sh [BUILD_DIR] [COUNTS]    (default: build "10 500")
#
# Needs strace. Prints, per operation and count: all file calls of the operation,
# those under .git/worktrees that belong to other tasks, and reads of git config files.
set -eu
build=${1:-build}
counts=${2:-"10 500"}
probe=$(cd "$build" && pwd)/bin/worktree_walk_probe
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-11s %6s %10s %14s %12s\n' operation N file-calls other-worktree config-reads
for n in $counts; do
  dir=$scratch/n$n
  "$probe" setup "$dir" "$n" >/dev/null
  for op in create open write commit diff diffbranch remove; do
    case $op in create) id=$((n + 1)) ;; remove) id=2 ;; *) id=1 ;; esac
    strace -f -qq -e trace=%file -o "$scratch/trace" "$probe" "$op" "$dir" "$id" >/dev/null
    sed -n '/loom-probe-begin/,/loom-probe-end/p' "$scratch/trace" > "$scratch/op"
    total=$(($(wc -l < "$scratch/op") - 2))
    other=$(grep '\.git/worktrees/loom-' "$scratch/op" | grep -vc "worktrees/loom-$id[/\"]" || true)
    config=$(grep -c 'gitconfig\|/config"' "$scratch/op" || true)
    printf '%-11s %6s %10s %14s %12s\n' "$op" "$n" "$total" "$other" "$config"
  done
done
