#!/usr/bin/env bash
# crash.sh — what a worker's crash costs the clients: swift-cluster's `hello` (every
# distribution strategy) against Node's cluster in both its scheduling policies, each
# under `wrk -t1 -c$CONNS -H 'Connection: close'` for DURATION s while one random
# worker is SIGKILLed every second, KILLS times; then the requests lost per kill (wrk's
# socket errors and non-2xx answers over the kills) per server.
#
#   Benchmarks/crash.sh [RESULTS_FILE]   (default: Benchmarks/http/.build/crash-results.jsonl)
#
# Builds `hello` with `swift build -c release --scratch-path .build-bench` (HELLO=path
# uses that binary instead), then for every server: wait for an idle machine; start it
# (own process group) on a free loopback port with WORKERS workers; wait until it answers
# and its workers exist; start wrk; from 1 s on, every second SIGKILL one of the
# primary's children picked at random (the server forks a replacement); when wrk ends,
# stop the server (SIGTERM to its process group, SIGKILL after 5 s).
# Servers: ours with DISTRIBUTION = shared, reusePort, roundRobin, leastConnections,
# sticky, and RESTART=immediate (every dead worker restarted at once, as Node's cluster
# example does: eight kills in eight seconds are a crash loop to the default policy, which
# backs off and, with no worker left, stops the cluster; that is not what is measured);
# Node with NODE_CLUSTER_SCHED_POLICY = rr and none (http/node-hello.js).
#
# Knobs (environment): DURATION (10 s), KILLS (8), CONNS (32), WORKERS (2), REPEATS (1),
# IDLE_WAIT (30 s), HELLO (a built `hello`), SERVERS (the names to run, space-separated,
# e.g. "ours-reusePort node-none"; default all). Kills stop early when wrk ends first.
# One JSON line per run goes to RESULTS_FILE (and stderr); wrk's output and the servers'
# logs go beside it. Exits non-zero when a run failed (server did not start, wrk failed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="$HERE/http"
RESULTS="${1:-$DIR/.build/crash-results.jsonl}"
DURATION="${DURATION:-10}"
KILLS="${KILLS:-8}"
CONNS="${CONNS:-32}"
WORKERS="${WORKERS:-2}"
REPEATS="${REPEATS:-1}"
IDLE_WAIT="${IDLE_WAIT:-30}"
LUA="$DIR/report.lua"
LOGS="$(dirname "$RESULTS")/crash-logs"

