"""Proactive refresh with 4 worker processes on one store: exactly one refresh per token.

The main process signs two users in through the app (real authorization code flow at
the loopback provider), then makes their tokens due (as if issued long ago). Four
spawned workers run their background loops on the shared store (Redis, SQLite); the
cross-process refresh lock lets one of them refresh each token, and the others find it
refreshed.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from scale_refresh_workers import refresh_loop
from scale_support import REDIS_URL, settings_data, token_requests

from authrelay import AuthRelayMiddleware, Relay, Settings
from authrelay.testing import IdentityProvider, free_port, serve_asgi

pytestmark = [pytest.mark.slow]

SPAWN = multiprocessing.get_context("spawn")
WORKERS = 4
SUBS = ("alice", "bob")


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _sign_in(idp: IdentityProvider, data: dict[str, Any]) -> None:
    """Both users sign in through the app (no proactive refresh in this process)."""
    relay = Relay(Settings.model_validate(data))
    base = data["public_base_url"]
    port = int(base.rsplit(":", 1)[1])
    try:
        with serve_asgi(AuthRelayMiddleware(_nothing, relay=relay), port=port):
            for sub in SUBS:
                idp.next_login(sub)
                with httpx.Client(timeout=10) as client:
                    start = client.get(f"{base}/auth/idp/login")
                    at_idp = client.get(start.headers["location"])
                    done = client.get(at_idp.headers["location"])
                    assert done.status_code == 303, done.text
    finally:
        relay.close()


def _make_due(data: dict[str, Any], users: list[str]) -> float:
    """Rewrite both token sets as issued long ago: due for refresh now."""
    relay = Relay(Settings.model_validate(data))  # never started: no background loop
    registry = relay.connectors
    issuer = registry.get("idp").issuer  # type: ignore[union-attr]
    now = time.time()
    try:
        for user in users:
            record, _ = relay.sync_driver.run(registry.store.load_tokens(user, "idp", issuer))
            assert record is not None and record.refresh_token is not None
            old = replace(record, updated_at=now - 1000, expires_at=now + 200)
            relay.sync_driver.run(registry.save_tokens(user, old))
    finally:
        relay.close()
    return now - 1000


@pytest.mark.parametrize("store", [pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def test_four_workers_make_exactly_one_refresh_per_token(
    store: str, identity_provider_server: IdentityProvider, prefix: str, tmp_path: Path
) -> None:
    idp = identity_provider_server
    url = REDIS_URL if store == "redis" else f"sqlite:///{tmp_path / 'authrelay.db'}"
    base = f"http://127.0.0.1:{free_port()}"
    data = settings_data(idp.issuer, url, prefix, public_base_url=base, connector=True)
    _sign_in(idp, data)
    assert token_requests(idp, "refresh_token") == 0
    scheduled = copy.deepcopy(data)
    scheduled["connectors"]["idp"]["refresh_ahead"] = "10m"
    users = [f"idp|{sub}" for sub in SUBS]
    seeded_at = _make_due(scheduled, users)

    out = SPAWN.Queue()
    barrier = SPAWN.Barrier(WORKERS)
    workers = [
        SPAWN.Process(target=refresh_loop, args=(scheduled, users, seeded_at, barrier, out))
        for _ in range(WORKERS)
    ]
    for proc in workers:
        proc.start()
    try:
        reports = [out.get(timeout=90) for _ in workers]
    finally:
        for proc in workers:
            proc.join(30)
            if proc.exitcode is None:
                proc.kill()
    assert [proc.exitcode for proc in workers] == [0] * WORKERS
    assert [r[1] for r in reports] == ["ok"] * WORKERS, reports  # loops stopped at aclose
    assert token_requests(idp, "refresh_token", at_least=len(users)) == len(users)
    kinds = sorted(kind for r in reports for kind in r[3])
    assert kinds == ["rotated"] * len(users)  # one refresh per token, across all workers
