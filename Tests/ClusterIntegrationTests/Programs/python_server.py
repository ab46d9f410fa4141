"""Python's standard-library HTTP server as a `cluster run` worker: it serves on the
socket it inherits by systemd socket activation (fd 3), says READY=1 when NOTIFY_SOCKET
is set, and on SIGTERM stops accepting and finishes the requests it has.
Routes: / (who answers), /slow?ms=N, /slow?until=PATH (answers once PATH exists, and says
it holds a request), /crash (exits 3), /orphan (leaves a process whose
parent has exited, for PID 1 to reap). BOOT_DELAY_MS: wait before serving, in sleep or,
with BOOT_WAIT=select, in select() on a pipe of its own (as a master process waits for its
workers). FORK=1: a master that forks a child to serve and waits in select() on a pipe
of its own, as gunicorn's and Puma's do; TERM to the master is passed to the child."""
import os, select, signal, socket, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

if int(os.environ.get("LISTEN_PID", "0")) != os.getpid() or os.environ.get("LISTEN_FDS") != "1":
    sys.exit(f"python_server: expected one socket for pid {os.getpid()}, got LISTEN_PID={os.environ.get('LISTEN_PID')} LISTEN_FDS={os.environ.get('LISTEN_FDS')}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/crash":
            os._exit(3)
        if url.path == "/orphan":
            subprocess.run(["/bin/sh", "-c", "sleep 1 &"])
        if url.path == "/slow":
            query = parse_qs(url.query)
            if "until" in query:
                print(f"python {os.getpid()} holds a request until {query['until'][0]} exists", flush=True)
                while not os.path.exists(query["until"][0]):
                    time.sleep(0.01)
            else:
                time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        body = f"python {os.getpid()} {os.environ.get('LISTEN_FDNAMES')} port {os.environ.get('PORT')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class InheritedServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight

    def __init__(self):
        super().__init__(("", 0), Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = socket.socket(fileno=3)


boot_delay = int(os.environ.get("BOOT_DELAY_MS", "0")) / 1000
if os.environ.get("BOOT_WAIT") == "select":
    idle, _ = os.pipe()
    deadline = time.monotonic() + boot_delay
    while time.monotonic() < deadline:
        select.select([idle], [], [], deadline - time.monotonic())
else:
    time.sleep(boot_delay)

if os.environ.get("FORK") == "1":
    child = os.fork()
    if child != 0:
        print(f"python master {os.getpid()} forked {child}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
        wake, _ = os.pipe()
        while os.waitpid(child, os.WNOHANG) == (0, 0):
            select.select([wake], [], [], 0.5)
        sys.exit(0)

server = InheritedServer()
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
if os.environ.get("NOTIFY_SOCKET"):
    address = os.environ["NOTIFY_SOCKET"]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.sendto(b"READY=1", "\0" + address[1:] if address.startswith("@") else address)
print(f"python {os.getpid()} serving", flush=True)
server.serve_forever(poll_interval=0.05)
server.server_close()
print(f"python {os.getpid()} drained", flush=True)
