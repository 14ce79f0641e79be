"""The verified-token cache: bearer verdicts by SHA-256 of the token, bounded, expiring.

Defends against: raw tokens kept in memory as lookup keys (keys are SHA-256 digests,
IN-05), verdicts that outlive the token (an entry expires at the token's ``exp`` or
earlier, never later), unbounded growth under a flood of distinct tokens (at most
``maxsize`` entries, oldest evicted first), and lock contention on the hot path (reads
are a single ``dict.get``; only writers take a lock).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Generic, TypeVar

from .._types import Clock

__all__ = ["TokenCache", "token_key"]

V = TypeVar("V")


def token_key(token: str) -> bytes:
    """The cache key of a token: its SHA-256 digest (never the token itself)."""
    return hashlib.sha256(token.encode()).digest()


class TokenCache(Generic[V]):
    """A bounded map ``SHA-256(token) → (expires_at, value)`` with lock-free reads.

    Each entry carries its own absolute expiry (clock seconds). Readers call
    :meth:`get` (or read :attr:`entries` directly on a hot path) and must compare the
    expiry with the clock; writers go through :meth:`put`, which evicts the oldest
    entries once ``maxsize`` is reached.
    """

    __slots__ = ("_clock", "_lock", "entries", "maxsize")

    def __init__(self, maxsize: int, *, clock: Clock = time.time) -> None:
        self.maxsize = maxsize
        self.entries: dict[bytes, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"TokenCache(size={len(self.entries)}, maxsize={self.maxsize})"

    def get(self, key: bytes) -> V | None:
        """The live value for ``key``, or None when absent or expired."""
        entry = self.entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, key: bytes, expires_at: float, value: V) -> None:
        """Store ``value`` until ``expires_at``; ignored if that is not in the future."""
        if expires_at <= self._clock():
            return
        with self._lock:
            entries = self.entries
            entries.pop(key, None)
            while len(entries) >= self.maxsize:
                del entries[next(iter(entries))]
            entries[key] = (expires_at, value)

    def discard(self, key: bytes) -> None:
        """Forget ``key``."""
        with self._lock:
            self.entries.pop(key, None)
