"""The Redis backend keeps the versioned store contract, on both faces, on a real server."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
import redis.client
from _redis_helpers import REDIS_URL, check_versioned_contract

from authrelay._crypto import KeyRing
from authrelay._io import AsyncDriver, SyncDriver
from authrelay.settings import StoreSettings
from authrelay.stores import open_backends
from authrelay.stores.base import AsyncBackend, Backend
from authrelay.stores.redis import AsyncRedisBackend, RedisBackend
from authrelay.stores.redis_scripts import parse_multi_host_url
from authrelay.stores.tokens import StoredTokens, TokenStore

pytestmark = pytest.mark.redis

KEY = b"r" * 32
CANARY_AT = "canary-access-token-5f1d"
CANARY_RT = "canary-refresh-token-9b2e"


def test_protocol_faces(backend: RedisBackend, async_backend: AsyncRedisBackend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(async_backend, AsyncBackend)


def test_cas_and_versions_never_reused(backend: RedisBackend, prefix: str) -> None:
    check_versioned_contract(backend, prefix)


def test_ttl_is_enforced_by_redis_itself(
    backend: RedisBackend, raw: redis.Redis, prefix: str
) -> None:
    key = prefix + "short"
    backend.put(key, b"x", ttl=0.2)
    backend.put(prefix + "forever", b"y", ttl=None)
    assert 0 < raw.pttl(key) <= 200
    assert raw.pttl(prefix + "forever") == -1
    # Rewriting without a TTL makes a value permanent again.
    backend.put(prefix + "later", b"z", ttl=60)
    backend.put(prefix + "later", b"z2")
    assert raw.pttl(prefix + "later") == -1
    for _ in range(200):  # wait for the server's own expiry; no process removes it
        if not raw.exists(key):
            break
        time.sleep(0.02)
    assert backend.get(key) is None
    assert backend.put(key, b"fresh", expected_version=0) is not None


def test_keys_use_scan_with_an_escaped_prefix(backend: RedisBackend, prefix: str) -> None:
    for name in ("a:1", "a:2", "ab:1", "a*:1", "b:1"):
        backend.put(prefix + name, b"v")
    assert backend.keys(prefix + "a:") == [prefix + "a:1", prefix + "a:2"]
    # Glob characters in a prefix are literal, never a pattern.
    assert backend.keys(prefix + "a*") == [prefix + "a*:1"]
    assert len(backend.keys(prefix)) == 5


def test_async_face_same_contract(async_backend: AsyncRedisBackend, prefix: str) -> None:
    async def scenario() -> None:
        key = prefix + "k"
        assert await async_backend.get(key) is None
        v1 = await async_backend.put(key, b"one", expected_version=0, ttl=30)
        assert v1 is not None
        assert await async_backend.put(key, b"dup", expected_version=0) is None
        assert await async_backend.get(key) == (b"one", v1)
        assert await async_backend.keys(prefix) == [key]
        assert await async_backend.delete(key, expected_version=v1 + 1) is False
        assert await async_backend.delete(key, expected_version=v1) is True
        v2 = await async_backend.put(key, b"two", expected_version=0)
        assert v2 is not None and v2 > v1
        await async_backend.aclose()

    anyio.run(scenario)


def test_sync_and_async_faces_see_one_store(
    backend: RedisBackend, async_backend: AsyncRedisBackend, prefix: str
) -> None:
    version = backend.put(prefix + "shared", b"from-sync")

    async def scenario() -> None:
        assert await async_backend.get(prefix + "shared") == (b"from-sync", version)
        assert await async_backend.put(prefix + "shared", b"x", expected_version=version)
        await async_backend.aclose()

    anyio.run(scenario)
    assert backend.get(prefix + "shared")[0] == b"x"  # type: ignore[index]


def _tokens() -> StoredTokens:
    return StoredTokens(
        connector="github",
        target="github",
        access_token=CANARY_AT,
        refresh_token=CANARY_RT,
        expires_at=time.time() + 3600,
    )


def test_st01_sealed_at_rest_in_raw_redis(raw: redis.Redis, prefix: str) -> None:
    sync, _ = open_backends(StoreSettings(url=REDIS_URL, key_prefix=prefix))
    store = TokenStore(KeyRing([KEY], "authrelay-store-v1"), prefix=prefix)
    with httpx.Client() as client:
        driver = SyncDriver(client, sync)
        assert driver.run(store.save_tokens("alice", _tokens(), expected_version=0))
        record, _version = driver.run(store.load_tokens("alice", "github", None))
    assert record is not None and record.refresh_token == CANARY_RT
    names = list(raw.scan_iter(match=prefix + "*"))
    assert names
    everything = b""
    for name in names:
        assert isinstance(name, bytes)
        # ST-06: key names carry digests, never a user id or a token
        assert b"alice" not in name and b"canary" not in name
        if raw.type(name) == b"hash":
            fields: dict[bytes, bytes] = raw.hgetall(name)  # type: ignore[assignment]
            everything += b"".join(k + v for k, v in fields.items())
        else:
            value = raw.get(name)
            everything += value if isinstance(value, bytes) else b""
    assert everything
    assert b"canary" not in everything  # INV-1: no plaintext token in Redis
    sync.close()


def test_st01_sealed_at_rest_async_driver(raw: redis.Redis, prefix: str) -> None:
    _, asynchronous = open_backends(StoreSettings(url=REDIS_URL, key_prefix=prefix))
    store = TokenStore(KeyRing([KEY], "authrelay-store-v1"), prefix=prefix)

    async def scenario() -> StoredTokens | None:
        async with httpx.AsyncClient() as client:
            driver = AsyncDriver(client, asynchronous)
            await driver.run(store.save_tokens("bob", _tokens(), expected_version=0))
            record, _ = await driver.run(store.load_tokens("bob", "github", None))
        await asynchronous.aclose()
        return record

    record = anyio.run(scenario)
    assert record is not None and record.access_token == CANARY_AT
    key = store.tokens_key("bob", "github")
    sealed = raw.hget(key, "v")
    assert sealed and b"canary" not in sealed


def test_repr_never_shows_credentials() -> None:
    store = RedisBackend("redis://user:hunter2-secret@127.0.0.1:6379/3?ssl_cert_reqs=none")
    assert "hunter2" not in repr(store)
    assert "hunter2" not in repr(AsyncRedisBackend(store))
    assert "127.0.0.1:6379/3" in repr(store)


def test_sentinel_url_is_parsed_without_leaking_the_password() -> None:
    target = parse_multi_host_url(
        "redis+sentinel://app:s3cr%40t@10.0.0.1:26379,[::1]:26380,[::2]/mymaster/2?ssl=true"
    )
    assert target.kind == "sentinel"
    assert target.hosts == (("10.0.0.1", 26379), ("::1", 26380), ("::2", 26379))
    assert (target.service, target.db, target.username) == ("mymaster", 2, "app")
    assert target.password == "s3cr@t" and target.ssl is True
    assert "s3cr" not in repr(target)
    assert parse_multi_host_url("redis+sentinel://h/svc").hosts == (("h", 26379),)
    assert parse_multi_host_url("rediss+sentinel://h/svc").ssl is True
    with pytest.raises(ValueError, match="no service"):
        parse_multi_host_url("redis+sentinel://h:26379")
    with pytest.raises(ValueError, match="not a number"):
        parse_multi_host_url("redis+sentinel://h:port/svc")
    store = RedisBackend("redis+sentinel://:pw-canary@h:26379/svc")
    assert "pw-canary" not in repr(store)


def test_cluster_url_is_parsed_without_leaking_the_password() -> None:
    target = parse_multi_host_url("rediss+cluster://ops:pw-canary@n1:7000,n2,[fd00::3]:7002")
    assert target.kind == "cluster" and target.ssl is True
    assert target.hosts == (("n1", 7000), ("n2", 6379), ("fd00::3", 7002))
    assert (target.username, target.password, target.db) == ("ops", "pw-canary", 0)
    assert "pw-canary" not in repr(target)
    assert "pw-canary" not in repr(RedisBackend("redis+cluster://:pw-canary@n1:7000"))
    assert parse_multi_host_url("redis+cluster://n1:7000/0").db == 0
    with pytest.raises(ValueError, match="database 0 only"):
        parse_multi_host_url("redis+cluster://n1:7000/2")


def test_store_settings_refuse_a_malformed_multi_host_url_at_start() -> None:
    with pytest.raises(ValueError, match="database 0 only"):
        StoreSettings(url="redis+cluster://n1:7000/5")
    with pytest.raises(ValueError, match="no service"):
        StoreSettings(url="redis+sentinel://s1:26379")
    assert StoreSettings(url="rediss+cluster://n1:7000,n2:7001").url.startswith("rediss+")
