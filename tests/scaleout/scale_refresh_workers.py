"""Worker processes (spawned) for proactive refresh: each runs its relay's background
loop on the shared store until every seeded token was refreshed, then a few passes more."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from authrelay import Relay, Settings


def refresh_loop(
    settings: dict[str, Any], users: list[str], seeded_at: float, barrier: Any, out: Any
) -> None:
    """Run the background loop (an asyncio task, as under ASGI) and report what it did."""
    relay = Relay(Settings.model_validate(settings))
    registry = relay.connectors
    registry.maintenance.interval = 0.1
    seen: list[str] = []
    registry.set_token_event_hook(lambda event: seen.append(event.kind))
    issuer = registry.get("idp").issuer  # type: ignore[union-attr]

    async def refreshed() -> bool:
        for user in users:
            record, _ = await relay.async_driver.run(
                registry.store.load_tokens(user, "idp", issuer)
            )
            if record is None or record.updated_at <= seeded_at:
                return False
        return True

    async def main() -> int:
        barrier.wait(60)
        assert relay.start_background()
        deadline = time.monotonic() + 30
        while not await refreshed() and time.monotonic() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        passes = registry.maintenance.passes
        while registry.maintenance.passes < passes + 5:  # noqa: ASYNC110 (more passes)
            await anyio.sleep(0.05)
        await relay.aclose()
        return int(registry.maintenance.running)

    try:
        running = anyio.run(main)
    except BaseException as exc:
        out.put((os.getpid(), "error", type(exc).__name__, []))
        raise
    out.put((os.getpid(), "ok" if not running else "still-running", "", seen))
