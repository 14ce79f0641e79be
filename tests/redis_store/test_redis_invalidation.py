"""Invalidation across processes: deletes and overwrites reach other processes' caches."""

from __future__ import annotations

import queue
import threading
import time

import anyio
import pytest
from _redis_helpers import REDIS_URL, RedisServer

from authrelay.stores.redis import AsyncRedisBackend, RedisBackend

pytestmark = pytest.mark.redis


def _next(events: queue.Queue[str | None]) -> str | None:
    return events.get(timeout=10)


def _subscribed(backend: RedisBackend) -> None:
    backend.get(backend.namespace + "warm-up")  # first use starts the listener
    assert backend.hub.connected.wait(10)


def test_delete_and_overwrite_are_heard_by_another_process(prefix: str) -> None:
    # Two backends with separate pools stand for two worker processes.
    here = RedisBackend(REDIS_URL, namespace=prefix)
    there = RedisBackend(REDIS_URL, namespace=prefix)
    heard: queue.Queue[str | None] = queue.Queue()
    here.subscribe(heard.put)
    _subscribed(here)

    version = there.put(prefix + "session:abc", b"sealed")
    there.put(prefix + "session:abc", b"sealed-2", expected_version=version)
    assert _next(heard) == prefix + "session:abc"  # an overwrite
    there.delete(prefix + "session:abc")
    assert _next(heard) == prefix + "session:abc"  # a delete
    # A first write and a failed compare-and-set change nothing cached: no message.
    there.put(prefix + "new", b"x", expected_version=0)
    there.put(prefix + "new", b"y", expected_version=0)
    there.delete(prefix + "missing")
    there.delete(prefix + "marker")
    there.put(prefix + "marker", b"1")
    there.put(prefix + "marker", b"2")
    assert _next(heard) == prefix + "marker"
    here.close()
    there.close()


def test_other_namespaces_are_not_heard(prefix: str) -> None:
    here = RedisBackend(REDIS_URL, namespace=prefix)
    other = RedisBackend(REDIS_URL, namespace=prefix + "other-app:")
    heard: queue.Queue[str | None] = queue.Queue()
    here.subscribe(heard.put)
    _subscribed(here)
    other.put(prefix + "other-app:k", b"1")
    other.delete(prefix + "other-app:k")
    here.put(prefix + "mine", b"1")
    here.delete(prefix + "mine")
    assert _next(heard) == prefix + "mine"
    here.close()
    other.close()


def test_a_failing_callback_does_not_stop_the_others(prefix: str) -> None:
    here = RedisBackend(REDIS_URL, namespace=prefix)
    heard: queue.Queue[str | None] = queue.Queue()

    def broken(key: str | None) -> None:
        raise RuntimeError("cache bug")

    here.subscribe(broken)
    here.subscribe(heard.put)
    _subscribed(here)
    here.put(prefix + "k", b"1")
    here.delete(prefix + "k")
    assert _next(heard) == prefix + "k"
    here.close()


def test_async_listener_runs_on_the_event_loop(prefix: str) -> None:
    sync = RedisBackend(REDIS_URL, namespace=prefix)
    backend = AsyncRedisBackend(sync)
    writer = RedisBackend(REDIS_URL, namespace=prefix)
    heard: list[tuple[str | None, int]] = []

    async def scenario() -> None:
        got = anyio.Event()

        def callback(key: str | None) -> None:
            heard.append((key, threading.get_ident()))
            got.set()

        backend.subscribe(callback)
        await backend.get(prefix + "warm-up")
        for _ in range(1000):
            if backend.hub.connected.is_set():
                break
            await anyio.sleep(0.01)
        writer.put(prefix + "s", b"1")
        writer.delete(prefix + "s")
        with anyio.fail_after(10):
            await got.wait()
        await backend.aclose()

    anyio.run(scenario)
    assert heard == [(prefix + "s", threading.get_ident())]  # on the loop's thread
    writer.close()


@pytest.mark.slow
def test_after_a_gap_callbacks_are_told_to_drop_everything(server: RedisServer) -> None:
    here = RedisBackend(server.url, namespace="t:")
    heard: queue.Queue[str | None] = queue.Queue()
    here.subscribe(heard.put)
    _subscribed(here)
    server.stop()
    for _ in range(500):  # the listener notices the dead connection
        if not here.hub.connected.is_set():
            break
        time.sleep(0.01)
    server.start()
    # Messages sent while it was down are lost; on reconnecting it says so with None.
    assert _next(heard) is None
    assert here.hub.connected.wait(10)
    here.put("t:k", b"1")
    here.delete("t:k")
    assert _next(heard) == "t:k"
    here.close()
