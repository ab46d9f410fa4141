#!/usr/bin/env bash
# http.sh — THE HTTP benchmark: swift-cluster's `hello` (every distribution strategy, and
# the same server in one process without the cluster) against Node's cluster in both
# its scheduling policies, then the CPU route (1 worker against N), all in one run on
# loopback with wrk, then a table of ratios against the targets.
#
#   Benchmarks/http.sh [RESULTS_FILE]   (default: Benchmarks/http/.build/http-results.jsonl)
#
# Builds `hello` (and `express` when the package has it) with
# `swift build -c release --scratch-path .build-bench`, installs wrk from Debian's
# packages if it is missing, then for every server and mode:
#   wait for an idle machine; start the server (own process group) on a free loopback
#   port; wait until it answers and all its workers exist; warm up (WARMUP s); sample
#   server CPU (utime+stime from /proc/PID/stat of the primary and every descendant);
#   wrk -t1 -c$CONNS -d${DURATION}s --latency; sample again; stop the server (SIGTERM to
#   its process group, SIGKILL after 5 s).
# Servers: ours with DISTRIBUTION = shared, reusePort, roundRobin, leastConnections,
# sticky (WORKERS = cores); ours single process (WORKERS=0); Node with
# NODE_CLUSTER_SCHED_POLICY = rr and none (http/node-hello.js, WORKERS = cores); nginx
# (http/nginx.sh: Debian's, WORKERS processes, reuseport, `return 200`, no access log);
# Hummingbird (`hello-hummingbird`) as its own Application in one process (event loop
# group of one thread per core) and clustered (WORKERS workers, DISTRIBUTION=$HB_DISTRIBUTION);
# Vapor (Integrations/ClusterVapor's vapor-express, GET /hello) with WORKERS workers and
# alone in one process (WORKERS=0, an event loop per core), skipped when it does not build.
# Modes: keep-alive, and Connection: close (wrk -H 'Connection: close').
# CPU route: GET /?n=$CPU_N with 1 worker and with N = cores workers, ours
# (`express`, skipped when it does not build) and Node (http/node-cpu.js, default policy);
# for information also ours with 1 worker held to one CPU (taskset -c 0).
# REPEATS rounds run interleaved (every server once per round); the table shows medians.
#
# Knobs (environment): DURATION (10 s), WARMUP (2 s), CONNS (50), CPU_DURATION (10 s),
# CPU_CONNS (16), CPU_N (3000000), REPEATS (1), IDLE_WAIT (30 s), WORKERS (cores),
# HB_DISTRIBUTION (reusePort), VAPOR (a built vapor-express to run instead of building one).
# One JSON line per run goes to RESULTS_FILE (and stderr); wrk's own output and the
# servers' logs go beside it. Exits non-zero when a run failed (server did not start,
# wrong answer, wrk failed); wrk's socket errors and non-2xx answers are counted in the
# table, not treated as failures.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DIR="$HERE/http"
RESULTS="${1:-$DIR/.build/http-results.jsonl}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNS="${CONNS:-50}"
CPU_DURATION="${CPU_DURATION:-10}"
CPU_CONNS="${CPU_CONNS:-16}"
CPU_N="${CPU_N:-3000000}"
REPEATS="${REPEATS:-1}"
IDLE_WAIT="${IDLE_WAIT:-30}"
CORES="$(nproc)"
WORKERS="${WORKERS:-$CORES}"
HB_DISTRIBUTION="${HB_DISTRIBUTION:-reusePort}"
SCRATCH="$ROOT/.build-bench"
LUA="$DIR/report.lua"
LOGS="$(dirname "$RESULTS")/http-logs"

