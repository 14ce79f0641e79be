"""Storage backends behind one versioned key-value protocol (see :mod:`.base`)."""

from __future__ import annotations

import time

from .._types import Clock
from ..settings import StoreSettings
from ..settings.core import REDIS_SCHEMES
from .base import AsyncBackend, Backend, Versioned
from .memory import AsyncMemoryBackend, MemoryBackend

__all__ = ["AsyncBackend", "Backend", "Versioned", "open_backends"]


def open_backends(
    settings: StoreSettings, *, clock: Clock = time.time
) -> tuple[Backend, AsyncBackend]:
    """The sync and async faces of the backend named by ``settings.url``."""
    url = settings.url
    if url.startswith("memory://"):
        memory = MemoryBackend(clock=clock)
        return memory, AsyncMemoryBackend(memory)
    if url.startswith("sqlite:///"):
        from .sqlite import AsyncSQLiteBackend, SQLiteBackend, path_from_url

        sqlite = SQLiteBackend(path_from_url(url), clock=clock)
        return sqlite, AsyncSQLiteBackend(sqlite)
    if url.startswith(REDIS_SCHEMES):
        from .redis import AsyncRedisBackend, RedisBackend

        redis = RedisBackend(
            url,
            namespace=settings.key_prefix,
            timeout=settings.timeout,
            replica_acks=settings.replica_acks,
        )
        return redis, AsyncRedisBackend(redis)
    raise NotImplementedError(f"store backend for {url.split(':', 1)[0]!r} is not available yet")
