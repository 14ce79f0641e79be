"""SQLite backend: versioned CAS, WAL across processes, schema migration, failures → 503."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import anyio
import pytest

from authrelay._crypto import KeyRing
from authrelay._io import SyncDriver
from authrelay.errors import TokenStoreUnavailable
from authrelay.settings import StoreSettings
from authrelay.stores import open_backends
from authrelay.stores.sqlite import SCHEMA_VERSION, AsyncSQLiteBackend, SQLiteBackend
from authrelay.stores.tokens import StoredTokens, TokenStore
from authrelay.testing import FakeClock

KEY = b"s" * 32


def test_put_get_versions_and_cas(tmp_path: Path) -> None:
    store = SQLiteBackend(tmp_path / "a.db")
    assert store.get("k") is None
    v1 = store.put("k", b"one", expected_version=0)
    assert v1 == 1
    assert store.put("k", b"dup", expected_version=0) is None
    assert store.get("k") == (b"one", 1)
    assert store.put("k", b"two", expected_version=1) == 2
    assert store.put("k", b"stale", expected_version=1) is None
    assert store.delete("k", expected_version=1) is False
    assert store.delete("k", expected_version=2) is True
    assert store.get("k") is None
    # versions keep growing across delete: a stale writer never matches again
    assert store.put("k", b"again", expected_version=0) == 4
    store.close()


def test_ttl_uses_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    store = SQLiteBackend(tmp_path / "t.db", clock=clock)
    store.put("a:1", b"x", ttl=10)
    store.put("a:2", b"y")
    assert sorted(store.keys("a:")) == ["a:1", "a:2"]
    clock.advance(11)
    assert store.get("a:1") is None
    assert store.keys("a:") == ["a:2"]
    store.close()


def test_schema_is_versioned_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    SQLiteBackend(path).close()
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT value FROM authrelay_meta WHERE name='schema_version'"
        ).fetchone()
        assert int(row[0]) == SCHEMA_VERSION
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again = SQLiteBackend(path)
    again.put("k", b"v")
    assert again.get("k") == (b"v", 1)
    again.close()


def test_st04_newer_schema_or_broken_file_is_unavailable_not_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteBackend(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE authrelay_meta SET value='999' WHERE name='schema_version'")
    with pytest.raises(TokenStoreUnavailable):
        SQLiteBackend(path)
    store = SQLiteBackend(tmp_path / "ok.db")
    store.close()
    with pytest.raises(TokenStoreUnavailable):
        store.get("k")


def test_open_backends_sqlite_url(tmp_path: Path) -> None:
    sync, asynchronous = open_backends(StoreSettings(url=f"sqlite:///{tmp_path}/x.db"))
    assert isinstance(sync, SQLiteBackend)
    assert isinstance(asynchronous, AsyncSQLiteBackend)
    sync.put("k", b"v")

    async def read() -> object:
        return await asynchronous.get("k")

    assert anyio.run(read) == (b"v", 1)
    sync.close()


def _writer(path: str, worker: int, rounds: int) -> None:
    import httpx

    store = TokenStore(KeyRing([KEY], "authrelay-store-v1"))
    backend = SQLiteBackend(path)
    driver = SyncDriver(httpx.Client(), backend)
    for i in range(rounds):
        while True:
            record, version = driver.run(store.load_tokens("alice", "github", None))
            assert record is not None
            updated = StoredTokens(
                connector="github",
                target="github",
                refresh_token=f"rt-{worker}-{i}",
                scopes=(*record.scopes, f"w{worker}-{i}"),
            )
            if driver.run(store.save_tokens("alice", updated, expected_version=version)):
                break
    backend.close()


def test_st_two_processes_writing_one_users_tokens_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    import httpx

    backend = SQLiteBackend(path)
    store = TokenStore(KeyRing([KEY], "authrelay-store-v1"))
    driver = SyncDriver(httpx.Client(), backend)
    first = StoredTokens(connector="github", target="github", refresh_token="rt-0")
    assert driver.run(store.save_tokens("alice", first, expected_version=0)) == 1
    ctx = multiprocessing.get_context("spawn")
    rounds = 40
    workers = [ctx.Process(target=_writer, args=(path, w, rounds)) for w in range(2)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    record, version = driver.run(store.load_tokens("alice", "github", None))
    assert record is not None
    assert len(record.scopes) == 2 * rounds
    assert set(record.scopes) == {f"w{w}-{i}" for w in range(2) for i in range(rounds)}
    assert version == 1 + 2 * rounds
    raw = Path(path).read_bytes()
    assert b"rt-" not in raw  # INV-1: sealed at rest
    backend.close()
