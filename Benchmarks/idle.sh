# Sourced by the benchmark scripts: measure only on an idle machine.
# Expects IDLE_WAIT (seconds) and BUSY_RUNS (a counter) in the caller.

# Percent of all CPUs busy over the last 0.5 s.
busy_percent() {
  local a b
  read -r -a a </proc/stat
  sleep 0.5
  read -r -a b </proc/stat
  local total=0 idle i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# Waits until the machine is idle (under 5% busy), at most IDLE_WAIT seconds.
wait_idle() {
  local waited=0 busy
  while busy=$(busy_percent); [ "$busy" -ge 5 ]; do
    if [ "$waited" -ge $((IDLE_WAIT * 2)) ]; then
      echo "# WARNING: machine still ${busy}% busy after ${IDLE_WAIT} s; measuring anyway" >&2
      BUSY_RUNS=$((BUSY_RUNS + 1))
      return 0
    fi
    [ "$waited" -eq 0 ] && echo "# waiting for the machine to be idle (${busy}% busy)" >&2
    waited=$((waited + 1))
  done
}
