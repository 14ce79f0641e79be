"""Fixtures for tests against the real Redis on 127.0.0.1:6379 (and throwaway servers).

Every test gets its own random key prefix (its namespace) and leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.client
from _redis_helpers import REDIS_URL, RedisServer, free_port

from authrelay._crypto import random_token
from authrelay.stores.redis import AsyncRedisBackend, RedisBackend


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client on the shared server, for looking at what is really stored."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis) -> Iterator[str]:
    """A namespace of this test's own; everything under it is removed afterwards."""
    namespace = f"t-{random_token(6)}:"
    yield namespace
    for name in list(raw.scan_iter(match=namespace + "*", count=500)):
        raw.delete(name)


@pytest.fixture
def backend(prefix: str) -> Iterator[RedisBackend]:
    """The sync face on the shared server."""
    store = RedisBackend(REDIS_URL, namespace=prefix)
    yield store
    store.close()


@pytest.fixture
def async_backend(backend: RedisBackend) -> AsyncRedisBackend:
    """The async face sharing ``backend``'s settings and listener registry."""
    return AsyncRedisBackend(backend)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A second Redis on a free port that the test can kill and restart."""
    instance = RedisServer(free_port())
    instance.start()
    yield instance
    instance.stop()
