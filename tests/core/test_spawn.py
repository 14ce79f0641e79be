"""The ``Spawn`` effect: follow-ups owned by the driver, bounded, stopped at shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import anyio
import httpx
import pytest

from authrelay import _spawn
from authrelay._io import AsyncDriver, Flow, Hook, Sleep, Spawn, SyncDriver


def _spawning(*jobs: tuple[str, Any]) -> Flow[list[bool]]:
    answers = []
    for name, factory in jobs:
        answers.append((yield Spawn(name, factory)))
    return answers


def test_async_follow_ups_are_bounded_queued_dropped_and_cancelled_at_aclose(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[str] = []
    cancelled: list[str] = []

    def job(name: str) -> Flow[None]:
        async def wait_forever() -> None:
            started.append(name)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        yield Hook(wait_forever)

    async def main() -> tuple[list[bool], int, int]:
        driver = AsyncDriver(httpx.AsyncClient())
        driver.spawner.limit, driver.spawner.backlog = 1, 1
        answers = await driver.run(
            _spawning(
                ("one", lambda: job("one")),
                ("two", lambda: job("two")),
                ("three", lambda: job("three")),
            )
        )
        for _ in range(1000):  # until the first one runs
            if started:
                break
            await anyio.sleep(0.01)
        pending = driver.spawner.pending()
        await driver.aclose()
        late = await driver.run(_spawning(("late", lambda: job("late"))))
        return answers + late, pending, driver.spawner.pending()

    with caplog.at_level(logging.ERROR, logger="authrelay"):
        answers, pending, after = anyio.run(main)
    assert answers == [True, True, False, False]  # one runs, two waits, three and late dropped
    assert pending == 2
    assert started == ["one"] and cancelled == ["one"]  # "two" never started
    assert after == 0
    dropped = [r.getMessage() for r in caplog.records if "background_dropped" in r.getMessage()]
    assert dropped == [
        "background_dropped job=three reason=backlog_full",
        "background_dropped job=late reason=closed",
    ]


def test_async_follow_up_failures_are_logged_by_type(caplog: pytest.LogCaptureFixture) -> None:
    def failing() -> Flow[None]:
        yield Sleep(0)
        raise ValueError("token-canary")

    async def main() -> None:
        driver = AsyncDriver(httpx.AsyncClient())
        assert await driver.run(_spawning(("bad", failing))) == [True]
        for _ in range(1000):  # until it has run
            if not driver.spawner.pending():
                break
            await anyio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="authrelay"):
        anyio.run(main)
    messages = [r.getMessage() for r in caplog.records]
    assert "background_failed job=bad error=ValueError" in messages
    assert not any("token-canary" in m for m in messages)


def test_sync_follow_ups_use_a_bounded_pool_and_close_ends_their_waits() -> None:
    ran: list[str] = []
    running = threading.Event()

    def retrying(name: str) -> Flow[None]:
        ran.append(name)
        running.set()
        for _ in range(100):  # a long backoff, as revocation retries have
            yield Sleep(60)

    before = set(threading.enumerate())
    driver = SyncDriver(httpx.Client())
    driver.spawner.limit, driver.spawner.backlog = 1, 1
    assert driver.run(_spawning(("a", lambda: retrying("a")))) == [True]
    assert running.wait(10)
    answers = driver.run(_spawning(("b", lambda: retrying("b")), ("c", lambda: retrying("c"))))
    assert answers == [True, False]  # b waits for the one thread, c is over the backlog
    assert driver.spawner.pending() == 2
    threads = [t for t in set(threading.enumerate()) - before if t.name == "authrelay-background"]
    assert len(threads) == 1  # the pool's bound
    driver.close()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()  # the 60 s wait ended at close
    assert ran == ["a"]  # the queued one never started
    assert driver.spawner.pending() == 0
    assert driver.run(_spawning(("late", lambda: retrying("late")))) == [False]


def test_a_closed_sync_driver_cancels_with_a_base_exception() -> None:
    assert issubclass(_spawn.Cancelled, BaseException)
    assert not issubclass(_spawn.Cancelled, Exception)  # flows retrying on Exception stop
