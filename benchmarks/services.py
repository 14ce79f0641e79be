"""Scenarios 5 and 6 and the service facts: warm headers, downstream calls, locks, clients.

- 5: a route awaiting ``services["x"].authorization_header()`` with a warm cache, and the
  call itself against a ``cachetools.TTLCache`` lookup (the hit path, client reused) and
  per request (a fresh ``Services``, client and cache key, as a route pays it);
- 6: a route calling a loopback downstream through authrelay with a warm token, against
  the bare app calling it with a hard-coded header on its own pooled client;
- the sidecar peer (one loopback HTTP hop per header, :mod:`.sidecar`);
- scenario 5 under WSGI (a Flask route), handed to :mod:`.wsgi` by :func:`wsgi_variants`;
- facts: lock acquisitions on the header hit path (every lock reachable from the relay's
  service runtime is swapped for a counting one), and ``httpx`` clients built per service.

Defends against flattering figures: the token is acquired through the real token
exchange against the benchmark provider before timing, and each route is checked to
answer 200 with the downstream's JSON before it is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from cachetools import TTLCache
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authrelay import AuthRelayMiddleware
from authrelay.relay import Relay

from .apps import AsgiCall, asgi_call, asgi_get, bare_app, make_scope, relay_settings
from .idp import BenchIdP
from .timing import alternate_async, interleave_async, ratio, summary

__all__ = ["CountingLock", "count_locks", "run_phase", "service_routes", "service_settings"]

HARDCODED = "Bearer at-hardcoded-" + "h" * 40


def service_settings(downstream: str) -> dict[str, Any]:
    """One token-exchange service ``x`` in front of ``downstream`` (loopback http)."""
    return {
        "x": {
            "base_url": downstream,
            "flow": "token_exchange",
            "scopes": ["orders.read"],
            "allow_http": True,
        }
    }


async def _header(request: Request) -> Response:
    await request.state.services["x"].authorization_header()
    return JSONResponse({"ok": True})


async def _downstream(request: Request) -> Response:
    response = await request.state.services["x"].get("/data")
    return JSONResponse(response.json())


def service_routes() -> list[Route]:
    """Routes using service ``x``: ``/header`` (scenario 5) and ``/downstream`` (6)."""
    return [Route("/header", _header), Route("/downstream", _downstream)]


def hardcoded_app(downstream: str) -> tuple[Starlette, httpx.AsyncClient]:
    """The floor of scenario 6: the bare app calling the downstream with a fixed header."""
    client = httpx.AsyncClient()
    url = downstream + "/data"

    async def call(request: Request) -> Response:
        response = await client.get(url, headers={"Authorization": HARDCODED})
        return JSONResponse(response.json())

    return bare_app([Route("/downstream", call)]), client


def downstream_app() -> Starlette:
    """The downstream service: a small JSON answer, 401 without a bearer credential."""

    async def data(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"items": [1, 2, 3]})

    return Starlette(routes=[Route("/data", data)])


class CountingLock:
    """Stands in for a lock and counts acquisitions (sync and async)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count = 0

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        """Count, then acquire the real lock."""
        self.count += 1
        return self.inner.acquire(*args, **kwargs)

    def release(self) -> None:
        """Release the real lock."""
        self.inner.release()

    def locked(self) -> bool:
        """Whether the real lock is held."""
        return bool(self.inner.locked())

    def __enter__(self) -> Any:
        self.count += 1
        return self.inner.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)

    async def __aenter__(self) -> Any:
        self.count += 1
        return await self.inner.__aenter__()

    async def __aexit__(self, *exc: object) -> Any:
        return await self.inner.__aexit__(*exc)


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()), asyncio.Lock)


def _slots_and_dict(obj: Any) -> Iterator[str]:
    for cls in type(obj).__mro__:
        yield from getattr(cls, "__slots__", ())
    yield from getattr(obj, "__dict__", {})


