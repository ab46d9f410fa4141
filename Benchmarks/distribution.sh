#!/usr/bin/env bash
# distribution.sh — how each strategy spreads load, and what a slow worker does to the tail.
#
#   bash Benchmarks/distribution.sh [SECONDS]      (default 5 s per run; ~2 minutes in all)
#
# For each strategy, a 2-worker ClusterFixture HTTP server (release build) takes wrk load
# (-t1 -c32) with a new connection per request and with keep-alive, first with two equal
# workers, then with worker 1 spending 2 ms of CPU per request (SLOW_WORKER=1). Printed:
# requests/s, p50, p99, and the share of responses each worker gave. Loopback only; every
# run is bounded by `timeout`, and the server is killed by pid.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
SECONDS_PER_RUN="${1:-5}"
command -v wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
swift build -c release --product ClusterFixture --package-path "$ROOT" --scratch-path "$ROOT/.build-dist" >&2
FIXTURE="$ROOT/.build-dist/release/ClusterFixture"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

printf "%-17s %-10s %-6s %10s %9s %9s  %s\n" strategy connection slow "req/s" p50 p99 "responses per worker"
for strategy in shared reusePort roundRobin leastConnections sticky; do
  for mode in close keep-alive; do
    for slow in no yes; do
      env WORKERS=2 DISTRIBUTION="$strategy" SLOW_WORKER="$([ $slow = yes ] && echo 1 || echo 0)" \
        timeout -k 2 $((SECONDS_PER_RUN + 20)) "$FIXTURE" serve >"$LOG" 2>&1 </dev/null &
      server=$!
      for _ in $(seq 100); do [ "$(grep -c '"event":"listening"' "$LOG")" -ge 2 ] && break; sleep 0.1; done
      port=$(grep -o '"port":[0-9]*' "$LOG" | head -1 | cut -d: -f2)
      header=(); [ $mode = close ] && header=(-H "Connection: close")
      out=$(timeout $((SECONDS_PER_RUN + 10)) wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" --latency "${header[@]}" \
        -s "$HERE/distribution/count.lua" "http://127.0.0.1:$port/" 2>&1 || true)
      kill -9 "$server" $(pgrep -P "$server") 2>/dev/null || true
      wait "$server" 2>/dev/null || true
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      share=$(sed -n 's/^per-worker //p' <<<"$out")
      printf "%-17s %-10s %-6s %10s %9s %9s  %s\n" "$strategy" "$mode" "$slow" "$rps" "$p50" "$p99" "$share"
    done
  done
done
