"""Single-flight: many requests on one cold key cost one token request (asyncio and threads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from svc_apps import asgi_app, serve
from svc_support import Downstream, caller_token

from authrelay.relay import Relay
from authrelay.testing import FakeClock
from authrelay.testing.provider import IdentityProvider

MakeRelay = Callable[..., tuple[Relay, FakeClock]]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


async def _burst(app: Any, path: str, n: int) -> list[int]:
    # In-process ASGI transport: 500 requests really run at once on one event loop,
    # through the middleware; the token endpoint is the provider on loopback.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answers = await asyncio.gather(*(client.get(path) for _ in range(n)))
    return [a.status_code for a in answers]


def test_cl01_500_concurrent_async_requests_one_token_request(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, clock = make_relay()
    app = asgi_app(relay)

    async def scenario() -> None:
        # Hold the token answer back so every request arrives while it is in flight.
        clean_idp.faults.add("token", delay=0.3, count=1)
        assert await _burst(app, "/header/billing", 500) == [200] * 500
        assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 1
        clock.advance(301)  # past expires_in (300 s) of the cached token
        clean_idp.faults.add("token", delay=0.3, count=1)
        assert await _burst(app, "/header/billing", 500) == [200] * 500
        await relay.aclose()

    asyncio.run(scenario())
    assert clean_idp.counters.count(endpoint="token", grant_type="client_credentials") == 2


def test_tx03_async_requests_over_uvicorn_share_one_exchange(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    token = caller_token(clean_idp, "alice")
    clean_idp.faults.add("token", delay=0.3, count=1)

    async def go(url: str) -> list[int]:
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(
                *(client.get(f"{url}/call/orders", headers=headers) for _ in range(40))
            )
        return [a.status_code for a in answers]

    with serve("asgi", relay) as url:
        assert asyncio.run(go(url)) == [200] * 40
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 1


@pytest.mark.slow
def test_tx03_50_threads_one_exchange_then_one_more_after_expiry(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, clock = make_relay()
    token = caller_token(clean_idp, "alice", expires_in=3600)
    clean_idp.faults.add("token", delay=0.5, count=1)

    def one(url: str) -> int:
        return httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=60).status_code

    with serve("wsgi", relay) as url, ThreadPoolExecutor(50) as pool:
        # Identity first (JWKS, verified-token cache), so the burst is about the service.
        assert httpx.get(f"{url}/plain", headers={"authorization": f"Bearer {token}"}).is_success
        statuses = list(pool.map(one, [f"{url}/call/orders"] * 50))
        assert statuses == [200] * 50
        assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 1
        clock.advance(301)
        clean_idp.faults.add("token", delay=0.5, count=1)
        statuses = list(pool.map(one, [f"{url}/call/orders"] * 50))
        assert statuses == [200] * 50
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 2
    assert all(entry["claims"]["sub"] == "alice" for entry in downstream.seen)


def test_tx03_two_callers_never_share_an_exchanged_token(
    make_relay: MakeRelay, clean_idp: IdentityProvider, downstream: Downstream
) -> None:
    relay, _ = make_relay()
    tokens = {sub: caller_token(clean_idp, sub) for sub in ("alice", "bob")}

    async def go(url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [
                client.get(f"{url}/call/orders", headers={"authorization": f"Bearer {tokens[s]}"})
                for s in ["alice", "bob"] * 20
            ]
            answers = await asyncio.gather(*calls)
        subs = [a.json()["body"]["sub"] for a in answers]
        assert subs == ["alice", "bob"] * 20

    with serve("asgi", relay) as url:
        asyncio.run(go(url))
    assert clean_idp.counters.count(endpoint="token", grant_type=EXCHANGE) == 2
