"""Scale figures: the cold-start storm, and memory and lookup time of the two caches.

- Storm: N concurrent requests (direct ASGI calls) for one cold (user, service) key;
  the token endpoint runs in its own process with a fixed answer delay standing in for a
  real provider, and counts its calls. Reported: token-endpoint calls (must be 1), p50 /
  p99 latency, and wall time against one cold request measured the same way.
- Memory: ``tracemalloc`` bytes per entry of the downstream token cache and of the
  verified bearer-token cache at several sizes, with the lookup time at each size.
  Entries are built the way the real code builds them (the service runtime's cache key,
  an :class:`~authrelay.tokens.AccessToken` of a realistic 600-character JWT; a verified
  principal with RFC 9068 claims and its credentials) without signing 100,000 tokens.

Defends against a storm that only looks single-flight because requests ran one after
another: all N are started before the first token answer can arrive (the endpoint waits
``storm_token_delay`` seconds), and each must answer 200.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import secrets
import statistics
import time
import tracemalloc
from types import MappingProxyType
from typing import Any

import httpx

from authrelay import AuthRelayMiddleware
from authrelay.identity.tokencache import TokenCache as VerifiedCache
from authrelay.principal import Credentials, Principal
from authrelay.relay import Relay
from authrelay.tokens import AccessToken, TokenCache

from .apps import asgi_get, bare_app, make_scope, relay_settings
from .idp import BenchIdP
from .serve import spawn
from .services import service_routes
from .timing import summary

__all__ = ["run_phase"]


def _storm_settings(token_url: str) -> dict[str, Any]:
    return {
        "x": {
            "base_url": "http://127.0.0.1:9",
            "flow": "token_exchange",
            "scopes": ["orders.read"],
            "allow_http": True,
            "token_endpoint": f"{token_url}/token",
        }
    }


async def _timed(app: Any, scope: dict[str, Any]) -> tuple[int, float]:
    start = time.perf_counter()
    status, _ = await asgi_get(app, scope)
    return status, time.perf_counter() - start


async def _gather(app: Any, scope: dict[str, Any], size: int) -> tuple[float, list[float]]:
    """Wall time of ``size`` concurrent requests, and each one's answer time since they all
    arrived (the storm's start): a request's own run time would leave out the queue."""
    start = time.perf_counter()

    async def one() -> tuple[int, float]:
        status, _ = await asgi_get(app, scope)
        return status, time.perf_counter() - start

    results = await asyncio.gather(*(one() for _ in range(size)))
    wall = time.perf_counter() - start
    bad = [status for status, _ in results if status != 200]
    if bad:
        raise RuntimeError(f"storm: {len(bad)} of {size} requests failed ({bad[:3]})")
    return wall, sorted(elapsed for _, elapsed in results)


def _p(latencies: list[float], q: float) -> float:
    return 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * q))]


async def _storm(idp: BenchIdP, token_url: str, size: int, rounds: int) -> dict[str, Any]:
    """Per round: one cold request (a token call), a cold storm, the same storm warm."""
    relay = Relay(relay_settings(idp, _storm_settings(token_url)))
    app = AuthRelayMiddleware(bare_app(service_routes()), relay=relay)
    per_round: dict[str, list[float]] = {}
    calls_per_storm: list[int] = []
    try:
        async with httpx.AsyncClient() as client:

            async def calls() -> int:
                return int((await client.get(f"{token_url}/count")).json()["token_calls"])

            for index in range(rounds):
                one_token = idp.mint("RS256", sub=f"one-{index}")
                storm_token = idp.mint("RS256", sub=f"storm-{index}")
                for token in (one_token, storm_token):  # identity known: only the service is cold
                    status, _ = await asgi_get(app, make_scope("/open", _auth(token)))
                    if status != 200:
                        raise RuntimeError(f"bearer warm-up answered {status}")
                # Each timed part starts from a collected heap: a full (generation 2)
                # collection falls wherever the allocation counts left by earlier work put
                # it, and one inside the cold storm alone cost 90-180 ms here.
                gc.collect()
                status, one = await _timed(app, make_scope("/header", _auth(one_token)))
                if status != 200:
                    raise RuntimeError(f"one cold request answered {status}")
                scope = make_scope("/header", _auth(storm_token))
                before = await calls()
                gc.collect()
                cold, cold_latencies = await _gather(app, scope, size)
                calls_per_storm.append(await calls() - before)
                gc.collect()
                warm, warm_latencies = await _gather(app, scope, size)
                figures = {
                    "one_ms": 1000 * one,
                    "wall_ms": 1000 * cold,
                    "warm_wall_ms": 1000 * warm,
                    "p50_ms": _p(cold_latencies, 0.5),
                    "p99_ms": _p(cold_latencies, 0.99),
                    "warm_p50_ms": _p(warm_latencies, 0.5),
                    "warm_p99_ms": _p(warm_latencies, 0.99),
                    "cold_minus_warm_vs_one": (cold - warm) / one,
                    "wall_vs_one": cold / one,
                    "p99_vs_warm_p99": _p(cold_latencies, 0.99) / _p(warm_latencies, 0.99),
                }
                for name, value in figures.items():
                    per_round.setdefault(name, []).append(value)
    finally:
        await relay.aclose()
    result: dict[str, Any] = {
        "size": size,
        "rounds": rounds,
        "token_calls": max(calls_per_storm),
        "token_calls_per_storm": calls_per_storm,
    }
    for name, values in per_round.items():
        result[name] = statistics.median(values)
        result[name + "_spread"] = summary(values)
    return result


def _auth(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + token.encode())]


def _token_value() -> str:
    return "eyJ" + secrets.token_urlsafe(450)[:597]  # 600 characters, a typical JWT


def _fill_token_cache(relay: Relay, size: int) -> tuple[TokenCache, list[Any]]:
    runtime = relay.services.for_request(
        Principal(subject="x", kind="bearer", issuer="i"),
        Credentials(token="t"),
        asynchronous=True,
    )["x"]._runtime
    cache = TokenCache(size + 1, 1 << 40)
    options = relay.services.for_request(Principal(), Credentials(), asynchronous=True)[
        "x"
    ]._options
    sample: list[Any] = []
    expires = time.time() + 3600
    step = max(1, size // 1000)
    for i in range(size):
        principal = Principal(subject=f"user-{i}", kind="bearer", issuer="https://idp.example")
        credentials = Credentials(token=f"subject-token-{i}")
        key = runtime.key(principal, credentials, options)
        token = AccessToken(_token_value(), expires, scopes=("orders.read",))
        cache.put(key, token, runtime.header_for(token), 60.0)
        if i % step == 0:
            sample.append(key)
    return cache, sample


def _fill_bearer_cache(size: int) -> tuple[VerifiedCache[Any], list[bytes]]:
    cache: VerifiedCache[Any] = VerifiedCache(size + 1)
    sample: list[bytes] = []
    expires = time.time() + 3600
    step = max(1, size // 1000)
    now = int(time.time())
    for i in range(size):
        token = "eyJ" + secrets.token_urlsafe(480)[:637]  # the 640-character RS256 token
        claims: dict[str, Any] = {
            "iss": "https://idp.example",
            "sub": f"user-{i}",
            "aud": "api://bench",
            "client_id": "bench-client",
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_hex(16),
            "scope": "orders.read",
        }
        principal = Principal(
            subject=claims["sub"],
            kind="bearer",
            issuer=claims["iss"],
            claims=MappingProxyType(claims),
        )
        credentials = Credentials(
            scopes=frozenset({"orders.read"}), token=token, expires_at=expires
        )
        key = hashlib.sha256(token.encode()).digest()
        cache.put(key, expires, ((principal, credentials), ()))
        if i % step == 0:
            sample.append(key)
    return cache, sample


def _memory(fill: Any, lookup: str, size: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cache, sample = fill(size)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base - 8 * len(sample)
    tracemalloc.stop()
    get = getattr(cache, lookup)
    rounds = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(4):
            for key in sample:
                get(key)
        rounds.append((time.perf_counter_ns() - start) / (4 * len(sample)) / 1000)
    return {
        "entries": len(cache),
        "bytes_per_entry": used / size,
        "lookup_us": statistics.median(rounds),
    }


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Storm and memory figures into ``figures["scale"]``."""
    with spawn("token", issuer=idp.issuer, delay=config.storm_token_delay) as (token_url, _):
        figures["scale"]["storm"] = asyncio.run(
            _storm(idp, token_url, config.storm_size, config.storm_rounds)
        )
    figures["scale"]["storm"]["token_delay_ms"] = 1000 * config.storm_token_delay
    relay = Relay(relay_settings(idp, _storm_settings("http://127.0.0.1:9")))
    memory: dict[str, dict[str, Any]] = {"token_cache": {}, "bearer_cache": {}}
    for size in config.memory_sizes:
        memory["token_cache"][str(size)] = _memory(
            lambda n: _fill_token_cache(relay, n), "header", size
        )
        memory["bearer_cache"][str(size)] = _memory(_fill_bearer_cache, "get", size)
    relay.close()
    figures["scale"]["memory"] = memory
    sizes = [str(s) for s in config.memory_sizes]
    figures["scale"]["lookup_growth"] = {
        kind: memory[kind][sizes[-1]]["lookup_us"] / memory[kind][sizes[0]]["lookup_us"]
        for kind in memory
    }
