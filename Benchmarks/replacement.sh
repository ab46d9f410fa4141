#!/usr/bin/env bash
# replacement.sh — how long a dead worker leaves a gap: SIGKILL the only worker of a
# server, send a request at once, and time until it is answered by the replacement;
# swift-cluster's `hello` (release, the supervisor with its defaults) against Node's
# cluster (http/node-hello.js) in both scheduling policies, in one run.
#
#   Benchmarks/replacement.sh            (KILLS=30, INTERVAL=1.5 s between kills)
#
# hello runs with RESTART=immediate (as Node's example restarts): with the default policy
# a slot whose workers die within 30 s of their start backs off, up to 1 s after a worker
# that was ready, and kills 1.5 s apart would measure that backoff, not the mechanism.
# Target: our p50 at most 0.2x Node's. Prints a table; JSON lines go to Benchmarks/replacement/.build/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="$HERE/replacement"
KILLS="${KILLS:-30}"
INTERVAL="${INTERVAL:-1.5}"
OUT="$DIR/.build"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"

echo "# building hello (release, .build-bench)" >&2
(cd "$ROOT" && swift build -c release --product hello --scratch-path "$ROOT/.build-bench" >&2)
HELLO="$ROOT/.build-bench/release/hello"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name, then the command (environment assignments allowed through env)
  local name="$1"; shift
  local port; port="$(free_port)"
  setsid env PORT="$port" WORKERS=1 "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
  python3 "$DIR/measure.py" "$name" "$port" "$pid" "$KILLS" "$INTERVAL" | tee -a "$OUT/results.jsonl"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run ours-leastConnections env DISTRIBUTION=leastConnections RESTART=immediate "$HELLO"
run ours-shared env DISTRIBUTION=shared RESTART=immediate "$HELLO"
run ours-reusePort env DISTRIBUTION=reusePort RESTART=immediate "$HELLO"
run node-rr env NODE_CLUSTER_SCHED_POLICY=rr node "$HERE/http/node-hello.js"
run node-none env NODE_CLUSTER_SCHED_POLICY=none node "$HERE/http/node-hello.js"

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {r["name"]: r for r in rows}
node_best = min(r["p50_ms"] for r in rows if r["name"].startswith("node"))
print(f"{'server':<24} {'samples':>7} {'p50 ms':>8} {'p99 ms':>8} {'failures':>8}  ratio p50 to Node's best (target <= 0.2x)")
for r in rows:
    ratio = r["p50_ms"] / node_best
    verdict = "" if r["name"].startswith("node") else ("met" if ratio <= 0.2 else "MISSED")
    print(f"{r['name']:<24} {len(r['samples_ms']):>7} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['failures']:>8}  {ratio:.2f}x {verdict}")
PY
