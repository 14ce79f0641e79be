"""End to end on Redis: several worker processes share one user's tokens (RT-02, INV-4)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _e2e_workers import (
    ALICE,
    concurrent_user_tokens,
    expire_access_token,
    settings,
    take_lease_and_die,
)
from _redis_helpers import RedisServer, free_port

from asgi_lifespan import answer_lifespan
from authrelay import AuthRelayMiddleware, Relay
from authrelay._types import Receive, Scope, Send
from authrelay.errors import TokenStoreUnavailable
from authrelay.testing import IdentityProvider, serve_asgi

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SPAWN = multiprocessing.get_context("spawn")


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await answer_lifespan(receive, send)
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def signed_in(
    identity_provider_server: IdentityProvider, prefix: str, redis_url: str
) -> Iterator[Relay]:
    """Alice signed in through a served app whose store is ``redis_url``."""
    idp = identity_provider_server
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    relay = Relay(settings(idp.issuer, base, redis_url, prefix))
    with (
        serve_asgi(AuthRelayMiddleware(_app, relay=relay), port=port),
        httpx.Client(follow_redirects=False, timeout=10) as client,
    ):
        start = client.get(f"{base}/auth/idp/login")
        assert start.status_code == 302, start.text
        at_idp = client.get(start.headers["location"])
        assert at_idp.status_code in (302, 303), at_idp.text
        callback = client.get(at_idp.headers["location"])
        assert callback.status_code in (302, 303), callback.text
        yield relay
    relay.close()


def _refreshes(idp: IdentityProvider, expected: int) -> int:
    # The provider counts a request after answering; give the counter a moment to catch up.
    for _ in range(500):
        count = idp.counters.count(endpoint="token", grant_type="refresh_token")
        if count >= expected:
            break
        time.sleep(0.01)
    return count


def _run_workers(issuer: str, url: str, prefix: str, processes: int, requests: int) -> list[Any]:
    out = SPAWN.Queue()
    start_at = time.time() + 3.0  # every interpreter imported before the burst
    workers = [
        SPAWN.Process(
            target=concurrent_user_tokens,
            args=(issuer, url, prefix, requests, start_at, out),
        )
        for _ in range(processes)
    ]
    for proc in workers:
        proc.start()
    reports = [out.get(timeout=120) for _ in workers]
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    return reports


def test_rt02_inv4_four_workers_one_refresh_with_rotation(
    identity_provider_server: IdentityProvider, signed_in: Relay, redis_url: str, prefix: str
) -> None:
    idp = identity_provider_server
    old_rt = expire_access_token(signed_in)
    assert _refreshes(idp, 0) == 0

    reports = _run_workers(idp.issuer, redis_url, prefix, processes=4, requests=100)

    assert [r[1] for r in reports] == ["ok"] * 4, reports
    assert sum(r[3] for r in reports) == 400
    tokens = {value for r in reports for value in r[2]}
    assert len(tokens) == 1  # every request in every worker got the one new access token
    assert _refreshes(idp, 1) == 1  # exactly one refresh grant across 4 processes
    connector = signed_in.connectors.get("idp")
    assert connector is not None
    record, _ = signed_in.sync_driver.run(
        signed_in.connectors.store.load_tokens("idp|alice", "idp", connector.issuer)
    )
    assert record is not None and record.refresh_token is not None
    new_rt = record.refresh_token
    assert new_rt != old_rt
    assert record.access_token in tokens
    assert idp.refresh_token_state(old_rt) == "rotated"  # used once, never replayed
    assert idp.refresh_token_state(new_rt) == "active"
    # The sealed record as Redis holds it shows neither token.
    stored = signed_in.backend.get(signed_in.connectors.store.tokens_key("idp|alice", "idp"))
    assert stored is not None
    sealed = stored[0]
    assert new_rt.encode() not in sealed
    assert next(iter(tokens)).encode() not in sealed


def test_rt02_holder_dies_mid_refresh_another_worker_completes(
    identity_provider_server: IdentityProvider, signed_in: Relay, redis_url: str, prefix: str
) -> None:
    idp = identity_provider_server
    old_rt = expire_access_token(signed_in)
    lease_ttl = 2.0
    dying = SPAWN.Process(
        target=take_lease_and_die, args=(idp.issuer, redis_url, prefix, lease_ttl)
    )
    dying.start()
    dying.join(60)
    assert dying.exitcode == 0  # it took the lease and died without releasing it
    assert _refreshes(idp, 0) == 0

    # Another worker waits (bounded) for the dead holder's lease to expire in Redis,
    # then refreshes once.
    token = signed_in.sync_driver.run(
        signed_in.connectors.tokens.user_token(ALICE, "idp", (), force_refresh=False)
    )
    assert token.value
    assert _refreshes(idp, 1) == 1
    assert idp.refresh_token_state(old_rt) == "rotated"


def test_st04_redis_outage_is_503_then_service_resumes_with_tokens_intact(
    identity_provider_server: IdentityProvider, tmp_path: Path
) -> None:
    idp = identity_provider_server
    # A persistent throwaway Redis (append-only file, fsync always) that the test stops.
    server = RedisServer(free_port(), data_dir=str(tmp_path))
    server.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    relay = Relay(settings(idp.issuer, base, server.url, "e2e:"))
    source = relay.connectors.tokens
    try:
        with (
            serve_asgi(AuthRelayMiddleware(_app, relay=relay), port=port),
            httpx.Client(follow_redirects=False, timeout=10) as client,
        ):
            start = client.get(f"{base}/auth/idp/login")
            at_idp = client.get(start.headers["location"])
            assert client.get(at_idp.headers["location"]).status_code in (302, 303)
        before = relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=False))
        connector = relay.connectors.get("idp")
        assert connector is not None
        record, version = relay.sync_driver.run(
            relay.connectors.store.load_tokens("idp|alice", "idp", connector.issuer)
        )
        assert record is not None

        server.stop()
        with pytest.raises(TokenStoreUnavailable) as caught:
            relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=False))
        assert caught.value.status == 503 and caught.value.retry_after

        server.start()  # same port, same data directory
        after = relay.sync_driver.run(source.user_token(ALICE, "idp", (), force_refresh=False))
        assert after.value == before.value  # nothing lost: no reauthorization needed
        again, again_version = relay.sync_driver.run(
            relay.connectors.store.load_tokens("idp|alice", "idp", connector.issuer)
        )
        assert again == record and again_version == version  # nothing corrupted
        assert _refreshes(idp, 0) == 0
    finally:
        relay.close()
        server.stop()