@contextlib.contextmanager
def count_locks(*roots: Any, depth: int = 3) -> Iterator[list[CountingLock]]:
    """Swap every lock attribute reachable from ``roots`` for a :class:`CountingLock`."""
    swapped: list[tuple[Any, str, Any]] = []
    counters: list[CountingLock] = []
    seen: set[int] = set()

    def visit(obj: Any, level: int) -> None:
        if id(obj) in seen or level > depth or isinstance(obj, str | bytes | int | float):
            return
        seen.add(id(obj))
        for name in set(_slots_and_dict(obj)):
            value = getattr(obj, name, None)
            if isinstance(value, _LOCK_TYPES):
                counter = CountingLock(value)
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(obj, name, counter)
                    swapped.append((obj, name, value))
                    counters.append(counter)
            elif value is not None and type(value).__module__.startswith("authrelay"):
                visit(value, level + 1)
            elif isinstance(value, dict) and level < depth:
                for item in value.values():
                    if type(item).__module__.startswith("authrelay"):
                        visit(item, level + 1)

    for root in roots:
        visit(root, 0)
    try:
        yield counters
    finally:
        for obj, name, value in swapped:
            setattr(obj, name, value)


@contextlib.contextmanager
def count_clients() -> Iterator[dict[str, int]]:
    """Count ``httpx.AsyncClient`` / ``httpx.Client`` constructions by ``base_url``."""
    counts: dict[str, int] = {}
    originals = {cls: cls.__init__ for cls in (httpx.AsyncClient, httpx.Client)}

    def wrap(cls: Any) -> Callable[..., None]:
        original = originals[cls]

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            key = str(kwargs.get("base_url", "")).rstrip("/")
            counts[key] = counts.get(key, 0) + 1
            original(self, *args, **kwargs)

        return init

    for cls in originals:
        cls.__init__ = wrap(cls)  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        for cls, original in originals.items():
            cls.__init__ = original  # type: ignore[method-assign]


