#!/usr/bin/env python3
"""diagnose.py: where a hello server's time goes, per request, cheaply.

    python3 Benchmarks/http/diagnose.py [--mode keepalive|close] [--seconds 4] [--strace] [--mallocs] [--perf] SERVER...

SERVER is one of ours-shared, ours-reusePort, ours-roundRobin, ours-leastConnections,
ours-sticky, ours-single, node-rr, node-none, nginx, hb-single, hb-cluster (Hummingbird alone
and clustered; HB_DISTRIBUTION, default reusePort). Run Benchmarks/http.sh once first: it
builds .build-bench/release/hello and hello-hummingbird. For each server, one wrk run (-t1 -c50, after a 1 s warm-up)
and, over its middle, per process and thread: user and kernel CPU seconds per 100 000
requests (utime/stime from /proc/PID/task/TID/stat) and voluntary context switches per
request (how often a thread went to sleep). With --strace, a second, short run under
`strace -c -f` counts system calls per request (strace slows the server down; the counts
per request are what matter). With --perf, `perf record -e cpu-clock -g` samples the
busiest worker and prints its top symbols. With --mallocs, a uprobe on libc's malloc
(`perf probe`, removed afterwards) counts malloc calls per request in every process of the
server: a figure that does not depend on how busy the machine is, like the system calls.
Servers are killed by process group.
"""
import argparse, os, re, signal, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HELLO = os.path.join(ROOT, ".build-bench", "release", "hello")
HUMMINGBIRD = os.path.join(ROOT, ".build-bench", "release", "hello-hummingbird")
WORKERS = os.environ.get("WORKERS", str(os.cpu_count()))