mkdir -p "$(dirname "$RESULTS")" "$LOGS"
: >"$RESULTS"
rm -f "$LOGS"/*.log
FAILURES=0
BUSY_RUNS=0

if ! command -v wrk >/dev/null; then
  echo "# installing wrk from Debian's packages" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >&2
fi
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "# installing nginx-light from Debian's packages" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >&2
fi

echo "# building hello (release, $SCRATCH)" >&2
(cd "$ROOT" && swift build -c release --product hello --scratch-path "$SCRATCH" >&2)
HELLO="$SCRATCH/release/hello"
EXPRESS=""
if grep -q '"express"' "$ROOT/Package.swift" 2>/dev/null; then
  echo "# building express (release, $SCRATCH)" >&2
  if (cd "$ROOT" && swift build -c release --product express --scratch-path "$SCRATCH" >&2); then
    EXPRESS="$SCRATCH/release/express"
  else
    echo "# express did not build" >&2
  fi
fi
HUMMINGBIRD=""
if grep -q '"hello-hummingbird"' "$ROOT/Package.swift" 2>/dev/null; then
  echo "# building hello-hummingbird (release, $SCRATCH)" >&2
  if (cd "$ROOT" && swift build -c release --product hello-hummingbird --scratch-path "$SCRATCH" >&2); then
    HUMMINGBIRD="$SCRATCH/release/hello-hummingbird"
  else
    echo "# hello-hummingbird did not build" >&2
  fi
fi

# Vapor (Integrations/ClusterVapor, a package of its own): its example's /hello served by
# a cluster of 2 workers, and by Vapor alone in one process (an event loop per core).
VAPOR="${VAPOR:-}"
VAPOR_PACKAGE="$ROOT/Integrations/ClusterVapor"
if [ -n "$VAPOR" ]; then
  echo "# vapor-express: $VAPOR, as given" >&2
elif [ -f "$VAPOR_PACKAGE/Package.swift" ]; then
  echo "# building vapor-express (release, $VAPOR_PACKAGE/.build-bench)" >&2
  if (cd "$VAPOR_PACKAGE" && swift build -c release --product vapor-express --scratch-path .build-bench >&2); then
    VAPOR="$VAPOR_PACKAGE/.build-bench/release/vapor-express"
  else
    echo "# vapor-express did not build" >&2
  fi
fi

# run_vapor MODE: the two Vapor servers, when vapor-express built.
run_vapor() {
  [ -n "$VAPOR" ] || return 0
  run hello vapor-cluster "$1" $((WORKERS + 1)) /hello "Hello World" "$DURATION" "$CONNS" WORKERS="$WORKERS" "$VAPOR"
  run hello vapor-single "$1" 1 /hello "Hello World" "$DURATION" "$CONNS" WORKERS=0 "$VAPOR"
}

# --- machine ------------------------------------------------------------------------

# busy_percent, wait_idle
source "$HERE/idle.sh"

# "busy_ticks total_ticks" of the whole machine, from /proc/stat.
machine_ticks() {
  local a total=0 i
  read -r -a a </proc/stat
  for i in 1 2 3 4 5 6 7 8; do total=$((total + a[i])); done
  echo "$((total - a[4] - a[5])) $total"
}

# "ticks count": utime+stime (clock ticks, all threads) of PID and every descendant
# alive now, and how many processes that is; with a second argument, also writes
# "pid ticks" lines to that file. A descendant that exited since the last sample takes
# its ticks with it (its parent only collects them on wait); none should exit during a
# run here.
tree_ticks() {
  python3 - "$@" <<'PY'
import os, sys
root = int(sys.argv[1])
save = open(sys.argv[2], "w") if len(sys.argv) > 2 else None
parent, ticks = {}, {}
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        with open(f"/proc/{name}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
    pid = int(name)
    parent[pid] = int(fields[1])
    ticks[pid] = int(fields[11]) + int(fields[12])   # utime, stime
total = count = 0
for pid in ticks:
    p = pid
    while p > 1 and p != root:
        p = parent.get(p, 0)
    if p == root:
        total += ticks[pid]
        count += 1
        if save:
            save.write(f"{pid} {ticks[pid]}\n")
print(total, count)
PY
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- servers ------------------------------------------------------------------------

# start_server, stop_server (SERVER_PID)
source "$HERE/server.sh"
trap stop_server EXIT
trap 'exit 130' INT TERM

# wait_ready PORT PROCS PATH EXPECT: until the server answers PATH with a body starting
# with EXPECT and PROCS processes (primary + workers) exist; at most 30 s.
wait_ready() {
  local port="$1" procs="$2" path="$3" expect="$4" body i
  for i in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    if body="$(curl -s --max-time 2 "http://127.0.0.1:$port$path")" && [ "${body#"$expect"}" != "$body" ] \
        && [ "$(tree_ticks "$SERVER_PID" | cut -d' ' -f2)" -ge "$procs" ]; then
      READY_BODY="$body"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# run BENCH SERVER MODE PROCS PATH EXPECT DURATION CONNS CMD...
# One measured run; appends one JSON line to the results file.
run() {
  local bench="$1" server="$2" mode="$3" procs="$4" path="$5" expect="$6" duration="$7" conns="$8"
  shift 8
  local port log out headers=() before after mbefore mafter status=0
  [ "$mode" = close ] && headers=(-H "Connection: close")
  wait_idle
  port="$(free_port)"
  log="$LOGS/$bench-$server-$mode.log"
  echo "=== $(date -u +%T) $bench $server $mode: PORT=$port $*" >>"$log"
  start_server "$log" env PORT="$port" "$@"
  if ! wait_ready "$port" "$procs" "$path" "$expect"; then
    echo "# FAILED: $bench $server $mode did not answer '$expect...' with $procs processes within 30 s (log: $log)" >&2
    [ "$(id -u)" -eq 0 ] || [ "${server#ours}" = "$server" ] || \
      echo "#   (not root: ClusterNIO sets SO_DEBUG on every connection, which needs CAP_NET_ADMIN; see http/README.md)" >&2
    FAILURES=$((FAILURES + 1))
    printf '{"bench":"%s","server":"%s","mode":"%s","failed":"not ready"}\n' "$bench" "$server" "$mode" | tee -a "$RESULTS" >&2
    stop_server
    return 0
  fi
  wrk -t1 -c"$conns" -d"${WARMUP}s" "${headers[@]}" "http://127.0.0.1:$port$path" >/dev/null 2>&1 || true
  mbefore="$(machine_ticks)"
  before="$(tree_ticks "$SERVER_PID" "$LOGS/.ticks-before")"
  out="$(timeout -k 5 $((duration + 60)) wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$LUA" \
           "${headers[@]}" "http://127.0.0.1:$port$path" 2>&1)" || status=$?
  after="$(tree_ticks "$SERVER_PID" "$LOGS/.ticks-after")"
  mafter="$(machine_ticks)"
  printf '%s\n' "$out" >>"$log"
  stop_server
  local json
  json="$(printf '%s\n' "$out" | sed -n 's/^WRKJSON {//p' | head -1)"
  if [ "$status" -ne 0 ] || [ -z "$json" ]; then
    echo "# FAILED: wrk exit status $status for $bench $server $mode (log: $log)" >&2
    FAILURES=$((FAILURES + 1))
    printf '{"bench":"%s","server":"%s","mode":"%s","failed":"wrk status %s"}\n' "$bench" "$server" "$mode" "$status" | tee -a "$RESULTS" >&2
    return 0
  fi
  local hz ticks nprocs mb mt
  hz="$(getconf CLK_TCK)"
  read -r ticks nprocs <<<"$after"
  ticks=$((ticks - ${before%% *}))
  read -r mb mt <<<"$mafter"
  read -r a b <<<"$mbefore"
  local machine_busy=$(( (mt - b) > 0 ? 100 * (mb - a) / (mt - b) : 0 ))
  # The busiest process's share of the server's CPU: how evenly the work was spread.
  local top_share
  top_share="$(awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; t += d; if (d > m) m = d }
                    END { printf "%.2f", (t > 0 ? m / t : 0) }' "$LOGS/.ticks-before" "$LOGS/.ticks-after")"
  printf '{"bench":"%s","server":"%s","mode":"%s","conns":%s,"procs":%s,"cpu_s":%s,"top_share":%s,"machine_busy_pct":%s,"answer":"%s",%s\n' \
    "$bench" "$server" "$mode" "$conns" "$nprocs" "$(awk -v t="$ticks" -v h="$hz" 'BEGIN { printf "%.2f", t / h }')" \
    "$top_share" "$machine_busy" "$(printf '%s' "$READY_BODY" | head -c 40 | tr -d '"\\\n')" "$json" | tee -a "$RESULTS" >&2
}

# --- the reference servers: one function each, called with the mode -------------------

# nginx, the practical limit: WORKERS processes, one reuseport socket each.
run_nginx() {
  run hello nginx "$1" $((WORKERS + 1)) / "Hello World" "$DURATION" "$CONNS" WORKERS="$WORKERS" "$DIR/nginx.sh"
}

# Hummingbird's own Application in one process: an event loop group of one thread per core.
run_hummingbird_single() {
  [ -n "$HUMMINGBIRD" ] || return 0
  run hello hb-single "$1" 1 / "Hello World" "$DURATION" "$CONNS" WORKERS=0 "$HUMMINGBIRD"
}

# The same Hummingbird app clustered: WORKERS workers (ClusterHummingbird's worker.run).
run_hummingbird_cluster() {
  [ -n "$HUMMINGBIRD" ] || return 0
  run hello hb-cluster "$1" $((WORKERS + 1)) / "Hello World" "$DURATION" "$CONNS" \
    WORKERS="$WORKERS" DISTRIBUTION="$HB_DISTRIBUTION" "$HUMMINGBIRD"
}

REFERENCE_SERVERS=(run_nginx run_hummingbird_single run_hummingbird_cluster run_vapor)

# --- the run --------------------------------------------------------------------------

cd "$DIR"
echo "# $(date -u +%FT%TZ) $CORES CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(uname -r);" \
     "$(swift --version 2>&1 | head -1 | sed 's/ (.*//'); node $(node --version); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2);" \
     "$( (nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1) | sed 's/.*: //');" \
     "loadavg $(cut -d' ' -f1-3 /proc/loadavg); workers $WORKERS, wrk -t1 -c$CONNS -d${DURATION}s (warm-up ${WARMUP}s), $REPEATS round(s)" \
     | tee "$LOGS/machine.txt" >&2

