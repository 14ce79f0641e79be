"""Sessions: an encrypted, authenticated cookie that points at a server-side record.

The cookie holds only a random session id and two timestamps, sealed with AES-256-GCM
under a key derived for this purpose (``authrelay-session-v1``); tokens and profiles
live in the store (SE-03, SE-10). The record holds the subject and is deleted at logout,
so a replayed cookie is anonymous afterwards (SE-06). Idle and absolute timeouts are
enforced from the sealed timestamps, not from cookie expiry (SE-05). Each sign-in or
account link issues a new session id (SE-04).

Defends against: forged, tampered, truncated, replayed-after-logout and foreign-key
cookies (all mean anonymous, never an error page), session fixation, and cookies that
grow past what browsers keep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._crypto import DecryptionFailed, KeyRing, b64url_decode, b64url_encode, random_token
from .._io import Flow, StoreOp
from .._types import Clock
from ..errors import ConfigurationError
from ..observability import Stats
from ..settings import Settings
from .tokencache import TokenCache, token_key

__all__ = ["CookieState", "SessionManager", "SessionRecord"]

logger = logging.getLogger("authrelay.session")

_MAX_SET_COOKIE = 4096  # SE-10
_RECORD_CACHE_TTL = 10.0  # bounded staleness of a logout seen by another process
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _strict_b64url(value: str) -> bytes:
    """Canonical unpadded base64url only: one spelling per value, nothing trailing (SE-09)."""
    if _B64URL.fullmatch(value) is None or len(value) % 4 == 1:
        raise ValueError("not canonical base64url")
    raw = b64url_decode(value)
    if b64url_encode(raw) != value:  # unused low bits set in the last character
        raise ValueError("not canonical base64url")
    return raw


@dataclass(frozen=True, slots=True)
class CookieState:
    """What a valid session cookie says."""

    session_id: str = field(repr=False)
    issued_at: float
    last_seen: float
    record_key: str = field(default="", repr=False)
    old_key: bool = False
    """Sealed with an older key of ``secret_keys``: re-issued under the primary key on use."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """The server-side half of a session (no tokens)."""

    subject: str
    issuer: str | None = None
    connector: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    provider_session: tuple[str, str, str | None] | None = None
    """``(iss, sub, sid)`` of the provider sign-in it came from (back-channel logout)."""
    id_token: str | None = field(default=None, repr=False)
    """The ID token of that sign-in, the ``id_token_hint`` of RP-initiated logout. It lives
    only here, in the sealed record, never in the cookie (INV-1)."""

    def to_json(self) -> bytes:
        """Serialize for sealing."""
        data: dict[str, Any] = {
            "sub": self.subject,
            "iss": self.issuer,
            "con": self.connector,
            "claims": dict(self.claims),
            "created": self.created_at,
        }
        if self.provider_session is not None:
            data["op"] = list(self.provider_session)
        if self.id_token is not None:
            data["idt"] = self.id_token
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SessionRecord:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        origin = data.get("op")
        return cls(
            subject=data["sub"],
            issuer=data.get("iss"),
            connector=data.get("con"),
            claims=data.get("claims") or {},
            created_at=float(data.get("created") or 0.0),
            provider_session=(
                (str(origin[0]), str(origin[1]), None if origin[2] is None else str(origin[2]))
                if isinstance(origin, list) and len(origin) == 3
                else None
            ),
            id_token=data["idt"] if isinstance(data.get("idt"), str) else None,
        )


class SessionManager:
    """Seals and opens session cookies and reads/writes session records."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time) -> None:
        self._settings = settings.session
        self._clock = clock
        secrets = [key.get_secret_value().encode() for key in settings.secret_keys]
        if not secrets:
            if not settings.dev_mode:
                raise ConfigurationError("secret_keys: required to seal session cookies")
            secrets = [random_token(32).encode()]
            logger.warning("dev_mode: sessions sealed with a random key; they end at restart")
        self._cookie_ring = KeyRing(secrets, "authrelay-session-v1")
        self._record_ring = KeyRing(secrets, "authrelay-session-record-v1")
        self._prefix = settings.store.key_prefix + "session:"
        self.cookie_name = self._settings.effective_cookie_name
        self._attributes = self._cookie_attributes()
        # Plain-dict caches with per-entry expiry: a hit is one hash and one dict lookup.
        self._opened: TokenCache[CookieState] = TokenCache(10_000, clock=clock)
        self._records: TokenCache[SessionRecord] = TokenCache(10_000, clock=clock)
        self.metrics: Stats | None = None
        self.on_end: list[Callable[[str | None], None]] = []
        """Called with a record key when a session ends here or elsewhere (None: all)."""
        self.on_destroy: list[Callable[[str], Flow[None]]] = []
        """Run (with the record key) by the process that ends a session, after the delete."""

    def __repr__(self) -> str:
        return f"SessionManager(cookie_name={self.cookie_name!r})"

    @property
    def clock(self) -> Clock:
        """The clock sessions are timed with (seconds since the epoch)."""
        return self._clock

    def _cookie_attributes(self) -> str:
        parts = ["Path=/", "HttpOnly", f"SameSite={self._settings.same_site.capitalize()}"]
        if not self._settings.dev_insecure_cookies:
            parts.append("Secure")
        return "; ".join(parts)

    # -- the cookie ---------------------------------------------------------------------

    def open_cookie(self, value: str) -> CookieState | None:
        """Open a cookie value; None when forged, foreign, expired or idle (SE-05)."""
        if len(value) > 1024:
            return None
        digest = token_key(value)
        now = self._clock()
        # A sealed value is unforgeable, so its digest is a safe key for what it opened to.
        entry = self._opened.entries.get(digest)
        if entry is not None and entry[0] > now:
            state = entry[1]
        else:
            try:
                sealed = _strict_b64url(value)
                raw = self._cookie_ring.open(sealed, self.cookie_name.encode())
                sid, issued, seen = json.loads(raw)
                issued, seen = float(issued), float(seen)
            except (DecryptionFailed, ValueError, TypeError):
                return None
            if not isinstance(sid, str):
                return None
            old_key = not self._cookie_ring.is_primary(sealed)
            state = CookieState(sid, issued, seen, self._key(sid), old_key)
            settings = self._settings
            self._opened.put(
                digest, min(issued + settings.max_age, seen + settings.idle_timeout), state
            )
        settings = self._settings
        if (
            now - state.issued_at > settings.max_age
            or now - state.last_seen > settings.idle_timeout
        ):
            return None
        return state

    def needs_renewal(self, state: CookieState) -> bool:
        """True when the rolling idle window should be moved forward, or the cookie was
        sealed with an older key (rotation completes for active users)."""
        return state.old_key or self._clock() - state.last_seen >= self._settings.renew_after

    def set_cookie(self, session_id: str, issued_at: float) -> str:
        """A ``Set-Cookie`` value for this session, last seen now."""
        payload = json.dumps([session_id, issued_at, self._clock()]).encode()
        sealed = b64url_encode(self._cookie_ring.seal(payload, self.cookie_name.encode()))
        remaining = int(issued_at + self._settings.max_age - self._clock())
        header = f"{self.cookie_name}={sealed}; Max-Age={max(remaining, 0)}; {self._attributes}"
        if len(header) > _MAX_SET_COOKIE:  # SE-10: refuse loudly instead of a silent drop
            raise ValueError("session cookie would exceed 4096 bytes")
        return header

    def clear_cookie(self) -> str:
        """A ``Set-Cookie`` value that removes the cookie with the same attributes (SE-06)."""
        return f"{self.cookie_name}=; Max-Age=0; {self._attributes}"

    # -- the record ---------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        return self._prefix + hashlib.sha256(session_id.encode()).hexdigest()[:40]

    def record_key(self, session_id: str) -> str:
        """The store key of a session's record (a digest; safe in cache keys and logs)."""
        return self._key(session_id)

    def cached_record(self, session: CookieState | str) -> SessionRecord | None:
        """The record from the in-process cache, without touching the store."""
        if isinstance(session, CookieState):
            return self._records.get(session.record_key.encode())
        return self._records.get(self._key(session).encode())

    def forget(self, key: str | None) -> None:
        """Drop the cached record at store ``key``, changed elsewhere (None: drop all)."""
        if key is None:
            self._records.entries.clear()
        else:
            self._records.discard(key.encode())
        self._ended(key)

    def _ended(self, key: str | None) -> None:
        for listener in self.on_end:
            listener(key)

    def load(self, session_id: str) -> Flow[SessionRecord | None]:
        """The session's record, or None when it was ended (logout) or never existed."""
        key = self._key(session_id)
        record = self._records.get(key.encode())
        if record is not None:
            return record
        stored = yield StoreOp("get", (key,))
        if stored is None:
            return None
        try:
            record = SessionRecord.from_json(self._record_ring.open(stored[0], key.encode()))
        except (DecryptionFailed, ValueError, KeyError, TypeError):
            logger.warning(
                "session_record_unreadable",
                extra={"key_id": self._record_ring.key_id_of(stored[0])},
            )
            return None
        self._records.put(key.encode(), self._clock() + _RECORD_CACHE_TTL, record)
        return record

    def create(self, record: SessionRecord, *, replaces: str | None = None) -> Flow[str]:
        """Store a new session (fresh id: SE-04), end ``replaces``; return its ``Set-Cookie``."""
        cookie, _ = yield from self.create_keyed(record, replaces=replaces)
        return cookie

    def create_keyed(
        self, record: SessionRecord, *, replaces: str | None = None
    ) -> Flow[tuple[str, str]]:
        """:meth:`create`, also returning the record's store key (for :meth:`destroy_key`)."""
        session_id = random_token(32)
        key = self._key(session_id)
        sealed = self._record_ring.seal(record.to_json(), key.encode())
        yield StoreOp("put", (key, sealed), {"ttl": self._settings.max_age})
        if replaces is not None:
            yield from self.destroy(replaces)
        self._records.put(key.encode(), self._clock() + _RECORD_CACHE_TTL, record)
        if self.metrics is not None:
            self.metrics.incr("sessions_created")
        return self.set_cookie(session_id, record.created_at or self._clock()), key

    def destroy(self, session_id: str) -> Flow[None]:
        """End a session server-side: its cookie is anonymous from now on (SE-06)."""
        yield from self.destroy_key(self._key(session_id))

    def destroy_key(self, key: str) -> Flow[bool]:
        """End the session whose record is at store ``key``; False if it had ended already.

        Only keys this manager made are accepted (a back-channel logout passes them on).
        """
        if not key.startswith(self._prefix):
            return False
        self._records.discard(key.encode())
        deleted: bool = yield StoreOp("delete", (key,))
        if deleted and self.metrics is not None:
            self.metrics.incr("sessions_ended")
        for hook in self.on_destroy:
            yield from hook(key)
        self._ended(key)
        return bool(deleted)