def command(server):
    kind, _, variant = server.partition("-")
    if kind == "ours" and variant == "single":
        return {"WORKERS": "0"}, [HELLO]
    if kind == "ours":
        return {"WORKERS": WORKERS, "DISTRIBUTION": variant}, [HELLO]
    if kind == "node":
        return {"WORKERS": WORKERS, "NODE_CLUSTER_SCHED_POLICY": variant}, ["node", os.path.join(HERE, "node-hello.js")]
    if server == "nginx":
        return {"WORKERS": WORKERS}, [os.path.join(HERE, "nginx.sh")]
    if server == "hb-single":
        return {"WORKERS": "0"}, [HUMMINGBIRD]
    if server == "hb-cluster":
        return {"WORKERS": WORKERS, "DISTRIBUTION": os.environ.get("HB_DISTRIBUTION", "reusePort")}, [HUMMINGBIRD]
    raise SystemExit(f"unknown server {server}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(root):
    """Pids of root and its descendants."""
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read()
            except OSError:
                continue
            parent[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out = []
    for pid in parent:
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            out.append(pid)
    return out


def threads(root):
    """{(pid, tid, name): (utime, stime, voluntary switches)} for the whole tree."""
    out = {}
    for pid in tree(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                status = open(f"/proc/{pid}/task/{tid}/status").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
            out[(pid, int(tid), name)] = (int(fields[11]), int(fields[12]), vol)
    return out


def wrk(port, mode, seconds, wait=True):
    args = ["wrk", "-t1", "-c50", f"-d{seconds}s"]
    if mode == "close":
        args += ["-H", "Connection: close"]
    proc = subprocess.Popen(args + [f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
    if not wait:
        return proc
    return requests_of(proc)


def requests_of(proc):
    out = proc.communicate()[0]
    m = re.search(r"(\d+) requests in ([\d.]+)s", out)
    return int(m.group(1)), float(m.group(2))


def start(server, port):
    env, argv = command(server)
    log = open(os.path.join(tempfile.gettempdir(), f"diagnose-{server}.log"), "w")
    proc = subprocess.Popen(argv, env={**os.environ, **env, "PORT": str(port)}, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    want = 1 if server.endswith("-single") else int(WORKERS) + 1
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"Hello World" in s.recv(4096) and len(tree(proc.pid)) >= want:
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"{server} did not answer (log: {log.name})")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def mallocs(proc, port, mode, seconds):
    """malloc calls per request, per process, counted by a uprobe during one wrk run."""
    libc = next(line.split()[-1] for line in open(f"/proc/{proc.pid}/maps") if "/libc.so" in line)
    subprocess.run(["perf", "probe", "-q", "-x", libc, "malloc"], capture_output=True)
    try:
        pids = tree(proc.pid)
        out = os.path.join(tempfile.gettempdir(), "diagnose-mallocs.txt")
        counts = []
        run = wrk(port, mode, seconds + 1, wait=False)
        time.sleep(0.5)
        for pid in pids:
            counts.append(subprocess.Popen(["perf", "stat", "-x,", "-o", f"{out}.{pid}", "-e", "probe_libc:malloc",
                                            "-p", str(pid), "--", "sleep", str(seconds)]))
        for c in counts:
            c.wait()
        n, secs = requests_of(run)
        reqs = n / secs * seconds
        total = 0
        for pid in pids:
            value = next((line.split(",")[0] for line in open(f"{out}.{pid}") if "probe_libc:malloc" in line), "0")
            calls = int(value) if value.isdigit() else 0
            total += calls
            if calls:
                print(f"   pid {pid:>7} malloc calls per request {calls / reqs:6.2f}")
        print(f"   total                malloc calls per request {total / reqs:6.2f}")
    finally:
        subprocess.run(["perf", "probe", "-q", "-d", "probe_libc:malloc"], capture_output=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="keepalive", choices=["keepalive", "close"])
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("--mallocs", action="store_true")
    ap.add_argument("servers", nargs="+")
    a = ap.parse_args()
    hz = os.sysconf("SC_CLK_TCK")
    for server in a.servers:
        port = free_port()
        proc = start(server, port)
        try:
            wrk(port, a.mode, 1)  # warm-up
            run = wrk(port, a.mode, a.seconds + 2, wait=False)
            time.sleep(1)
            t0, before = time.monotonic(), threads(proc.pid)
            time.sleep(a.seconds)
            after, t1 = threads(proc.pid), time.monotonic()
            n, secs = requests_of(run)
            rps = n / secs
            reqs = rps * (t1 - t0)
            print(f"\n== {server}, {a.mode}: {rps:,.0f} req/s; per 100 000 requests, CPU seconds user / kernel, "
                  f"and voluntary context switches per request")
            tu = ts = tv = 0
            per_pid = {}
            for key, (u, s, v) in sorted(after.items()):
                u0, s0, v0 = before.get(key, (0, 0, 0))
                du, ds, dv = (u - u0) / hz, (s - s0) / hz, v - v0
                tu, ts, tv = tu + du, ts + ds, tv + dv
                per_pid[key[0]] = per_pid.get(key[0], 0) + du + ds
                if du + ds > 0 or dv > reqs / 1000:
                    print(f"   pid {key[0]:>7} {key[2]:<18} user {du * 1e5 / reqs:6.3f}  kernel {ds * 1e5 / reqs:6.3f}  "
                          f"switches/req {dv / reqs:6.3f}")
            print(f"   total                      user {tu * 1e5 / reqs:6.3f}  kernel {ts * 1e5 / reqs:6.3f}  "
                  f"switches/req {tv / reqs:6.3f}   (CPU s/100k {(tu + ts) * 1e5 / reqs:.2f})")
            if a.perf:
                busiest = max(per_pid, key=per_pid.get)
                perf_data = os.path.join(tempfile.gettempdir(), f"diagnose-{server}.perf")
                run = wrk(port, a.mode, a.seconds + 2, wait=False)
                time.sleep(1)
                subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-g", "-p", str(busiest),
                                "-o", perf_data, "--", "sleep", str(a.seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                requests_of(run)
                for sort in ("dso", "sym"):
                    rep = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children",
                                          "--sort", sort, "-g", "none"], capture_output=True, text=True).stdout
                    rows = [l for l in rep.splitlines() if "%" in l and not l.startswith("#")]
                    print(f"   perf, pid {busiest}, by {sort}:")
                    for l in rows[:8 if sort == "dso" else 20]:
                        print("     " + l.strip())
            if a.mallocs:
                mallocs(proc, port, a.mode, a.seconds)
            if a.strace:
                out = os.path.join(tempfile.gettempdir(), f"diagnose-{server}.strace")
                args = ["strace", "-c", "-f", "-o", out]
                for pid in tree(proc.pid):
                    args += ["-p", str(pid)]
                st = subprocess.Popen(args, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                n, _ = wrk(port, a.mode, 3)
                st.send_signal(signal.SIGINT)
                st.wait()
                calls = []
                for line in open(out):
                    f = line.split()
                    if len(f) >= 5 and f[3].isdigit() and f[-1] != "total":
                        calls.append((int(f[3]) / n, f[-1]))
                calls.sort(reverse=True)
                print(f"   system calls per request under strace ({n} requests): " +
                      ", ".join(f"{name} {c:.2f}" for c, name in calls if c >= 0.01) +
                      f"; total {sum(c for c, _ in calls):.2f}")
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
