"""Token endpoint of the test provider: code, refresh and client credentials grants.

Entra Agent ID requests (``fmi_path``, agent identities, ``user_fic``) are in
:mod:`.agentid`.

Defends against clients that get away with replay and confusion elsewhere: a code works
once and its reuse revokes what it produced (RFC 6749 §4.1.2, §10.5); ``redirect_uri`` must
repeat the authorization request's (RFC 6749 §4.1.3); the PKCE verifier is checked and a
verifier without a challenge is refused (RFC 7636 §4.6, RFC 9700 §2.1.1 downgrade);
refresh tokens rotate, and presenting a rotated one revokes the family (RFC 9700 §4.14.2);
refresh can narrow scope but never widen it (RFC 6749 §6).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..models import GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE
from ..state import Grant
from ._common import OAuthError, authenticate_client, json_response, read_form, token_body
from .agentid import USER_FIC, agent_grant, agent_of, blueprint_fic
from .exchange import on_behalf_of, token_exchange
from .targets import resolve_target

if TYPE_CHECKING:
    from ..models import OAuthClient
    from ..provider import IdentityProvider

__all__ = ["token_routes"]

_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _require(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise OAuthError("invalid_request", f"{name} is required")
    return value


def token_routes(idp: IdentityProvider) -> list[Route]:
    """The ``/token`` route."""

    def issue_user_tokens(
        client: OAuthClient, grant: Grant, scopes: tuple[str, ...], nonce: str | None
    ) -> dict[str, Any]:
        resource = idp.resources.get(grant.audience[0]) if grant.audience else None
        scoped = Grant(
            grant.grant_id,
            grant.sub,
            grant.client_id,
            scopes,
            grant.audience,
            grant.auth_time,
            sid=grant.sid,
        )
        issued = idp.issuer_.access_token(
            scoped,
            ttl=idp.access_token_ttl,
            resource=resource,
            audience=grant.audience,
            fmt=client.access_token_format,
        )
        refresh = None
        if "refresh_token" in client.grant_types:
            refresh = idp.issuer_.refresh_token(grant, ttl=idp.refresh_token_ttl, scope=grant.scope)
        id_token = None
        if "openid" in scopes:
            id_token = idp.issuer_.id_token(
                sub=grant.sub,
                client_id=client.client_id,
                ttl=idp.id_token_ttl,
                alg=client.id_token_signed_response_alg,
                auth_time=grant.auth_time,
                nonce=nonce,
                access_token=issued.token,
                profile=idp.profile_claims(grant.sub, scopes),
                sid=grant.sid,
            )
        return token_body(issued, refresh_token=refresh, id_token=id_token)

    def authorization_code(client: OAuthClient, params: dict[str, str]) -> dict[str, Any]:
        code = _require(params, "code")
        record, first_use = idp.state.redeem_code(code)
        if record is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if not first_use:
            idp.state.revoke_grant(record.grant_id)  # RFC 6749 §4.1.2
            raise OAuthError("invalid_grant", "authorization code was already used")
        if record.client_id != client.client_id:
            raise OAuthError("invalid_grant", "code was issued to another client")
        if idp.clock() >= record.expires_at:
            raise OAuthError("invalid_grant", "authorization code has expired")
        if params.get("redirect_uri") != record.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = params.get("code_verifier")
        if record.code_challenge is None:
            if verifier is not None:
                raise OAuthError("invalid_grant", "code_verifier sent but no challenge was")
        else:
            if verifier is None or not _VERIFIER.match(verifier):
                raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
            if not hmac.compare_digest(_s256(verifier), record.code_challenge):
                raise OAuthError("invalid_grant", "code_verifier does not match")  # RFC 7636 §4.6
        grant = idp.state.add_grant(
            Grant(
                record.grant_id,
                record.sub,
                client.client_id,
                record.scope,
                record.resources,
                auth_time=record.auth_time,
                sid=record.sid,
            )
        )
        return issue_user_tokens(client, grant, record.scope, record.nonce)

    def refresh_token(client: OAuthClient, params: dict[str, str]) -> dict[str, Any]:
        presented = _require(params, "refresh_token")
        now = idp.clock()
        with idp.state.lock:
            record = idp.state.record(presented)
            if record is None or record.kind != "refresh_token":
                raise OAuthError("invalid_grant", "unknown refresh token")
            if record.client_id != client.client_id:
                raise OAuthError("invalid_grant", "refresh token was issued to another client")
            grant = idp.state.grants.get(record.grant_id)
            if grant is None or grant.revoked or record.status == "revoked":
                raise OAuthError("invalid_grant", "refresh token was revoked")
            if now >= record.expires_at:
                raise OAuthError("invalid_grant", "refresh token has expired")
            if record.status == "rotated":
                rotated_at = record.rotated_at or 0.0
                if now - rotated_at > idp.refresh_reuse_grace:
                    idp.state.revoke_grant(record.grant_id)  # RFC 9700 §4.14.2
                    raise OAuthError("invalid_grant", "refresh token was already used")
            scopes = tuple(params.get("scope", "").split()) or record.scope
            if any(s not in record.scope for s in scopes):
                raise OAuthError("invalid_scope", "refresh cannot widen the granted scope")
            if record.status == "active":
                record.status = "rotated"
                record.rotated_at = now
        return issue_user_tokens(client, grant, scopes, None)

    def client_credentials(client: OAuthClient, params: dict[str, str]) -> dict[str, Any]:
        if client.is_public:
            raise OAuthError("unauthorized_client", "public clients cannot use client_credentials")
        if "fmi_path" in params:
            return blueprint_fic(idp, client, params)  # Entra Agent ID
        scopes = params.get("scope", "").split()
        if "openid" in scopes or "offline_access" in scopes:
            raise OAuthError("invalid_scope", "openid and offline_access need a user")
        target = resolve_target(
            idp,
            client,
            scopes,
            resources=_multi(params, "resource"),
            audiences=_multi(params, "audience"),
        )
        grant = idp.state.add_grant(
            Grant(
                secrets.token_hex(8),
                client.client_id,
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
        )
        return token_body(issued)

    def exchange(client: OAuthClient, params: dict[str, str]) -> dict[str, Any]:
        return token_exchange(idp, client, params)

    def obo(client: OAuthClient, params: dict[str, str]) -> dict[str, Any]:
        return on_behalf_of(idp, client, params)

    handlers: dict[str, Callable[[OAuthClient, dict[str, str]], dict[str, Any]]] = {
        "authorization_code": authorization_code,
        "refresh_token": refresh_token,
        "client_credentials": client_credentials,
        GRANT_TOKEN_EXCHANGE: exchange,
        GRANT_JWT_BEARER: obo,
    }

    async def token(request: Request) -> Response:
        try:
            params = await read_form(request)
            grant_type = _require(params, "grant_type")
            agent = agent_of(idp, request, params)
            if agent is not None:
                return json_response(agent_grant(idp, agent, grant_type, params))
            if grant_type == USER_FIC:
                raise OAuthError("unauthorized_client", "only an agent identity uses user_fic")
            client = authenticate_client(idp, request, params, "token")
            handler = handlers.get(grant_type)
            if handler is None:
                raise OAuthError("unsupported_grant_type", "grant type is not supported")
            if grant_type not in client.grant_types:
                raise OAuthError("unauthorized_client", "client may not use this grant type")
            return json_response(handler(client, params))
        except OAuthError as error:
            return error.response()

    return [Route("/token", token, methods=["POST"])]


def _multi(params: dict[str, str], name: str) -> list[str]:
    return params[name].split(" ") if name in params else []
