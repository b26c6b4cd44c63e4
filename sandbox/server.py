"""Run the sandbox in a background thread: for tests and the local dev stack."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from sandbox.app import create_app
from sandbox.tls import TlsFiles

_STARTUP_TIMEOUT = 10.0


@contextlib.contextmanager
def serve_in_background(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    tls: TlsFiles | None = None,
    **create_app_kwargs: Any,
) -> Iterator[str]:
    """Serve the sandbox on host:port (0 = a free port) and yield its base URL (https with
    `tls`: what MSAL needs to sign in at the sandbox's Azure AD face).

    The socket is bound here, before the thread starts, so the port is known and reserved
    up front; the URL is yielded only once uvicorn accepts connections. Exiting stops the
    server and waits for the thread.
    """
    app = create_app(**create_app_kwargs)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    ssl = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False, **ssl)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox:{bound_port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the sandbox server exited during startup")
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start in time")
            time.sleep(0.01)
        url_host = f"[{host}]" if ":" in host else host
        url = f"{'https' if tls else 'http'}://{url_host}:{bound_port}"
        app.state.events.public_url = app.state.events.public_url or url
        yield url
    finally:
        app.state.events.stop()
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT)
        sock.close()
