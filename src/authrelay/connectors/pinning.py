"""Token sets the store refused to take, kept in the process until it does (ST-09).

Defends against losing a rotated refresh token (INV-4): once a refresh succeeded, the
provider has spent the old refresh token, so the new set is the only way back in. When
the store cannot take it (outage, timeout), the set is *pinned* here (a plain dict, not
a cache: nothing evicts it) and every later read for that (user, connector) uses it and
first tries to write it. A pin is dropped, never written, when the stored record moved
on without it (logout or reauthorization deleted it, ST-10; another worker rotated
further): a pin never resurrects tokens or overwrites a newer set.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass

from .._io import Flow, Sleep
from ..errors import TokenStoreUnavailable
from ..stores.tokens import StoredTokens, TokenStore
from .connector import Connector

__all__ = ["PERSIST_ATTEMPTS", "UNWRITTEN", "PinnedTokens"]

logger = logging.getLogger("authrelay.connectors.tokens")

UNWRITTEN = -1
"""The version of a set read from a pin: no stored record has it, so a compare-and-set
against it never matches and the writer knows to pin again."""


PERSIST_ATTEMPTS = 20
"""Background writes of a pinned set (backoff 0.5 s doubling to 60 s: about 14 minutes);
after that the next read for the pair tries again."""
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class _Pin:
    tokens: StoredTokens
    replaces: str | None
    """The refresh token of the stored record this set supersedes."""


class PinnedTokens:
    """Pinned token sets per (user, connector), and the flows that persist them."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self._pins: dict[tuple[str, str], _Pin] = {}
        self._writers: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PinnedTokens(pinned={len(self._pins)})"

    def __len__(self) -> int:
        return len(self._pins)

    def __contains__(self, key: object) -> bool:
        return key in self._pins

    def pin(self, user: str, tokens: StoredTokens, *, base: str | None) -> bool:
        """Keep ``tokens`` until written; ``base`` is the refresh token it replaced.

        True when no background writer runs for the pair yet: the caller starts one
        with :meth:`persist_later`.
        """
        key = (user, tokens.connector)
        previous = self._pins.get(key)
        # Refreshed from a pin: the store still holds what the first pin replaced.
        replaces = previous.replaces if previous is not None else base
        self._pins[key] = _Pin(tokens, replaces)
        logger.error("refresh_write_failed connector=%s; pinned in process", tokens.connector)
        with self._lock:
            if key in self._writers:
                return False
            self._writers.add(key)
        return True

    def writer_dropped(self, user: str, connector: str) -> None:
        """The writer :meth:`pin` asked for was not started; the next pin starts one."""
        with self._lock:
            self._writers.discard((user, connector))

    def persist_later(self, user: str, connector: Connector) -> Flow[None]:
        """Write the pinned set with backoff until it is persisted or dropped (ST-09)."""
        key = (user, connector.name)
        delay = _FIRST_BACKOFF
        try:
            for _ in range(PERSIST_ATTEMPTS):
                yield Sleep(delay)
                if key not in self._pins:
                    return
                with contextlib.suppress(TokenStoreUnavailable):  # still down: back off
                    yield from self.persist(user, connector)
                if key not in self._pins:
                    return
                delay = min(delay * 2, _MAX_BACKOFF)
            logger.error("pinned_tokens_unwritten connector=%s; next use retries", connector.name)
        finally:
            with self._lock:
                self._writers.discard(key)

    def _unpin(self, key: tuple[str, str], pin: _Pin) -> None:
        if self._pins.get(key) is pin:
            del self._pins[key]

    def load(self, user: str, connector: Connector) -> Flow[tuple[StoredTokens | None, int]]:
        """The tokens for (user, connector) and their version, a pinned set first.

        A pinned set is written before it is returned; if the store is still down it
        is returned with version :data:`UNWRITTEN`.
        """
        key = (user, connector.name)
        if key not in self._pins:
            return (yield from self.store.load_tokens(user, connector.name, connector.issuer))
        try:
            return (yield from self.persist(user, connector))
        except TokenStoreUnavailable:
            pin = self._pins.get(key)
            if pin is None:
                raise
            return pin.tokens, UNWRITTEN

    def persist(self, user: str, connector: Connector) -> Flow[tuple[StoredTokens | None, int]]:
        """Try to write the pinned set; return what is current and its version.

        Raises :class:`TokenStoreUnavailable` while the store is down.
        """
        key = (user, connector.name)
        record, version = yield from self.store.load_tokens(user, connector.name, connector.issuer)
        pin = self._pins.get(key)
        if pin is None:
            return record, version
        if (
            record is None
            or record.status != "active"
            or record.refresh_token not in (pin.replaces, pin.tokens.refresh_token)
            or record.updated_at > pin.tokens.updated_at
        ):
            # Logged out, reauthorized or rotated further meanwhile (ST-10).
            self._unpin(key, pin)
            logger.warning("pinned_tokens_dropped connector=%s", connector.name)
            return record, version
        written = yield from self.store.save_tokens(user, pin.tokens, expected_version=version)
        if written is None:
            return pin.tokens, UNWRITTEN  # raced with another writer: next time
        self._unpin(key, pin)
        logger.info("pinned_tokens_persisted connector=%s", connector.name)
        return pin.tokens, written
