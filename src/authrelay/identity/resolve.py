"""Who is calling: the session cookie or the bearer token, decided once per request.

The fast path (:meth:`IdentityResolver.fast`) answers without any I/O for the common
cases: nothing presented (anonymous), a bearer token already in the verified-token cache,
a session whose record is in the in-process cache. Otherwise :meth:`resolve` is a sans-IO
flow the shell drives.

Rules (SECURITY §3, §12): two ``Authorization`` headers, an empty or malformed bearer, or
a bearer together with an ``access_token`` query parameter → 400 ``invalid_request``
(BR-03); an invalid bearer is never downgraded to anonymous (BR-06); a stale session
cookie is anonymous and the cookie is cleared; oversized headers → 431.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .._io import Flow
from ..errors import (
    AuthRelayError,
    IdentityProviderUnavailable,
    MalformedCredentials,
    RequestTooLarge,
    TokenStoreUnavailable,
)
from ..principal import ANONYMOUS, NO_CREDENTIALS, Credentials, Principal
from .cookies import find_cookie
from .session import CookieState, SessionManager, SessionRecord
from .tokencache import TokenCache

__all__ = ["ANONYMOUS_RESOLUTION", "IdentityResolver", "Pending", "Resolution"]

_B64TOKEN = (string.ascii_letters + string.digits + "-._~+/").encode("ascii")
_MAX_AUTHORIZATION = 16 * 1024
_MAX_COOKIE = 32 * 1024
_SESSION_ANSWERS = 10_000
_SESSION_ANSWER_TTL = 10.0
_Verified = tuple[Principal, Credentials]


class BearerCheck(Protocol):
    """What the resolver needs of a bearer verifier (``identity.bearer.BearerVerifier``)."""

    def cached(
        self, token: str, *, key: bytes | None = None
    ) -> tuple[Principal, Credentials] | None:
        """A verified principal from the cache, or None (``key``: the token's cache key)."""

    def verify(
        self, token: str, *, key: bytes | None = None
    ) -> Flow[tuple[Principal, Credentials]]:
        """Full verification as a flow (``key``: the token's cache key, if known)."""

    def metadata(self) -> Flow[Mapping[str, Any]]:
        """The issuer's validated discovery document (token endpoint for services)."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome: a principal, or an error to answer with; maybe a cookie to set."""

    principal: Principal = ANONYMOUS
    credentials: Credentials = NO_CREDENTIALS
    set_cookie: str | None = None
    error: AuthRelayError | None = None

    @property
    def private(self) -> bool:
        """The answer depends on the session cookie (``Vary: Cookie``, no shared caching)."""
        return self.set_cookie is not None or self.principal.kind == "session"


ANONYMOUS_RESOLUTION = _ANONYMOUS = Resolution()
"""The answer for a request without credentials (shared; a :class:`Resolution` is frozen)."""


class Pending:
    """What :meth:`IdentityResolver.lookup` could not decide without I/O.

    A bearer token (and its cache key) to verify, or an opened session cookie whose record
    must be loaded; :meth:`IdentityResolver.complete` goes on from here, so nothing is
    parsed or hashed twice. Never printed with its token.
    """

    __slots__ = ("key", "state", "token")

    def __init__(
        self, token: str | None = None, key: bytes = b"", state: CookieState | None = None
    ) -> None:
        self.token = token
        self.key = key
        self.state = state

    def __repr__(self) -> str:
        return f"Pending(kind={'bearer' if self.token is not None else 'session'!r})"


class IdentityResolver:
    """Turns the raw ``Authorization`` and ``Cookie`` headers into a :class:`Resolution`."""

    def __init__(self, sessions: SessionManager, bearer: BearerCheck | None) -> None:
        self.sessions = sessions
        self.bearer = bearer
        self._cookie_name = sessions.cookie_name
        # Session answers by record key, reused while the record object is the same one
        # (a logout, a refresh or a cache expiry replaces or drops it, so they never go stale).
        self._sessions: TokenCache[tuple[SessionRecord, Resolution]] = TokenCache(
            _SESSION_ANSWERS, clock=sessions.clock
        )
        # Bearer answers by the token's cache key, reused while the verifier answers with
        # the same verdict object (it checks the expiry; a new verdict replaces the answer).
        self._bearers: TokenCache[tuple[_Verified, Resolution]] = TokenCache(
            _SESSION_ANSWERS, clock=sessions.clock
        )

    def bearer_token(self, authorization: list[str], query_string: bytes) -> str | None:
        """The bearer token, None if there is none; raise for malformed ones (BR-01, BR-03)."""
        found = self._bearer_token(authorization, query_string)
        return None if found is None else found[0]

    def _bearer_token(
        self, authorization: list[str], query_string: bytes
    ) -> tuple[str, bytes] | None:
        """:meth:`bearer_token` and its ASCII bytes (checked once, hashed from there)."""
        if not authorization or self.bearer is None:
            return None
        if len(authorization) > 1:
            raise MalformedCredentials("more than one Authorization header")
        header = authorization[0]
        if len(header) > _MAX_AUTHORIZATION:
            raise RequestTooLarge("the Authorization header is too large")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip(" ")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedCredentials("the bearer token is empty or malformed") from None
        body = raw.rstrip(b"=")  # RFC 6750 §2.1 b64token: 1*(ALPHA / DIGIT / "-" ...) *"="
        if not body or body.translate(None, _B64TOKEN):
            raise MalformedCredentials("the bearer token is empty or malformed")
        if b"access_token=" in query_string:
            raise MalformedCredentials("a token in both the header and the query")
        return token, raw

    def fast(
        self, authorization: list[str], cookie: str | None, query_string: bytes = b""
    ) -> Resolution | None:
        """Resolve without I/O when possible; None means run :meth:`resolve`."""
        outcome = self.lookup(authorization, cookie, query_string)
        return outcome if isinstance(outcome, Resolution) else None

    def lookup(
        self, authorization: list[str], cookie: str | None, query_string: bytes = b""
    ) -> Resolution | Pending:
        """Resolve without I/O when possible, else what :meth:`complete` needs to go on."""
        if not authorization and cookie is None:
            return _ANONYMOUS
        try:
            found = self._bearer_token(authorization, query_string)
            if found is not None:
                assert self.bearer is not None
                token = found[0]
                key = hashlib.sha256(found[1]).digest()  # token_key(token), encoded once
                hit = self.bearer.cached(token, key=key)
                if hit is None:
                    return Pending(token, key)
                return self._bearer_resolution(key, hit)
        except AuthRelayError as exc:
            return Resolution(error=exc)
        if cookie is None:
            return _ANONYMOUS
        return self._fast_session(cookie)

    def _bearer_resolution(self, key: bytes, hit: _Verified) -> Resolution:
        answer = self._bearers.entries.get(key)
        if answer is not None and answer[1][0] is hit:
            return answer[1][1]
        resolution = Resolution(hit[0], hit[1])
        self._bearers.put(key, self.sessions.clock() + _SESSION_ANSWER_TTL, (hit, resolution))
        return resolution

    def _session_value(self, cookie: str) -> str | None:
        if len(cookie) > _MAX_COOKIE:
            raise RequestTooLarge("the Cookie header is too large")
        return find_cookie(cookie, self._cookie_name)

    def _fast_session(self, cookie: str) -> Resolution | Pending:
        try:
            value = self._session_value(cookie)
        except AuthRelayError as exc:
            return Resolution(error=exc)
        if value is None:
            return _ANONYMOUS
        state = self.sessions.open_cookie(value)
        if state is None:
            return Resolution(set_cookie=self.sessions.clear_cookie())
        record = self.sessions.cached_record(state)
        if record is None:
            return Pending(state=state)
        return self._session_resolution(state, record)

    def _session_resolution(self, state: CookieState, record: SessionRecord) -> Resolution:
        sessions = self.sessions
        if sessions.needs_renewal(state):
            renewal = sessions.set_cookie(state.session_id, state.issued_at)
            return Resolution(_session_principal(state, record), NO_CREDENTIALS, renewal)
        key = state.record_key.encode()
        hit = self._sessions.entries.get(key)
        if hit is not None and hit[1][0] is record:
            return hit[1][1]
        resolution = Resolution(_session_principal(state, record))
        self._sessions.put(key, sessions.clock() + _SESSION_ANSWER_TTL, (record, resolution))
        return resolution

    def resolve(
        self, authorization: list[str], cookie: str | None, query_string: bytes = b""
    ) -> Flow[Resolution]:
        """The full resolution, doing I/O through the driver when the caches miss."""
        outcome = self.lookup(authorization, cookie, query_string)
        if isinstance(outcome, Resolution):
            return outcome
        resolution = yield from self.complete(outcome)
        return resolution

    def complete(self, pending: Pending) -> Flow[Resolution]:
        """Go on from :meth:`lookup`: verify the bearer token or load the session record."""
        try:
            if pending.token is not None:
                assert self.bearer is not None
                principal, credentials = yield from self.bearer.verify(
                    pending.token, key=pending.key
                )
                return Resolution(principal, credentials)
            state = pending.state
            assert state is not None
            try:
                record = yield from self.sessions.load(state.session_id)
            except TokenStoreUnavailable as exc:
                raise IdentityProviderUnavailable(
                    "the session store is unavailable", retry_after=exc.retry_after or 5
                ) from None
            if record is None:
                return Resolution(set_cookie=self.sessions.clear_cookie())
            return self._session_resolution(state, record)
        except AuthRelayError as exc:
            return Resolution(error=exc)


def _session_principal(state: CookieState, record: SessionRecord) -> Principal:
    return Principal(
        subject=record.subject,
        kind="session",
        issuer=record.issuer,
        claims=record.claims,
        session_id=state.session_id,
        connector=record.connector,
    )
