"""Invalidation across processes: Redis pub/sub feeding each process's in-memory caches.

Every delete and every overwrite of a key is published on ``{namespace}invalidate``
(inside the same Lua script as the write, so a change is never made without its
message). Each process runs one listener, started lazily when a callback is registered
and the store is first used: a daemon thread under WSGI, a task on the event loop under
ASGI. Callbacks receive the changed key (never a token: keys hold digests only, ST-06).

Defends against:

- a logout, a revocation or a dropped token in one process being ignored by the
  others' caches for longer than needed: they hear about it within a round trip;
- missed messages: pub/sub is fire-and-forget. While the listener is disconnected,
  changes are not heard; on reconnecting it calls every callback with ``None``
  ("anything may have changed: drop everything"), so staleness is bounded by the
  outage, and during the outage by the caches' own TTLs (docs/deployment.md);
- a broken callback stopping invalidation: each call is isolated and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.client
import redis.exceptions

__all__ = ["Invalidation", "InvalidationHub"]

logger = logging.getLogger("authrelay.store.redis")

Invalidation = Callable[[str | None], None]
"""Called with a changed key, or None when messages may have been missed."""

_BACKOFF_START = 0.2
_BACKOFF_MAX = 5.0
_POLL = 0.25


class InvalidationHub:
    """Callbacks of one process and the listener (thread or task) that feeds them."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.callbacks: list[Invalidation] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = threading.Event()
        """Set while a listener is subscribed (tests and health checks read it)."""

    def __repr__(self) -> str:
        return f"InvalidationHub(channel={self.channel!r}, callbacks={len(self.callbacks)})"

    def add(self, callback: Invalidation) -> None:
        """Register ``callback``; idempotent for the same callable."""
        with self._lock:
            if callback not in self.callbacks:
                self.callbacks.append(callback)

    def dispatch(self, key: str | None) -> None:
        """Call every callback with ``key``; one failing does not stop the others."""
        for callback in list(self.callbacks):
            try:
                callback(key)
            except Exception:
                logger.exception("invalidation_callback_failed")

    # -- WSGI: a daemon thread ----------------------------------------------------------

    def ensure_thread(self, make_client: Callable[[], redis.Redis]) -> None:
        """Start the listener thread once, if anything is registered."""
        if not self.callbacks or self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            started = self._thread is not None
            if not started:
                self._thread = threading.Thread(
                    target=self._listen_sync,
                    args=(make_client,),
                    name="authrelay-redis-invalidation",
                    daemon=True,
                )
                self._thread.start()

    def _listen_sync(self, make_client: Callable[[], redis.Redis]) -> None:
        delay, missed = _BACKOFF_START, False
        while not self._stop.is_set():
            client = make_client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.connected.set()
                if missed:
                    logger.info("invalidation_listener_reconnected channel=%s", self.channel)
                    self.dispatch(None)
                delay = _BACKOFF_START
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_POLL)
                    if message is not None and message.get("type") == "message":
                        self.dispatch(_text(message["data"]))
            except (redis.exceptions.RedisError, OSError) as exc:
                self.connected.clear()
                if not missed:
                    logger.warning("invalidation_listener_down error=%s", type(exc).__name__)
                missed = True
                self._stop.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            finally:
                self.connected.clear()
                _quietly(pubsub.close)
                _quietly(client.close)

    # -- ASGI: a task on the running loop -----------------------------------------------

    def ensure_task(self, make_client: Callable[[], redis.asyncio.Redis]) -> None:
        """Start the listener task on the running loop once (again if its loop ended)."""
        if not self.callbacks or self._stop.is_set():
            return
        task = self._task
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._task = loop.create_task(self._listen_async(make_client))

    async def _listen_async(self, make_client: Callable[[], redis.asyncio.Redis]) -> None:
        delay, missed = _BACKOFF_START, False
        while not self._stop.is_set():
            client = make_client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected.set()
                if missed:
                    logger.info("invalidation_listener_reconnected channel=%s", self.channel)
                    self.dispatch(None)
                delay = _BACKOFF_START
                while not self._stop.is_set():
                    message = await pubsub.get_message(timeout=_POLL)
                    if message is not None and message.get("type") == "message":
                        self.dispatch(_text(message["data"]))
            except (redis.exceptions.RedisError, OSError) as exc:
                self.connected.clear()
                if not missed:
                    logger.warning("invalidation_listener_down error=%s", type(exc).__name__)
                missed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
            finally:
                self.connected.clear()
                await _aquietly(pubsub.aclose())
                await _aquietly(client.aclose())

    # -- shutdown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the thread (joined briefly); a task stops at its next poll."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * _POLL + 1)

    async def astop(self) -> None:
        """Stop the listener task and wait for it."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            try:
                await asyncio.wait_for(task, timeout=2 * _POLL + 1)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        self.stop()


def _text(data: Any) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _quietly(close: Callable[[], Any]) -> None:
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        close()


async def _aquietly(closing: Any) -> None:
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        await closing
