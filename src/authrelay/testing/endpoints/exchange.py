"""Token exchange (RFC 8693) and on-behalf-of (Entra shape) grants of the test provider.

Defends against delegation that grows power: only an active token issued here of the
declared type can be exchanged (RFC 8693 §2.1), ``actor_token`` and ``actor_token_type``
come together or not at all, an unknown audience is ``invalid_target`` (§2.2.2), the
issued token records who acts (``act``, nesting earlier actors, §4.1) and never outlives
the subject token. On-behalf-of only accepts a user token addressed to the calling client.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from ..state import Grant
from ._common import OAuthError, token_body
from .targets import resolve_target

if TYPE_CHECKING:
    from ..models import OAuthClient
    from ..provider import IdentityProvider

__all__ = ["TOKEN_TYPES", "inspect_token", "on_behalf_of", "token_exchange"]

ACCESS = "urn:ietf:params:oauth:token-type:access_token"
REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPES = (ACCESS, REFRESH, ID_TOKEN, JWT)


def inspect_token(
    idp: IdentityProvider, token: str, token_type: str = JWT
) -> dict[str, Any] | None:
    """Claims of an active token issued here, if it is of ``token_type``; else None.

    Tokens issued by the endpoints are found by hash; JWTs made with ``mint_*`` are
    verified against the published keys.
    """
    now = idp.clock()
    if token_type not in TOKEN_TYPES:
        return None
    record = idp.state.record(token)
    if record is not None:
        if not idp.state.is_active(record, now):
            return None
        kind_ok = {
            ACCESS: record.kind == "access_token",
            REFRESH: record.kind == "refresh_token",
            JWT: record.is_jwt,
            ID_TOKEN: False,
        }[token_type]
        if not kind_ok:
            return None
        claims = dict(record.claims) or {
            "iss": idp.issuer,
            "sub": record.sub,
            "client_id": record.client_id,
            "scope": " ".join(record.scope),
            "exp": record.expires_at,
            "iat": record.issued_at,
        }
        claims.setdefault("aud", list(record.audience))
        return claims
    if token_type == REFRESH or idp.is_revoked(token):
        return None
    verified = idp.keys.verify(token)
    if verified is None:
        return None
    header, claims = verified
    exp = claims.get("exp")
    if claims.get("iss") != idp.issuer or isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    if exp <= now or not isinstance(claims.get("sub"), str):
        return None
    is_access = str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt")
    if (token_type == ACCESS and not is_access) or (token_type == ID_TOKEN and is_access):
        return None
    return claims


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [a for a in aud or [] if isinstance(a, str)]


def token_exchange(
    idp: IdentityProvider, client: OAuthClient, params: dict[str, str]
) -> dict[str, Any]:
    """RFC 8693 §2: exchange a subject token (optionally with an actor) for a new one."""
    subject_token = params.get("subject_token")
    subject_type = params.get("subject_token_type")
    if subject_token is None or subject_type is None:
        raise OAuthError("invalid_request", "subject_token and subject_token_type are required")
    if subject_type not in TOKEN_TYPES:
        raise OAuthError("invalid_request", "unsupported subject_token_type")
    subject = inspect_token(idp, subject_token, subject_type)
    if subject is None:
        raise OAuthError("invalid_request", "subject_token is not an active token of that type")
    actor_token, actor_type = params.get("actor_token"), params.get("actor_token_type")
    if (actor_token is None) != (actor_type is None):
        raise OAuthError("invalid_request", "actor_token and actor_token_type go together")
    actor_sub = client.client_id
    if actor_token is not None and actor_type is not None:
        if actor_type not in TOKEN_TYPES:
            raise OAuthError("invalid_request", "unsupported actor_token_type")
        actor = inspect_token(idp, actor_token, actor_type)
        if actor is None:
            raise OAuthError("invalid_request", "actor_token is not an active token of that type")
        actor_sub = str(actor["sub"])
    requested = params.get("requested_token_type", ACCESS)
    if requested not in (ACCESS, JWT):
        raise OAuthError("invalid_request", "requested_token_type must be access_token or jwt")
    target = resolve_target(
        idp,
        client,
        params.get("scope", "").split(),
        resources=params["resource"].split(" ") if "resource" in params else [],
        audiences=params["audience"].split(" ") if "audience" in params else [],
    )
    if "openid" in target.scopes or "offline_access" in target.scopes:
        raise OAuthError("invalid_scope", "exchanged tokens cannot carry openid or offline_access")
    act: dict[str, Any] = {"sub": actor_sub}
    if isinstance(subject.get("act"), dict):
        act["act"] = subject["act"]  # RFC 8693 §4.1: the chain of earlier actors
    grant = idp.state.add_grant(
        Grant(
            secrets.token_hex(8),
            str(subject["sub"]),
            client.client_id,
            target.scopes,
            target.audience,
        )
    )
    issued = idp.issuer_.access_token(
        grant,
        ttl=idp.access_token_ttl,
        resource=target.resource,
        audience=target.audience,
        fmt=client.access_token_format,
        act=act,
        not_after=int(subject["exp"]),  # SECURITY TX-04: never outlive the subject token
        force_jwt=requested == JWT,
    )
    return token_body(issued, issued_token_type=requested)


def on_behalf_of(
    idp: IdentityProvider, client: OAuthClient, params: dict[str, str]
) -> dict[str, Any]:
    """The Entra on-behalf-of flow: a user's access token for this API becomes one for another."""
    if params.get("requested_token_use") != "on_behalf_of":
        raise OAuthError("invalid_request", "requested_token_use=on_behalf_of is required")
    assertion = params.get("assertion")
    if assertion is None:
        raise OAuthError("invalid_request", "assertion is required")
    claims = inspect_token(idp, assertion, ACCESS)
    if claims is None:
        raise OAuthError("invalid_grant", "assertion is not an active access token")
    addressed = {client.client_id, *client.app_id_uris}
    if not addressed.intersection(_audiences(claims)):
        raise OAuthError("invalid_grant", "assertion is not addressed to this client")
    scopes = params.get("scope", "").split()
    if not scopes:
        raise OAuthError("invalid_request", "scope is required")
    target = resolve_target(idp, client, scopes)
    if target.resource is None:
        raise OAuthError("invalid_scope", "scope must name a resource")
    grant = idp.state.add_grant(
        Grant(
            secrets.token_hex(8),
            str(claims["sub"]),
            client.client_id,
            target.scopes,
            target.audience,
        )
    )
    issued = idp.issuer_.access_token(
        grant, ttl=idp.access_token_ttl, resource=target.resource, audience=target.audience
    )
    return token_body(issued)
