#!/usr/bin/env bash
# channel.sh — THE channel benchmark: swift-cluster against Node's cluster and the C
# socketpair floor, all in one run, then a table of ratios against the targets.
#
#   Benchmarks/channel.sh [RESULTS_FILE]     (default: Benchmarks/.build/channel-results.jsonl)
#
# Builds channel-baselines/pingpong (cc -O2) and ClusterBench (swift build -c release,
# in Benchmarks/.build), then runs:
#   one-way         C floor, Node (JSON), ours JSON (send(_:)), ours raw (send(bytes:))
#   round trip      C floor, Node, ours; unpinned, then pinned with `taskset -c 0`
#   cold start      Node, ours (2 workers, fork to all listening)
#   primary RSS     Node, ours (2 listening workers, after 1 s)
# Every run is bounded by `timeout` on top of each program's own 60 s limit. The raw JSON
# lines (each with a "pin" field added: "none" or "cpu0") go to RESULTS_FILE; the table
# goes to stdout. Run it on an idle machine: on 2
# cores a concurrent build distorts every figure.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BASE="$HERE/channel-baselines"
RESULTS="${1:-$HERE/.build/channel-results.jsonl}"
ROUNDTRIPS="${ROUNDTRIPS:-20000}"
ONEWAY="${ONEWAY:-1000000}"
COLDSTARTS="${COLDSTARTS:-20}"
T="timeout -k 5 90"

echo "# building pingpong and ClusterBench" >&2
cc -O2 -o "$BASE/pingpong" "$BASE/pingpong.c"
swift build -c release --package-path "$HERE" --scratch-path "$HERE/.build" >&2
BENCH="$HERE/.build/release/ClusterBench"

mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"
FAILURES=0
# Runs one benchmark command; its JSON lines go to the results file and to stderr.
run() {
  local tag="$1"; shift
  local out
  local status=0
  out="$("$@")" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "# FAILED (exit status $status): $*" >&2
    FAILURES=$((FAILURES + 1))
  fi
  printf '%s\n' "$out" | while IFS= read -r line; do
    [ -n "$line" ] || continue
    printf '{"pin":"%s",%s\n' "$tag" "${line#\{}" | tee -a "$RESULTS" >&2
  done
}

cd "$BASE"
echo "# $(date -u +%FT%TZ) $(nproc) CPUs; node $(node --version); loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "# one-way, $ONEWAY messages" >&2
run none $T ./pingpong oneway "$ONEWAY"
run none $T node node-channel.js oneway "$ONEWAY"
run none $T "$BENCH" oneway "$ONEWAY"

for pin in none cpu0; do
  prefix=()
  [ "$pin" = cpu0 ] && prefix=(taskset -c 0)
  echo "# round trip, $ROUNDTRIPS samples, ${prefix[*]:-unpinned}" >&2
  run "$pin" "${prefix[@]}" $T ./pingpong roundtrip "$ROUNDTRIPS"
  run "$pin" "${prefix[@]}" $T node node-channel.js roundtrip "$ROUNDTRIPS"
  run "$pin" "${prefix[@]}" $T "$BENCH" roundtrip "$ROUNDTRIPS"
done

echo "# cold start, $COLDSTARTS runs of 2 workers" >&2
run none $T node node-coldstart.js coldstart "$COLDSTARTS"
run none $T "$BENCH" coldstart "$COLDSTARTS"

echo "# primary RSS with 2 workers" >&2
run none $T node node-coldstart.js rss
run none $T "$BENCH" rss

echo "# raw results: $RESULTS; $FAILURES run(s) failed" >&2

python3 - "$RESULTS" <<'PY'
import json, sys

rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        r = json.loads(line)
        rows[(r["bench"], r["impl"], r["pin"])] = r

def get(bench, impl, field, pin="none"):
    r = rows.get((bench, impl, pin))
    return None if r is None else r.get(field)

def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float) and v >= 10000 or isinstance(v, int) and v >= 10000:
        return f"{v:,.0f}{unit}"
    return f"{v:g}{unit}"

table = []  # figure, C floor, Node, ours, ratio, target, verdict