async def _measure(
    idp: BenchIdP, relay: Relay, downstream: str, config: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    app = AuthRelayMiddleware(bare_app(service_routes()), relay=relay)
    token = idp.mint("RS256")
    auth = [(b"authorization", b"Bearer " + token.encode())]
    floor_app, floor_client = hardcoded_app(downstream)
    try:
        for path in ("/header", "/downstream"):
            status, body = await asgi_get(app, make_scope(path, auth))
            if status != 200:
                raise RuntimeError(f"authrelay {path} answered {status} {body!r}")
        status, body = await asgi_get(floor_app, make_scope("/downstream"))
        if status != 200:
            raise RuntimeError(f"hard-coded downstream answered {status} {body!r}")
        resolution = relay.identity.fast([f"Bearer {token}"], None)
        if resolution is None or resolution.principal.subject != "alice":
            raise RuntimeError("the bearer token did not resolve to alice from the cache")
        principal, credentials = resolution.principal, resolution.credentials
        client = relay.services.for_request(principal, credentials, asynchronous=True)["x"]
        await client.authorization_header()
        runtime = client._runtime
        key = client._key
        ttl: TTLCache[Any, str] = TTLCache(maxsize=10_000, ttl=300)
        ttl[key] = HARDCODED
        ttl_get = ttl.get
        for_request = relay.services.for_request

        async def fresh_header() -> None:
            await for_request(principal, credentials, asynchronous=True)["x"].authorization_header()

        variants: dict[str, AsgiCall] = {
            "bare": asgi_call(bare_app(), make_scope("/open")),
            "bearer_open": asgi_call(app, make_scope("/open", auth)),
            "header_route": asgi_call(app, make_scope("/header", auth)),
            "downstream_authrelay": asgi_call(app, make_scope("/downstream", auth)),
            "downstream_hardcoded": asgi_call(floor_app, make_scope("/downstream")),
            "authorization_header": client.authorization_header,
            "authorization_header_per_request": fresh_header,
        }
        series = await interleave_async(
            variants,
            rounds=config.rounds,
            inner=config.inner,
            sync_variants={"ttlcache_get": lambda: ttl_get(key)},
            sync_inner=config.inner * 20,
        )
        # T11's ratio: floor and authrelay alone, in alternating ABBA rounds (the loopback
        # call swings with the machine's load more than authrelay's cost on it).
        (
            series["downstream_hardcoded_ab"],
            series["downstream_authrelay_ab"],
        ) = await alternate_async(
            variants["downstream_hardcoded"],
            variants["downstream_authrelay"],
            rounds=2 * config.rounds,
            inner=config.inner,
        )
        with count_locks(runtime, runtime.cache, relay.services, relay.async_driver) as locks:
            hits = 1000
            for _ in range(hits):
                await client.authorization_header()
            acquired = sum(lock.count for lock in locks)
        facts = {"locks_on_header_hit": acquired / hits, "locks_watched": len(locks)}
        return dict(series), facts
    finally:
        await floor_client.aclose()
        await relay.aclose()


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Scenarios 5, 6 and the sidecar peer; store series, ratios and facts."""
    from .serve import spawn

    with spawn("downstream") as (downstream, _), count_clients() as clients:
        relay = Relay(relay_settings(idp, service_settings(downstream)))
        series, facts = asyncio.run(_measure(idp, relay, downstream, config))
    s = series
    figures["services"] = {"calls": {name: summary(v.values) for name, v in s.items()}}
    for name in ("header_route", "downstream_authrelay", "downstream_hardcoded"):
        figures["direct"][name] = summary(s[name].values)
        figures["ratios"]["vs_bare"][name] = ratio(s[name], s["bare"])
    for name in ("authorization_header", "authorization_header_per_request"):
        figures["direct"][name] = summary(s[name].values)
    ratios = figures["ratios"]
    ratios["authorization_header_vs_ttlcache"] = ratio(s["authorization_header"], s["ttlcache_get"])
    ratios["authorization_header_per_request_vs_ttlcache"] = ratio(
        s["authorization_header_per_request"], s["ttlcache_get"]
    )
    ratios["header_route_added_vs_ttlcache"] = ratio(
        s["header_route"], s["ttlcache_get"], minus=s["bearer_open"]
    )
    ratios["downstream_vs_hardcoded"] = ratio(
        s["downstream_authrelay_ab"], s["downstream_hardcoded_ab"]
    )
    ratios["downstream_vs_hardcoded_shuffled"] = ratio(
        s["downstream_authrelay"], s["downstream_hardcoded"]
    )
    facts["httpx_clients_by_base_url"] = dict(clients)
    facts["httpx_clients_per_service"] = clients.get(downstream.rstrip("/"), 0)
    figures["facts"].update(facts)
    from .downstream import run_client_side

    run_client_side(idp, config, figures)
    _sidecar(idp, config, figures)


def _sidecar(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec("authrelay.sidecar") is None:
        figures["skipped"]["sidecar"] = "authrelay.sidecar is not built yet"
        return
    if importlib.util.find_spec("benchmarks.sidecar") is None:
        figures["skipped"]["sidecar"] = (
            "the sidecar peer (benchmarks/sidecar.py) is not written yet"
        )
        return
    sidecar = importlib.import_module("benchmarks.sidecar")
    sidecar.run_phase(idp, config, figures)


@contextlib.contextmanager
def wsgi_variants(idp: BenchIdP) -> Iterator[dict[str, Callable[[], None]]]:
    """Scenario 5 under WSGI, for :mod:`.wsgi`: a Flask route calling the header (warm).

    Yields ``{"flask_header": call}``: ``GET /header`` with a bearer token through
    ``AuthRelayWSGIMiddleware`` around a Flask app whose route calls
    ``services()["x"].authorization_header()``. The token is acquired (real token
    exchange) and the route checked to answer 200 before the call is handed out.
    """
    from flask import Flask

    from authrelay.flask import services as request_services
    from authrelay.wsgi import AuthRelayWSGIMiddleware

    from .wsgi import environ_for, wsgi_call, wsgi_get

    app = Flask("bench-header")

    @app.get("/header")
    def header() -> Any:
        value = request_services()["x"].authorization_header()
        return {"ok": value.startswith("Bearer ")}

    relay = Relay(relay_settings(idp, service_settings("http://127.0.0.1:9")))
    try:
        wrapped = AuthRelayWSGIMiddleware(app.wsgi_app, relay=relay)
        environ = environ_for("/header", {"Authorization": f"Bearer {idp.mint('RS256')}"})
        before = idp.token_calls
        for _ in range(2):  # the first acquires the token, the second must hit the cache
            status, body = wsgi_get(wrapped, environ)
            if not status.startswith("200") or body != {"ok": True}:
                raise RuntimeError(f"flask header route answered {status} {body!r}")
        if idp.token_calls - before != 1:
            raise RuntimeError("the flask header route did not reuse its token")
        yield {"flask_header": wsgi_call(wrapped, environ)}
    finally:
        relay.close()
