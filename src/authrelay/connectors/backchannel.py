"""OpenID Connect Back-Channel Logout 1.0: the provider ends our sessions, server to server.

An OIDC connector accepts ``POST {prefix}/{name}/backchannel-logout`` with a form field
``logout_token`` (register that URL at the provider as the client's
``backchannel_logout_uri``). A valid token ends every session of ours that came from the
provider session it names (``sid``), or from any session of the provider's user when it
names only ``sub``. Sessions are indexed at sign-in by the provider's ``sub`` and ``sid``
(:meth:`~authrelay.stores.tokens.TokenStore.index_session`).

Defends against (ID-11, Back-Channel Logout 1.0 §2.6):

- forged tokens: the signature is verified with the provider's JWKS and the connector's
  one ID-token algorithm (``none`` and HMAC never: ``AlgNone``, ``WrongAlg``);
- tokens from another issuer or for another client (``WrongIssuer``, ``WrongAud``);
- other kinds of token replayed here: ``events`` must hold the back-channel-logout
  member as a JSON object (``NoEvent``, ``WrongEvent``), a ``nonce`` rejects the token
  (``WithNonce``; an ID token is not a logout token), and ``sub`` or ``sid`` is required;
- replay: ``jti`` is required and remembered until the token could no longer be
  accepted; a second use is refused. ``iat`` older than ``iat_max_age`` is refused;
- probing: every refusal is the same 400 ``invalid_request``; the reason is logged, the
  token never is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._io import Flow
from ..errors import InvalidToken
from ..identity.jwt import ClaimRules, validate_claims
from .connector import Connector, Endpoints
from .idtoken import verify_signed

__all__ = ["LOGOUT_EVENT", "LogoutToken", "LogoutTokenRejected", "validate_logout_token"]

logger = logging.getLogger("authrelay.connectors.backchannel")

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class LogoutTokenRejected(Exception):
    """The logout token is not valid; ``reason`` is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """What a valid logout token says."""

    issuer: str
    sub: str | None
    sid: str | None
    jti: str
    expires_at: float | None


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def validate_logout_token(
    connector: Connector, endpoints: Endpoints, token: str, *, now: float
) -> Flow[LogoutToken]:
    """Verify and validate a logout token; raise :class:`LogoutTokenRejected`."""
    settings = connector.settings
    try:
        header, claims, issuer = yield from verify_signed(connector, endpoints, token)
    except InvalidToken as exc:
        raise LogoutTokenRejected(str(exc.context.get("reason", "signature"))) from None
    if issuer is None:
        raise LogoutTokenRejected("issuer")
    rules = ClaimRules(
        issuer=issuer,
        audiences=frozenset({connector.client_id}),
        leeway=settings.leeway,
        required=frozenset({"iss", "aud", "iat", "jti", "events"}),
        typ=frozenset({"logout+jwt", "jwt"}),
        forbidden=frozenset({"nonce"}),
    )
    try:
        validate_claims(header, claims, rules, now)
    except InvalidToken as exc:
        raise LogoutTokenRejected(str(exc.context.get("reason", "claims"))) from None
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise LogoutTokenRejected("event")
    sub, sid, jti = _text(claims, "sub"), _text(claims, "sid"), _text(claims, "jti")
    if sub is None and sid is None:
        raise LogoutTokenRejected("no_sub_or_sid")
    if jti is None:
        raise LogoutTokenRejected("jti")
    if float(claims["iat"]) < now - settings.iat_max_age:
        raise LogoutTokenRejected("iat_too_old")
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    return LogoutToken(issuer, sub, sid, jti, expires_at)
