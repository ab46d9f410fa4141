"""An ASGI app for uvicorn under `cluster run` (`uvicorn --fd 3`).
BOOT_DELAY_MS: sleep while the app is imported, before uvicorn serves."""
import os
import time

time.sleep(int(os.environ.get("BOOT_DELAY_MS", "0")) / 1000)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"uvicorn {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
