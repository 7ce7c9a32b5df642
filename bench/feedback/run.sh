#!/usr/bin/env bash
# Feedback intake benchmark: durable submissions/s and latency with wrk, 64
# connections on loopback, against GET /healthz in the same run (the ratio shows
# what a durable, group-committed write costs).
# Usage: bench/feedback/run.sh [build dir] [seconds]
set -euo pipefail
build=${1:-build}
secs=${2:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LOOM_TOKEN=$("$build/bin/loom" token bootstrap --data-dir "$data")
"$build/bin/loomd" --data-dir "$data" --listen "127.0.0.1:$port" --set feedback.rate_per_minute=0 \
  --set log.level=warning &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

echo "== GET /healthz (baseline), 64 connections, ${secs}s"
wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" | tee "$data/healthz.txt"
echo "== POST /v1/feedback (durable), 64 connections, ${secs}s"
wrk -t2 -c64 -d"${secs}s" --latency -s "$here/submit.lua" "http://127.0.0.1:$port/v1/feedback" |
  tee "$data/submit.txt"

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
pct() { awk -v p="$2" '$1==p {print $2}' "$1"; }
stored=$(curl -s -H "Authorization: Bearer $LOOM_TOKEN" "http://127.0.0.1:$port/metrics" |
  awk '/^loom_feedback_submitted_total/ {s+=$2} END {print s}')
errors=$(grep -c "Non-2xx" "$data/submit.txt" || true)
echo
echo "summary: healthz $(rps "$data/healthz.txt") req/s (p50 $(pct "$data/healthz.txt" 50%), p99 $(pct "$data/healthz.txt" 99%))"
echo "summary: submit  $(rps "$data/submit.txt") req/s (p50 $(pct "$data/submit.txt" 50%), p99 $(pct "$data/submit.txt" 99%)), stored $stored, non-2xx lines $errors"
python3 -c "print('summary: durable submit / healthz throughput ratio: %.2f' % ($(rps "$data/submit.txt") / $(rps "$data/healthz.txt")))"
