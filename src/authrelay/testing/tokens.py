"""Token issuance for the test provider: RFC 9068 access tokens, opaque tokens, ID tokens.

Defends against clients that accept the wrong kind of token: access tokens carry
``typ: at+jwt`` and a resource audience (RFC 9068 §2), ID tokens carry ``typ: JWT``,
``aud = client_id``, ``azp`` and ``at_hash`` (OIDC Core §3.1.3.6), so a client that mixes
them up (RFC 8725 §3.12) fails its tests here.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .state import Grant, ProviderState, TokenRecord

if TYPE_CHECKING:
    from .keys import SigningKeys
    from .models import Resource

__all__ = ["IssuedAccessToken", "TokenIssuer", "at_hash"]

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "RS256": hashlib.sha256,
    "PS256": hashlib.sha256,
    "ES256": hashlib.sha256,
    "EdDSA": hashlib.sha512,
}


def at_hash(access_token: str, alg: str) -> str:
    """Left half of the hash of the access token, base64url (OIDC Core §3.1.3.6)."""
    digest = _HASHES[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def merge_claims(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``overrides`` last; a ``None`` value removes the claim."""
    out = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class IssuedAccessToken:
    """An access token and what a token response says about it."""

    token: str
    expires_in: int
    scope: tuple[str, ...]
    claims: dict[str, Any]


class TokenIssuer:
    """Creates tokens and records them in the provider state."""

    def __init__(
        self,
        *,
        keys: SigningKeys,
        state: ProviderState,
        issuer: Callable[[], str],
        clock: Callable[[], float],
    ) -> None:
        self.keys = keys
        self.state = state
        self.issuer = issuer
        self.clock = clock

    def now(self) -> int:
        """The injected clock, as whole seconds."""
        return int(self.clock())

    def access_token(
        self,
        grant: Grant,
        *,
        ttl: int,
        resource: Resource | None,
        audience: Sequence[str] = (),
        fmt: str = "opaque",
        act: Mapping[str, Any] | None = None,
        not_after: int | None = None,
        force_jwt: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> IssuedAccessToken:
        """Issue an access token under ``grant``; never outliving ``not_after``."""
        now = self.now()
        exp = now + ttl
        if not_after is not None:
            exp = min(exp, not_after)
        aud = tuple(audience) or ((resource.identifier,) if resource else (grant.client_id,))
        claims: dict[str, Any] = {
            "iss": self.issuer(),
            "sub": grant.sub,
            "aud": aud[0] if len(aud) == 1 else list(aud),
            "exp": exp,
            "iat": now,
            "jti": secrets.token_urlsafe(12),
            "client_id": grant.client_id,
            "scope": " ".join(grant.scope),
        }
        if grant.auth_time is not None:
            claims["auth_time"] = grant.auth_time
        if act:
            claims["act"] = dict(act)
        claims.update(extra or {})
        use_jwt = force_jwt or (resource.access_token_format == "jwt" if resource else fmt == "jwt")
        if use_jwt:
            alg = resource.signing_alg if resource else "RS256"
            token = self.keys.sign(claims, alg=alg, typ="at+jwt")  # RFC 9068 §2.1
        else:
            token = "at_" + secrets.token_urlsafe(32)
        record = TokenRecord(
            kind="access_token",
            grant_id=grant.grant_id,
            sub=grant.sub,
            client_id=grant.client_id,
            scope=grant.scope,
            audience=aud,
            issued_at=now,
            expires_at=exp,
            is_jwt=use_jwt,
            claims=claims,
        )
        self.state.add_token(token, record)
        return IssuedAccessToken(token, max(exp - now, 0), grant.scope, claims)

    def refresh_token(self, grant: Grant, *, ttl: int, scope: Sequence[str]) -> str:
        """Issue a refresh token in ``grant``'s family."""
        now = self.now()
        token = "rt_" + secrets.token_urlsafe(32)
        record = TokenRecord(
            kind="refresh_token",
            grant_id=grant.grant_id,
            sub=grant.sub,
            client_id=grant.client_id,
            scope=tuple(scope),
            audience=grant.audience,
            issued_at=now,
            expires_at=now + ttl,
        )
        self.state.add_token(token, record)
        return token

    def id_token(
        self,
        *,
        sub: str,
        client_id: str,
        ttl: int,
        alg: str,
        auth_time: int | None,
        nonce: str | None,
        access_token: str | None,
        profile: Mapping[str, Any],
        sid: str | None = None,
    ) -> str:
        """An ID token for ``client_id`` (OIDC Core §2); ``sid`` names the provider session."""
        now = self.now()
        claims: dict[str, Any] = {**profile}
        claims.update(
            {
                "iss": self.issuer(),
                "sub": sub,
                "aud": client_id,
                "azp": client_id,
                "exp": now + ttl,
                "iat": now,
            }
        )
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token, alg)
        if sid is not None:
            claims["sid"] = sid
        return self.keys.sign(claims, alg=alg, typ="JWT")

    def opaque(self, record: TokenRecord) -> str:
        """Register a hand-made opaque token record."""
        token = "at_" + secrets.token_urlsafe(32)
        self.state.add_token(token, record)
        return token
