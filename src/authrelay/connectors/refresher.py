"""Proactive refresh: connector user tokens refreshed before they expire (``refresh_ahead``)
and refresh tokens kept alive before their idle expiry (``keep_alive``).

The index: every write of a token set of a connector with a schedule also writes an
entry ``{prefix}due:{connector}:{due time, 12 digits}:{digest of the user}`` whose value
is the user id, sealed. The due time is in the key, so one ``keys`` call per connector
finds what is due without reading a record, sorted by due time; a pass takes at most
:data:`BATCH` entries. A refreshed set gets a new entry; the old one is deleted by the
worker that refreshed, or found stale (its time no longer matches the record) and
deleted by the next pass. Entries carry a TTL past their due time, so abandoned ones
(users gone, a connector removed) expire on their own.

The refresh itself is :meth:`ConnectorTokenSource.refresh_due`: the same flow a request
runs (rotation, ``invalid_grant``, ID token checks), under the same cross-process lock,
which re-reads the record once it holds the lock, so four workers that find the same
due entry make one refresh between them.

Defends against: a refresh storm (a token is never refreshed before half its lifetime,
even when ``refresh_ahead`` exceeds it), a failing provider hammered by every pass (an
entry that failed waits :data:`FAILURE_BACKOFF` before the next try) and user ids at
rest in key names (ST-06).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._io import Flow, StoreOp
from ..errors import AuthRelayError, ReauthorizationRequired, TokenStoreUnavailable
from ..stores.tokens import StoredTokens, digest

if TYPE_CHECKING:
    from .registry import ConnectorRegistry

__all__ = ["BATCH", "Refresher"]

logger = logging.getLogger("authrelay.connectors.refresher")

BATCH = 100
"""Due entries taken per connector per pass."""
INDEX_GRACE = 30 * 86400.0
"""How long an index entry outlives its due time."""
FAILURE_BACKOFF = 60.0
"""Seconds before a failed proactive refresh is tried again."""


class Refresher:
    """Finds due connector tokens and refreshes them, one worker per token."""

    def __init__(self, registry: ConnectorRegistry) -> None:
        self.registry = registry
        self.store = registry.store
        self._clock = registry.relay.clock
        self.schedules: dict[str, tuple[float | None, float | None]] = {}
        self.reload()

    def reload(self) -> None:
        """Read the schedules from the connectors again (after a runtime change)."""
        schedules: dict[str, tuple[float | None, float | None]] = {}
        for name, connector in self.registry.connectors.items():
            config = connector.settings
            idle = config.keep_alive_after if config.keep_alive else None
            if config.refresh_ahead is not None or idle is not None:
                schedules[name] = (config.refresh_ahead, idle)
        self.schedules = schedules
        self.store.on_saved = self.index if schedules else None

    def __repr__(self) -> str:
        return f"Refresher(connectors={sorted(self.schedules)!r})"

    @property
    def enabled(self) -> bool:
        """Some connector has ``refresh_ahead`` or ``keep_alive``."""
        return bool(self.schedules)

    def due_at(self, record: StoredTokens) -> int | None:
        """When ``record`` should be refreshed proactively (None: never)."""
        schedule = self.schedules.get(record.connector)
        if schedule is None or record.status != "active" or record.refresh_token is None:
            return None
        ahead, idle = schedule
        times: list[float] = []
        if ahead is not None and record.expires_at is not None:
            half_life = max(record.expires_at - record.updated_at, 0.0) / 2
            times.append(max(record.expires_at - ahead, record.updated_at + half_life))
        if idle is not None:
            times.append(record.updated_at + idle)
        return int(min(times)) if times else None

    def _prefix(self, connector: str) -> str:
        return self.store.key(f"due:{connector}:")

    def _key(self, connector: str, due: int, user: str) -> str:
        return f"{self._prefix(connector)}{due:012d}:{digest(user)}"

    def index(self, user: str, record: StoredTokens) -> Flow[None]:
        """Write the index entry of a just-saved record (``TokenStore.on_saved``)."""
        due = self.due_at(record)
        if due is None:
            return
        ttl = max(due - self._clock(), 0.0) + INDEX_GRACE
        try:
            yield from self.store.put_sealed(
                "due", self._key(record.connector, due, user), user.encode(), ttl=ttl
            )
        except TokenStoreUnavailable:
            logger.warning("refresh_index_failed connector=%s", record.connector)

    def due(self) -> Flow[list[tuple[str, str]]]:
        """(connector, index key) of the entries due now, at most :data:`BATCH` each."""
        now = self._clock()
        found: list[tuple[str, str]] = []
        for name in self.schedules:
            prefix = self._prefix(name)
            keys: list[str] = yield StoreOp("keys", (prefix,))
            taken = 0
            for key in sorted(keys):
                when = _due_of(key, prefix)
                if when is None:
                    continue
                if when > now or taken >= BATCH:
                    break
                found.append((name, key))
                taken += 1
        return found

    def refresh_one(self, name: str, key: str) -> Flow[str]:
        """Handle one due entry; the outcome (``refreshed``, ``stale``, ``gone``...)."""
        plain, version = yield from self.store.get_sealed("due", key)
        if plain is None:
            return "gone"  # handled by another worker meanwhile
        user = plain.decode()
        connector = self.registry.get(name)
        record = None
        if connector is not None:
            record, _ = yield from self.registry.tokens.pins.load(user, connector)
        due = None if record is None else self.due_at(record)
        if connector is None or record is None or due is None:
            yield StoreOp("delete", (key,), {"expected_version": version})
            return "dropped"
        when = _due_of(key, self._prefix(name)) or 0
        if when < due:
            # Refreshed since this entry was written: make sure the current one exists.
            yield from self.index(user, record)
            yield StoreOp("delete", (key,), {"expected_version": version})
            return "stale"
        if when > self._clock():  # (an entry later than the record's: a failure's retry)
            return "not_due"
        reason = "refresh_ahead"
        schedule = self.schedules[name]
        if record.expires_at is None or (
            schedule[1] is not None and due == int(record.updated_at + schedule[1])
        ):
            reason = "keep_alive"
        try:
            yield from self.registry.tokens.refresh_due(connector, user, record, reason)
        except ReauthorizationRequired:
            yield StoreOp("delete", (key,), {"expected_version": version})
            return "reauthorization_required"
        except AuthRelayError as exc:
            logger.warning("proactive_refresh_failed connector=%s error=%s", name, exc.error)
            later = self._key(name, int(self._clock() + FAILURE_BACKOFF), user)
            yield from self.store.put_sealed("due", later, plain, ttl=INDEX_GRACE)
            yield StoreOp("delete", (key,), {"expected_version": version})
            return "failed"
        yield StoreOp("delete", (key,), {"expected_version": version})
        return "refreshed"


def _due_of(key: str, prefix: str) -> int | None:
    head = key[len(prefix) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None
