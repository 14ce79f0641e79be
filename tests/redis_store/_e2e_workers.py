"""Worker processes for the end-to-end tests: each builds its own relay on the shared Redis."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import anyio

from authrelay import Principal, Relay, Settings

KEY = "redis-e2e-tests-secret-key-0000000"
ALICE = Principal(subject="idp|alice", kind="session", connector="idp")


def settings(issuer: str, base_url: str, redis_url: str, prefix: str) -> Settings:
    """One OIDC connector ``idp`` at the test provider; the store on Redis under ``prefix``."""
    return Settings.model_validate(
        {
            "secret_keys": [KEY],
            "public_base_url": base_url,
            "session": {"dev_insecure_cookies": True},
            "http": {"allow_insecure_loopback": True},
            "connectors": {
                "idp": {
                    "standard": "oidc",
                    "issuer": issuer,
                    "client_id": "test-client",
                    "client_secret": "test-secret",
                }
            },
            # Generous: the test machine is shared and noisy (the default is 0.5 s).
            "store": {"url": redis_url, "key_prefix": prefix, "timeout": 5.0},
        }
    )


def expire_access_token(relay: Relay, user: str = "idp|alice") -> str:
    """Mark the stored access token expired (as if its lifetime passed); return the RT."""
    connector = relay.connectors.get("idp")
    assert connector is not None
    store = relay.connectors.store
    record, version = relay.sync_driver.run(store.load_tokens(user, "idp", connector.issuer))
    assert record is not None and record.refresh_token is not None
    expired = replace(record, expires_at=time.time() - 1)
    assert relay.sync_driver.run(store.save_tokens(user, expired, expected_version=version))
    return record.refresh_token


def concurrent_user_tokens(
    issuer: str, redis_url: str, prefix: str, requests: int, start_at: float, out: Any
) -> None:
    """``requests`` concurrent acquisitions of Alice's ``idp`` token in this process."""
    relay = Relay(settings(issuer, "http://127.0.0.1:1", redis_url, prefix))
    source = relay.connectors.tokens

    async def main() -> list[str]:
        values: list[str] = []

        async def one() -> None:
            token = await relay.async_driver.run(
                source.user_token(ALICE, "idp", (), force_refresh=False)
            )
            values.append(token.value)

        await anyio.sleep(max(0.0, start_at - time.time()))
        async with anyio.create_task_group() as group:
            for _ in range(requests):
                group.start_soon(one)
        await relay.aclose()
        return values

    try:
        values = anyio.run(main)
    except BaseException as exc:
        out.put((os.getpid(), "error", type(exc).__name__))
        raise
    out.put((os.getpid(), "ok", sorted(set(values)), len(values)))


def take_lease_and_die(issuer: str, redis_url: str, prefix: str, ttl: float) -> None:
    """Take Alice's refresh lease as a refreshing worker would, then die holding it."""
    relay = Relay(settings(issuer, "http://127.0.0.1:1", redis_url, prefix))
    owner = relay.sync_driver.run(relay.connectors.store.acquire_lease("idp|alice", "idp", ttl=ttl))
    os._exit(0 if owner is not None else 3)
