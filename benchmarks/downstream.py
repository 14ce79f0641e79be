"""Where a warm downstream call's time goes (target T11), without the network.

The same call as scenario 6 (``services["x"].get("/data")`` from a route, token warm)
through a transport that answers in-process, against a plain ``httpx.AsyncClient`` with
the same transport sending the same header: the difference is authrelay's whole
client-side cost per call, free of the loopback round trip and of the downstream
process's scheduling, which on a shared machine swing far more than that cost. Then the
parts of that cost, each timed alone: the per-request client (``Services`` and the
``services["x"]`` lookup), the cache key, the warm cache lookup, the origin-guard
request hook, the tracing span, and the ``/path`` join.

Defends against timing a call that never carried the credential: the transport records
the ``Authorization`` header of the last request, and it must be the cached one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from authrelay import AuthRelayMiddleware
from authrelay.observability import span
from authrelay.relay import Relay

from .apps import asgi_get, bare_app, make_scope, relay_settings
from .idp import BenchIdP
from .services import service_settings
from .timing import alternate_async, ratio, summary

__all__ = ["run_client_side"]

_BODY = b'{"items":[1,2,3]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"17")]


class _Canned(httpx.AsyncBaseTransport):
    """Answers every request with the downstream's JSON; remembers the last header."""

    def __init__(self) -> None:
        self.seen: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen = request.headers.get("authorization")
        return httpx.Response(200, headers=_HEADERS, content=_BODY)


def _per_call(fn: Any, count: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(count):
        fn()
    return (time.perf_counter_ns() - start) / count / 1000.0


async def _measure(idp: BenchIdP, config: Any) -> dict[str, Any]:
    base = "http://127.0.0.1:9"
    relay = Relay(relay_settings(idp, service_settings(base)))
    transport = _Canned()
    relay.services.transports["x"] = (transport, None)
    token = idp.mint("RS256")
    app = AuthRelayMiddleware(bare_app(), relay=relay)
    await asgi_get(app, make_scope("/open", [(b"authorization", b"Bearer " + token.encode())]))
    found = relay.identity.fast([f"Bearer {token}"], None)
    if found is None:
        raise RuntimeError("the bearer token was not cached")
    principal, credentials = found.principal, found.credentials
    for_request = relay.services.for_request
    first = for_request(principal, credentials, asynchronous=True)["x"]
    header = await first.authorization_header()
    plain = httpx.AsyncClient(transport=_Canned())
    url = base + "/data"
    floor_headers = {"Authorization": header}
    try:

        async def authrelay_call() -> None:
            await for_request(principal, credentials, asynchronous=True)["x"].get("/data")

        async def floor_call() -> None:
            await plain.get(url, headers=floor_headers)

        await authrelay_call()
        if transport.seen != header:
            raise RuntimeError("the in-process downstream did not get the cached header")
        floor, subject = await alternate_async(
            floor_call, authrelay_call, rounds=2 * config.rounds, inner=config.inner
        )
        client = for_request(principal, credentials, asynchronous=True)["x"]
        runtime = client._runtime
        request = httpx.Request("GET", url, headers=floor_headers)
        loop_count = config.inner * 20

        def hook() -> None:
            coroutine = runtime._strip_foreign_async(request)
            with contextlib.suppress(StopIteration):
                coroutine.send(None)

        def traced() -> None:
            with span("authrelay.downstream", service="x", method="GET"):
                pass

        def per_request_client() -> object:
            return for_request(principal, credentials, asynchronous=True)["x"]

        parts: dict[str, Any] = {}
        for _ in range(3):  # three passes, medians: each part is a few µs
            for name, fn in (
                ("per_request_client", per_request_client),
                ("cache_key", lambda: runtime.key(principal, credentials, client._options)),
                ("cache_hit", client._cached),
                ("origin_guard_hook", hook),
                ("tracing_span", traced),
                ("path_join", lambda: runtime.url_prefix + "data"),
            ):
                parts.setdefault(name, []).append(_per_call(fn, loop_count))
        added = [s - f for s, f in zip(subject.values, floor.values, strict=True)]
        return {
            "floor": summary(floor.values),
            "authrelay": summary(subject.values),
            "added_us": summary(added),
            "vs_floor": ratio(subject, floor),
            "parts_us": {name: summary(values) for name, values in parts.items()},
        }
    finally:
        await plain.aclose()
        await relay.aclose()


def run_client_side(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Store the client-side cost of a warm downstream call under ``services.client_side``."""
    figures.setdefault("services", {})["client_side"] = asyncio.run(_measure(idp, config))
