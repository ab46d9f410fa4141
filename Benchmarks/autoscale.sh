#!/usr/bin/env bash
# autoscale.sh — the same load traces through swift-cluster's autoscaler and through the
# seed's (SeedAutoscaler: every 10 s, load average and lag, one worker at a time,
# cores..2×cores), with the `autoscale` example (release). Two traces, each IDLE s idle,
# LOAD s of wrk -t2 -c16 keep-alive, AFTER s idle:
#   cpu: requests of about 5 ms of CPU each (ours from 1 worker, up to 4);
#   io:  requests that block their event loop 20 ms on a synchronous call and use 1 ms of
#        CPU, as with a blocking database driver (ours from 2 workers, up to 8).
#
#   Benchmarks/autoscale.sh        (IDLE=5, LOAD=60, AFTER=40; about 8 minutes)
#
# For each policy: time from the load step to the first scale-up, changes made (all, and
# after the first 10 s of load: steady load should make none), requests served and p99
# (wrk), and how long after the load stopped the count returned to its minimum. Every
# load sample each policy saw is kept as CSV in Benchmarks/autoscale/.build/ (the unit
# tests replay one such recording). Loopback only; every process is stopped by pid.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="$HERE/autoscale/.build"
IDLE="${IDLE:-5}"
LOAD="${LOAD:-60}"
AFTER="${AFTER:-40}"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
command -v wrk >/dev/null || apt-get install -y wrk >&2

echo "# building autoscale (release, .build-bench)" >&2
(cd "$ROOT" && swift build -c release --product autoscale --scratch-path "$ROOT/.build-bench" >&2)
BIN="$ROOT/.build-bench/release/autoscale"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name, then environment assignments for the example (WORK_MS, BLOCK_MS, policy)
  local name="$1"; shift
  local port; port="$(free_port)"
  local started; started="$(date +%s.%N)"
  setsid env PORT="$port" IDLE_SECONDS=15 AUTOSCALE_TRACE="$OUT/$name.csv" "$@" "$BIN" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
  sleep "$IDLE"
  local step; step="$(date +%s.%N)"
  wrk -t2 -c16 -d"${LOAD}s" --latency "http://127.0.0.1:$port/" >"$OUT/$name.wrk"
  local stop; stop="$(date +%s.%N)"
  sleep "$AFTER"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 "$HERE/autoscale/summarize.py" "$name" "$OUT/$name.csv" "$OUT/$name.wrk" "$started" "$step" "$stop" | tee -a "$OUT/results.jsonl"
}

run cpu-cluster WORK_MS=5 AUTOSCALER=cluster MIN_WORKERS=1 MAX_WORKERS=4
run cpu-seed WORK_MS=5 AUTOSCALER=seed MIN_WORKERS=2
run io-cluster WORK_MS=1 BLOCK_MS=20 AUTOSCALER=cluster MIN_WORKERS=2 MAX_WORKERS=8
run io-seed WORK_MS=1 BLOCK_MS=20 AUTOSCALER=seed MIN_WORKERS=2

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'policy':<14} {'react s':>8} {'changes':>8} {'steady':>7} {'counts':<16} {'served':>9} {'req/s':>8} {'p99 ms':>8} {'to min s':>9}")
for r in rows:
    react = f"{r['react_s']:.1f}" if r['react_s'] is not None else "never"
    down = f"{r['to_min_s']:.1f}" if r['to_min_s'] is not None else "not yet"
    counts = "→".join(str(c) for c in r['counts'])
    print(f"{r['name']:<14} {react:>8} {r['changes']:>8} {r['steady_changes']:>7} {counts:<16} {r['requests']:>9} {r['rps']:>8.0f} {r['p99_ms']:>8.1f} {down:>9}")
PY
