"""Cost as the work grows: services and connectors, token-cache size, JWKS size, memory.

- Services: the same request (a warm bearer on ``/open``, and a route awaiting a warm
  ``authorization_header()``) through relays configured with 1, 10 and 100 services
  and as many connectors, interleaved as everywhere else; the ratio is to 1.
- Token cache: 10⁴, 10⁵ and 10⁶ entries built the way the service runtime builds them
  (its cache key, a 600-character token), each size in a fresh process: resident bytes
  per entry, lookup time of a warm entry, and the time of a put that evicts the oldest.
- JWKS: first-sight ES256 bearer requests against providers publishing 1, 10 and 100
  keys (the signing key last), interleaved.
- Memory: resident memory of an app process with authrelay against the bare app after
  N distinct users made one bearer call each (each variant in a fresh process).

Defends against a growth figure that hides a failure: every variant is checked to
answer 200 for its caller before timing, and every cache size is filled completely
(``len`` checked) before it is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from joserfc.jwk import ECKey

from authrelay import AuthRelayMiddleware, Settings
from authrelay.principal import Credentials, Principal
from authrelay.relay import Relay
from authrelay.testing.servers import serve_asgi
from authrelay.tokens import AccessToken, TokenCache

from .apps import (
    AsgiCall,
    asgi_call,
    asgi_call_each,
    asgi_get,
    bare_app,
    make_scope,
    relay_settings,
)
from .idp import BenchIdP
from .services import service_routes
from .timing import interleave_async, ratio, summary

__all__ = ["run_phase"]

COUNTS = (1, 10, 100)


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _many(idp: BenchIdP, count: int) -> Settings:
    services = {
        f"s{i}": {
            "base_url": f"http://127.0.0.1:9/s{i}",
            "flow": "token_exchange",
            "scopes": ["orders.read"],
            "allow_http": True,
        }
        for i in range(count)
    }
    connectors = {
        f"c{i}": {
            "standard": "oauth2",
            "client_id": f"client-{i}",
            "client_secret": f"secret-{i}",
            "authorization_endpoint": f"https://idp{i}.example/authorize",
            "token_endpoint": f"https://idp{i}.example/token",
            "userinfo_endpoint": f"https://idp{i}.example/userinfo",
            "target": f"target-{i}",
        }
        for i in range(count)
    }
    services["x"] = services.pop("s0")
    return relay_settings(
        idp, services, connectors=connectors, public_base_url="https://app.example"
    )


async def _services_growth(idp: BenchIdP, config: Any) -> dict[str, Any]:
    token = idp.mint("RS256")
    auth = [(b"authorization", b"Bearer " + token.encode())]
    variants: dict[str, AsgiCall] = {}
    relays = []
    try:
        for count in COUNTS:
            relay = Relay(_many(idp, count))
            relays.append(relay)
            app = AuthRelayMiddleware(bare_app(service_routes()), relay=relay)
            for path in ("/open", "/header"):
                status, body = await asgi_get(app, make_scope(path, auth))
                if status != 200:
                    raise RuntimeError(f"{count} services: {path} answered {status} {body!r}")
            variants[f"open_{count}"] = asgi_call(app, make_scope("/open", auth))
            variants[f"header_{count}"] = asgi_call(app, make_scope("/header", auth))
        series = await interleave_async(variants, rounds=config.rounds, inner=config.inner)
    finally:
        for relay in relays:
            await relay.aclose()
    out: dict[str, Any] = {"calls": {n: summary(s.values) for n, s in series.items()}}
    out["vs_one"] = {
        name: ratio(s, series[name.rsplit("_", 1)[0] + "_1"]) for name, s in series.items()
    }
    return out


class _JwksIdP(BenchIdP):
    """A provider publishing ``size`` EC keys, the signing key last."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.others = [
            ECKey.generate_key("P-256", parameters={"kid": f"other-{i}"}).as_dict(private=False)
            for i in range(size - 1)
        ]

    async def _jwks(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"keys": [*self.others, self.ec.as_dict(private=False)]})


async def _jwks_growth(idps: dict[int, BenchIdP], config: Any) -> dict[str, Any]:
    variants: dict[str, AsgiCall] = {}
    relays = []
    needed = (config.rounds + 1) * config.inner + 2
    try:
        for size, idp in idps.items():
            relay = Relay(relay_settings(idp))
            relays.append(relay)
            app = AuthRelayMiddleware(bare_app(), relay=relay)
            probe = idp.mint("ES256")
            scope = make_scope("/whoami", [(b"authorization", b"Bearer " + probe.encode())])
            status, body = await asgi_get(app, scope)
            if status != 200 or body != {"subject": "alice"}:
                raise RuntimeError(f"JWKS of {size}: answered {status} {body!r}")
            tokens = iter([idp.mint("ES256") for _ in range(needed)])

            def headers(tokens: Iterator[str] = tokens) -> list[tuple[bytes, bytes]]:
                return [(b"authorization", b"Bearer " + next(tokens).encode())]

            variants[f"first_sight_{size}"] = asgi_call_each(app, "/open", headers)
        series = await interleave_async(variants, rounds=config.rounds, inner=config.inner)
    finally:
        for relay in relays:
            await relay.aclose()
    return {
        "calls": {n: summary(s.values) for n, s in series.items()},
        "vs_one": {n: ratio(s, series["first_sight_1"]) for n, s in series.items()},
    }


# -- in a fresh process: python -m benchmarks.growth cache N | rss KIND N -------------------


