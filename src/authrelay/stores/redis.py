"""Redis storage (``redis://``, ``rediss://``, ``redis+sentinel://``): many workers, many hosts.

Defends against:

- lost updates between processes and hosts (RT-01, RT-02, ST-10): compare-and-set is a
  Lua script (check and write in one atomic step) and versions come from a monotonic
  counter, so they are never reused, not even after a delete (see :mod:`.redis_scripts`);
- expired material lingering: a TTL is a Redis ``PEXPIRE``, so Redis removes the value
  itself, whether or not any process is running;
- a failure read as a miss (ST-04): every Redis or socket error becomes
  :class:`~authrelay.errors.TokenStoreUnavailable` with ``retry_after``, never ``None``;
  reconnection is automatic (the pool replaces broken connections on the next call);
- the event loop blocking on the network (ST-08): the ASGI face is redis-py's asyncio
  client; both faces time out after ``store.timeout`` (default 500 ms);
- ``KEYS`` stalling a shared server: listing uses ``SCAN`` with an escaped pattern;
- stale in-process caches in other workers: deletes and overwrites are published for
  :meth:`RedisBackend.subscribe` callbacks (:mod:`.redis_pubsub`).

Values are sealed by the layers above (ST-01); key names hold digests, never tokens
(ST-06), and are used as given (they already carry ``store.key_prefix``, so several apps
can share one Redis). One connection pool per process (per event loop for the async face).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.sentinel
import redis.client
import redis.exceptions
import redis.sentinel

from ..errors import TokenStoreUnavailable
from .base import Versioned
from .redis_pubsub import Invalidation, InvalidationHub
from .redis_scripts import (
    DELETE_SCRIPT,
    PUT_SCRIPT,
    client_options,
    describe_url,
    parse_sentinel_url,
)

__all__ = ["AsyncRedisBackend", "RedisBackend"]

logger = logging.getLogger("authrelay.store.redis")

T = TypeVar("T")

RETRY_AFTER = 2
"""Seconds suggested to callers (``Retry-After``) while Redis is unreachable."""
MAX_CONNECTIONS = 32
"""Connections per pool; a burst of requests queues for one instead of opening hundreds."""
_SCAN_COUNT = 500
_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


def _pool_wait(timeout: float) -> float:
    return max(2.0, 4 * timeout)


def _escape(prefix: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in prefix)


def _unavailable(exc: BaseException, url: str) -> TokenStoreUnavailable:
    logger.error("redis_store_error url=%s error=%s", url, type(exc).__name__)
    return TokenStoreUnavailable("the token store is unavailable", retry_after=RETRY_AFTER)


def _versioned(pair: list[Any]) -> Versioned | None:
    value, version = pair
    if value is None or version is None:
        return None
    return bytes(value), int(version)


def _ttl_ms(ttl: float | None) -> str:
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


def _expected(expected_version: int | None) -> str:
    return "" if expected_version is None else str(int(expected_version))


class RedisBackend:
    """The sync face (WSGI): a versioned key-value store on Redis.

    ``namespace`` (``store.key_prefix``) names the version counter
    (``{namespace}@version``) and the invalidation channel (``{namespace}invalidate``).
    """

    def __init__(self, url: str, *, namespace: str = "authrelay:", timeout: float = 0.5) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.counter_key = f"{namespace}@version"
        self.hub = InvalidationHub(f"{namespace}invalidate")
        self._where = describe_url(url)
        self._pid = os.getpid()
        self._client: redis.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisBackend(url={self._where!r}, namespace={self.namespace!r})"

    # -- plumbing -----------------------------------------------------------------------

    def make_client(self) -> redis.Redis:
        """A new client with its own pool (the store's own client is made once)."""
        options = client_options(self.timeout)
        if self.url.startswith("redis+sentinel://"):
            target = parse_sentinel_url(self.url)
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(target.hosts),
                sentinel_kwargs={**options, "password": target.password, "ssl": target.ssl},
                **options,
            )
            master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
                target.service,
                db=target.db,
                username=target.username,
                password=target.password,
                ssl=target.ssl,
            )
            return master
        pool = redis.BlockingConnectionPool.from_url(
            self.url, max_connections=MAX_CONNECTIONS, timeout=_pool_wait(self.timeout), **options
        )
        return redis.Redis.from_pool(pool)

    @property
    def client(self) -> redis.Redis:
        """The process's client (made again after a fork: a pool is never shared)."""
        if self._client is None or self._pid != os.getpid():
            self._client = self.make_client()
            self._pid = os.getpid()
            self._put = self._client.register_script(PUT_SCRIPT)
            self._delete = self._client.register_script(DELETE_SCRIPT)
        self.hub.ensure_thread(self.make_client)
        return self._client

    def _guard(self, operation: Callable[[redis.Redis], T]) -> T:
        try:
            return operation(self.client)
        except _ERRORS as exc:
            raise _unavailable(exc, self._where) from None

    # -- the protocol -------------------------------------------------------------------

    def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""
        return self._guard(lambda client: _versioned(client.hmget(key, ["v", "n"])))

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""
        args: list[str | bytes] = [
            self.hub.channel,
            value,
            _ttl_ms(ttl),
            _expected(expected_version),
        ]

        def operation(client: redis.Redis) -> int | None:
            result = self._put(keys=[key, self.counter_key], args=args, client=client)
            return None if result is None else int(result)

        return self._guard(operation)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        args = [self.hub.channel, _expected(expected_version)]
        return self._guard(lambda client: bool(self._delete(keys=[key], args=args, client=client)))

    def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys` (``SCAN``, never ``KEYS``)."""

        def operation(client: redis.Redis) -> list[str]:
            found = client.scan_iter(match=_escape(prefix) + "*", count=_SCAN_COUNT)
            names = {name.decode() if isinstance(name, bytes) else name for name in found}
            names.discard(self.counter_key)
            return sorted(names)

        return self._guard(operation)

    def subscribe(self, callback: Invalidation) -> None:
        """Call ``callback(key)`` when any process deletes or overwrites a key.

        ``callback(None)`` means messages may have been missed (the listener reconnected):
        drop everything cached. Callbacks run on the listener (a daemon thread under
        WSGI, the event loop under ASGI) and must be quick and must not block.
        """
        self.hub.add(callback)

    def close(self) -> None:
        """Stop the listener and release the pool."""
        self.hub.stop()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_ERRORS):
                client.close()


class AsyncRedisBackend:
    """The async face (ASGI) over redis-py's asyncio client; shares the sync face's settings."""

    def __init__(self, backend: RedisBackend) -> None:
        self.sync = backend
        self.hub = backend.hub
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({self.sync!r})"

    def make_client(self) -> redis.asyncio.Redis:
        """A new asyncio client with its own pool."""
        url, options = self.sync.url, client_options(self.sync.timeout)
        if url.startswith("redis+sentinel://"):
            target = parse_sentinel_url(url)
            sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(target.hosts),
                sentinel_kwargs={**options, "password": target.password, "ssl": target.ssl},
                **options,
            )
            master: redis.asyncio.Redis = sentinel.master_for(
                target.service,
                db=target.db,
                username=target.username,
                password=target.password,
                ssl=target.ssl,
            )
            return master
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=_pool_wait(self.sync.timeout), **options
        )
        return redis.asyncio.Redis.from_pool(pool)

    def _current(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A pool belongs to one event loop; a new loop (tests, lifespan restarts) gets
            # its own.
            self._client, self._loop = self.make_client(), loop
            self._put = self._client.register_script(PUT_SCRIPT)
            self._delete = self._client.register_script(DELETE_SCRIPT)
        self.hub.ensure_task(self.make_client)
        return self._client

    async def _guard(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        try:
            return await operation(self._current())
        except _ERRORS as exc:
            raise _unavailable(exc, self.sync._where) from None

    async def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""

        async def operation(client: redis.asyncio.Redis) -> Versioned | None:
            return _versioned(await client.hmget(key, ["v", "n"]))

        return await self._guard(operation)

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""
        args: list[str | bytes] = [
            self.hub.channel,
            value,
            _ttl_ms(ttl),
            _expected(expected_version),
        ]

        async def operation(client: redis.asyncio.Redis) -> int | None:
            result = await self._put(keys=[key, self.sync.counter_key], args=args, client=client)
            return None if result is None else int(result)

        return await self._guard(operation)

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        args = [self.hub.channel, _expected(expected_version)]

        async def operation(client: redis.asyncio.Redis) -> bool:
            return bool(await self._delete(keys=[key], args=args, client=client))

        return await self._guard(operation)

    async def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys` (``SCAN``, never ``KEYS``)."""

        async def operation(client: redis.asyncio.Redis) -> list[str]:
            names: set[str] = set()
            async for name in client.scan_iter(match=_escape(prefix) + "*", count=_SCAN_COUNT):
                names.add(name.decode() if isinstance(name, bytes) else name)
            names.discard(self.sync.counter_key)
            return sorted(names)

        return await self._guard(operation)

    def subscribe(self, callback: Invalidation) -> None:
        """See :meth:`RedisBackend.subscribe` (the listener is a task on the event loop)."""
        self.hub.add(callback)

    async def aclose(self) -> None:
        """Stop the listener and release this loop's pool."""
        await self.hub.astop()
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(*_ERRORS):
                await client.aclose()
