"""Server-side state of the test identity provider: codes, grants and issued tokens.

Defends against replay: authorization codes are single use and a second redemption revokes
everything issued from the first (RFC 6749 §4.1.2, §10.5); refresh tokens rotate and a
replayed rotated token revokes its whole family (RFC 9700 §4.14.2); client assertion ``jti``
values are single use (RFC 7523 §3). Tokens are indexed by SHA-256, never stored raw, and
every mutation happens under one lock because uvicorn threads, WSGI test threads and the
test body drive the provider at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CodeRecord", "Grant", "ProviderState", "TokenRecord", "token_hash"]

TokenKind = Literal["access_token", "refresh_token"]
RefreshState = Literal["active", "rotated", "revoked", "unknown"]


def token_hash(token: str) -> str:
    """SHA-256 hex of a token: the only form in which tokens are indexed or reported."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Grant:
    """One authorization (a code redemption, or a client credential / exchange issuance)."""

    grant_id: str
    sub: str
    client_id: str
    scope: tuple[str, ...]
    audience: tuple[str, ...]
    auth_time: int | None = None
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    revoked: bool = False
    sid: str | None = None
    """The provider session the user signed in with (the ID token's ``sid``)."""


@dataclass
class TokenRecord:
    """An issued token, as introspection and revocation see it."""

    kind: TokenKind
    grant_id: str
    sub: str
    client_id: str
    scope: tuple[str, ...]
    audience: tuple[str, ...]
    issued_at: int
    expires_at: int
    is_jwt: bool = False
    claims: dict[str, Any] = field(default_factory=dict)
    status: Literal["active", "rotated", "revoked"] = "active"
    rotated_at: float | None = None
    active_override: bool | None = None


@dataclass
class CodeRecord:
    """An authorization code waiting for redemption."""

    client_id: str
    redirect_uri: str
    sub: str
    scope: tuple[str, ...]
    resources: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    auth_time: int
    expires_at: float
    grant_id: str = field(default_factory=lambda: secrets.token_hex(8))
    used: bool = False
    sid: str | None = None


class ProviderState:
    """All mutable provider state behind one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.codes: dict[str, CodeRecord] = {}
        self.revoked: set[str] = set()
        self.jtis: dict[str, float] = {}
        self.sessions: dict[str, tuple[str, int]] = {}
        self.login_transactions: dict[str, dict[str, Any]] = {}
        # Pushed authorization requests (RFC 9126): request_uri → (params, expires_at).
        self.pushed: dict[str, tuple[dict[str, str], float]] = {}
        # Raw refresh tokens per subject, so tests can inspect rotation outcomes.
        self.refresh_by_sub: dict[str, list[str]] = {}

    def add_grant(self, grant: Grant) -> Grant:
        """Register a grant."""
        with self.lock:
            self.grants[grant.grant_id] = grant
            return grant

    def add_token(self, token: str, record: TokenRecord) -> None:
        """Remember an issued token (by hash) for introspection and revocation."""
        with self.lock:
            self.tokens[token_hash(token)] = record
            if record.kind == "refresh_token":
                self.refresh_by_sub.setdefault(record.sub, []).append(token)

    def record(self, token: str) -> TokenRecord | None:
        """The record of a token this provider issued, or None."""
        with self.lock:
            return self.tokens.get(token_hash(token))

    def is_active(self, record: TokenRecord, now: float) -> bool:
        """Active means issued here, not revoked or rotated, not expired, grant alive."""
        with self.lock:
            if record.active_override is not None:
                return record.active_override and now < record.expires_at
            grant = self.grants.get(record.grant_id)
            if grant is not None and grant.revoked:
                return False
            return record.status == "active" and now < record.expires_at

    def revoke_token(self, token: str) -> TokenRecord | None:
        """Revoke one token; returns its record if it was known."""
        with self.lock:
            digest = token_hash(token)
            self.revoked.add(digest)
            record = self.tokens.get(digest)
            if record is not None:
                record.status = "revoked"
            return record

    def revoke_grant(self, grant_id: str) -> None:
        """Revoke a grant and every token issued under it (RFC 6749 §4.1.2, RFC 7009 §2.1)."""
        with self.lock:
            grant = self.grants.get(grant_id)
            if grant is not None:
                grant.revoked = True
            for digest, record in self.tokens.items():
                if record.grant_id == grant_id:
                    record.status = "revoked"
                    self.revoked.add(digest)

    def put_code(self, code: str, record: CodeRecord) -> None:
        """Store an authorization code (by hash)."""
        with self.lock:
            self.codes[token_hash(code)] = record

    def redeem_code(self, code: str) -> tuple[CodeRecord | None, bool]:
        """(record, first_use). A reused code reports ``first_use=False``."""
        with self.lock:
            record = self.codes.get(token_hash(code))
            if record is None:
                return None, False
            first = not record.used
            record.used = True
            return record, first

    def push(self, request_uri: str, params: dict[str, str], expires_at: float) -> None:
        """Keep a pushed authorization request until it is used or expires."""
        with self.lock:
            self.pushed[request_uri] = (dict(params), expires_at)

    def take_pushed(self, request_uri: str, now: float) -> dict[str, str] | None:
        """The pushed request's parameters, once (RFC 9126 §4); None if unknown or expired."""
        with self.lock:
            for key in [k for k, (_, exp) in self.pushed.items() if exp <= now]:
                del self.pushed[key]
            found = self.pushed.pop(request_uri, None)
            return None if found is None else found[0]

    def use_jti(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record a client assertion ``jti``; False if it was seen before (RFC 7523 §3)."""
        with self.lock:
            for key in [k for k, exp in self.jtis.items() if exp < now - 3600]:
                del self.jtis[key]
            key = f"{client_id}\x00{jti}"
            if key in self.jtis:
                return False
            self.jtis[key] = expires_at
            return True

    def refresh_state(self, token: str) -> RefreshState:
        """``active`` | ``rotated`` | ``revoked`` | ``unknown`` for a refresh token."""
        with self.lock:
            record = self.tokens.get(token_hash(token))
            if record is None or record.kind != "refresh_token":
                return "unknown"
            grant = self.grants.get(record.grant_id)
            if record.status == "revoked" or (grant is not None and grant.revoked):
                return "revoked"
            return record.status
