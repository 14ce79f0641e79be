"""Hostile upstreams on loopback for the hardening tests: a token endpoint that drip-feeds
its answer, and one that answers whatever body the test sets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hypothesis import strategies as st

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


# -- hostile JSON -------------------------------------------------------------------------


def nested(depth: int, pattern: list[bool]) -> str:
    """``depth`` arrays/objects inside each other (``pattern``: True for an object level)."""
    opened: list[str] = []
    closed: list[str] = []
    for level in range(depth):
        if pattern[level % len(pattern)]:
            opened.append('{"k":')
            closed.append("}")
        else:
            opened.append("[")
            closed.append("]")
    return "".join(opened) + "0" + "".join(reversed(closed))


def with_member(document: dict[str, object], name: str, raw_value: str) -> bytes:
    """``document`` with one more member whose value is the raw JSON text ``raw_value``."""
    text = json.dumps(document, separators=(",", ":"))
    if text == "{}":
        return ("{" + json.dumps(name) + ":" + raw_value + "}").encode()
    return (text[:-1] + "," + json.dumps(name) + ":" + raw_value + "}").encode()


def _hostile(base: dict[str, object], cap: int, deepest: int) -> st.SearchStrategy[bytes]:
    """Documents shaped like ``base`` that break one rule of the bounded parser."""
    # arrays only (the densest nesting, 2 bytes a level) or a mix with objects
    patterns = st.one_of(st.just([False]), st.lists(st.booleans(), min_size=1, max_size=6))
    # just past the limit, or where Python's own recursion limit used to give way
    depths = st.one_of(st.integers(33, 200), st.integers(900, deepest))
    deep_member = st.builds(
        lambda d, p, name: with_member(base, name, nested(d, p)),
        depths,
        patterns,
        st.sampled_from(["x", *base]),
    )
    deep_top = st.builds(lambda d, p: nested(d, p).encode(), depths, patterns)
    names = [*base] or ["k"]
    duplicate = st.builds(
        lambda name, value: with_member(base, name, json.dumps(value)),
        st.sampled_from(names),
        st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none()),
    )
    # just over ``cap`` once encoded (json.dumps escapes "é" to six bytes)
    oversized = st.builds(
        lambda extra, ch: with_member(
            base, "pad", json.dumps(ch * ((cap + extra) // (len(json.dumps(ch)) - 2) + 1))
        ),
        st.integers(1, 4096),
        st.sampled_from(["a", " ", "\u00e9"]),
    )
    constant = st.builds(
        lambda c: with_member(base, "n", c), st.sampled_from(["NaN", "Infinity", "-Infinity"])
    )
    return st.one_of(deep_member, deep_top, duplicate, oversized, constant)


def hostile_json(
    base: dict[str, object], cap: int, *, deepest: int = 4000
) -> st.SearchStrategy[bytes]:
    """Hostile variants of ``base``: nested past the depth limit (up to ``deepest``), with a
    repeated member, over ``cap`` bytes, or with NaN/Infinity."""
    return _hostile(base, cap, deepest)
