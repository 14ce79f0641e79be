"""ST-04 on Redis: a failure is never a miss, and the client recovers on its own."""

from __future__ import annotations

import logging

import anyio
import pytest
from _redis_helpers import RedisServer, free_port

from authrelay.errors import TokenStoreUnavailable
from authrelay.stores.redis import AsyncRedisBackend, RedisBackend

pytestmark = pytest.mark.redis


def test_st04_unreachable_redis_is_unavailable_not_a_miss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    backend = RedisBackend(f"redis://:pw-canary@127.0.0.1:{port}/0", namespace="t:")
    for call in (
        lambda: backend.get("t:k"),
        lambda: backend.put("t:k", b"v"),
        lambda: backend.delete("t:k"),
        lambda: backend.keys("t:"),
    ):
        with caplog.at_level(logging.DEBUG), pytest.raises(TokenStoreUnavailable) as caught:
            call()
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        assert caught.value.status == 503
    assert "pw-canary" not in caplog.text  # INV-1: the URL's password is never logged
    backend.close()


def test_st04_unreachable_redis_async_face() -> None:
    backend = AsyncRedisBackend(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"))

    async def scenario() -> None:
        with pytest.raises(TokenStoreUnavailable):
            await backend.get("k")
        with pytest.raises(TokenStoreUnavailable):
            await backend.put("k", b"v", expected_version=0)
        await backend.aclose()

    anyio.run(scenario)


def test_recovers_when_redis_comes_up_later() -> None:
    server = RedisServer(free_port())
    backend = RedisBackend(server.url, namespace="t:")
    with pytest.raises(TokenStoreUnavailable):
        backend.get("t:k")
    server.start()
    try:
        version = backend.put("t:k", b"v", expected_version=0)  # same object, no restart
        assert backend.get("t:k") == (b"v", version)
    finally:
        backend.close()
        server.stop()


@pytest.mark.slow
def test_st04_outage_then_automatic_reconnect(server: RedisServer) -> None:
    backend = RedisBackend(server.url, namespace="t:")
    v1 = backend.put("t:tokens", b"sealed-1", expected_version=0)
    assert v1 is not None
    server.stop()
    for call in (lambda: backend.get("t:tokens"), lambda: backend.put("t:tokens", b"x")):
        with pytest.raises(TokenStoreUnavailable):
            call()
    server.start()  # same port; it kept nothing (no persistence)
    # The pooled connections died with the server; the next call reconnects by itself
    # and sees a clean store: nothing half-written from the failed calls.
    assert backend.get("t:tokens") is None
    assert backend.keys("t:") == []
    v2 = backend.put("t:tokens", b"sealed-2", expected_version=0)
    assert v2 is not None
    assert backend.get("t:tokens") == (b"sealed-2", v2)
    backend.close()


@pytest.mark.slow
def test_st04_outage_then_reconnect_async(server: RedisServer) -> None:
    backend = AsyncRedisBackend(RedisBackend(server.url, namespace="t:"))

    async def scenario() -> None:
        assert await backend.put("t:k", b"one", expected_version=0) is not None
        server.stop()
        with pytest.raises(TokenStoreUnavailable):
            await backend.get("t:k")
        server.start()
        assert await backend.get("t:k") is None
        version = await backend.put("t:k", b"two", expected_version=0)
        assert await backend.get("t:k") == (b"two", version)
        await backend.aclose()

    anyio.run(scenario)


def test_stale_writer_across_a_restart_never_matches(server: RedisServer) -> None:
    backend = RedisBackend(server.url, namespace="t:")
    held = backend.put("t:k", b"a")
    held = backend.put("t:k", b"b", expected_version=held)
    assert held is not None
    server.stop()
    server.start()
    # The data is gone with the server; a writer still holding a version cannot write
    # into the empty key as if it were the record it read.
    assert backend.put("t:k", b"late", expected_version=held) is None
    backend.close()
