"""SQLite storage (``sqlite:///path/to/authrelay.db``): one file, several worker processes.

Defends against:

- lost updates between processes: every compare-and-set runs inside
  ``BEGIN IMMEDIATE`` (the database's write lock), so a check and its write are one
  step; versions only grow, even across deletes (a tombstone keeps the version), so a
  stale writer can never match again (RT-01, RT-02, ST-10);
- half-written values: each operation is one transaction, committed or rolled back;
- the event loop blocking on disk (ST-08): the async face runs each call in a worker
  thread (``anyio.to_thread``); waits on the lock are bounded by a 5 s busy timeout;
- a database error read as "no token" (ST-04): every ``sqlite3`` error becomes
  :class:`~authrelay.errors.TokenStoreUnavailable`, never ``None``.

The file holds only sealed values (the layers above encrypt before writing). The schema
is versioned in ``authrelay_meta`` and migrated forward at open.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from .._types import Clock
from ..errors import TokenStoreUnavailable
from .base import Versioned

__all__ = ["SCHEMA_VERSION", "AsyncSQLiteBackend", "SQLiteBackend", "path_from_url"]

logger = logging.getLogger("authrelay.store.sqlite")

T = TypeVar("T")

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 5000
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS authrelay_kv ("
        " key TEXT PRIMARY KEY,"
        " value BLOB,"  # NULL: a tombstone that keeps the version growing
        " version INTEGER NOT NULL,"
        " expires_at REAL)",
        "CREATE INDEX IF NOT EXISTS authrelay_kv_expires ON authrelay_kv(expires_at)",
    ),
}


def path_from_url(url: str) -> str:
    """The file path in ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
    if not url.startswith("sqlite:///"):
        raise ValueError("a SQLite store url starts with sqlite:///")
    path = url[len("sqlite:///") :]
    if not path:
        raise ValueError("the SQLite store url names no file")
    return path


class SQLiteBackend:
    """A versioned key-value table in a SQLite file (WAL mode), one connection per thread."""

    def __init__(self, path: str | Path, *, clock: Clock = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._guard(self._migrate)

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={self.path!r})"

    # -- plumbing -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # explicit BEGIN / COMMIT below
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _guard(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connection()
            return operation(conn)
        except sqlite3.Error as exc:
            logger.error("sqlite_store_error path=%s error=%s", self.path, type(exc).__name__)
            raise TokenStoreUnavailable("the token store is unavailable", retry_after=2) from None

    @staticmethod
    def _transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _migrate(self, conn: sqlite3.Connection) -> None:
        def body() -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS authrelay_meta (name TEXT PRIMARY KEY, value TEXT)"
            )
            row = conn.execute(
                "SELECT value FROM authrelay_meta WHERE name = 'schema_version'"
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise sqlite3.DatabaseError("the database was written by a newer authrelay")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                logger.info("sqlite_store_migrated path=%s version=%d", self.path, version)
            conn.execute(
                "INSERT OR REPLACE INTO authrelay_meta (name, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

        self._transaction(conn, body)

    def _row(self, conn: sqlite3.Connection, key: str) -> tuple[bytes | None, int, float | None]:
        row = conn.execute(
            "SELECT value, version, expires_at FROM authrelay_kv WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None, 0, None
        value, version, expires = row
        if value is not None and expires is not None and expires <= self._clock():
            value = None
        return value, int(version), expires

    # -- the protocol -------------------------------------------------------------------

    def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""

        def operation(conn: sqlite3.Connection) -> Versioned | None:
            value, version, _ = self._row(conn, key)
            return None if value is None else (bytes(value), version)

        return self._guard(operation)

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""

        def operation(conn: sqlite3.Connection) -> int | None:
            def body() -> int | None:
                current, version, _ = self._row(conn, key)
                live_version = version if current is not None else 0
                if expected_version is not None and expected_version != live_version:
                    return None
                new_version = version + 1
                expires = None if ttl is None else self._clock() + ttl
                conn.execute(
                    "INSERT INTO authrelay_kv (key, value, version, expires_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                    " value = excluded.value, version = excluded.version,"
                    " expires_at = excluded.expires_at",
                    (key, value, new_version, expires),
                )
                return new_version

            return self._transaction(conn, body)

        return self._guard(operation)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""

        def operation(conn: sqlite3.Connection) -> bool:
            def body() -> bool:
                current, version, _ = self._row(conn, key)
                if current is None:
                    return False
                if expected_version is not None and expected_version != version:
                    return False
                conn.execute(
                    "UPDATE authrelay_kv SET value = NULL, expires_at = NULL, version = ?"
                    " WHERE key = ?",
                    (version + 1, key),
                )
                return True

            return self._transaction(conn, body)

        return self._guard(operation)

    def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys`."""
        upper = prefix + "\U0010ffff"

        def operation(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key FROM authrelay_kv WHERE key >= ? AND key < ? AND value IS NOT NULL"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (prefix, upper, self._clock()),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return self._guard(operation)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._all = self._all, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                logger.warning("sqlite_close_failed path=%s", self.path)


class AsyncSQLiteBackend:
    """The async face: each call runs in a worker thread, never on the event loop (ST-08)."""

    def __init__(self, backend: SQLiteBackend) -> None:
        self.sync = backend

    def __repr__(self) -> str:
        return f"AsyncSQLiteBackend({self.sync!r})"

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))

    async def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""
        return await self._run(self.sync.get, key)

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""
        return await self._run(
            self.sync.put, key, value, ttl=ttl, expected_version=expected_version
        )

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        return await self._run(self.sync.delete, key, expected_version=expected_version)

    async def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys`."""
        return await self._run(self.sync.keys, prefix)

    async def aclose(self) -> None:
        """Close connections (in a worker thread)."""
        await self._run(self.sync.close)
