#!/usr/bin/env python3
"""Worker replacement time: SIGKILL the only worker, then time until a request is answered.

    measure.py NAME PORT PRIMARY_PID KILLS INTERVAL_S

The server runs one worker, so the request sent right after the kill can only be answered
by its replacement: the time from the kill to the answer is the replacement time (spawn,
runtime start, accepting again, and one request). A request that fails (refused, reset,
or unanswered after 1 s: Node's rr policy can lose the connection it handed to the dying
worker) is counted and sent again a
millisecond later, so the figure is the time until the server answers again. Prints one JSON line:
name, samples in ms, p50, p99, failed requests.
"""
import json, os, signal, socket, sys, time


def children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def get(port, timeout=1.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200")


def worker_of(primary, exclude=()):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = [p for p in children(primary) if p not in exclude]
        if live:
            return live[0]
        time.sleep(0.005)
    raise SystemExit(f"no worker under primary {primary}")


def main():
    name, port, primary, kills, interval = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    samples, failures = [], 0
    worker = worker_of(primary)
    for _ in range(kills):
        os.kill(worker, signal.SIGKILL)
        start = time.monotonic()
        while time.monotonic() - start < 10:
            try:
                if get(port):
                    break
            except OSError:
                pass
            failures += 1  # refused, reset or answered wrongly: try again in a millisecond
            time.sleep(0.001)
        samples.append(round((time.monotonic() - start) * 1000, 2))
        worker = worker_of(primary, exclude=(worker,))
        time.sleep(interval)
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None
    print(json.dumps({"name": name, "samples_ms": samples, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "failures": failures}))


main()