def add(figure, floor, node, ours, ratio=None, target=None, ok=None, ratio_text=None):
    table.append([
        figure, floor, node, ours,
        ratio_text if ratio_text is not None else ("-" if ratio is None else f"{ratio:.2f}x"),
        target or "",
        "" if ok is None else ("met" if ok else "MISSED"),
    ])

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

# One-way throughput: ours / Node, target >= 2.0.
c, n = get("oneway", "c-floor", "msgs_per_s"), get("oneway", "node", "msgs_per_s")
s, sb = get("oneway", "swift-cluster", "msgs_per_s"), get("oneway", "swift-cluster-bytes", "msgs_per_s")
r = ratio(s, n)
add("one-way msgs/s, JSON send(_:)", fmt(c), fmt(n), fmt(s), r, ">= 2.0x Node", None if r is None else r >= 2.0)
rb = ratio(sb, n)
add("one-way msgs/s, send(bytes:) 32 B", fmt(c), fmt(n), fmt(sb), rb, "(vs Node; info)", None,
    ratio_text=None if rb is None else f"{rb:.2f}x Node, {ratio(sb, c):.2f}x floor")

# Round trip, unpinned: ours p50 / floor p50, target <= 1.1.
for pin, label in (("none", "unpinned"), ("cpu0", "pinned cpu0")):
    c50, n50, s50 = (get("roundtrip", i, "p50_us", pin) for i in ("c-floor", "node", "swift-cluster"))
    c99, n99, s99 = (get("roundtrip", i, "p99_us", pin) for i in ("c-floor", "node", "swift-cluster"))
    if pin == "none":
        r = ratio(s50, c50)
        add(f"round trip p50 us, {label}", fmt(c50), fmt(n50), fmt(s50), r, "<= 1.1x floor", None if r is None else r <= 1.1,
            ratio_text=None if r is None else f"{r:.2f}x floor ({ratio(s50, n50):.2f}x Node)")
    else:
        r = ratio(s50, n50)
        add(f"round trip p50 us, {label}", fmt(c50), fmt(n50), fmt(s50), r, "<= 0.7x Node", None if r is None else r <= 0.7,
            ratio_text=None if r is None else f"{r:.2f}x Node ({ratio(s50, c50):.2f}x floor)")
    r99 = ratio(s99, n99)
    add(f"round trip p99 us, {label}", fmt(c99), fmt(n99), fmt(s99), r99, "(info)", None,
        ratio_text=None if r99 is None else f"{r99:.2f}x Node, {ratio(s99, c99):.2f}x floor")

# Cold start: ours p50 / Node p50, target <= 0.2.
n50, s50 = get("coldstart", "node", "p50_ms"), get("coldstart", "swift-cluster", "p50_ms")
n99, s99 = get("coldstart", "node", "p99_ms"), get("coldstart", "swift-cluster", "p99_ms")
r = ratio(s50, n50)
add("cold start p50 ms, 2 workers", "", fmt(n50), fmt(s50), r, "<= 0.2x Node", None if r is None else r <= 0.2)
add("cold start p99 ms, 2 workers", "", fmt(n99), fmt(s99), ratio(s99, n99), "(info)", None)

# Primary RSS: ours in MB, target <= 20.
nk, sk = get("rss", "node", "primary_rss_kb"), get("rss", "swift-cluster", "primary_rss_kb")
nmb = None if nk is None else round(nk / 1024, 1)
smb = None if sk is None else round(sk / 1024, 1)
add("primary RSS MB, 2 workers", "", fmt(nmb), fmt(smb), ratio(smb, nmb), "<= 20 MB", None if smb is None else smb <= 20)

head = ["figure", "C floor", "Node", "swift-cluster", "ratio", "target", ""]
widths = [max(len(str(row[i])) for row in table + [head]) for i in range(len(head))]
def line(row):
    return "  ".join(str(v).ljust(w) if i in (0, 4, 5, 6) else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()
print(line(head))
print(line(["-" * w for w in widths]))
for row in table:
    print(line(row))
missed = sum(1 for row in table if row[6] == "MISSED")
met = sum(1 for row in table if row[6] == "met")
print(f"\n{met} targets met, {missed} missed. Raw JSON lines: {sys.argv[1]}")
PY
exit $(( FAILURES > 0 ))
