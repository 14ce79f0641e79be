"""A clock the test moves by hand."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A wall clock for tests: ``clock()`` returns the time, which moves only when told.

    Pass it wherever authrelay takes a clock (``Relay(settings, clock=clock)``,
    ``IdentityProvider(clock=clock)``) and move it with :meth:`advance` or :meth:`set`.
    Safe to read and move from several threads (a served app and the test).

    >>> clock = FakeClock(1_700_000_000.0)
    >>> clock.advance(90)
    1700000090.0
    >>> clock()
    1700000090.0
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = float(now)

    def __repr__(self) -> str:
        return f"FakeClock({self()!r})"

    def __call__(self) -> float:
        """The current time, in seconds since the epoch."""
        with self._lock:
            return self._now

    @property
    def now(self) -> float:
        """The current time (same as calling the clock); assigning it calls :meth:`set`."""
        return self()

    @now.setter
    def now(self, value: float) -> None:
        self.set(value)

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back, with a negative value); return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Put the clock at ``now``."""
        with self._lock:
            self._now = float(now)