STRATEGIES=(shared reusePort roundRobin leastConnections sticky)
for round in $(seq "$REPEATS"); do
  for mode in keepalive close; do
    echo "# round $round/$REPEATS, hello, $mode" >&2
    for s in "${STRATEGIES[@]}"; do
      run hello "ours-$s" "$mode" $((WORKERS + 1)) / "Hello World" "$DURATION" "$CONNS" \
        WORKERS="$WORKERS" DISTRIBUTION="$s" "$HELLO"
    done
    run hello ours-single "$mode" 1 / "Hello World" "$DURATION" "$CONNS" WORKERS=0 "$HELLO"
    for policy in rr none; do
      run hello "node-$policy" "$mode" $((WORKERS + 1)) / "Hello World" "$DURATION" "$CONNS" \
        WORKERS="$WORKERS" NODE_CLUSTER_SCHED_POLICY="$policy" node "$DIR/node-hello.js"
    done
    for server in "${REFERENCE_SERVERS[@]}"; do "$server" "$mode"; done
  done
  echo "# round $round/$REPEATS, CPU route, GET /?n=$CPU_N, 1 and $WORKERS workers" >&2
  for w in 1 "$WORKERS"; do
    if [ -n "$EXPRESS" ]; then
      run cpu "ours-w$w" keepalive $((w + 1)) "/?n=$CPU_N" "Result:" "$CPU_DURATION" "$CPU_CONNS" WORKERS="$w" "$EXPRESS"
      # For information: the one worker held to one CPU, so 1 worker means 1 core.
      [ "$w" -eq 1 ] && run cpu "ours-w1-cpu0" keepalive 2 "/?n=$CPU_N" "Result:" "$CPU_DURATION" "$CPU_CONNS" \
        WORKERS=1 taskset -c 0 "$EXPRESS"
    elif [ "$round" -eq 1 ] && [ "$w" -eq 1 ]; then
      echo "# CPU route, ours: skipped: express not built" >&2
      printf '{"bench":"cpu","server":"ours","skipped":"express not built"}\n' | tee -a "$RESULTS" >&2
    fi
    run cpu "node-w$w" keepalive $((w + 1)) "/?n=$CPU_N" "Result:" "$CPU_DURATION" "$CPU_CONNS" WORKERS="$w" node "$DIR/node-cpu.js"
  done
