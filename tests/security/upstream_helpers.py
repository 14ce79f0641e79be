"""Hostile upstreams on loopback for the hardening tests: a token endpoint that drip-feeds
its answer, and one that answers whatever body the test sets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from authrelay.testing import free_port


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def http_answer(body: bytes, status: str = "200 OK") -> bytes:
    """A whole HTTP/1.1 JSON answer."""
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\ncache-control: no-store\r\n\r\n"
    ).encode() + body


@dataclass
class Upstream:
    """A loopback HTTP server; ``answer`` is sent, ``drip`` bytes at a time every ``pause``."""

    answer: bytes = b""
    drip_from: int | None = None
    """Offset from which the answer is drip-fed (0: the status line already), None: at once."""
    pause: float = 0.25
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self.stop.is_set():
                    request = _read_request(conn)
                    if not request:
                        return
                    self.requests.append(request)
                    answer = self.answer
                    if self.drip_from is None:
                        conn.sendall(answer)
                        continue
                    conn.sendall(answer[: self.drip_from])
                    for i in range(self.drip_from, len(answer)):
                        if self.stop.wait(self.pause):
                            return
                        conn.sendall(answer[i : i + 1])
            except OSError:
                return


@contextmanager
def upstream(answer: bytes = b"", *, drip_from: int | None = None) -> Iterator[Upstream]:
    """Serve an :class:`Upstream` on a free loopback port for the ``with`` block."""
    server = Upstream(answer, drip_from, port=free_port())
    listener = socket.create_server(("127.0.0.1", server.port))
    listener.settimeout(0.1)

    def accept() -> None:
        while not server.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=server._serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        thread.join(5)
        listener.close()
        time.sleep(0)
