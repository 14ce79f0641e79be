"""ST-08: store operations are bounded (Redis 500 ms, SQLite 5 s busy timeout) and the
SQLite store never blocks the event loop under ASGI."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sec_helpers import base_settings, oidc_connector, serve_app

from authrelay import Settings
from authrelay.stores.sqlite import SQLiteBackend
from authrelay.testing import IdentityProvider


def test_st08_default_timeouts() -> None:
    settings = Settings.model_validate({"secret_keys": ["k" * 32]})
    assert settings.store.timeout == 0.5
    from authrelay.stores.redis import RedisBackend

    assert RedisBackend("redis://127.0.0.1:6379/0").timeout == 0.5


def test_st08_sqlite_connections_wait_five_seconds_for_the_lock(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "s.db")
    try:
        backend.put("k", b"v")
        conn = backend._connection()  # the connection its operations use
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    finally:
        backend.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_st08_hung_redis_gives_503_not_a_hang(
    idp: IdentityProvider, shell: str, silent_port: int
) -> None:
    def settings(base: str) -> Settings:
        return base_settings(
            base,
            {"idp": oidc_connector(idp.issuer)},
            store={"url": f"redis://127.0.0.1:{silent_port}/0"},
        )

    with serve_app(settings, shell=shell) as app:
        answer = app.client.get(
            f"{app.base}/auth/idp/login", headers={"accept": "application/json"}
        )
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"
    assert int(answer.headers["retry-after"]) > 0


def test_st08_sqlite_write_blocked_by_a_lock_does_not_block_the_loop(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"

    def settings(base: str) -> Settings:
        return base_settings(
            base, {"idp": oidc_connector(idp.issuer)}, store={"url": f"sqlite:///{db}"}
        )

    with serve_app(settings) as app:
        backend = app.relay.async_backend.sync  # type: ignore[attr-defined]
        assert isinstance(backend, SQLiteBackend)
        entered = threading.Event()
        original_put = backend.put

        def watched_put(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            return original_put(*args, **kwargs)

        backend.put = watched_put  # type: ignore[method-assign]
        holder = sqlite3.connect(db, isolation_level=None, timeout=0)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        results: list[httpx.Response] = []

        def start_login() -> None:
            with httpx.Client(timeout=30) as other:
                results.append(
                    other.get(f"{app.base}/auth/idp/login", headers={"accept": "application/json"})
                )

        login = threading.Thread(target=start_login)
        login.start()
        try:
            assert entered.wait(10), "the login never reached the store"
            # The write is stuck on the lock; the loop still serves other requests.
            for _ in range(3):
                assert app.get("/page").status_code == 200
                assert app.get("/auth/connectors").status_code == 200
            assert results == [], "the write finished while the lock was held"
        finally:
            login.join(30)  # the 5 s busy timeout ends it
        assert results[0].status_code == 503
        assert results[0].json()["error"] == "temporarily_unavailable"
        holder.execute("ROLLBACK")
        holder.close()
        # Lock released: the same request works.
        assert app.get("/auth/idp/login").status_code == 302
