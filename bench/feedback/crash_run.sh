#!/usr/bin/env bash
# Crash report intake benchmark (issue 23): durable Sentry envelopes/s and
# latency with wrk, 64 connections on loopback, beside POST /v1/feedback and
# GET /healthz in the same run and the same loomd. Two crash workloads: one
# crash site (every event counted on one group) and 1,000 sites (1,000 groups,
# each a feedback item). Every answer is sent after its group commit.
# Usage: bench/feedback/crash_run.sh [build dir] [seconds]
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
  --set sentry.rate_per_minute=0 --set agents=0 --set log.level=warning &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
dsn=$("$build/bin/loom" --server "http://127.0.0.1:$port" --json dsn create --repo app)
export SENTRY_KEY=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["public_key"])' "$dsn")
project=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["project_id"])' "$dsn")

echo "== GET /healthz (baseline), 64 connections, ${secs}s"
wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" | tee "$data/healthz.txt"
# Each write workload runs twice, in one order and then the other: whatever
# runs later pays for the database the earlier ones grew (WAL checkpoints), so
# each gets the mean of an early and a late place.
submit() {
  echo "== POST /v1/feedback (durable), 64 connections, ${secs}s"
  wrk -t2 -c64 -d"${secs}s" --latency -s "$here/submit.lua" "http://127.0.0.1:$port/v1/feedback" |
    tee "$data/submit$1.txt"
}
envelope() {
  echo "== POST /api/$project/envelope/ (durable), $1 crash site(s), 64 connections, ${secs}s"
  CRASHES=$1 wrk -t2 -c64 -d"${secs}s" --latency -s "$here/envelope.lua" \
    "http://127.0.0.1:$port/api/$project/envelope/" | tee "$data/envelope$1-$2.txt"
}
submit a
envelope 1 a
envelope 1000 a
envelope 1000 b
envelope 1 b
submit b

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
pct() { awk -v p="$2" '$1==p {print $2}' "$1"; }
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
stored=$(echo "$metrics" | awk '/^loom_sentry_items_total\{type="event"/ {s+=$2} END {print s}')
groups=$(echo "$metrics" | awk '/^loom_sentry_items_total\{type="event",outcome="new"\}/ {print $2}')
mean_rps() { python3 -c "print('%.0f' % (($(rps "$1") + $(rps "$2")) / 2))"; }
echo
echo "summary: healthz $(rps "$data/healthz.txt") req/s (p50 $(pct "$data/healthz.txt" 50%), p99 $(pct "$data/healthz.txt" 99%))"
for f in submita submitb envelope1-a envelope1-b envelope1000-a envelope1000-b; do
  echo "summary: $f $(rps "$data/$f.txt") req/s (p50 $(pct "$data/$f.txt" 50%), p99 $(pct "$data/$f.txt" 99%)), non-2xx lines $(grep -c "Non-2xx" "$data/$f.txt" || true)"
done
submit=$(mean_rps "$data/submita.txt" "$data/submitb.txt")
one=$(mean_rps "$data/envelope1-a.txt" "$data/envelope1-b.txt")
many=$(mean_rps "$data/envelope1000-a.txt" "$data/envelope1000-b.txt")
echo "summary: means: submit $submit, envelope one site $one, envelope 1,000 sites $many req/s"
echo "summary: events stored $stored, of which new groups $groups"
python3 -c "print('summary: envelope / feedback submit throughput ratio: one site %.2f, 1,000 sites %.2f' % ($one / $submit, $many / $submit))"
