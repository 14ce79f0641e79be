"""Worker processes (spawned): each builds its own relay on the shared store and asks for
one service's credential with many concurrent requests."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
from scale_support import digest

from authrelay import Relay, Settings
from authrelay.principal import Credentials, Principal


def burst(settings: dict[str, Any], service: str, token: str | None, requests: int,
          barrier: Any, out: Any) -> None:  # fmt: skip
    """``requests`` concurrent ``authorization_header()`` calls, as ``requests`` requests."""
    relay = Relay(Settings.model_validate(settings))
    if token is None:
        principal, credentials = Principal(), Credentials()
    else:
        issuer = settings["bearer"]["issuer"]
        principal = Principal(subject="alice", kind="bearer", issuer=issuer)
        credentials = Credentials(token=token, expires_at=time.time() + 3000)

    async def main() -> tuple[list[str], dict[str, Any]]:
        values: list[str] = []

        async def one() -> None:
            client = relay.services.client(service, principal, credentials, asynchronous=True)
            values.append(digest(await client.authorization_header()))

        barrier.wait(60)  # every worker has imported and built its relay
        async with anyio.create_task_group() as group:
            for _ in range(requests):
                group.start_soon(one)
        stats = relay.stats()
        await relay.aclose()
        return values, stats

    try:
        values, stats = anyio.run(main)
    except BaseException as exc:
        out.put((os.getpid(), "error", type(exc).__name__, 0, {}))
        raise
    counters = {c["name"]: c["value"] for c in stats["counters"] if c["target"] == service}
    out.put((os.getpid(), "ok", sorted(set(values)), len(values), counters))
