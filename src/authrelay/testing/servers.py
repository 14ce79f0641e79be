"""Real loopback servers for tests: an ASGI app under uvicorn, a WSGI app under werkzeug.

Both bind 127.0.0.1 on a free port chosen by the OS, run in a daemon thread, and are
stopped when the context manager exits, so a test talks to the app over real HTTP.
Throwaway Redis servers (one server, Sentinel, Cluster) are in :mod:`.redis_servers`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["free_port", "serve_asgi", "serve_wsgi"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on {host}:{port} did not start within {timeout} s")


@contextmanager
def serve_asgi(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0, **config: Any
) -> Iterator[str]:
    """Run ``app`` under uvicorn on a loopback port; yield its base URL (no trailing slash)."""
    import uvicorn

    port = port or free_port(host)
    server_config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="auto", **config
    )
    server = uvicorn.Server(server_config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        _wait_for_port(host, port, timeout)
        while not server.started:
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


@contextmanager
def serve_wsgi(
    app: Callable[..., Any], *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0
) -> Iterator[str]:
    """Run a WSGI ``app`` under werkzeug's threaded server on a loopback port; yield its URL."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    actual_port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, name=f"wsgi-{actual_port}", daemon=True)
    thread.start()
    try:
        _wait_for_port(host, actual_port, timeout)
        yield f"http://{host}:{actual_port}"
    finally:
        server.shutdown()
        thread.join(timeout)
        server.server_close()
