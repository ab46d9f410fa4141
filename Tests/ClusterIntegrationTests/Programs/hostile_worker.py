#!/usr/bin/env python3
"""A worker that lies: it speaks the primary's channel protocol (fd 3) directly, past the
runtime, as an attacker who controls a worker's code would. One attack per run, named by
the first argument; it prints one JSON line when the attack has been sent, then waits.

Frame header, little-endian: length u32, kind u8, descriptor count u8, reserved u16,
peer u32, correlation u64; then the payload. Kinds: 1 message, 2 request, 5 control.
"""
import array, json, os, socket, struct, sys, time

MESSAGE, REQUEST, CONTROL = 1, 2, 5
channel = socket.socket(fileno=3)
channel.setblocking(True)  # the runtime left it non-blocking


def frame(kind, payload=b"", announced=0, peer=0, correlation=0):
    return struct.pack("<IBBHIQ", len(payload), kind, announced, 0, peer, correlation) + payload


def send(data, fds=()):
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    try:
        channel.sendmsg([data], ancillary)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False  # the primary closed the channel: the attack was caught


def control(value):
    return json.dumps(value, separators=(",", ":")).encode()


def pipes(count):
    fds = []
    for _ in range(count // 2):
        fds.extend(os.pipe())
    return fds


def send_with_pipes(times, data, count):
    """Sends `data` with `count` fresh pipe ends attached, `times` times or until the
    primary closes the channel; returns how many went out."""
    for done in range(times):
        fds = pipes(count)
        ok = send(data, fds)
        for fd in fds:
            os.close(fd)
        if not ok:
            return done
    return times


def report(**fields):
    # One write, so the line is not interleaved with the primary's output on the pipe.
    os.write(1, (json.dumps({"event": "attacked", **fields}) + "\n").encode())


def read_answers(count):
    """Reads frames until `count` replies or failures came; returns (replies, failures)."""
    buffered, replies, failures = b"", 0, 0
    while replies + failures < count:
        chunk = channel.recv(65536)  # descriptors attached to replies are dropped by the kernel
        if not chunk:
            break
        buffered += chunk
        while len(buffered) >= 20:
            length, kind = struct.unpack_from("<IB", buffered)
            if len(buffered) < 20 + length:
                break
            replies += kind == 3
            failures += kind == 4
            buffered = buffered[20 + length:]
    return replies, failures


attack = sys.argv[1]
sent = 0
if attack == "rss":
    # First count as listening (connections from listener 0, over the channel), so the
    # primary's figures include this worker's; then report 8 EiB of resident memory.
    send(frame(CONTROL, control({"accepting": {"listener": 0}})))
    heartbeat = {"heartbeat": {"_0": {"requests": 0, "connections": 0, "connectionsTotal": 0, "lag": 0,
                                      "waiting": False, "lagP50": 0, "lagP99": 0, "lagBuckets": [0] * 12,
                                      "lagSum": 0, "busy": 0, "cpu": 0,
                                      "rss": 2**63 - 1}}}
    sent += send(frame(CONTROL, control(heartbeat)))
elif attack == "unannounced":
    # Descriptors on frames that announce none: 300 times 2, if the primary let it go on.
    sent = send_with_pipes(300, frame(MESSAGE, b"x"), 2)
elif attack == "control-fds":
    sent = send_with_pipes(300, frame(CONTROL, control({"online": {}}), announced=2), 2)
elif attack == "message-fds":
    # Messages the primary's app ignores, each with 64 descriptors: 6,400 in all.
    sent = send_with_pipes(100, frame(MESSAGE, b"take these", announced=64), 64)
elif attack == "accepting-twice":
    # Listener 0 asked for again and again, each time with a new handoff link.
    for _ in range(300):
        link, _ = socket.socketpair()
        bell_read, bell_write = os.pipe()
        ok = send(frame(CONTROL, control({"accepting": {"listener": 0}}), announced=2), [link.fileno(), bell_write])
        link.close(); os.close(bell_read); os.close(bell_write)
        if not ok:
            break
        sent += 1
elif attack == "link-garbage":
    # A handoff link for listener 0, then a frame on it that only the main channel carries.
    link, ours = socket.socketpair()
    bell_read, bell_write = os.pipe()
    sent = send(frame(CONTROL, control({"accepting": {"listener": 0}}), announced=2), [link.fileno(), bell_write])
    link.close(); os.close(bell_write)
    ours.sendall(frame(MESSAGE, b"not a handoff"))
elif attack == "listen-flood":
    # 300 listen requests, each for a new loopback address.
    for index in range(300):
        address = "tcp://127.0.%d.%d:0" % (1 + index // 200, 2 + index % 200)
        if not send(frame(CONTROL, control({"listen": {"address": address}}), correlation=index + 1)):
            break
        sent += 1
    granted, refused = read_answers(sent)
    report(attack=attack, sent=sent, granted=granted, refused=refused, pid=os.getpid())
    time.sleep(120)
    sys.exit(0)
elif attack == "forward-flood":
    # 20 messages of 8 MiB to itself through the primary, never reading its channel: the
    # primary must stop reading this worker rather than queue 160 MiB for it.
    import threading
    payload = b"x" * (8 << 20)
    counter = {"sent": 0}

    def flood():
        for _ in range(20):
            channel.sendall(frame(MESSAGE, payload, peer=int(os.environ.get("HOSTILE_ID", "1"))))
            counter["sent"] += 1

    threading.Thread(target=flood, daemon=True).start()
    time.sleep(5)
    sent = counter["sent"]
elif attack == "metrics":
    # The app's metrics out of bounds: a counter that goes down, a name of the primary's,
    # too many series, 25 times each; then a label of 5 MiB, twice.
    def batch(series):
        return frame(CONTROL, control({"metrics": {"_0": {"series": series}}}))

    def gauge(name, labels=()):
        return {"name": name, "labels": list(labels), "kind": "gauge", "value": 1}

    bad = [
        [{"name": "app_total", "labels": [], "kind": "counter", "value": -1}],
        [gauge("cluster_workers")],
        [gauge("app_%d" % index) for index in range(1001)],
    ]
    for _ in range(25):
        for series in bad:
            sent += send(batch(series))
    for _ in range(2):
        sent += send(batch([gauge("app_big", [{"name": "label", "value": "x" * (5 << 20)}])]))
else:
    sys.exit("unknown attack " + attack)

report(attack=attack, sent=sent, pid=os.getpid())
time.sleep(120)