done

echo "# raw results: $RESULTS (wrk output and server logs: $LOGS); $FAILURES run(s) failed; $BUSY_RUNS run(s) on a busy machine" >&2

python3 - "$RESULTS" "$WORKERS" "$CPU_N" "$LOGS/machine.txt" <<'PY'
import json, statistics, sys

lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
workers, cpu_n = int(sys.argv[2]), int(sys.argv[3])
print(open(sys.argv[4]).read().strip())
runs = [r for r in lines if "rps" in r]
STRATEGIES = ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"]

def get(bench, server, mode, field):
    """The median over rounds; per-run CPU per 100k requests is computed per run."""
    v = []
    for r in runs:
        if r["bench"] == bench and r["server"] == server and r["mode"] == mode:
            if field == "cpu100k":
                v.append(r["cpu_s"] * 100000 / r["requests"] if r["requests"] else None)
            elif field == "errors":
                v.append(sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "non2xx")))
            else:
                v.append(r[field])
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

def fmt(v, digits=None):
    if v is None:
        return "-"
    if digits is not None:
        return f"{v:.{digits}f}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{round(v, 2):g}"

def x(v):
    return "-" if v is None else f"{v:.2f}x"

def show(head, rows, left=(0,)):
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    def line(row):
        return "  ".join(str(v).ljust(w) if i in left else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))

