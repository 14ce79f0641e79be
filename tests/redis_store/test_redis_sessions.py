"""Sessions shared by two processes' relays through Redis: logout seen everywhere."""

from __future__ import annotations

import time

from _redis_helpers import REDIS_URL

from authrelay import Settings
from authrelay.identity.session import SessionRecord
from authrelay.relay import Relay


def relay_on(prefix: str) -> Relay:
    return Relay(
        Settings(
            secret_keys=["k" * 32],
            store={"url": REDIS_URL, "key_prefix": prefix, "timeout": 5},
            session={"dev_insecure_cookies": True},
        )
    )


def resolve(relay: Relay, cookie: str) -> str | None:
    return relay.sync_driver.run(relay.identity.resolve([], cookie)).principal.subject


def test_se06_logout_on_one_worker_ends_the_session_on_the_other(prefix: str) -> None:
    first, second = relay_on(prefix), relay_on(prefix)
    try:
        header = first.sync_driver.run(
            first.sessions.create(SessionRecord(subject="alice", created_at=time.time()))
        )
        cookie = header.split(";", 1)[0]
        assert resolve(second, cookie) == "alice"  # now cached in the second worker
        # Pub/sub keeps no backlog: wait until the second worker's listener is subscribed.
        assert second.backend.hub.connected.wait(5)  # type: ignore[attr-defined]
        state = first.sessions.open_cookie(cookie.split("=", 1)[1])
        assert state is not None
        first.sync_driver.run(first.sessions.destroy(state.session_id))
        deadline = time.monotonic() + 5
        while second.sessions.cached_record(state) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert resolve(second, cookie) is None
    finally:
        first.close()
        second.close()
