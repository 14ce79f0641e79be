"""The Redis store behind Sentinel and on Redis Cluster, against real throwaway deployments.

The same versioned contract as on one server; keys spread over every Cluster master;
invalidation heard whatever node a key lives on; and a failover (the master killed)
costs 503s while it lasts, then service resumes with every record intact (ST-04).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis.client
import redis.cluster
from _redis_helpers import check_versioned_contract

from authrelay._crypto import random_token
from authrelay.errors import TokenStoreUnavailable
from authrelay.stores.redis import AsyncRedisBackend, RedisBackend
from authrelay.testing.redis_servers import RedisClusterGroup, RedisSentinelGroup, redis_cli

pytestmark = pytest.mark.redis

Group = RedisClusterGroup | RedisSentinelGroup


@pytest.fixture(params=["cluster", "sentinel"])
def group(request: pytest.FixtureRequest) -> Group:
    """The session's Cluster or Sentinel deployment."""
    deployment: Group = request.getfixturevalue(f"redis_{request.param}")
    return deployment


@pytest.fixture
def namespace() -> str:
    return f"topo-{random_token(6)}:"


@pytest.fixture
def store(group: Group, namespace: str) -> Iterator[RedisBackend]:
    backend = RedisBackend(group.url, namespace=namespace, timeout=2.0)
    yield backend
    backend.close()


def _raw(group: Group) -> redis.Redis | redis.cluster.RedisCluster:
    """A plain client on the deployment, to look at what is really stored."""
    if isinstance(group, RedisClusterGroup):
        return redis.cluster.RedisCluster(host="127.0.0.1", port=group.servers[0].port)
    return redis.Redis(host="127.0.0.1", port=group.master.port)


def _heard(events: queue.Queue[str | None]) -> str | None:
    return events.get(timeout=10)


def _hear_all(events: queue.Queue[str | None], expected: set[str]) -> None:
    """Wait until every key in ``expected`` was heard (other messages may come between)."""
    missing = set(expected)
    while missing:
        missing.discard(_heard(events))  # type: ignore[arg-type]


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_versioned_contract_holds(store: RedisBackend, namespace: str) -> None:
    check_versioned_contract(store, namespace)


def test_async_face_shares_the_records(store: RedisBackend, namespace: str) -> None:
    version = store.put(namespace + "shared", b"from-sync", ttl=60)

    async def scenario() -> None:
        face = AsyncRedisBackend(store)
        assert await face.get(namespace + "shared") == (b"from-sync", version)
        newer = await face.put(namespace + "shared", b"from-async", expected_version=version)
        assert newer is not None and version is not None and newer > version
        assert await face.put(namespace + "shared", b"x", expected_version=version) is None
        assert await face.keys(namespace) == [namespace + "shared"]
        assert await face.delete(namespace + "shared", expected_version=newer) is True
        await face.aclose()

    anyio.run(scenario)
    assert store.get(namespace + "shared") is None


def test_ttl_is_enforced_by_redis(group: Group, store: RedisBackend, namespace: str) -> None:
    store.put(namespace + "short", b"x", ttl=0.2)
    store.put(namespace + "forever", b"y")
    raw = _raw(group)
    try:
        assert 0 < raw.pttl(namespace + "short") <= 200
        assert raw.pttl(namespace + "forever") == -1
        _until(lambda: not raw.exists(namespace + "short"), "the server's own expiry")
    finally:
        raw.close()
    assert store.get(namespace + "short") is None


def test_cluster_keys_spread_over_every_master_and_are_all_listed(
    redis_cluster: RedisClusterGroup, namespace: str
) -> None:
    store = RedisBackend(redis_cluster.url, namespace=namespace)
    names = [f"{namespace}tokens:{index:02d}" for index in range(30)]
    for name in names:
        assert store.put(name, b"sealed", ttl=60) is not None
    homes = {redis_cluster.master_for(name).port for name in names}
    assert len(homes) == 3  # every master holds some: the scripts really ran on each
    assert store.keys(namespace) == sorted(names)
    assert store.keys(namespace + "tokens:0") == sorted(names[:10])
    store.close()


