"""The background loop of a relay: proactive refresh passes and webhook deliveries.

Runs only when there is something to do (a connector with ``refresh_ahead`` or
``keep_alive``, or ``[events]``). Under ASGI it is an asyncio task on the server's loop,
started at ``lifespan.startup`` (or the first request) and cancelled at
``lifespan.shutdown`` by :meth:`Relay.aclose`; under WSGI it is a daemon thread started
by the first request (or :meth:`Relay.start_background`) and stopped by
:meth:`Relay.close`. Refreshes of one pass run at most :data:`CONCURRENCY` at a time;
webhook deliveries use an HTTP client of their own (never the identity-provider one).

Defends against: a failing store or provider stopping the loop (each step's failure is
logged by type and the loop goes on), and a loop that outlives its relay (stopped at
shutdown; its thread is a daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
import httpx

from .._io import AsyncDriver, SyncDriver

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["CONCURRENCY", "SCAN_INTERVAL", "Maintenance"]

logger = logging.getLogger("authrelay.connectors.maintenance")

SCAN_INTERVAL = 30.0
"""Seconds between proactive refresh passes in each process."""
CONCURRENCY = 4
"""Refreshes run at the same time by one process."""


class Maintenance:
    """Starts and stops the background loop for one relay."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.relay = registry.relay
        self.refresher = registry.refresher
        self.webhook = registry.events.webhook
        self.interval = SCAN_INTERVAL
        self.concurrency = CONCURRENCY
        self.passes = 0
        """Loop iterations so far (for tests and ``/stats`` readers)."""
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_async: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        registry.events.wake = self.wake

    def __repr__(self) -> str:
        return f"Maintenance(running={self.running})"

    @property
    def needed(self) -> bool:
        """There is proactive refreshing or event delivery to do."""
        return self.refresher.enabled or self.webhook is not None

    @property
    def running(self) -> bool:
        """The loop is started and not stopped."""
        task, thread = self._task, self._thread
        return (task is not None and not task.done()) or (thread is not None and thread.is_alive())

    def start(self) -> bool:
        """Start the loop (on the running event loop, else in a thread); False if not needed
        or already running."""
        with self._lock:
            if not self.needed or self.running:
                return False
            self._stop.clear()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._loop = loop
                self._wake_async = asyncio.Event()
                self._task = loop.create_task(self._run_async(), name="authrelay-maintenance")
            else:
                self._thread = threading.Thread(
                    target=self._run_sync, name="authrelay-maintenance", daemon=True
                )
                self._thread.start()
        logger.info("background_started mode=%s", "asgi" if loop is not None else "wsgi")
        return True

    def wake(self) -> None:
        """Run a pass of deliveries now (from any thread)."""
        self._wake.set()
        loop, event = self._loop, self._wake_async
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def astop(self) -> None:
        """Stop the loop and wait for it (ASGI shutdown)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            if self._loop is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._stop_thread()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (WSGI, at exit); a task on another loop is cancelled there."""
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done() and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        self._stop_thread(timeout)

    def _stop_thread(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _pause(self, next_scan: float) -> float:
        pause = self.webhook.settings.poll_interval if self.webhook is not None else self.interval
        if self.refresher.enabled:
            pause = min(pause, max(next_scan - time.monotonic(), 0.0))
        return pause

    # -- ASGI ---------------------------------------------------------------------------

    async def _run_async(self) -> None:
        driver = self.relay.async_driver
        sender = AsyncDriver(
            httpx.AsyncClient(follow_redirects=False, trust_env=False), self.relay.async_backend
        )
        next_scan = 0.0
        try:
            while True:
                self.passes += 1
                if self.refresher.enabled and time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.interval
                    await self._scan_async(driver)
                if self.webhook is not None:
                    try:
                        await sender.run(self.webhook.deliver_due())
                    except Exception as exc:
                        logger.error("event_delivery_pass_failed error=%s", type(exc).__name__)
                assert self._wake_async is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_async.wait(), self._pause(next_scan))
                self._wake_async.clear()
        finally:
            with anyio.CancelScope(shield=True):
                await sender.client.aclose()

    async def _scan_async(self, driver: AsyncDriver) -> None:
        try:
            due = await driver.run(self.refresher.due())
        except Exception as exc:
            logger.error("refresh_pass_failed error=%s", type(exc).__name__)
            return
        limiter = anyio.CapacityLimiter(self.concurrency)

        async def one(name: str, key: str) -> None:
            async with limiter:
                try:
                    await driver.run(self.refresher.refresh_one(name, key))
                except Exception as exc:
                    logger.error("proactive_refresh_error error=%s", type(exc).__name__)

        async with anyio.create_task_group() as group:
            for name, key in due:
                group.start_soon(one, name, key)

    # -- WSGI ---------------------------------------------------------------------------

    def _run_sync(self) -> None:
        driver = self.relay.sync_driver
        sender = SyncDriver(
            httpx.Client(follow_redirects=False, trust_env=False), self.relay.backend
        )
        next_scan = 0.0
        try:
            with ThreadPoolExecutor(self.concurrency, "authrelay-refresh") as pool:
                while not self._stop.is_set():
                    self.passes += 1
                    if self.refresher.enabled and time.monotonic() >= next_scan:
                        next_scan = time.monotonic() + self.interval
                        self._scan_sync(driver, pool)
                    if self.webhook is not None and not self._stop.is_set():
                        try:
                            sender.run(self.webhook.deliver_due())
                        except Exception as exc:
                            logger.error("event_delivery_pass_failed error=%s", type(exc).__name__)
                    self._wake.wait(self._pause(next_scan))
                    self._wake.clear()
        finally:
            sender.client.close()

    def _scan_sync(self, driver: SyncDriver, pool: ThreadPoolExecutor) -> None:
        try:
            due = driver.run(self.refresher.due())
        except Exception as exc:
            logger.error("refresh_pass_failed error=%s", type(exc).__name__)
            return

        def one(item: tuple[str, str]) -> None:
            if self._stop.is_set():
                return
            try:
                driver.run(self.refresher.refresh_one(*item))
            except Exception as exc:
                logger.error("proactive_refresh_error error=%s", type(exc).__name__)

        list(pool.map(one, due))