MODES = {"keepalive": "keep-alive", "close": "close"}
SERVERS = [f"ours-{s}" for s in STRATEGIES] + ["ours-single", "node-rr", "node-none", "nginx", "hb-single", "hb-cluster"]
SERVERS += sorted({r["server"] for r in runs if r["server"].startswith("vapor-")})

# 1. Every figure.
print("\nEvery run (medians over rounds): requests/s, latency, server CPU (primary + workers,")
print("utime+stime from /proc) per 100 000 requests, wrk's errors")
rows = []
for mode in MODES:
    for s in SERVERS:
        rps = get("hello", s, mode, "rps")
        if rps is None and not any(r["server"] == s for r in lines):
            continue  # not run (a reference server that was not built)
        if rps is None:
            rows.append([f"hello {MODES[mode]}", s, "FAILED", "", "", "", "", "", "", ""])
            continue
        rows.append([f"hello {MODES[mode]}", s, fmt(rps), fmt(get("hello", s, mode, "p50_us") / 1000, 2),
                     fmt(get("hello", s, mode, "p99_us") / 1000, 2), fmt(get("hello", s, mode, "cpu100k"), 2),
                     fmt(get("hello", s, mode, "errors")), f"{get('hello', s, mode, 'machine_busy_pct'):.0f}%",
                     fmt(get("hello", s, mode, "procs")), f"{100 * get('hello', s, mode, 'top_share'):.0f}%"])
for s in ("ours-w1", "ours-w1-cpu0", f"ours-w{workers}", "node-w1", f"node-w{workers}"):
    rps = get("cpu", s, "keepalive", "rps")
    if rps is None:
        continue
    rows.append([f"cpu /?n={cpu_n}", s, fmt(rps), fmt(get("cpu", s, "keepalive", "p50_us") / 1000, 2),
                 fmt(get("cpu", s, "keepalive", "p99_us") / 1000, 2), fmt(get("cpu", s, "keepalive", "cpu100k"), 2),
                 fmt(get("cpu", s, "keepalive", "errors")), f"{get('cpu', s, 'keepalive', 'machine_busy_pct'):.0f}%",
                 fmt(get("cpu", s, "keepalive", "procs")), f"{100 * get('cpu', s, 'keepalive', 'top_share'):.0f}%"])
