"""Worker processes for the cross-process lock tests (started with ``spawn``)."""

from __future__ import annotations

import os
import threading
import time

import httpx
import redis.client

from authrelay._io import Flow, Shared, Sleep, StoreOp, SyncDriver
from authrelay.stores.locks import acquire_lock, release_lock, single_flight
from authrelay.stores.redis import RedisBackend


def contend(url: str, prefix: str, rounds: int) -> None:
    """Take the lock ``rounds`` times; inside, do a racy read-modify-write and count holders."""
    backend = RedisBackend(url, namespace=prefix)
    raw = redis.Redis.from_url(url)
    lock = prefix + "lock:one"

    def round_trip() -> Flow[None]:
        while True:
            token = yield from acquire_lock(lock, 10.0)
            if token is not None:
                break
            yield Sleep(0.001)
        holders = raw.incr(prefix + "holders")
        if holders != 1:
            raw.incr(prefix + "violations")
        # Unprotected read-modify-write: a second holder would lose an update.
        count = int(raw.get(prefix + "count") or 0)
        time.sleep(0.001)
        raw.set(prefix + "count", count + 1)
        raw.decr(prefix + "holders")
        yield from release_lock(token)
        return None

    with httpx.Client() as client:
        driver = SyncDriver(client, backend)
        for _ in range(rounds):
            driver.run(round_trip())
    raw.close()
    backend.close()


def take_and_die(url: str, prefix: str, ttl: float) -> None:
    """Take the lock, say so, and die without releasing it."""
    backend = RedisBackend(url, namespace=prefix)
    with httpx.Client() as client:
        token = SyncDriver(client, backend).run(acquire_lock(prefix + "lock:one", ttl))
    assert token is not None
    redis.Redis.from_url(url).set(prefix + "holder-up", b"1")
    os._exit(0)


def cold_key(url: str, prefix: str, threads: int, start_at: float) -> None:
    """``threads`` concurrent requests for one cold value: Shared in-process + single_flight."""
    backend = RedisBackend(url, namespace=prefix)
    raw = redis.Redis.from_url(url)
    data = prefix + "data:token"

    def read() -> Flow[bytes | None]:
        stored = yield StoreOp("get", (data,))
        return None if stored is None else stored[0]

    def produce() -> Flow[bytes]:
        stored = yield StoreOp("get", (data,))
        version = 0 if stored is None else stored[1]
        raw.incr(prefix + "calls")  # stands for one token-endpoint call
        time.sleep(0.05)
        value = f"token-from-{os.getpid()}".encode()
        written = yield StoreOp("put", (data, value), {"expected_version": version})
        assert written is not None
        return value

    def request() -> Flow[bytes]:
        value: bytes = yield Shared(
            "cold",
            lambda: single_flight(prefix + "lock:cold", read=read, produce=produce, ttl=10.0),
        )
        return value

    results: list[bytes] = []
    with httpx.Client() as client:
        driver = SyncDriver(client, backend)

        def one() -> None:
            results.append(driver.run(request()))

        workers = [threading.Thread(target=one) for _ in range(threads)]
        time.sleep(max(0.0, start_at - time.time()))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    for value in results:
        raw.rpush(prefix + "results", value)
    raw.close()
    backend.close()
