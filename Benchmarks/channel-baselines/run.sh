#!/usr/bin/env bash
# run.sh — build the C floor and run every baseline, unpinned and then
# pinned to CPU 0, printing one JSON line per run (stderr carries the
# headings). Every run is bounded by `timeout`, on top of each program's
# own 60 s limit, so a wedged run can never hang the caller.
#
#   ./run.sh [REPEATS]      default 2 repeats of each mode
set -euo pipefail
cd "$(dirname "$0")"
REPEATS="${1:-2}"
T="timeout -k 5 90"

cc -O2 -o pingpong pingpong.c

for pin in "" "taskset -c 0"; do
  echo "# ${pin:-unpinned}; loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for _ in $(seq "$REPEATS"); do
    $pin $T ./pingpong roundtrip 20000
    $pin $T ./pingpong oneway 1000000
    $pin $T node node-channel.js roundtrip 20000
    $pin $T node node-channel.js oneway 1000000
    $pin $T node node-coldstart.js coldstart 20
    $pin $T node node-coldstart.js rss
  done
done