mkdir -p "$(dirname "$RESULTS")" "$LOGS"
: >"$RESULTS"
rm -f "$LOGS"/*.log
FAILURES=0
BUSY_RUNS=0
command -v wrk >/dev/null || { echo "# wrk is missing (Debian: apt-get install wrk)" >&2; exit 1; }
command -v node >/dev/null || { echo "# node is missing" >&2; exit 1; }

if [ -z "${HELLO:-}" ]; then
  echo "# building hello (release, $ROOT/.build-bench)" >&2
  (cd "$ROOT" && swift build -c release --product hello --scratch-path "$ROOT/.build-bench" >&2)
  HELLO="$ROOT/.build-bench/release/hello"
fi

# busy_percent, wait_idle
source "$HERE/idle.sh"

# start_server, stop_server (SERVER_PID)
source "$HERE/server.sh"
trap stop_server EXIT
trap 'exit 130' INT TERM

# The server's workers: the primary's children.
workers() { pgrep -P "$SERVER_PID" || true; }

# Until the server answers "Hello World" and has WORKERS workers; at most 30 s.
wait_ready() {
  local port="$1" i
  for i in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    if curl -s --max-time 2 "http://127.0.0.1:$port/" | grep -q "^Hello World" \
        && [ "$(workers | wc -l)" -ge "$WORKERS" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# run SERVER CMD...: one measured run; appends one JSON line to the results file.
run() {
  local server="$1"; shift
  if [ -n "${SERVERS:-}" ] && [[ " $SERVERS " != *" $server "* ]]; then return 0; fi
  local port log out status=0 kills=0 wrk_pid victim
  wait_idle
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$LOGS/$server.log"
  echo "=== $(date -u +%T) $server: PORT=$port $*" >>"$log"
  start_server "$log" env PORT="$port" WORKERS="$WORKERS" "$@"
  if ! wait_ready "$port"; then
    echo "# FAILED: $server did not answer with $WORKERS workers within 30 s (log: $log)" >&2
    FAILURES=$((FAILURES + 1))
    printf '{"bench":"crash","server":"%s","failed":"not ready"}\n' "$server" | tee -a "$RESULTS" >&2
    stop_server
    return 0
  fi
  timeout -k 5 $((DURATION + 60)) wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$LUA" -H "Connection: close" \
    "http://127.0.0.1:$port/" >"$LOGS/.wrk" 2>&1 &
  wrk_pid=$!
  while [ "$kills" -lt "$KILLS" ]; do
    sleep 1
    kill -0 "$wrk_pid" 2>/dev/null || break
    victim="$(workers | shuf -n 1)"
    [ -n "$victim" ] || continue
    kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
    echo "$(date -u +%T.%N | cut -c1-12) SIGKILL worker $victim" >>"$log"
  done
  wait "$wrk_pid" || status=$?
  out="$(cat "$LOGS/.wrk")"
  printf '%s\n' "$out" >>"$log"
  stop_server
  local json
  json="$(printf '%s\n' "$out" | sed -n 's/^WRKJSON {//p' | head -1)"
  if [ "$status" -ne 0 ] || [ -z "$json" ]; then
    echo "# FAILED: wrk exit status $status for $server (log: $log)" >&2
    FAILURES=$((FAILURES + 1))
    printf '{"bench":"crash","server":"%s","failed":"wrk status %s"}\n' "$server" "$status" | tee -a "$RESULTS" >&2
    return 0
  fi
  printf '{"bench":"crash","server":"%s","conns":%s,"workers":%s,"kills":%s,%s\n' \
    "$server" "$CONNS" "$WORKERS" "$kills" "$json" | tee -a "$RESULTS" >&2
}

cd "$DIR"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(uname -r); $(swift --version 2>&1 | head -1 | sed 's/ (.*//');" \
     "node $(node --version); loadavg $(cut -d' ' -f1-3 /proc/loadavg); workers $WORKERS," \
     "wrk -t1 -c$CONNS -d${DURATION}s Connection: close, up to $KILLS SIGKILLs 1 s apart, $REPEATS round(s)" \
     | tee "$LOGS/machine.txt" >&2

for round in $(seq "$REPEATS"); do
  echo "# round $round/$REPEATS" >&2
  for s in shared reusePort roundRobin leastConnections sticky; do
    run "ours-$s" DISTRIBUTION="$s" RESTART=immediate "$HELLO"
  done
  for policy in rr none; do
    run "node-$policy" NODE_CLUSTER_SCHED_POLICY="$policy" node "$DIR/node-hello.js"
  done
done

echo "# raw results: $RESULTS (wrk output and server logs: $LOGS); $FAILURES run(s) failed; $BUSY_RUNS run(s) on a busy machine" >&2

python3 - "$RESULTS" "$LOGS/machine.txt" <<'PY'
import json, statistics, sys

runs = [r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip()) if "requests" in r]
print(open(sys.argv[2]).read().strip())
print(f"{'server':<22} {'req/s':>9} {'kills':>6} {'lost':>6} {'lost/kill':>10}   (medians over rounds)")
for server in dict.fromkeys(r["server"] for r in runs):
    mine = [r for r in runs if r["server"] == server]
    lost = [sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "non2xx")) for r in mine]
    per_kill = [l / r["kills"] for l, r in zip(lost, mine) if r["kills"]]
    print(f"{server:<22} {statistics.median(r['rps'] for r in mine):>9.0f} {statistics.median(r['kills'] for r in mine):>6.0f}"
          f" {statistics.median(lost):>6.0f} {statistics.median(per_kill) if per_kill else float('nan'):>10.2f}")
PY
[ "$FAILURES" -eq 0 ]
