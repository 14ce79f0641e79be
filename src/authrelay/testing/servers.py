"""Real loopback servers for tests: an ASGI app under uvicorn, a WSGI app under werkzeug,
and a throwaway ``redis-server`` a test can stop and start (outage tests).

Both bind 127.0.0.1 on a free port chosen by the OS, run in a daemon thread, and are
stopped when the context manager exits, so a test talks to the app over real HTTP.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RedisServer", "free_port", "serve_asgi", "serve_wsgi"]


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


class RedisServer:
    """A throwaway ``redis-server`` on a loopback port, stopped and started by the test.

    Nothing is kept on disk unless ``data_dir`` is given (then append-only, fsync always,
    so a restart finds what was written).
    """

    def __init__(self, port: int = 0, *, data_dir: str | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.process is not None})"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.data_dir]
            if self.data_dir
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(  # noqa: S603 (a fixed binary, loopback only)
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--daemonize", "no", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start within {timeout} s")

    def stop(self) -> None:
        """Kill the server (an abrupt outage) and wait for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
