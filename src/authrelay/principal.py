"""Who is calling: the principal and its credentials, Starlette-compatible.

``scope["user"]`` is a :class:`Principal` (``request.user.is_authenticated`` works) and
``scope["auth"]`` its :class:`Credentials` (``request.auth.scopes``), as with
Starlette's ``AuthenticationMiddleware``. Neither holds a token in its ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["ANONYMOUS", "Credentials", "Principal"]

Kind = Literal["anonymous", "session", "bearer"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """The caller of a request.

    ``subject`` is the stable user id (the app's user id when ``on_sign_in`` maps it, else
    ``issuer|sub``), ``kind`` says how it was proven. ``claims`` are the verified token
    claims (bearer) or the profile (session).
    """

    subject: str | None = None
    kind: Kind = "anonymous"
    issuer: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    session_id: str | None = None
    connector: str | None = None

    @property
    def is_authenticated(self) -> bool:
        """True for a signed-in user or a verified bearer token."""
        return self.kind != "anonymous"

    @property
    def display_name(self) -> str:
        """A name to show: ``name``, ``preferred_username``, ``email`` or the subject."""
        for claim in ("name", "preferred_username", "email"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return self.subject or ""

    @property
    def identity(self) -> str:
        """Starlette's ``BaseUser.identity``: the subject."""
        return self.subject or ""

    @property
    def actor_chain(self) -> tuple[str, ...]:
        """Subjects of the RFC 8693 ``act`` chain, outermost first (read-only, TX-06)."""
        chain: list[str] = []
        act = self.claims.get("act")
        while isinstance(act, Mapping) and len(chain) < 16:
            sub = act.get("sub") or act.get("client_id")
            if not isinstance(sub, str):  # a nameless actor ends the chain; never "None"
                break
            chain.append(sub)
            act = act.get("act")
        return tuple(chain)

    def __repr__(self) -> str:
        return f"Principal(kind={self.kind!r}, subject={self.subject!r}, issuer={self.issuer!r})"


ANONYMOUS = Principal()


@dataclass(frozen=True, slots=True, eq=False)
class Credentials:
    """What proved the principal: its scopes, and (never printed) the bearer token.

    ``token`` is the caller's raw bearer token, needed by token exchange and forwarding;
    it is excluded from ``repr``.
    """

    scopes: frozenset[str] = frozenset()
    token: str | None = field(default=None, repr=False)
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"Credentials(scopes={sorted(self.scopes)!r}, expires_at={self.expires_at!r})"


NO_CREDENTIALS = Credentials()
