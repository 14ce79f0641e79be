"""The in-process token cache: access tokens by key, bounded, expiring early.

Defends against (ST-06, ST-07, TX-03, TX-04):

- tokens served past their expiry: an entry is used only until ``expires_at - margin``
  and never past ``expires_at``; the caller passes an ``expires_at`` that is already the
  minimum of what backs the token (a subject token's ``exp`` for exchanged tokens);
- raw tokens as keys: keys are tuples of names, scopes and SHA-256 digests built by the
  service layer, never a token;
- unbounded growth: at most ``maxsize`` entries and ``max_bytes`` of token material;
  expired entries go first, then the oldest;
- lock contention on the hot path: a hit is one ``dict.get`` and one comparison with
  the clock; only writers take the lock;
- an identity-provider outage turning into a request storm: a failure is remembered for
  a short window (:meth:`fail`) and raised again without a new request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from .._types import Clock
from .model import AccessToken

__all__ = ["CachedToken", "TokenCache", "use_until"]

_ENTRY_OVERHEAD = 360
"""Approximate bytes an entry costs beyond its strings (tuple key, slots object, dict slot)."""


class CachedToken:
    """A cached token with its ready-made header value."""

    __slots__ = ("expires_at", "header", "size", "token", "use_until")

    def __init__(self, token: AccessToken, header: str, use_until: float) -> None:
        self.token = token
        self.header = header
        self.use_until = use_until
        self.expires_at = token.expires_at
        self.size = _ENTRY_OVERHEAD + 2 * len(token.value) + len(header)

    def __repr__(self) -> str:
        return f"CachedToken({self.token!r}, use_until={self.use_until!r})"


def use_until(now: float, expires_at: float, margin: float) -> float:
    """When to stop using a token: ``margin`` before expiry, or halfway for short tokens."""
    lifetime = expires_at - now
    return expires_at - min(margin, lifetime / 2)


class TokenCache:
    """A bounded map ``key → CachedToken`` with lock-free reads, plus a negative cache."""

    __slots__ = (
        "_bytes",
        "_lock",
        "_until_sweep",
        "clock",
        "entries",
        "failures",
        "max_bytes",
        "maxsize",
    )

    def __init__(self, maxsize: int, max_bytes: int, *, clock: Clock = time.time) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.clock = clock
        self.entries: dict[Hashable, CachedToken] = {}
        self.failures: dict[Hashable, tuple[float, BaseException]] = {}
        self._bytes = 0
        self._until_sweep = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"TokenCache(size={len(self.entries)}, bytes={self._bytes})"

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the entries."""
        return self._bytes

    def header(self, key: Hashable) -> str | None:
        """The header value of a fresh entry for ``key``, else None (the hot path)."""
        entry = self.entries.get(key)
        if entry is not None and entry.use_until > self.clock():
            return entry.header
        return None

    def get(self, key: Hashable) -> CachedToken | None:
        """The fresh entry for ``key``, or None."""
        entry = self.entries.get(key)
        if entry is not None and entry.use_until > self.clock():
            return entry
        return None

    def put(
        self,
        key: Hashable,
        token: AccessToken,
        header: str,
        margin: float,
        *,
        until: float | None = None,
    ) -> CachedToken:
        """Cache ``token`` for ``key``; return the entry (also when too short-lived to keep).

        ``until`` is a use-until time decided elsewhere (a token another process acquired
        and shared through the store); it never extends past the token's expiry.
        """
        now = self.clock()
        if until is None:
            until = use_until(now, token.expires_at, margin)
        entry = CachedToken(token, header, min(until, token.expires_at))
        if entry.use_until <= now or entry.size > self.max_bytes:
            return entry
        with self._lock:
            self.failures.pop(key, None)
            old = self.entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._make_room(entry.size, now)
            self.entries[key] = entry
            self._bytes += entry.size
        return entry

    def _make_room(self, size: int, now: float) -> None:
        entries = self.entries
        if len(entries) >= self.maxsize or self._bytes + size > self.max_bytes:
            # Sweeping expired entries scans the whole cache: once per len/4 puts into a
            # full cache, so a put stays O(1) amortized (10⁶ entries would be 10⁶ per put).
            if self._until_sweep <= 0:
                for stale in [k for k, e in entries.items() if e.expires_at <= now]:
                    self._bytes -= entries.pop(stale).size
                self._until_sweep = len(entries) // 4
            else:
                self._until_sweep -= 1
        while entries and (len(entries) >= self.maxsize or self._bytes + size > self.max_bytes):
            self._bytes -= entries.pop(next(iter(entries))).size

    def discard(self, key: Hashable, header: str | None = None) -> None:
        """Forget ``key``; with ``header``, only if the entry still holds that header.

        A 401 for an old token must not throw away the fresher one another request
        already put in its place.
        """
        with self._lock:
            entry = self.entries.get(key)
            if entry is not None and (header is None or entry.header == header):
                del self.entries[key]
                self._bytes -= entry.size

    def fail(self, key: Hashable, error: BaseException, ttl: float) -> None:
        """Remember that acquiring ``key`` failed with ``error``, for ``ttl`` seconds."""
        if ttl <= 0:
            return
        with self._lock:
            if len(self.failures) >= self.maxsize:
                self.failures.clear()
            self.failures[key] = (self.clock() + ttl, error)

    def failure(self, key: Hashable) -> BaseException | None:
        """The remembered failure for ``key``, if its window is still open."""
        item = self.failures.get(key)
        if item is None:
            return None
        if item[0] <= self.clock():
            with self._lock:
                self.failures.pop(key, None)
            return None
        return item[1]

    def clear(self) -> None:
        """Forget every entry and failure."""
        with self._lock:
            self.entries.clear()
            self.failures.clear()
            self._bytes = 0
