"""A WSGI app for gunicorn under `cluster run`: gunicorn takes the socket from LISTEN_FDS
itself. BOOT_DELAY_MS: sleep while the app is imported (in each worker, unless --preload)."""
import os
import time

time.sleep(int(os.environ.get("BOOT_DELAY_MS", "0")) / 1000)


def app(environ, start_response):
    body = f"gunicorn {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
