"""Cross-process locks and single-flight (RT-02) on Redis, with memory/SQLite as fallbacks."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.client
from _lock_workers import cold_key, contend, take_and_die
from _redis_helpers import REDIS_URL

from authrelay._io import Flow, Sleep, StoreOp, SyncDriver
from authrelay.errors import TokenStoreUnavailable
from authrelay.stores.base import Backend
from authrelay.stores.locks import (
    acquire_lock,
    release_lock,
    single_flight,
    wait_for_change,
)
from authrelay.stores.memory import MemoryBackend
from authrelay.stores.redis import RedisBackend
from authrelay.stores.sqlite import SQLiteBackend
from authrelay.testing import FakeClock

pytestmark = pytest.mark.redis

SPAWN = multiprocessing.get_context("spawn")


def drive(flow: Flow[Any], backend: Backend, clock: FakeClock | None = None) -> Any:
    """Run a flow against a backend; ``Sleep`` advances ``clock`` instead of waiting."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if isinstance(effect, Sleep):
            if clock is not None:
                clock.now += effect.seconds
            continue
        assert isinstance(effect, StoreOp)
        try:
            value = getattr(backend, effect.name)(*effect.args, **(effect.kwargs or {}))
        except Exception as exc:
            error = exc


@pytest.fixture(params=["memory", "sqlite", "redis", "cluster", "sentinel"])
def any_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: RedisBackend,
    clock: FakeClock,
    prefix: str,
) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend(clock=clock)
    elif request.param == "sqlite":
        store = SQLiteBackend(tmp_path / "locks.db", clock=clock)
        yield store
        store.close()
    elif request.param in {"cluster", "sentinel"}:
        deployment = request.getfixturevalue(f"redis_{request.param}")
        remote = RedisBackend(deployment.url, namespace=prefix)
        yield remote
        remote.close()
    else:
        yield backend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


def test_rt02_lock_is_exclusive_and_fenced(any_backend: Backend, prefix: str) -> None:
    key = prefix + "lock:a"
    first = drive(acquire_lock(key, 30), any_backend)
    assert first is not None
    assert drive(acquire_lock(key, 30), any_backend) is None
    assert drive(release_lock(first), any_backend) is True
    second = drive(acquire_lock(key, 30), any_backend)
    assert second is not None and second.fence > first.fence
    # The first holder's token is stale: it cannot release the second holder's lock.
    assert drive(release_lock(first), any_backend) is False
    assert drive(acquire_lock(key, 30), any_backend) is None
    assert drive(release_lock(second), any_backend) is True


def test_rt02_expired_lock_is_free_again(
    any_backend: Backend, prefix: str, clock: FakeClock
) -> None:
    key = prefix + "lock:ttl"
    holder = drive(acquire_lock(key, 0.2), any_backend)
    assert holder is not None
    clock.now += 1  # memory and SQLite follow the injected clock
    for _ in range(200):  # Redis expires the key on its own clock
        taken = drive(acquire_lock(key, 30), any_backend)
        if taken is not None:
            break
        time.sleep(0.01)
    assert taken is not None and taken.fence > holder.fence
    assert drive(release_lock(holder), any_backend) is False  # too late: not the owner


def test_wait_for_change_sees_a_write_and_is_bounded(
    any_backend: Backend, prefix: str, clock: FakeClock
) -> None:
    key = prefix + "data"
    version = any_backend.put(key, b"v1")
    assert version is not None
    start = clock.now
    assert drive(wait_for_change(key, version, 3.0), any_backend, clock) == version
    assert clock.now - start == pytest.approx(3.0)  # the budget is spent in Sleep effects
    newer = any_backend.put(key, b"v2")
    assert drive(wait_for_change(key, version, 3.0), any_backend, clock) == newer
    any_backend.delete(key)
    assert drive(wait_for_change(key, newer or 0, 3.0), any_backend, clock) == 0


def test_single_flight_second_caller_reads_instead_of_producing(
    any_backend: Backend, prefix: str
) -> None:
    data, calls = prefix + "value", []

    def read() -> Flow[bytes | None]:
        stored = yield StoreOp("get", (data,))
        return None if stored is None else stored[0]

    def produce() -> Flow[bytes]:
        calls.append(1)
        yield StoreOp("put", (data, b"made"), {"expected_version": 0})
        return b"made"

    lock = prefix + "lock:sf"
    assert drive(single_flight(lock, read=read, produce=produce), any_backend) == b"made"
    assert drive(single_flight(lock, read=read, produce=produce), any_backend) == b"made"
    assert calls == [1]
    assert any_backend.get(lock) is None  # released


