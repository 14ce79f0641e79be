"""Loopback listeners for the demo: bound up front, served by uvicorn, freed on exit.

Defends against two ways a demo goes wrong on a busy machine: a port that is already
taken is found before anything starts, by binding every listener first (the message names
the port and the flag that moves it, rather than uvicorn exiting inside a thread), and
servers that outlive the demo (Ctrl-C or an error stops every server and closes every
listening socket, so the ports are free again at once).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Listener", "PortTaken", "ServerGroup", "bind", "close_all"]

LOOPBACK = "127.0.0.1"


class PortTaken(Exception):
    """A listener could not bind its port."""

    def __init__(self, role: str, port: int, flag: str, reason: str) -> None:
        super().__init__(
            f"port {port} for the {role} is not available ({reason}); "
            f"stop what is using it or pick another port with {flag} <port> (0 = any free port)"
        )
        self.role = role
        self.port = port


@dataclass
class Listener:
    """A bound, listening loopback socket and what it is for."""

    role: str
    sock: socket.socket
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.port = int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{LOOPBACK}:{self.port}"


def bind(role: str, port: int, flag: str) -> Listener:
    """Bind ``127.0.0.1:port`` (0 = any free port) and listen; raise :class:`PortTaken`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise PortTaken(role, port, flag, reason) from None
    sock.setblocking(False)
    return Listener(role, sock)


class ServerGroup:
    """Several ASGI apps under uvicorn, one thread each, started and stopped together."""

    def __init__(self) -> None:
        self._servers: list[tuple[Any, threading.Thread, Listener]] = []

    def start(self, app: Any, listener: Listener, *, timeout: float = 10.0) -> None:
        """Serve ``app`` on ``listener``; return once it accepts connections."""
        import uvicorn

        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [listener.sock]},
            name=f"authrelay-demo-{listener.role}",
            daemon=True,
        )
        thread.start()
        self._servers.append((server, thread, listener))
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {listener.role} did not start on port {listener.port}")
            time.sleep(0.01)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Ask every server to exit, wait for them, close the sockets."""
        servers, self._servers = self._servers, []
        for server, _thread, _listener in servers:
            server.should_exit = True
        for _server, thread, listener in servers:
            thread.join(timeout)
            listener.sock.close()


def close_all(listeners: Sequence[Listener]) -> None:
    """Close listeners that were bound but never served."""
    for listener in listeners:
        listener.sock.close()
