"""Redis storage (one server, Sentinel or Cluster): many workers, many hosts.

Defends against:

- lost updates between processes and hosts (RT-01, RT-02, ST-10): compare-and-set is a
  Lua script on one key (check and write in one atomic step, Cluster-safe) and versions
  only grow, not even a delete brings one back (see :mod:`.redis_scripts`);
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

URLs: ``redis://`` and ``rediss://`` (one server), ``redis+sentinel://`` (the master
found through Sentinel and followed across failovers) and ``redis+cluster://`` (Redis
Cluster, nodes discovered from the seeds); ``rediss+…`` adds TLS. Under Cluster the
invalidation listener subscribes on one node: a ``PUBLISH`` reaches every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.client
import redis.cluster
import redis.exceptions
import redis.retry
import redis.sentinel

from ..errors import TokenStoreUnavailable
from .base import Versioned
from .redis_pubsub import Invalidation, InvalidationHub
from .redis_scripts import (
    DELETE_SCRIPT,
    MULTI_HOST_SCHEMES,
    PUT_SCRIPT,
    RedisTarget,
    client_options,
    describe_url,
    parse_multi_host_url,
)

__all__ = ["AsyncRedisBackend", "RedisBackend"]

logger = logging.getLogger("authrelay.store.redis")

T = TypeVar("T")

RETRY_AFTER = 2
"""Seconds suggested to callers (``Retry-After``) while Redis is unreachable."""
MAX_CONNECTIONS = 32
"""Connections per pool; a burst of requests queues for one instead of opening hundreds."""
_SCAN_COUNT = 500
_ERRORS = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,  # no reachable node, slots not covered
    OSError,
    asyncio.TimeoutError,
)


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


def _check_acks(acks: int, wanted: int, where: str) -> None:
    if acks < wanted:
        # The write stands on the master (it cannot be undone); a failover before the
        # replicas catch up could still lose it. Logged so operators see it happening.
        logger.warning("store_write_not_replicated url=%s acks=%d wanted=%d", where, acks, wanted)


def _put_args(
    channel: str, value: bytes, ttl: float | None, expected_version: int | None
) -> list[str | bytes]:
    """ARGV of :data:`PUT_SCRIPT`."""
    return [channel, value, _ttl_ms(ttl), _expected(expected_version)]


def _target(url: str) -> RedisTarget | None:
    return parse_multi_host_url(url) if url.startswith(tuple(MULTI_HOST_SCHEMES)) else None


def _multi_host_options(timeout: float, *, asynchronous: bool = False) -> dict[str, Any]:
    # No retry on the Sentinel or Cluster client's side either: a failed call is a 503 and
    # the next one finds the new master or topology (Cluster redirections after a
    # resharding are still followed). Each face gets its own kind of policy: redis-py 8
    # converts a sync one handed to an asyncio client, with a warning.
    retry_class = redis.asyncio.retry.Retry if asynchronous else redis.retry.Retry
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": retry_class(redis.backoff.NoBackoff(), 0),
    }


def _seed_rotation(target: RedisTarget) -> Callable[[], tuple[str, int]]:
    """Seed nodes in turn, so a listener whose node died reconnects to the next one."""
    turn = 0

    def following() -> tuple[str, int]:
        nonlocal turn
        host = target.hosts[turn % len(target.hosts)]
        turn += 1
        return host

    return following


_Client = redis.Redis | redis.cluster.RedisCluster
_AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class RedisBackend:
    """The sync face (WSGI): a versioned key-value store on Redis.

    ``namespace`` (``store.key_prefix``) names the invalidation channel
    (``{namespace}invalidate``); keys arrive already under it.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "authrelay:",
        timeout: float = 0.5,
        replica_acks: int = 0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.replica_acks = replica_acks
        self.wait_ms = max(1, int(timeout * 800))  # WAIT answers before the socket times out
        self.target = _target(url)
        self.hub = InvalidationHub(f"{namespace}invalidate")
        self._where = describe_url(url)
        self._pid = os.getpid()
        self._client: _Client | None = None
        self._seeds = _seed_rotation(self.target) if self.target else None
        self._sentinel: redis.sentinel.Sentinel | None = None
        self._sentinel_pid = self._pid

    def __repr__(self) -> str:
        return f"RedisBackend(url={self._where!r}, namespace={self.namespace!r})"

    # -- plumbing -----------------------------------------------------------------------

    def make_client(self) -> _Client:
        """A new client with its own pool (the store's own client is made once)."""
        target = self.target
        if target is not None and target.kind == "cluster":
            return redis.cluster.RedisCluster(
                startup_nodes=[
                    redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                    for h, p in target.hosts
                ],
                username=target.username,
                password=target.password,
                ssl=target.ssl,
                connection_pool_class=functools.partial(
                    redis.BlockingConnectionPool, timeout=_pool_wait(self.timeout)
                ),
                max_connections=MAX_CONNECTIONS,
                **_multi_host_options(self.timeout),
            )
        return self._make_standalone()

    def _make_standalone(self) -> redis.Redis:
        target = self.target
        if target is not None:
            options = _multi_host_options(self.timeout)
            if self._sentinel is None or self._sentinel_pid != os.getpid():
                self._sentinel = redis.sentinel.Sentinel(
                    list(target.hosts),
                    sentinel_kwargs={**options, "password": target.password, "ssl": target.ssl},
                    **options,
                )
                self._sentinel_pid = os.getpid()
            master: redis.Redis = self._sentinel.master_for(
                target.service,
                db=target.db,
                username=target.username,
                password=target.password,
                ssl=target.ssl,
            )
            return master
        pool = redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=_pool_wait(self.timeout),
            **client_options(self.timeout),
        )
        return redis.Redis.from_pool(pool)

    def make_listener_client(self) -> redis.Redis:
        """A client for the invalidation listener: under Cluster, one node (seeds in turn)."""
        target = self.target
        if target is None or target.kind != "cluster" or self._seeds is None:
            return self._make_standalone()
        host, port = self._seeds()
        return redis.Redis(
            host=host,
            port=port,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            **_multi_host_options(self.timeout),
        )

    @property
    def client(self) -> _Client:
        """The process's client (made again after a fork: a pool is never shared)."""
        if self._client is None or self._pid != os.getpid():
            self._client = self.make_client()
            self._pid = os.getpid()
            self._put = self._client.register_script(PUT_SCRIPT)
            self._delete = self._client.register_script(DELETE_SCRIPT)
        self.hub.ensure_thread(self.make_listener_client)
        return self._client

    def _guard(self, operation: Callable[[_Client], T]) -> T:
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
        args = _put_args(self.hub.channel, value, ttl, expected_version)

        def operation(client: _Client) -> int | None:
            result = self._scripted(client, self._put, key, args)
            return None if result is None else int(result)

        return self._guard(operation)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        args = [self.hub.channel, _expected(expected_version)]
        return self._guard(lambda client: bool(self._scripted(client, self._delete, key, args)))

    def _scripted(self, client: _Client, script: Any, key: str, args: list[Any]) -> Any:
        """Run a write script; with ``replica_acks``, also WAIT on the same connection."""
        if not self.replica_acks or not isinstance(client, redis.Redis):
            return script(keys=[key], args=args, client=client)
        try:
            result, acks = self._write_and_wait(client, script, key, args)
        except redis.exceptions.NoScriptError:  # a new master, or its script cache flushed
            client.script_load(script.script)
            result, acks = self._write_and_wait(client, script, key, args)
        _check_acks(int(acks), self.replica_acks, self._where)
        return result

    def _write_and_wait(
        self, client: redis.Redis, script: Any, key: str, args: list[Any]
    ) -> list[Any]:
        with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, 1, key, *args)
            pipe.execute_command("WAIT", self.replica_acks, self.wait_ms)  # type: ignore[no-untyped-call]
            return pipe.execute()

    def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys` (``SCAN``, never ``KEYS``)."""

        def operation(client: _Client) -> list[str]:
            found = client.scan_iter(match=_escape(prefix) + "*", count=_SCAN_COUNT)
            return sorted({name.decode() if isinstance(name, bytes) else name for name in found})

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
        sentinel, self._sentinel = self._sentinel, None
        for watcher in sentinel.sentinels if sentinel is not None else ():
            with contextlib.suppress(*_ERRORS):
                watcher.close()


class AsyncRedisBackend:
    """The async face (ASGI) over redis-py's asyncio client; shares the sync face's settings."""

    def __init__(self, backend: RedisBackend) -> None:
        self.sync = backend
        self.hub = backend.hub
        self._client: _AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinel: redis.asyncio.sentinel.Sentinel | None = None
        self._sentinel_loop: asyncio.AbstractEventLoop | None = None
        self._gate = asyncio.Semaphore(MAX_CONNECTIONS)
        self._ready = asyncio.Lock()
        self._ready_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({self.sync!r})"

    def make_client(self) -> _AsyncClient:
        """A new asyncio client with its own pool."""
        target = self.sync.target
        if target is not None and target.kind == "cluster":
            return redis.asyncio.cluster.RedisCluster(
                startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.hosts],
                username=target.username,
                password=target.password,
                ssl=target.ssl,
                max_connections=MAX_CONNECTIONS,
                **_multi_host_options(self.sync.timeout, asynchronous=True),
            )
        return self._make_standalone()

    def _make_standalone(self) -> redis.asyncio.Redis:
        target, timeout = self.sync.target, self.sync.timeout
        if target is not None:
            options = _multi_host_options(timeout, asynchronous=True)
            loop = asyncio.get_running_loop()
            if self._sentinel is None or self._sentinel_loop is not loop:
                self._sentinel = redis.asyncio.sentinel.Sentinel(
                    list(target.hosts),
                    sentinel_kwargs={**options, "password": target.password, "ssl": target.ssl},
                    **options,
                )
                self._sentinel_loop = loop
            master: redis.asyncio.Redis = self._sentinel.master_for(
                target.service,
                db=target.db,
                username=target.username,
                password=target.password,
                ssl=target.ssl,
            )
            return master
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.sync.url,
            max_connections=MAX_CONNECTIONS,
            timeout=_pool_wait(timeout),
            **client_options(timeout),
        )
        return redis.asyncio.Redis.from_pool(pool)

    def make_listener_client(self) -> redis.asyncio.Redis:
        """See :meth:`RedisBackend.make_listener_client`."""
        target = self.sync.target
        if target is None or target.kind != "cluster" or self.sync._seeds is None:
            return self._make_standalone()
        host, port = self.sync._seeds()
        return redis.asyncio.Redis(
            host=host,
            port=port,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            **_multi_host_options(self.sync.timeout, asynchronous=True),
        )

    def _current(self) -> _AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A pool belongs to one event loop; a new loop (tests, lifespan restarts) gets
            # its own.
            self._client, self._loop = self.make_client(), loop
            self._put = self._client.register_script(PUT_SCRIPT)
            self._delete = self._client.register_script(DELETE_SCRIPT)
            self._gate = asyncio.Semaphore(MAX_CONNECTIONS)
            self._ready = asyncio.Lock()
        self.hub.ensure_task(self.make_listener_client)
        return self._client

    async def _guard(self, operation: Callable[[_AsyncClient], Awaitable[T]]) -> T:
        try:
            client = self._current()
            if self.sync.target is None:
                return await operation(client)  # its pool queues for a connection itself
            # redis-py's async Cluster and Sentinel pools cannot queue (past their size they
            # raise, or grow without bound), and Cluster's lazy start races under a burst:
            # discover the nodes once, then queue here.
            if self._ready_loop is not self._loop:
                async with self._ready:
                    if self._ready_loop is not self._loop:
                        if isinstance(client, redis.asyncio.cluster.RedisCluster):
                            await client.initialize()
                        self._ready_loop = self._loop
            async with asyncio.timeout(_pool_wait(self.sync.timeout)):
                await self._gate.acquire()
            try:
                return await operation(client)
            finally:
                self._gate.release()
        except _ERRORS as exc:
            raise _unavailable(exc, self.sync._where) from None

    async def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""

        async def operation(client: _AsyncClient) -> Versioned | None:
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
        args = _put_args(self.hub.channel, value, ttl, expected_version)

        async def operation(client: _AsyncClient) -> int | None:
            result = await self._scripted(client, self._put, key, args)
            return None if result is None else int(result)

        return await self._guard(operation)

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        args = [self.hub.channel, _expected(expected_version)]

        async def operation(client: _AsyncClient) -> bool:
            return bool(await self._scripted(client, self._delete, key, args))

        return await self._guard(operation)

    async def _scripted(self, client: _AsyncClient, script: Any, key: str, args: list[Any]) -> Any:
        """See :meth:`RedisBackend._scripted`."""
        wanted = self.sync.replica_acks
        if not wanted or not isinstance(client, redis.asyncio.Redis):
            return await script(keys=[key], args=args, client=client)
        try:
            result, acks = await self._write_and_wait(client, script, key, args)
        except redis.exceptions.NoScriptError:
            await client.script_load(script.script)
            result, acks = await self._write_and_wait(client, script, key, args)
        _check_acks(int(acks), wanted, self.sync._where)
        return result

    async def _write_and_wait(
        self, client: redis.asyncio.Redis, script: Any, key: str, args: list[Any]
    ) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(script.sha, 1, key, *args)
            pipe.execute_command("WAIT", self.sync.replica_acks, self.sync.wait_ms)
            return await pipe.execute()

    async def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys` (``SCAN``, never ``KEYS``)."""

        async def operation(client: _AsyncClient) -> list[str]:
            names: set[str] = set()
            async for name in client.scan_iter(match=_escape(prefix) + "*", count=_SCAN_COUNT):
                names.add(name.decode() if isinstance(name, bytes) else name)
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
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None and self._sentinel_loop is asyncio.get_running_loop():
            for watcher in sentinel.sentinels:
                with contextlib.suppress(*_ERRORS):
                    await watcher.aclose()
