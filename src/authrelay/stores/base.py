"""The storage protocol: a small versioned key-value interface every backend implements.

Backends (memory, SQLite, Redis) store opaque, already-encrypted bytes; the typed,
sealed records on top of them are written once as sans-IO flows (``stores.sessions``,
``stores.tokens``). Each backend has a sync face (:class:`Backend`, used by the WSGI
shell) and an async face (:class:`AsyncBackend`, used by the ASGI shell, never blocking
the event loop: ST-08).

Versions make compare-and-set possible (ST-10, RT-01): every write bumps a key's
version; a write with ``expected_version`` succeeds only if the key is at that version
(``0`` means "must not exist"). A lost race returns ``None`` and changes nothing.

Failures to reach the backend raise :class:`~authrelay.errors.TokenStoreUnavailable`,
which is never confused with a miss (ST-04).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AsyncBackend", "Backend", "Versioned"]

Versioned = tuple[bytes, int]
"""A stored value and its version (≥ 1)."""


@runtime_checkable
class Backend(Protocol):
    """Synchronous versioned key-value storage."""

    def get(self, key: str) -> Versioned | None:
        """The value and version at ``key``, or None when absent or expired."""

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """Write ``value``; the new version, or None if ``expected_version`` did not match."""

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Remove ``key``; False if absent or at another version than expected."""

    def keys(self, prefix: str) -> list[str]:
        """Every live key starting with ``prefix`` (bounded use: one user's records)."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class AsyncBackend(Protocol):
    """The same operations, awaitable (ASGI)."""

    async def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""

    async def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys`."""

    async def aclose(self) -> None:
        """Release connections."""
