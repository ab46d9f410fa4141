# Sourced by the benchmark scripts: a server in its own process group, and its stop.
# Expects LOGS (a folder for the pid file) in the caller.

SERVER_PID=""

# start_server LOG CMD...: starts CMD in its own session (so its process group is its
# pid, and the workers it forks are in that group) and records the pid in SERVER_PID.
start_server() {
  local log="$1"; shift
  local pidfile="$LOGS/.pid"
  rm -f "$pidfile"
  # setsid forks when the caller leads a process group; the inner shell writes the
  # pid that exec then keeps, whichever way setsid went.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$log" 2>&1 </dev/null &
  local i
  for i in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.02; done
  SERVER_PID="$(cat "$pidfile")"
}

# Stops the server's process group by its recorded pid: SIGTERM, SIGKILL after 5 s.
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    kill -0 -- "-$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 -- "-$SERVER_PID" 2>/dev/null; then
    echo "# server $SERVER_PID still running 5 s after SIGTERM: SIGKILL" >&2
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  SERVER_PID=""
}