def test_invalidation_is_heard_from_every_node(group: Group, namespace: str) -> None:
    here = RedisBackend(group.url, namespace=namespace)
    there = RedisBackend(group.url, namespace=namespace)
    heard: queue.Queue[str | None] = queue.Queue()
    here.subscribe(heard.put)
    here.get(namespace + "warm-up")  # first use starts the listener
    assert here.hub.connected.wait(10)
    names = [f"{namespace}session:{index}" for index in range(12)]
    for name in names:
        version = there.put(name, b"one")
        there.put(name, b"two", expected_version=version)  # an overwrite is published
    assert {_heard(heard) for _ in names} == set(names)
    if isinstance(group, RedisClusterGroup):  # the listener sits on one node only
        assert len({group.master_for(name).port for name in names}) == 3
    there.delete(names[0])
    assert _heard(heard) == names[0]
    here.close()
    there.close()


def _wait_replicated(ports: list[int], expected: int) -> None:
    def synced() -> bool:
        return all(redis_cli(port, "DBSIZE") == str(expected) for port in ports)

    _until(synced, f"{expected} keys on the replicas")


def _read_through_failover(store: RedisBackend, key: str) -> tuple[tuple[bytes, int], int]:
    """Read ``key`` until it answers; a failure must be a 503 (never a miss)."""
    unavailable = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            found = store.get(key)
        except TokenStoreUnavailable as exc:
            retry_after = exc.retry_after
            unavailable += 1
            assert retry_after  # the 503 tells the client when to try again
            time.sleep(0.1)
            continue
        assert found is not None, "a failover must never read as a missing record"
        return found, unavailable
    raise AssertionError("the store did not come back after the failover")


def _listening(url: str) -> tuple[RedisBackend, queue.Queue[str | None]]:
    """A store whose invalidation listener reports into the returned queue."""
    store = RedisBackend(url, namespace="fo:")
    heard: queue.Queue[str | None] = queue.Queue()
    store.subscribe(heard.put)
    return store, heard


def _listener_came_back(store: RedisBackend, heard: queue.Queue[str | None]) -> None:
    """It said it may have missed messages, and it is subscribed again."""
    assert _until(lambda: _drain_until_none(heard), "a reconnect notice") is True
    assert store.hub.connected.wait(10)


@pytest.mark.slow
def test_st04_sentinel_failover_keeps_every_record() -> None:
    with RedisSentinelGroup(replicas=1, sentinels=1, down_after_ms=500) as deployment:
        store, heard = _listening(deployment.url)
        versions = {
            f"fo:tokens:{i}": store.put(f"fo:tokens:{i}", f"v{i}".encode()) for i in range(20)
        }
        assert store.hub.connected.wait(10)
        old = deployment.master
        _wait_replicated([s.port for s in deployment.servers if s is not old], 20)
        old.stop()

        found, unavailable = _read_through_failover(store, "fo:tokens:0")
        new = deployment.wait_for_failover(old)
        assert new is not old and unavailable >= 1
        assert found == (b"v0", versions["fo:tokens:0"])
        for key, version in versions.items():
            assert store.get(key) == (f"v{key.rsplit(':', 1)[1]}".encode(), version)
        # Writes go on at the new master, and versions keep growing.
        newer = store.put("fo:tokens:1", b"rotated", expected_version=versions["fo:tokens:1"])
        assert newer is not None and newer > versions["fo:tokens:1"]
        # The listener followed the master, and hears changes again.
        _listener_came_back(store, heard)
        store.delete("fo:tokens:2")
        _hear_all(heard, {"fo:tokens:2"})

        async def async_face_after_failover() -> None:
            face = AsyncRedisBackend(store)
            assert await face.get("fo:tokens:1") == (b"rotated", newer)
            await face.aclose()

        anyio.run(async_face_after_failover)
        store.close()


