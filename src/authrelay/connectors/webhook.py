"""The events webhook: a queue in the store, HMAC-signed deliveries, retries, dead letters.

Each event is a sealed record in the store under ``{prefix}evq:{time}:{id}`` (any
backend), written before the flow that caused it goes on: a restart, a crash or another
worker taking over loses nothing. Every process with ``[events]`` delivers the queue:

- a delivery is a POST of the event's JSON with ``X-Authrelay-Delivery: <id>`` (the same
  id on every attempt: receivers drop duplicates by it; delivery is *at least once*),
  ``X-Authrelay-Event: <type>`` and ``X-Authrelay-Signature: t=<unix>,v1=<hex>``, where
  ``v1`` is HMAC-SHA256 with ``[events] secret`` over ``"<t>." + body``
  (:func:`verify_signature` checks it);
- an answer 2xx removes the event; anything else (another status, timeout, refused
  connection) schedules another attempt after ``backoff`` doubling per attempt (at most
  10 minutes); after ``max_attempts`` the event moves to ``{prefix}evdead:{id}`` (kept
  30 days) and ``event_dead_letter`` is logged at ERROR;
- one process at a time attempts an event (a lease: the lock of :mod:`..stores.locks`),
  so workers do not all send the same retry at once.

Defends against: tokens in events (there are none, :mod:`.events`), an unsigned or
replayed delivery being taken as ours (receivers check the signature and the time), and
a receiver's huge answer (the body read is capped).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from .. import _io
from .._io import Flow, StoreOp
from .._types import Clock
from ..settings import EventsSettings
from ..stores.locks import LockToken, acquire_lock, release_lock
from ..stores.tokens import TokenStore
from .events import TokenEvent

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "WebhookQueue",
    "sign",
    "verify_signature",
]

logger = logging.getLogger("authrelay.connectors.webhook")

SIGNATURE_HEADER = "X-Authrelay-Signature"
DELIVERY_HEADER = "X-Authrelay-Delivery"
EVENT_HEADER = "X-Authrelay-Event"
MAX_BACKOFF = 600.0
DEAD_TTL = 30 * 86400.0
BATCH = 50
"""Queued events looked at per pass."""
_MAX_ANSWER = 64 * 1024


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Authrelay-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes, header: str, body: bytes, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """For receivers: True when ``header`` signs ``body`` with ``secret`` within ``tolerance``."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookQueue:
    """The event queue in the store and the flows that deliver it."""

    def __init__(self, store: TokenStore, settings: EventsSettings, *, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self._secret = settings.secret.get_secret_value().encode()
        self._clock = clock
        self.queue_prefix = store.key("evq:")
        self.dead_prefix = store.key("evdead:")

    def __repr__(self) -> str:
        return f"WebhookQueue(url={self.settings.url!r})"

    def enqueue(self, event: TokenEvent) -> Flow[None]:
        """Write ``event`` to the queue (raises ``TokenStoreUnavailable`` when down)."""
        key = f"{self.queue_prefix}{int(event.at * 1_000_000):017d}:{event.id}"
        entry = {"event": event.to_dict(), "attempts": 0, "next": event.at}
        yield from self.store.put_sealed("event", key, _dumps(entry), expected_version=0)

    def pending(self) -> Flow[int]:
        """Events waiting in the queue."""
        keys: list[str] = yield StoreOp("keys", (self.queue_prefix,))
        return len(keys)

    def dead_letters(self) -> Flow[list[dict[str, Any]]]:
        """The dead-lettered events (JSON form, with ``attempts`` and ``last_error``)."""
        keys: list[str] = yield StoreOp("keys", (self.dead_prefix,))
        found: list[dict[str, Any]] = []
        for key in sorted(keys):
            plain, _ = yield from self.store.get_sealed("event", key)
            if plain is not None:
                found.append(dict(json.loads(plain)))
        return found

    def deliver_due(self) -> Flow[int]:
        """One pass: attempt each queued event whose time has come; the number delivered."""
        keys: list[str] = yield StoreOp("keys", (self.queue_prefix,))
        delivered = 0
        for key in sorted(keys)[:BATCH]:
            if (yield from self._attempt(key)):
                delivered += 1
        return delivered

    def _read(self, key: str) -> Flow[tuple[dict[str, Any] | None, int]]:
        plain, version = yield from self.store.get_sealed("event", key)
        if plain is None:
            return None, version
        try:
            entry = dict(json.loads(plain))
            TokenEvent.from_dict(entry["event"])
        except (ValueError, KeyError, TypeError):
            return None, version
        return entry, version

    def _attempt(self, key: str) -> Flow[bool]:
        entry, _ = yield from self._read(key)
        if entry is None or float(entry["next"]) > self._clock():
            return False
        lease_key = self.store.key("evlease:") + key[len(self.queue_prefix) :]
        lease = yield from acquire_lock(lease_key, self.settings.timeout + 5.0)
        if lease is None:
            return False  # another process is sending it
        try:
            sent = yield from self._attempt_leased(key)
        except Exception:
            yield from _release(lease)
            raise
        yield from _release(lease)
        return sent

    def _attempt_leased(self, key: str) -> Flow[bool]:
        entry, version = yield from self._read(key)  # again, under the lease
        if entry is None or float(entry["next"]) > self._clock():
            return False
        event = entry["event"]
        error = yield from self._post(event)
        attempts = int(entry["attempts"]) + 1
        if error is None:
            yield StoreOp("delete", (key,), {"expected_version": version})
            logger.info(
                "event_delivered id=%s type=%s attempts=%d", event["id"], event["type"], attempts
            )
            return True
        if attempts >= self.settings.max_attempts:
            dead = {**entry, "attempts": attempts, "last_error": error}
            yield from self.store.put_sealed(
                "event", f"{self.dead_prefix}{event['id']}", _dumps(dead), ttl=DEAD_TTL
            )
            yield StoreOp("delete", (key,), {"expected_version": version})
            logger.error(
                "event_dead_letter id=%s type=%s attempts=%d reason=%s",
                event["id"],
                event["type"],
                attempts,
                error,
            )
            return False
        delay = min(self.settings.backoff * 2 ** (attempts - 1), MAX_BACKOFF)
        retry = {**entry, "attempts": attempts, "next": self._clock() + delay}
        yield from self.store.put_sealed("event", key, _dumps(retry), expected_version=version)
        logger.warning(
            "event_delivery_failed id=%s type=%s attempt=%d reason=%s retry_in=%.1f",
            event["id"],
            event["type"],
            attempts,
            error,
            delay,
        )
        return False

    def _post(self, event: dict[str, Any]) -> Flow[str | None]:
        """POST one event; None when the receiver took it, else why not."""
        body = _dumps(event)
        headers = {
            "content-type": "application/json",
            DELIVERY_HEADER: str(event["id"]),
            EVENT_HEADER: str(event["type"]),
            SIGNATURE_HEADER: sign(self._secret, int(self._clock()), body),
        }
        request = httpx.Request("POST", self.settings.url, content=body, headers=headers)
        try:
            response: httpx.Response = yield from _io.send(
                request, max_bytes=_MAX_ANSWER, total_timeout=self.settings.timeout
            )
        except _io.TransportFailure as exc:
            return "timeout" if exc.timeout else "transport"
        except _io.ResponseTooLarge:
            return "answer_too_large"
        if 200 <= response.status_code < 300:
            return None
        return f"status_{response.status_code}"


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _release(lease: LockToken) -> Flow[None]:
    try:
        yield from release_lock(lease)
    except Exception:
        logger.warning("event_lease_release_failed; it expires by its ttl")