def _token_cache(size: int) -> dict[str, Any]:
    """Fill a service token cache with ``size`` entries; resident bytes, lookup, eviction."""
    relay = Relay(relay_settings(BenchIdP(issuer="https://idp.example"), _one_service()))
    client = relay.services.for_request(
        Principal(subject="x", kind="bearer", issuer="i"), Credentials(token="t"), asynchronous=True
    )["x"]
    runtime, options = client._runtime, client._options
    gc.collect()
    before = _rss()
    cache = TokenCache(size, 1 << 42)
    expires = time.time() + 3600
    step = max(1, size // 1000)
    sample = []
    started = time.perf_counter()
    for i in range(size):
        principal = Principal(subject=f"user-{i}", kind="bearer", issuer="https://idp.example")
        key = runtime.key(principal, Credentials(token=f"subject-token-{i}"), options)
        token = AccessToken("eyJ" + secrets.token_urlsafe(450)[:597], expires)
        cache.put(key, token, runtime.header_for(token), 60.0)
        if i % step == 0:
            sample.append(key)
    fill = time.perf_counter() - started
    gc.collect()
    used = _rss() - before
    if len(cache) != size:
        raise RuntimeError(f"token cache holds {len(cache)} of {size}")
    get = cache.header
    lookups = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for key in sample:
            get(key)
        lookups.append((time.perf_counter_ns() - start) / len(sample) / 1000)
    evicting = []
    principal = Principal(subject="late", kind="bearer", issuer="https://idp.example")
    for batch in range(5):
        items = []
        for i in range(200):
            credentials = Credentials(token=f"late-{batch}-{i}")
            token = AccessToken("eyJ" + secrets.token_urlsafe(450)[:597], expires)
            items.append((runtime.key(principal, credentials, options), token))
        start = time.perf_counter_ns()
        for key, token in items:
            cache.put(key, token, runtime.header_for(token), 60.0)
        evicting.append((time.perf_counter_ns() - start) / len(items) / 1000)
    if len(cache) != size:
        raise RuntimeError("eviction did not keep the cache at its size")
    relay.close()
    return {
        "entries": size,
        "bytes_per_entry": used / size,
        "resident_mb": used / 2**20,
        "lookup_us": statistics.median(lookups),
        "evicting_put_us": statistics.median(evicting),
        "fill_seconds": fill,
    }


def _one_service() -> dict[str, Any]:
    return {
        "x": {
            "base_url": "http://127.0.0.1:9",
            "flow": "token_exchange",
            "scopes": ["orders.read"],
            "allow_http": True,
        }
    }


def _resident(kind: str, users: int) -> dict[str, Any]:
    """RSS of a process serving ``users`` distinct bearer callers one call each."""
    idp = BenchIdP()
    with serve_asgi(idp.app) as issuer:
        idp.issuer = issuer
        relay = Relay(relay_settings(idp))
        app: Any = bare_app()
        if kind == "authrelay":
            app = AuthRelayMiddleware(app, relay=relay)

        async def serve() -> tuple[int, int]:
            probe = make_scope(
                "/whoami", [(b"authorization", b"Bearer " + idp.mint("ES256").encode())]
            )
            status, _ = await asgi_get(app, probe)  # discovery and JWKS fetched here
            if status != 200:
                raise RuntimeError(f"{kind}: answered {status}")
            gc.collect()
            before = _rss()
            for i in range(users):
                token = idp.mint("ES256", sub=f"user-{i}")
                scope = make_scope("/open", [(b"authorization", b"Bearer " + token.encode())])
                status, _ = await asgi_get(app, scope)
                if status != 200:
                    raise RuntimeError(f"{kind}: user {i} answered {status}")
            gc.collect()
            return before, _rss()

        before, after = asyncio.run(serve())
        relay.close()
    return {"users": users, "rss_before_mb": before / 2**20, "rss_mb": after / 2**20}


def _in_process(*args: str, timeout: float = 900.0) -> dict[str, Any]:
    from .serve import _root

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.growth", *args],
        capture_output=True,
        text=True,
        cwd=_root(),
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"growth {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_phase(idp: BenchIdP, config: Any, figures: dict[str, Any]) -> None:
    """Growth figures into ``figures["growth"]``."""
    section = figures.setdefault("growth", {})
    section["services"] = asyncio.run(_services_growth(idp, config))
    with contextlib.ExitStack() as stack:
        idps: dict[int, BenchIdP] = {}
        for size in COUNTS:
            jwks_idp = _JwksIdP(size)
            jwks_idp.issuer = stack.enter_context(serve_asgi(jwks_idp.app))
            idps[size] = jwks_idp
        section["jwks"] = asyncio.run(_jwks_growth(idps, config))
    section["token_cache"] = {
        str(size): _in_process("cache", str(size)) for size in config.cache_sizes
    }
    rss = {kind: _in_process("rss", kind, str(config.rss_users)) for kind in ("bare", "authrelay")}
    rss["added_mb"] = rss["authrelay"]["rss_mb"] - rss["bare"]["rss_mb"]
    rss["ratio"] = rss["authrelay"]["rss_mb"] / rss["bare"]["rss_mb"]
    section["memory"] = rss


def main(argv: list[str]) -> None:
    """``cache N`` or ``rss bare|authrelay N``: one measurement, one JSON line on stdout."""
    cache = argv[0] == "cache"
    result = _token_cache(int(argv[1])) if cache else _resident(argv[1], int(argv[2]))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