def _drain_until_none(events: queue.Queue[str | None]) -> bool:
    while True:
        try:
            if events.get_nowait() is None:
                return True
        except queue.Empty:
            return False


@pytest.mark.slow
def test_st04_cluster_failover_keeps_every_record() -> None:
    with RedisClusterGroup(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        store, heard = _listening(cluster.url)
        keys = [f"fo:tokens:{i}" for i in range(30)]
        versions = {key: store.put(key, key.encode()) for key in keys}
        assert store.hub.connected.wait(10)
        # The first seed node is a master: killing it takes the listener's node too.
        victim = cluster.servers[0]
        assert "role:master" in redis_cli(victim.port, "INFO", "replication")
        moved = [key for key in keys if cluster.master_for(key) is victim]
        assert moved, "some records live on the master that dies"
        replicas = [
            s.port
            for s in cluster.servers
            if "role:slave" in redis_cli(s.port, "INFO", "replication")
        ]
        _until(
            lambda: sum(int(redis_cli(port, "DBSIZE")) for port in replicas) == len(keys),
            "every record on a replica",
        )
        victim.stop()

        found, unavailable = _read_through_failover(store, moved[0])
        cluster.wait_for_failover(moved[0], victim)
        assert unavailable >= 1
        assert found == (moved[0].encode(), versions[moved[0]])
        for key in keys:
            assert store.get(key) == (key.encode(), versions[key])
        assert store.keys("fo:tokens:") == sorted(keys)
        newer = store.put(
            moved[1 % len(moved)], b"rotated", expected_version=versions[moved[1 % len(moved)]]
        )
        assert newer is not None
        # The listener moved to the next seed node and still hears every node.
        _listener_came_back(store, heard)
        for key in keys[:6]:
            store.delete(key)
        _hear_all(heard, set(keys[:6]))
        store.close()


def _wait_calls(port: int) -> int:
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("face", ["sync", "async"])
def test_replica_acks_wait_for_the_replica_and_say_when_it_is_missing(
    face: str, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisSentinelGroup(replicas=1, sentinels=1) as deployment:
        store = RedisBackend(deployment.url, namespace="ack:", timeout=1.0, replica_acks=1)
        master = deployment.master
        replica = next(s for s in deployment.servers if s is not master)
        face_of = AsyncRedisBackend(store)

        def write(key: str, value: bytes) -> int | None:
            if face == "sync":
                return store.put(key, value)

            async def scenario() -> int | None:
                written = await face_of.put(key, value)
                await face_of.aclose()
                return written

            return anyio.run(scenario)

        assert write("ack:warm-up", b"x") is not None  # loads the scripts on the server
        before = _wait_calls(master.port)
        assert write("ack:tokens:1", b"v1") is not None
        assert _wait_calls(master.port) == before + 1  # one WAIT went with the write
        replicated = redis.Redis(port=replica.port)
        try:
            assert replicated.hget("ack:tokens:1", "v") == b"v1"  # on the replica already
        finally:
            replicated.close()
        assert "store_write_not_replicated" not in caplog.text
        replica.stop()  # no replica left to acknowledge
        assert write("ack:tokens:2", b"v2") is not None  # the write still stands
        assert "store_write_not_replicated" in caplog.text
        assert "acks=0 wanted=1" in caplog.text
        store.close()


def test_replica_acks_are_refused_where_nothing_can_wait() -> None:
    from authrelay.settings import StoreSettings

    with pytest.raises(ValueError, match="replica_acks: needs"):
        StoreSettings(url="redis+cluster://n1:7000", replica_acks=1)
    with pytest.raises(ValueError, match="replica_acks: needs"):
        StoreSettings(url="sqlite:///x.db", replica_acks=1)
    assert StoreSettings(url="redis+sentinel://s1/m", replica_acks=1).replica_acks == 1
