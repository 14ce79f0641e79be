"""Throughput under a real server: uvicorn (1 worker, own process) and a bounded load loop.

Each variant runs in its own uvicorn process; the load generator is a minimal HTTP/1.1
keep-alive client on raw asyncio streams in this process (much cheaper per request than
an HTTP library, so the server is what saturates). Variants are loaded one at a time in
shuffled rounds for a fixed duration each; requests/s is counted from 200 answers only.

Defends against a load loop that never stops or counts failures as throughput: every
worker stops at the deadline, every answer's status is parsed, and any non-200 answer
makes the phase fail rather than report a figure.
"""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import ExitStack
from typing import Any

from .apps import starlette_session_cookie
from .idp import BenchIdP
from .serve import spawn
from .timing import Series, ratio, summary

__all__ = ["load", "run_phase"]

_PEER_SESSION = {"user": {"sub": "alice"}, "token": {"access_token": "at-" + "x" * 40}}


async def _worker(
    port: int, request: bytes, deadline: float, counts: list[int], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
            if length:
                await reader.readexactly(length)
            if status == 200:
                counts[0] += 1
            else:
                statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in lower or head.startswith(b"HTTP/1.0"):
                # servers without keep-alive (gunicorn sync, werkzeug): a new connection
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def load(
    base_url: str, path: str, headers: dict[str, str], *, seconds: float, concurrency: int
) -> tuple[float, dict[int, int]]:
    """Requests/s of 200 answers over ``seconds`` with ``concurrency`` keep-alive connections."""
    port = int(base_url.rsplit(":", 1)[1])
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    counts = [0]
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_worker(port, request, deadline, counts, statuses) for _ in range(concurrency))
    )
    return counts[0] / (time.perf_counter() - start), statuses


_H11 = (
    ("bare", "/open"),
    ("bare_bearer_bytes", "/open"),
    ("anonymous", "/open"),
    ("session", "/open"),
    ("bearer", "/open"),
    ("header", "/header"),
    ("authlib_peer", "/open"),
)
_HTTPTOOLS = ("bare", "bare_bearer_bytes", "anonymous", "bearer")


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Requests/s for scenarios 1 to 5 and the Authlib peer, under uvicorn's two parsers.

    ``bare_bearer_bytes`` is the floor of T17: the bare app sent byte for byte the request
    the warm-bearer route gets (the same ``Authorization`` header, which it ignores), so
    the ratio does not also count the server parsing the header. Under ``httptools``
    (what ``uvicorn[standard]`` installs) the main rows run again, named ``name@httptools``.
    """
    token = idp.mint("RS256")
    bearer = {"Authorization": f"Bearer {token}"}
    peer_cookie = {"Cookie": starlette_session_cookie(_PEER_SESSION)}
    plan = [(kind, path, "h11") for kind, path in _H11]
    plan += [(kind, path, "httptools") for kind, path in _H11 if kind in _HTTPTOOLS]
    with ExitStack() as stack:
        targets: dict[str, tuple[str, str, dict[str, str]]] = {}
        for kind, path, http in plan:
            downstream = "http://127.0.0.1:9" if kind == "header" else ""
            serve = "bare" if kind == "bare_bearer_bytes" else kind
            url, info = stack.enter_context(
                spawn(serve, issuer=idp.issuer, downstream=downstream, http=http)
            )
            headers: dict[str, str] = {}
            if kind == "session":
                headers = {"Cookie": info["cookie"]}
            elif kind in ("bearer", "header", "bare_bearer_bytes"):
                headers = bearer
            elif kind == "authlib_peer":
                headers = peer_cookie
            name = kind if http == "h11" else f"{kind}@{http}"
            targets[name] = (url, path, headers)
        series = asyncio.run(_measure(targets, config))
    section = figures["server"]
    section["rps"] = {name: summary(s.values) for name, s in series.items()}
    section["vs_bare"] = {
        name: ratio(s, series["bare@httptools" if "@httptools" in name else "bare"])
        for name, s in series.items()
    }
    section["load"] = {
        "generator": "raw asyncio HTTP/1.1 keep-alive loop",
        "concurrency": config.server_concurrency,
        "seconds_per_sample": config.server_seconds,
    }
    ratios = figures["ratios"]
    ratios["rps_anonymous_vs_bare"] = section["vs_bare"]["anonymous"]
    ratios["rps_session_vs_bare"] = section["vs_bare"]["session"]
    ratios["rps_bearer_vs_bare"] = section["vs_bare"]["bearer"]
    for suffix in ("", "@httptools"):
        ratios["rps_bearer_vs_same_bytes" + suffix.replace("@", "_")] = ratio(
            series["bearer" + suffix], series["bare_bearer_bytes" + suffix]
        )


async def _measure(
    targets: dict[str, tuple[str, str, dict[str, str]]], config: Any
) -> dict[str, Series]:
    for kind, (url, path, headers) in targets.items():  # warm: JWKS, token, connections
        _, statuses = await load(url, path, headers, seconds=0.3, concurrency=2)
        if statuses:
            raise RuntimeError(f"{kind}: non-200 answers while warming: {statuses}")
    rng = random.Random(11)
    # T17's pair runs back to back (in a random order) so its ratio is taken on neighbours.
    units = [[name] for name in targets if not name.startswith(("bearer", "bare_bearer_bytes"))]
    for suffix in ("", "@httptools"):
        pair = [name + suffix for name in ("bare_bearer_bytes", "bearer")]
        if all(name in targets for name in pair):
            units.append(pair)
    values: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(config.server_rounds):
        rng.shuffle(units)
        for unit in units:
            rng.shuffle(unit)
        for name in [name for unit in units for name in unit]:
            url, path, headers = targets[name]
            rps, statuses = await load(
                url,
                path,
                headers,
                seconds=config.server_seconds,
                concurrency=config.server_concurrency,
            )
            if statuses:
                raise RuntimeError(f"{name}: non-200 answers under load: {statuses}")
            values[name].append(rps)
    return {name: Series(name, tuple(v)) for name, v in values.items()}
