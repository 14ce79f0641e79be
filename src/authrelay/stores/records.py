"""The records the token store seals: a user's tokens per connector, identity links, and
login transactions, with their JSON forms.

Defends against tokens leaking through ``repr`` (INV-1): every token, nonce, verifier and
browser binding is left out of it; and against a malformed stored value crashing a
request: ``from_json`` raises ``ValueError``/``KeyError``/``TypeError``, which the store
turns into a miss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["LinkRecord", "StoredTokens", "Transaction"]


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A user's tokens from one connector (never printed: tokens are out of ``repr``)."""

    connector: str
    target: str
    issuer: str | None = None
    external_sub: str | None = None
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    scopes: tuple[str, ...] = ()
    id_claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    status: Literal["active", "expired"] = "active"
    linked_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> bytes:
        """Serialize for sealing."""
        return json.dumps(
            {
                "connector": self.connector,
                "target": self.target,
                "issuer": self.issuer,
                "sub": self.external_sub,
                "at": self.access_token,
                "rt": self.refresh_token,
                "type": self.token_type,
                "exp": self.expires_at,
                "scopes": list(self.scopes),
                "id": dict(self.id_claims),
                "status": self.status,
                "linked": self.linked_at,
                "updated": self.updated_at,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoredTokens:
        """Inverse of :meth:`to_json`; raises ``ValueError``/``KeyError`` on bad data."""
        data = json.loads(raw)
        status = data.get("status", "active")
        if status not in ("active", "expired"):
            raise ValueError("unknown status")
        return cls(
            connector=str(data["connector"]),
            target=str(data["target"]),
            issuer=data.get("issuer"),
            external_sub=data.get("sub"),
            access_token=data.get("at"),
            refresh_token=data.get("rt"),
            token_type=str(data.get("type") or "Bearer"),
            expires_at=None if data.get("exp") is None else float(data["exp"]),
            scopes=tuple(str(s) for s in data.get("scopes") or ()),
            id_claims=dict(data.get("id") or {}),
            status=status,
            linked_at=float(data.get("linked") or 0.0),
            updated_at=float(data.get("updated") or 0.0),
        )

    def expired_link(self, now: float) -> StoredTokens:
        """This link marked expired, its tokens dropped (RT-03)."""
        return replace(
            self, access_token=None, refresh_token=None, status="expired", updated_at=now
        )

    def public(self) -> dict[str, Any]:
        """What ``/me`` may show: no tokens."""
        return {
            "connector": self.connector,
            "target": self.target,
            "status": self.status,
            "scopes": list(self.scopes),
            "linked_at": int(self.linked_at),
        }


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """An external identity (target, sub) belongs to this user."""

    user: str
    connector: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Transaction:
    """One login/connect in flight, stored server-side under its ``state`` (AC-04..AC-06)."""

    connector: str
    mode: Literal["login", "connect"]
    issuer: str | None
    redirect_uri: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    next: str
    binding: str = field(repr=False)
    """SHA-256 of the browser-bound cookie value."""
    created_at: float
    scopes: tuple[str, ...] = ()
    user: str | None = None
    session_id: str | None = field(default=None, repr=False)
    max_age: int | None = None
    acr_values: tuple[str, ...] = ()
    """Non-empty when ``acr`` was asked for as an Essential Claim (ID-09)."""

    def to_json(self) -> bytes:
        """Serialize for sealing."""
        return json.dumps(
            {
                "c": self.connector,
                "m": self.mode,
                "iss": self.issuer,
                "ru": self.redirect_uri,
                "n": self.nonce,
                "v": self.code_verifier,
                "next": self.next,
                "b": self.binding,
                "t": self.created_at,
                "s": list(self.scopes),
                "u": self.user,
                "sid": self.session_id,
                "ma": self.max_age,
                "acr": list(self.acr_values),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Transaction:
        """Inverse of :meth:`to_json`."""
        d = json.loads(raw)
        if d["m"] not in ("login", "connect"):
            raise ValueError("unknown mode")
        return cls(
            connector=d["c"],
            mode=d["m"],
            issuer=d["iss"],
            redirect_uri=d["ru"],
            nonce=d["n"],
            code_verifier=d["v"],
            next=d["next"],
            binding=d["b"],
            created_at=float(d["t"]),
            scopes=tuple(d.get("s") or ()),
            user=d.get("u"),
            session_id=d.get("sid"),
            max_age=d.get("ma"),
            acr_values=tuple(str(v) for v in d.get("acr") or ()),
        )
