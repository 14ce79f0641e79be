"""Background flows owned by a driver: the :class:`~authrelay._io.Spawn` effect.

A flow yields ``Spawn(name, factory)`` to run ``factory()`` after the current response
(revocation retries, pinned-token writes, token-event hooks). The driver that ran the
flow runs the follow-up too:

- :class:`AsyncSpawner` (ASGI): an asyncio task on the running loop, kept in a set
  until done and cancelled by ``AsyncDriver.aclose()`` (lifespan shutdown);
- :class:`SyncSpawner` (WSGI): a small pool of daemon threads, started on demand and
  stopped by ``SyncDriver.close()``, which also ends the waits (``Sleep``) of the
  follow-ups still running.

Bounds: at most ``limit`` follow-ups run at a time per driver (:data:`ASYNC_LIMIT`,
:data:`SYNC_LIMIT`); the excess waits in a queue in order, up to :data:`BACKLOG`
entries; beyond that a follow-up is dropped with a ``background_dropped`` log line and
the effect answers False (the flow can undo what it prepared). After shutdown nothing
new starts (also answered False).

Defends against: unbounded threads or tasks under a flood of logouts while a provider is
down, follow-ups that outlive their relay, and background failures vanishing (each is
logged by type, never with a token: INV-2).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._io import AsyncDriver, Flow, SyncDriver

__all__ = ["ASYNC_LIMIT", "BACKLOG", "SYNC_LIMIT", "AsyncSpawner", "Cancelled", "SyncSpawner"]

logger = logging.getLogger("authrelay.background")

ASYNC_LIMIT = 16
"""Follow-ups an async driver runs at the same time."""
SYNC_LIMIT = 4
"""Threads a sync driver runs follow-ups on."""
BACKLOG = 1000
"""Follow-ups waiting for a slot, per driver, before new ones are dropped."""

Factory = Callable[[], "Flow[Any]"]


class Cancelled(BaseException):
    """Thrown out of a ``Sleep`` of a sync driver that is closing: the follow-up ends.

    A ``BaseException``, like ``asyncio.CancelledError``, so that flows which retry on
    ``Exception`` do not swallow it.
    """


def _failed(name: str, exc: BaseException) -> None:
    logger.error("background_failed job=%s error=%s", name, type(exc).__name__)


def _dropped(name: str, why: str) -> None:
    logger.error("background_dropped job=%s reason=%s", name, why)


class AsyncSpawner:
    """The follow-ups of one :class:`~authrelay._io.AsyncDriver` (runs on its loop)."""

    def __init__(self, driver: AsyncDriver, *, limit: int = ASYNC_LIMIT, backlog: int = BACKLOG):
        self.driver = driver
        self.limit = limit
        self.backlog = backlog
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: collections.deque[tuple[str, Factory]] = collections.deque()
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncSpawner(running={len(self._tasks)}, queued={len(self._queue)})"

    def pending(self) -> int:
        """Follow-ups running or queued."""
        return len(self._tasks) + len(self._queue)

    def spawn(self, name: str, factory: Factory) -> bool:
        """Start or queue ``factory()``; False when dropped (called on the loop)."""
        if self._closed:
            _dropped(name, "closed")
            return False
        if len(self._tasks) < self.limit:
            self._start(asyncio.get_running_loop(), name, factory)
            return True
        if len(self._queue) >= self.backlog:
            _dropped(name, "backlog_full")
            return False
        self._queue.append((name, factory))
        return True

    def _start(self, loop: asyncio.AbstractEventLoop, name: str, factory: Factory) -> None:
        task = loop.create_task(self._run(name, factory), name=f"authrelay-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _run(self, name: str, factory: Factory) -> None:
        try:
            await self.driver.run(factory())
        except Exception as exc:
            _failed(name, exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._queue and not self._closed and not task.get_loop().is_closed():
            self._start(task.get_loop(), *self._queue.popleft())

    async def aclose(self) -> None:
        """Drop the queue, cancel what runs and wait for it (tasks of this loop)."""
        self._closed = True
        self._queue.clear()
        tasks = list(self._tasks)
        loop = asyncio.get_running_loop()
        here = [task for task in tasks if task.get_loop() is loop]
        for task in tasks:
            if task in here:
                task.cancel()
            elif not task.get_loop().is_closed():
                task.get_loop().call_soon_threadsafe(task.cancel)
        if here:
            await asyncio.gather(*here, return_exceptions=True)


class SyncSpawner:
    """The follow-ups of one :class:`~authrelay._io.SyncDriver`: a bounded thread pool."""

    def __init__(self, driver: SyncDriver, *, limit: int = SYNC_LIMIT, backlog: int = BACKLOG):
        self.driver = driver
        self.limit = limit
        self.backlog = backlog
        self.stopping = threading.Event()
        """Set by :meth:`close`: the driver's ``Sleep`` ends with :class:`Cancelled`."""
        self._queue: collections.deque[tuple[str, Factory]] = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._threads: set[threading.Thread] = set()
        self._busy = 0

    def __repr__(self) -> str:
        return f"SyncSpawner(threads={len(self._threads)}, pending={self.pending()})"

    def pending(self) -> int:
        """Follow-ups running or queued."""
        with self._lock:
            return self._busy + len(self._queue)

    def spawn(self, name: str, factory: Factory) -> bool:
        """Queue ``factory()`` for a pool thread; False when dropped."""
        with self._lock:
            if self.stopping.is_set():
                reason = "closed"
            elif len(self._queue) >= self.backlog:
                reason = "backlog_full"
            else:
                self._queue.append((name, factory))
                idle = len(self._threads) - self._busy
                if len(self._queue) > idle and len(self._threads) < self.limit:
                    thread = threading.Thread(
                        target=self._work, name="authrelay-background", daemon=True
                    )
                    self._threads.add(thread)
                    thread.start()
                self._ready.notify()
                return True
        _dropped(name, reason)
        return False

    def _work(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self.stopping.is_set():
                        self._ready.wait()
                    if self.stopping.is_set():
                        return
                    name, factory = self._queue.popleft()
                    self._busy += 1
                try:
                    self.driver.run(factory())
                except Cancelled:
                    return
                except Exception as exc:
                    _failed(name, exc)
                finally:
                    with self._lock:
                        self._busy -= 1
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def close(self, timeout: float = 5.0) -> None:
        """Drop the queue, end the waits of running follow-ups and join the threads."""
        with self._lock:
            self.stopping.set()
            self._queue.clear()
            self._ready.notify_all()
            threads = [t for t in self._threads if t is not threading.current_thread()]
        for thread in threads:  # daemons: one stuck in a socket call does not block exit
            thread.join(timeout / max(len(threads), 1))
