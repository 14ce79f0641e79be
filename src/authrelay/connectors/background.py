"""Follow-up flows that must not hold up a response: revocation retries, pinned writes.

Defends against: a slow or failing provider delaying a logout (RV-02: the response goes
out, the retries come after), a store outage losing a rotated refresh token (ST-09: the
pinned set is written again in the background), and background failures vanishing
(INV-2: every follow-up is referenced until it ends, and its failure is logged by type,
never with a token).

A flow schedules a follow-up with the effect ``Call(background.start, (name, factory))``;
the follow-up is ``factory()``, a flow run by the relay's own driver for the mode the
call happened in: an asyncio task on the running loop under ASGI (kept in a set until
done, cancelled with the loop at shutdown), a daemon thread under WSGI. Follow-ups
bound their own retries.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._io import Flow

if TYPE_CHECKING:
    from ..relay import Relay

__all__ = ["Background"]

logger = logging.getLogger("authrelay.connectors.background")


class Background:
    """Runs follow-up flows after the response, with the relay's drivers."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Background(pending={self.pending()})"

    def pending(self) -> int:
        """Follow-ups not finished yet."""
        with self._lock:
            return len(self._tasks) + len(self._threads)

    def start(self, name: str, factory: Callable[[], Flow[Any]]) -> None:
        """Run ``factory()`` after the current response (the target of a ``Call`` effect)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:  # ASGI: called from a flow the async driver runs
            task = loop.create_task(self._run_async(name, factory), name=f"authrelay-{name}")
            with self._lock:
                self._tasks.add(task)
            task.add_done_callback(self._forget_task)
            return
        thread = threading.Thread(
            target=self._run_sync, args=(name, factory), name=f"authrelay-{name}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    async def _run_async(self, name: str, factory: Callable[[], Flow[Any]]) -> None:
        try:
            await self.relay.async_driver.run(factory())
        except Exception as exc:
            logger.error("background_failed job=%s error=%s", name, type(exc).__name__)

    def _run_sync(self, name: str, factory: Callable[[], Flow[Any]]) -> None:
        try:
            self.relay.sync_driver.run(factory())
        except Exception as exc:
            logger.error("background_failed job=%s error=%s", name, type(exc).__name__)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
