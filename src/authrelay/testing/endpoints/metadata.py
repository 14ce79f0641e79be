"""Discovery, JWKS, UserInfo, introspection and revocation endpoints of the test provider.

Defends against clients that trust too much: UserInfo takes the token only from the
``Authorization`` header (RFC 6750 §2.1) and answers RFC 6750 §3 challenges;
introspection and revocation require client authentication (RFC 7662 §2.1, RFC 7009 §2.1)
and revoking a refresh token also kills the access tokens of its grant (RFC 7009 §2.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..models import KNOWN_GRANTS
from ._common import OAuthError, authenticate_client, json_response, parse_params, read_form
from .exchange import JWT, inspect_token
from .targets import OIDC_SCOPES

if TYPE_CHECKING:
    from ..provider import IdentityProvider

__all__ = ["metadata_document", "metadata_routes"]

_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def metadata_document(idp: IdentityProvider) -> dict[str, Any]:
    """Authorization server metadata (RFC 8414 §2, OIDC Discovery §3)."""
    base = idp.issuer
    scopes = list(OIDC_SCOPES)
    for resource in idp.resources.values():
        scopes.extend(resource.scopes)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/jwks",
        "introspection_endpoint": f"{base}/introspect",
        "revocation_endpoint": f"{base}/revoke",
        "end_session_endpoint": f"{base}/end-session",
        "pushed_authorization_request_endpoint": f"{base}/par",
        "require_pushed_authorization_requests": idp.require_par,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(KNOWN_GRANTS),
        "subject_types_supported": ["public"],
        "scopes_supported": list(dict.fromkeys(scopes)),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "azp",
            "name",
            "preferred_username",
            "email",
            "email_verified",
            "picture",
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": _AUTH_METHODS[:3],
        "revocation_endpoint_auth_methods_supported": _AUTH_METHODS,
        "id_token_signing_alg_values_supported": list(idp.keys.algs),
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


def _bearer_error(status: int, error: str | None, description: str = "") -> Response:
    challenge = 'Bearer realm="authrelay-test-idp"'
    if error:
        challenge += f', error="{error}"'
    body = {"error": error or "unauthorized"}
    if description:
        body["error_description"] = description
    headers = {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}
    return JSONResponse(body, status_code=status, headers=headers)


def metadata_routes(idp: IdentityProvider) -> list[Route]:
    """Routes for discovery, ``/jwks``, ``/userinfo``, ``/introspect`` and ``/revoke``."""

    async def discovery(request: Request) -> Response:
        return JSONResponse(metadata_document(idp))

    async def jwks(request: Request) -> Response:
        return JSONResponse(idp.keys.jwks(), headers={"Cache-Control": "max-age=60"})

    async def userinfo(request: Request) -> Response:
        try:
            query = parse_params(request.url.query) if request.url.query else {}
            form: dict[str, str] = {}
            if request.method == "POST":
                form = parse_params((await request.body()).decode("utf-8", "replace"))
        except OAuthError as error:
            return _bearer_error(400, "invalid_request", error.description)
        header = request.headers.get("authorization")
        if "access_token" in query or "access_token" in form:
            # RFC 6750 §2.1 only here: tokens in URLs and bodies are not accepted.
            return _bearer_error(
                400, "invalid_request", "send the token in the Authorization header"
            )
        if header is None:
            return _bearer_error(401, None)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _bearer_error(400, "invalid_request", "malformed Authorization header")
        claims = inspect_token(idp, token.strip(), "urn:ietf:params:oauth:token-type:access_token")
        if claims is None:
            return _bearer_error(401, "invalid_token", "token is not active")
        scopes = str(claims.get("scope", "")).split()
        if "openid" not in scopes:
            return _bearer_error(403, "insufficient_scope", "the openid scope is required")
        sub = str(claims["sub"])
        return JSONResponse({"sub": sub, **idp.profile_claims(sub, scopes)})

    async def introspect(request: Request) -> Response:
        try:
            params = await read_form(request)
            authenticate_client(idp, request, params, "introspect")
            token = params.get("token")
            if token is None:
                raise OAuthError("invalid_request", "token is required")
        except OAuthError as error:
            return error.response()
        record = idp.state.record(token)
        claims = inspect_token(idp, token, JWT) if record is None else None
        if record is not None and idp.state.is_active(record, idp.clock()):
            body: dict[str, Any] = {
                "active": True,
                "iss": idp.issuer,
                "sub": record.sub,
                "client_id": record.client_id,
                "scope": " ".join(record.scope),
                "exp": record.expires_at,
                "iat": record.issued_at,
                "token_type": "Bearer" if record.kind == "access_token" else "refresh_token",
            }
            if record.audience:
                body["aud"] = (
                    record.audience[0] if len(record.audience) == 1 else list(record.audience)
                )
            for name in ("act", "jti", "auth_time"):
                if name in record.claims:
                    body[name] = record.claims[name]
        elif claims is not None:
            body = {"active": True, "token_type": "Bearer", **claims}
        else:
            body = {"active": False}
        user = idp.users.get(str(body.get("sub", "")))
        if body["active"] and user is not None:
            body["username"] = user.username
        return json_response(body)

    async def revoke(request: Request) -> Response:
        try:
            params = await read_form(request)
            client = authenticate_client(idp, request, params, "revoke")
            token = params.get("token")
            if token is None:
                raise OAuthError("invalid_request", "token is required")
            hint = params.get("token_type_hint")
            if hint is not None and hint not in ("access_token", "refresh_token"):
                raise OAuthError("unsupported_token_type", "token_type_hint is not supported")
            record = idp.state.record(token)
            if record is not None and record.client_id != client.client_id:
                raise OAuthError("unauthorized_client", "token was issued to another client")
        except OAuthError as error:
            return error.response()
        idp.state.revoke_token(token)
        if record is not None and record.kind == "refresh_token":
            idp.state.revoke_grant(record.grant_id)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    return [
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/.well-known/oauth-authorization-server", discovery, methods=["GET"]),
        Route("/jwks", jwks, methods=["GET"]),
        Route("/userinfo", userinfo, methods=["GET", "POST"]),
        Route("/introspect", introspect, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
    ]
