"""In-process storage (``memory://``): the default, and what tests and the demo use.

Thread-safe (one lock, held only for dictionary operations) so a threaded WSGI server
and the event loop can share it. Its async face calls straight through: nothing here
blocks, so there is no thread hop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .base import Versioned

__all__ = ["AsyncMemoryBackend", "MemoryBackend"]


class MemoryBackend:
    """A versioned dictionary with per-key expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._data: dict[str, tuple[bytes, int, float | None]] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def __repr__(self) -> str:
        return f"MemoryBackend(keys={len(self._data)})"

    def _live(self, key: str) -> tuple[bytes, int, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[2] is not None and entry[2] <= self._clock():
            del self._data[key]
            return None
        return entry

    def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""
        with self._lock:
            entry = self._live(key)
            return None if entry is None else (entry[0], entry[1])

    def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""
        with self._lock:
            entry = self._live(key)
            current = 0 if entry is None else entry[1]
            if expected_version is not None and expected_version != current:
                return None
            # Versions only grow, even across delete, so a stale writer can never match.
            version = max(current, self._versions.get(key, 0)) + 1
            self._versions[key] = version
            expires = None if ttl is None else self._clock() + ttl
            self._data[key] = (value, version, expires)
            return version

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        with self._lock:
            entry = self._live(key)
            if entry is None or (expected_version is not None and entry[1] != expected_version):
                return False
            del self._data[key]
            return True

    def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys`."""
        with self._lock:
            return [key for key in list(self._data) if key.startswith(prefix) and self._live(key)]

    def close(self) -> None:
        """Nothing to release."""


class AsyncMemoryBackend:
    """The async face of a :class:`MemoryBackend` (shares its data)."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.sync = backend

    def __repr__(self) -> str:
        return f"AsyncMemoryBackend({self.sync!r})"

    async def get(self, key: str) -> Versioned | None:
        """See :meth:`Backend.get`."""
        return self.sync.get(key)

    async def put(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int | None:
        """See :meth:`Backend.put`."""
        return self.sync.put(key, value, ttl=ttl, expected_version=expected_version)

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """See :meth:`Backend.delete`."""
        return self.sync.delete(key, expected_version=expected_version)

    async def keys(self, prefix: str) -> list[str]:
        """See :meth:`Backend.keys`."""
        return self.sync.keys(prefix)

    async def aclose(self) -> None:
        """Nothing to release."""
