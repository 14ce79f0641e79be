"""The pre-auth cookie: one bounded cookie binds every pending sign-in to this browser.

Each login adds an entry ``<state tag><binding>`` (16 hex characters of SHA-256 of the
``state``, then the 256-bit binding secret whose hash the transaction record holds) to
one cookie, newest first. At most :data:`MAX_PENDING` entries are kept, the oldest
evicted, so the cookie stays under 600 bytes however many tabs start a login: parallel
tabs work (up to ten) and a user cannot be locked out by a ``Cookie`` header that grew
too large (AC-04). The callback removes its own entry.
"""

from __future__ import annotations

import hashlib
import re

from ..identity.cookies import find_cookie

__all__ = ["MAX_PENDING", "PreAuthCookie"]

MAX_PENDING = 10
"""Sign-ins pending at once in one browser; an eleventh evicts the oldest."""
_ENTRY = re.compile(r"[0-9a-f]{16}[A-Za-z0-9_-]{43}")
_TAG = 16


def state_tag(state: str) -> str:
    """The 16-hex-character tag of ``state`` (the state itself is never in the cookie)."""
    return hashlib.sha256(state.encode()).hexdigest()[:_TAG]


class PreAuthCookie:
    """Reads and writes the one pre-auth cookie ``<session cookie name>-tx``."""

    __slots__ = ("_attributes", "name")

    def __init__(self, session_cookie_name: str, attributes: str) -> None:
        self.name = f"{session_cookie_name}-tx"
        self._attributes = attributes

    def entries(self, cookie_header: str) -> list[str]:
        """The entries of the request's cookie, newest first; none if it is malformed."""
        value = find_cookie(cookie_header, self.name)
        if not value:
            return []
        entries = value.split(".")
        if len(entries) > MAX_PENDING or not all(_ENTRY.fullmatch(e) for e in entries):
            return []  # strict: only what authrelay wrote, or nothing
        return entries

    @staticmethod
    def binding(entries: list[str], state: str) -> str | None:
        """The binding secret stored for ``state``, or None."""
        tag = state_tag(state)
        for entry in entries:
            if entry[:_TAG] == tag:
                return entry[_TAG:]
        return None

    def add(self, cookie_header: str, state: str, binding: str, max_age: int) -> str:
        """The ``Set-Cookie`` line with a new entry first and the oldest beyond ten evicted."""
        entries = [state_tag(state) + binding, *self.entries(cookie_header)]
        return self._line(entries[:MAX_PENDING], max_age)

    def remove(self, entries: list[str], state: str, max_age: int) -> str | None:
        """The ``Set-Cookie`` line without ``state``'s entry; None when it had none."""
        tag = state_tag(state)
        rest = [entry for entry in entries if entry[:_TAG] != tag]
        if len(rest) == len(entries):
            return None
        return self._line(rest, max_age)

    def _line(self, entries: list[str], max_age: int) -> str:
        if not entries:
            return f"{self.name}=; Max-Age=0; {self._attributes}"
        return f"{self.name}={'.'.join(entries)}; Max-Age={max_age}; {self._attributes}"
