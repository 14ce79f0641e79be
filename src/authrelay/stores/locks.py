"""Cross-process locks and single-flight as sans-IO flows over the versioned store.

``_io.Shared`` makes one cold key cost one call *within a process*; these flows make it
one call *across processes and hosts* sharing a store (RT-02). They use only the backend
protocol (``put`` with ``expected_version=0`` and a TTL, ``delete`` with an expected
version, ``get``), so they work unchanged on every backend:

- Redis: the ``put`` is one Lua script, the ``SET NX PX`` pattern; the TTL is a
  ``PEXPIRE`` that Redis enforces even if every process dies;
- SQLite: the ``put`` runs under ``BEGIN IMMEDIATE``; an expired lock reads as absent;
- memory: a dictionary under a thread lock (one process: the lock is then redundant
  with ``Shared``, and harmless).

Rules (each checked by the tests):

1. A lock is a record ``put`` only if absent, with a TTL: a holder that dies (crash,
   ``kill -9``, lost host) never wedges the key; the lock is free again after ``ttl``.
2. The lock's version is its *fencing token*: versions only grow, so a holder whose lock
   expired and was taken by someone else cannot release the new holder's lock (release
   is a delete *at that version*), and
3. the protected data is written with compare-and-set at the version read *under the
   lock*: a late writer (its lock expired while it was stalled) holds a stale version
   and its write fails instead of overwriting a newer value (ST-10, INV-4).
4. Waiting is bounded: waiters poll with backoff (a ``Sleep`` effect, so tests drive
   time) and give up with :class:`~authrelay.errors.TokenStoreUnavailable` (503 with
   ``Retry-After``) after the wait budget, which by default outlasts the lock TTL.
5. After the lock, the holder reads the store again before doing any work: a waiter
   that wins the lock after the first holder finished finds its result and makes no
   second call (the "re-check freshness after waiting" lesson).

Lock values hold a random owner id, never a secret; lock keys are chosen by callers and,
like every key, must hold digests rather than raw user ids or tokens (ST-06).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .._crypto import random_token
from .._io import Flow, Sleep, StoreOp
from ..errors import TokenStoreUnavailable

__all__ = [
    "LockToken",
    "acquire_lock",
    "release_lock",
    "single_flight",
    "wait_for_change",
]

logger = logging.getLogger("authrelay.store.locks")

T = TypeVar("T")

FIRST_POLL = 0.02
"""First wait between polls, in seconds (doubles up to :data:`MAX_POLL`)."""
MAX_POLL = 0.25
"""Longest wait between polls while another process holds a lock."""


@dataclass(frozen=True, slots=True)
class LockToken:
    """Proof of holding the lock at ``key``; ``fence`` is the lock record's version."""

    key: str
    owner: str
    fence: int


def acquire_lock(key: str, ttl: float) -> Flow[LockToken | None]:
    """Take the lock at ``key`` for at most ``ttl`` seconds; None when someone holds it."""
    if ttl <= 0:
        raise ValueError("a lock needs a positive ttl")
    owner = random_token(16)
    fence: int | None = yield StoreOp(
        "put", (key, owner.encode()), {"ttl": ttl, "expected_version": 0}
    )
    if fence is None:
        return None
    return LockToken(key, owner, int(fence))


def release_lock(token: LockToken) -> Flow[bool]:
    """Give the lock back; False when it had expired (and maybe been taken by another)."""
    released: bool = yield StoreOp("delete", (token.key,), {"expected_version": token.fence})
    if not released:
        logger.warning("lock_expired_before_release fence=%d", token.fence)
    return bool(released)


def wait_for_change(key: str, version: int, timeout: float) -> Flow[int]:
    """Poll ``key`` until its version is not ``version`` (0 = absent) or ``timeout`` is spent.

    Returns the version last seen (0 when absent): equal to ``version`` means it did not
    change in time. The time budget is the sum of the ``Sleep`` effects, so a test driver
    controls it without a clock.
    """
    waited, delay = 0.0, FIRST_POLL
    while True:
        current: tuple[bytes, int] | None = yield StoreOp("get", (key,))
        seen = 0 if current is None else int(current[1])
        if seen != version or waited >= timeout:
            return seen
        step = min(delay, timeout - waited)
        yield Sleep(step)
        waited += step
        delay = min(delay * 2, MAX_POLL)


def single_flight(
    lock: str,
    *,
    read: Callable[[], Flow[T | None]],
    produce: Callable[[], Flow[T]],
    ttl: float = 30.0,
    wait: float | None = None,
) -> Flow[T]:
    """Across processes, run ``produce`` at most once at a time for ``lock``.

    ``read()`` returns a usable result from the store or None (missing or stale);
    ``produce()`` does the expensive work (a token request) and writes its result to the
    store with compare-and-set at the version it read. Everyone else waits for the lock
    to be released and then finds the result with ``read()``. ``wait`` (default
    ``ttl + 5``) bounds the wait; past it :class:`TokenStoreUnavailable` is raised.
    """
    budget = ttl + 5.0 if wait is None else wait
    waited, delay = 0.0, FIRST_POLL
    while True:
        found = yield from read()
        if found is not None:
            return found
        token = yield from acquire_lock(lock, ttl)
        if token is not None:
            result: T = yield from _holding(token, read, produce)
            return result
        if waited >= budget:
            raise TokenStoreUnavailable(
                "another worker is still working on this credential", retry_after=1
            )
        holder: tuple[bytes, int] | None = yield StoreOp("get", (lock,))
        if holder is None:
            continue  # released between our attempt and now: read again at once
        step = min(delay, max(budget - waited, FIRST_POLL))
        yield Sleep(step)
        waited += step
        delay = min(delay * 2, MAX_POLL)


def _holding(
    token: LockToken, read: Callable[[], Flow[T | None]], produce: Callable[[], Flow[T]]
) -> Flow[T]:
    try:
        found = yield from read()  # rule 5: someone may have finished just before us
        result = found if found is not None else (yield from produce())
    except GeneratorExit:
        raise  # the flow was abandoned; the lock's TTL frees the key (rule 1)
    except BaseException:
        yield from _release_quietly(token)
        raise
    yield from _release_quietly(token)
    return result


def _release_quietly(token: LockToken) -> Flow[None]:
    try:
        yield from release_lock(token)
    except TokenStoreUnavailable:
        logger.warning("lock_release_failed fence=%d; it expires by its ttl", token.fence)