show(["bench", "server", "req/s", "p50 ms", "p99 ms", "CPU s/100k", "errors", "busy", "procs", "top proc"], rows, left=(0, 1))
print("(busy: both CPUs, wrk included; top proc: the busiest server process's share of the server's CPU)")

# 2. Targets, as ratios to Node in the same run.
table = []
def add(figure, node_label, node, ours, r, target, ok):
    table.append([figure, node_label, node, ours, x(r), target, "" if ok is None else ("met" if ok else "MISSED")])

def check(r, op, limit):
    if r is None:
        return None
    return r >= limit if op == ">=" else r <= limit

# Keep-alive: against Node's best of each figure (highest req/s, lowest p99, lowest CPU).
best = lambda field, pick: pick(((get("hello", p, "keepalive", field), p) for p in ("node-rr", "node-none")
                                 if get("hello", p, "keepalive", field) is not None), default=(None, "-"))
n_rps, n_rps_p = best("rps", max)
n_p99, n_p99_p = best("p99_us", min)
n_cpu, n_cpu_p = best("cpu100k", min)
for s in STRATEGIES:
    o = f"ours-{s}"
    r = ratio(get("hello", o, "keepalive", "rps"), n_rps)
    add(f"keep-alive req/s, {s}", n_rps_p, fmt(n_rps), fmt(get("hello", o, "keepalive", "rps")), r, ">= 1.0x Node best", check(r, ">=", 1.0))
    p = get("hello", o, "keepalive", "p99_us")
    r = ratio(p, n_p99)
    add(f"keep-alive p99 ms, {s}", n_p99_p, fmt(None if n_p99 is None else n_p99 / 1000, 2),
        fmt(None if p is None else p / 1000, 2), r, "<= 1.0x Node best", check(r, "<=", 1.0))
    c = get("hello", o, "keepalive", "cpu100k")
    r = ratio(c, n_cpu)
    add(f"keep-alive CPU s/100k, {s}", n_cpu_p, fmt(n_cpu, 2), fmt(c, 2), r, "<= 0.7x Node best", check(r, "<=", 0.7))

# Connection: close: against the matching Node policy.
for s in STRATEGIES:
    o = f"ours-{s}"
    policy, want = ("node-none", 1.05) if s in ("shared", "reusePort") else ("node-rr", 1.5)
    n, v = get("hello", policy, "close", "rps"), get("hello", o, "close", "rps")
    r = ratio(v, n)
    add(f"close req/s, {s}", policy, fmt(n), fmt(v), r, f">= {want}x Node {policy[5:]}", check(r, ">=", want))
    n, v = get("hello", policy, "close", "p99_us"), get("hello", o, "close", "p99_us")
    add(f"close p99 ms, {s}", policy, fmt(None if n is None else n / 1000, 2), fmt(None if v is None else v / 1000, 2),
        ratio(v, n), "(info)", None)
    n, v = get("hello", policy, "close", "cpu100k"), get("hello", o, "close", "cpu100k")
    r = ratio(v, n)
    add(f"close CPU s/100k, {s}", policy, fmt(n, 2), fmt(v, 2), r, f"<= 0.8x Node {policy[5:]}", check(r, "<=", 0.8))

# CPU route: N workers against one.
o1, on = get("cpu", "ours-w1", "keepalive", "rps"), get("cpu", f"ours-w{workers}", "keepalive", "rps")
n1, nn = get("cpu", "node-w1", "keepalive", "rps"), get("cpu", f"node-w{workers}", "keepalive", "rps")
r = ratio(on, o1)
if o1 is None and on is None:
    table.append([f"cpu route req/s, {workers} workers / 1", "node", f"{fmt(nn)} / {fmt(n1)} = {x(ratio(nn, n1))}", "skipped: express not built",
                  "", f">= {0.95 * workers:.2f}x (0.95 N)", ""])