def test_single_flight_releases_the_lock_when_produce_fails(
    any_backend: Backend, prefix: str
) -> None:
    def read() -> Flow[bytes | None]:
        yield from ()
        return None

    def produce() -> Flow[bytes]:
        yield from ()
        raise RuntimeError("token endpoint down")

    lock = prefix + "lock:fail"
    with pytest.raises(RuntimeError):
        drive(single_flight(lock, read=read, produce=produce), any_backend)
    assert any_backend.get(lock) is None


def test_single_flight_wait_is_bounded(any_backend: Backend, prefix: str, clock: FakeClock) -> None:
    lock = prefix + "lock:held"
    assert drive(acquire_lock(lock, 3600), any_backend) is not None

    def read() -> Flow[bytes | None]:
        yield from ()
        return None

    def produce() -> Flow[bytes]:
        yield from ()
        raise AssertionError("never: the lock is held elsewhere")

    with pytest.raises(TokenStoreUnavailable) as caught:
        drive(single_flight(lock, read=read, produce=produce, wait=2.0), any_backend, clock)
    assert caught.value.retry_after == 1


def test_rt02_late_writer_with_a_stale_version_cannot_overwrite(
    backend: RedisBackend, prefix: str
) -> None:
    data, lock = prefix + "tokens", prefix + "lock:rt"
    base = backend.put(data, b"rt-1")
    assert base is not None
    # A takes the lock, reads version `base`, then stalls past its TTL.
    stalled = drive(acquire_lock(lock, 0.1), backend)
    assert stalled is not None
    for _ in range(200):
        fresh = drive(acquire_lock(lock, 30), backend)
        if fresh is not None:
            break
        time.sleep(0.01)
    assert fresh is not None
    # B, the new holder, rotates the token with CAS at the version it read.
    rotated = backend.put(data, b"rt-2", expected_version=base)
    assert rotated is not None
    drive(release_lock(fresh), backend)
    # A wakes up and writes with the version it read: refused, rt-2 survives (INV-4).
    assert backend.put(data, b"rt-1-late", expected_version=base) is None
    assert drive(release_lock(stalled), backend) is False
    assert backend.get(data) == (b"rt-2", rotated)


@pytest.mark.slow
def test_rt02_four_processes_one_holder_at_a_time(raw: redis.Redis, prefix: str) -> None:
    rounds = 25
    workers = [SPAWN.Process(target=contend, args=(REDIS_URL, prefix, rounds)) for _ in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(90)
        assert proc.exitcode == 0
    assert raw.get(prefix + "violations") is None
    assert int(raw.get(prefix + "count") or 0) == 4 * rounds  # no lost update


@pytest.mark.slow
def test_rt02_holder_that_dies_does_not_wedge_the_key(
    backend: RedisBackend, raw: redis.Redis, prefix: str
) -> None:
    ttl = 1.0
    dying = SPAWN.Process(target=take_and_die, args=(REDIS_URL, prefix, ttl))
    dying.start()
    dying.join(60)
    assert dying.exitcode == 0 and raw.get(prefix + "holder-up") == b"1"
    lock = prefix + "lock:one"
    assert raw.exists(lock)  # still held by a dead process
    calls: list[int] = []

    def read() -> Flow[bytes | None]:
        stored = yield StoreOp("get", (prefix + "data",))
        return None if stored is None else stored[0]

    def produce() -> Flow[bytes]:
        calls.append(1)
        yield StoreOp("put", (prefix + "data", b"done"), {"expected_version": 0})
        return b"done"

    with httpx.Client() as client:
        # The wait budget equals the TTL plus one poll: success means it got the lock
        # once Redis expired the dead holder's record.
        flow = single_flight(lock, read=read, produce=produce, ttl=ttl, wait=ttl + 0.5)
        assert SyncDriver(client, backend).run(flow) == b"done"
    assert calls == [1]


@pytest.mark.slow
def test_rt02_four_processes_cold_key_one_call(raw: redis.Redis, prefix: str) -> None:
    start_at = time.time() + 2.0  # let every spawned interpreter import first
    workers = [
        SPAWN.Process(target=cold_key, args=(REDIS_URL, prefix, 25, start_at)) for _ in range(4)
    ]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(90)
        assert proc.exitcode == 0
    assert int(raw.get(prefix + "calls") or 0) == 1
    results = raw.lrange(prefix + "results", 0, -1)
    assert len(results) == 100
    assert len(set(results)) == 1  # everyone got the one produced value
