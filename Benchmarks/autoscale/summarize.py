"""One autoscale run as a JSON line: the policy's decisions (from its recorded CSV of load
samples, timed from the supervisor's start) against the load step, and wrk's figures."""
import csv, json, re, sys

name, trace, wrk_out, started, step, stop = sys.argv[1], sys.argv[2], sys.argv[3], *map(float, sys.argv[4:7])
step_at, stop_at = step - started, stop - started  # seconds since the primary started

rows = list(csv.DictReader(open(trace)))
workers = int(rows[0]["workers"]) if rows else 0
counts, changes = [workers], []
for row in rows:
    decision = row["decision"]
    if decision and int(decision) != counts[-1]:
        changes.append((float(row["seconds"]), int(decision)))
        counts.append(int(decision))
minimum = min(counts)

up = [t for t, n in changes if t >= step_at and n > counts[0]]
steady = [t for t, n in changes if step_at + 10 <= t <= stop_at]
down = [t for t, n in changes if t > stop_at and n == counts[0]]

text = open(wrk_out).read()
def unit(value, suffix):
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[suffix]
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
requests = re.search(r"(\d+) requests in", text)
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
errors = re.search(r"Socket errors: (.*)", text)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)

print(json.dumps({
    "name": name,
    "react_s": round(up[0] - step_at, 2) if up else None,
    "changes": len(changes),
    "steady_changes": len(steady),
    "counts": counts,
    "requests": int(requests.group(1)) if requests else 0,
    "rps": float(rps.group(1)) if rps else 0,
    "p99_ms": unit(*p99.groups()) if p99 else None,
    "to_min_s": round(down[0] - stop_at, 2) if down else None,
    "errors": (errors.group(1) if errors else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else ""),
}))
