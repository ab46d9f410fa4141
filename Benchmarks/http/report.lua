-- report.lua: wrk prints one JSON line (prefixed "WRKJSON ") with the exact figures
-- http.sh records: requests, duration, req/s, p50/p99 in microseconds and every error
-- count wrk keeps (connect/read/write/timeout socket errors, status = non-2xx/3xx).
done = function(summary, latency, requests)
  local e = summary.errors
  local s = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"non2xx":%d}\n',
    summary.requests, s, summary.requests / s,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