else:
    table.append([f"cpu route req/s, {workers} workers / 1", "node", f"{fmt(nn)} / {fmt(n1)} = {x(ratio(nn, n1))}",
                  f"{fmt(on)} / {fmt(o1)}", x(r), f">= {0.95 * workers:.2f}x (0.95 N)", "" if r is None else ("met" if r >= 0.95 * workers else "MISSED")])
    table.append([f"cpu route req/s, 1 worker", "node-w1", fmt(n1), fmt(o1), x(ratio(o1, n1)), "(info)", ""])
    op = get("cpu", "ours-w1-cpu0", "keepalive", "rps")
    if op is not None:
        table.append([f"cpu route req/s, {workers} workers / 1 worker on one CPU", "node", "-",
                      f"{fmt(on)} / {fmt(op)}", x(ratio(on, op)), "(info: taskset -c 0)", ""])

answers = {r["server"]: r["answer"] for r in runs if r["bench"] == "cpu"}
if len(set(answers.values())) > 1:
    table.append(["cpu route: answers DIFFER", "", "", "", "", "; ".join(f"{k}: {v}" for k, v in answers.items()), "MISSED"])

notes = []
for r in runs:
    if r["bench"] == "cpu" and r["server"].endswith("-w1") and r["cpu_s"] > 1.5 * r["duration_s"]:
        notes.append(f"note: {r['server']} (WORKERS=1) used {r['cpu_s'] / r['duration_s']:.2f} CPU-seconds per second: one worker "
                     f"ran on more than one core, so '1 worker' is not '1 core' and N workers cannot be N times faster.")

print("\nTargets, as ratios to Node in this run (keep-alive: against Node's best figure of each kind)")
show(["figure", "Node", "Node value", "ours", "ratio", "target", ""], table, left=(0, 1, 5, 6))

for n in notes:
    print(n)

# 3. What the cluster itself costs: shared and reusePort against the single process.
over = []
for mode in MODES:
    single_rps, single_cpu = get("hello", "ours-single", mode, "rps"), get("hello", "ours-single", mode, "cpu100k")
    for s in ("shared", "reusePort"):
        o = f"ours-{s}"
        rps, cpu = get("hello", o, mode, "rps"), get("hello", o, mode, "cpu100k")
        r = ratio(rps, single_rps)
        loss = None if r is None else 1 - r
        over.append([f"{MODES[mode]} req/s, {s}", fmt(single_rps), fmt(rps),
                     "-" if loss is None else f"{100 * loss:.1f}% slower" if loss >= 0 else f"{-100 * loss:.1f}% faster",
                     "<= 5%", "" if loss is None else ("met" if loss <= 0.05 else "MISSED")])
        r = ratio(cpu, single_cpu)
        extra = None if r is None else r - 1
        over.append([f"{MODES[mode]} CPU s/100k, {s}", fmt(single_cpu, 2), fmt(cpu, 2),
                     "-" if extra is None else f"{100 * extra:+.1f}% CPU",
                     "<= 5%", "" if extra is None else ("met" if extra <= 0.05 else "MISSED")])
print("\nThe cluster's own overhead: shared and reusePort against the same server in one process (WORKERS=0)")
show(["figure", "one process", "cluster", "overhead", "target", ""], over, left=(0, 4, 5))

# 4. Against the limit: the lean path against nginx, the primary-accept strategies against
#    the best of shared and reusePort; and Hummingbird and Vapor clustered against each alone.
LIMIT = {"keepalive": (0.9, 1.3), "close": (0.8, 1.6)}
limit = []
def limit_row(figure, ref_name, ref, v, r, target, ok):
    limit.append([figure, ref_name, ref, v, x(r), target, "" if ok is None else ("met" if ok else "MISSED")])

for mode in MODES:
    m = MODES[mode]
    want_rps, want_cpu = LIMIT[mode]
    n_rps, n_cpu, n_p99 = (get("hello", "nginx", mode, f) for f in ("rps", "cpu100k", "p99_us"))
    for s in ("shared", "reusePort"):
        o = f"ours-{s}"
        v = get("hello", o, mode, "rps")
        r = ratio(v, n_rps)
        limit_row(f"{m} req/s, {s}", "nginx", fmt(n_rps), fmt(v), r, f">= {want_rps}x nginx", check(r, ">=", want_rps))
        v = get("hello", o, mode, "cpu100k")
        r = ratio(v, n_cpu)
        limit_row(f"{m} CPU s/100k, {s}", "nginx", fmt(n_cpu, 2), fmt(v, 2), r, f"<= {want_cpu}x nginx", check(r, "<=", want_cpu))
        v = get("hello", o, mode, "p99_us")
        limit_row(f"{m} p99 ms, {s}", "nginx", fmt(None if n_p99 is None else n_p99 / 1000, 2),
                  fmt(None if v is None else v / 1000, 2), ratio(v, n_p99), "(info)", None)
    lean = [get("hello", f"ours-{s}", mode, "rps") for s in ("shared", "reusePort")]
    lean_cpu = [get("hello", f"ours-{s}", mode, "cpu100k") for s in ("shared", "reusePort")]
    best_rps = max((v for v in lean if v is not None), default=None)
    best_cpu = min((v for v in lean_cpu if v is not None), default=None)
    for s in ("roundRobin", "leastConnections", "sticky"):
        o = f"ours-{s}"
        v = get("hello", o, mode, "rps")
        r = ratio(v, best_rps)
        limit_row(f"{m} req/s, {s}", "ours best", fmt(best_rps), fmt(v), r, ">= 0.85x shared/reusePort", check(r, ">=", 0.85))
        v = get("hello", o, mode, "cpu100k")
        r = ratio(v, best_cpu)
        limit_row(f"{m} CPU s/100k, {s}", "ours best", fmt(best_cpu, 2), fmt(v, 2), r, "<= 1.15x shared/reusePort", check(r, "<=", 1.15))
    for framework, prefix in (("Hummingbird", "hb"), ("Vapor", "vapor")):
        for f, label, want, op in (("rps", "req/s", 1.0, ">="), ("cpu100k", "CPU s/100k", 1.05, "<="), ("p99_us", "p99 ms", None, None)):
            single, cluster = get("hello", f"{prefix}-single", mode, f), get("hello", f"{prefix}-cluster", mode, f)
            if single is None and cluster is None:
                continue
            r = ratio(cluster, single)
            scale = 1000 if f == "p99_us" else 1
            shown = lambda v: fmt(None if v is None else v / scale, 2 if f != "rps" else None)
            limit_row(f"{m} {label}, {framework}", f"{prefix}-single", shown(single), shown(cluster), r,
                      "(info)" if want is None else f"{op} {want}x one process", None if want is None else check(r, op, want))

print("\nAgainst the limit: the lean path against nginx, the strategies where the primary accepts against the")
print("best of shared and reusePort, and Hummingbird and Vapor clustered (-cluster) against each alone in one process (-single)")
show(["figure", "reference", "ref value", "ours", "ratio", "target", ""], limit, left=(0, 1, 5, 6))

met = sum(r[6] == "met" for r in table) + sum(r[5] == "met" for r in over) + sum(r[6] == "met" for r in limit)
missed = sum(r[6] == "MISSED" for r in table) + sum(r[5] == "MISSED" for r in over) + sum(r[6] == "MISSED" for r in limit)
errors = sum(get("hello", s, m, "errors") or 0 for s in SERVERS for m in MODES)
failed = [f"{r['bench']} {r['server']} {r.get('mode', '')}" for r in lines if "failed" in r]
rounds = sum(1 for r in runs if r["bench"] == "hello" and r["server"] == "node-rr" and r["mode"] == "keepalive")
print(f"\n{met} targets met, {missed} missed; {rounds} round(s); wrk errors (socket + non-2xx, medians summed): {fmt(errors)}"
      + (f"; FAILED runs: {', '.join(failed)}" if failed else "") + f". Raw JSON lines: {sys.argv[1]}")
PY
exit $(( FAILURES > 0 ))
