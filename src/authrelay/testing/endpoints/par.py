"""Pushed authorization request endpoint of the test provider (RFC 9126).

Defends against lenient PAR handling that would hide client bugs: the client authenticates
exactly as at the token endpoint (RFC 9126 §2); the pushed request is validated like one
at the authorization endpoint, with errors as JSON (§2.3); ``request_uri`` may not be
pushed (§2.1); the answer is 201 with a random ``urn:ietf:params:oauth:request_uri:``
that works once, for this client only, for 60 seconds (§2.2, §4).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._common import OAuthError, authenticate_client, json_response, read_form
from .authorize import check_request, resources_of
from .targets import resolve_target

if TYPE_CHECKING:
    from ..provider import IdentityProvider

__all__ = ["PAR_LIFETIME", "REQUEST_URI_PREFIX", "par_routes"]

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PAR_LIFETIME = 60


def par_routes(idp: IdentityProvider) -> list[Route]:
    """The ``/par`` route."""

    async def par(request: Request) -> Response:
        try:
            params = await read_form(request)
            client = authenticate_client(idp, request, params, "par")
            if "request_uri" in params:
                raise OAuthError("invalid_request", "request_uri must not be pushed")
            if params.get("client_id", client.client_id) != client.client_id:
                raise OAuthError("invalid_request", "client_id differs from the authenticated one")
            if not idp.redirect_uri_allowed(client, params.get("redirect_uri", "")):
                raise OAuthError("invalid_request", "redirect_uri is missing or not registered")
            check_request(client, params)
            scopes = params.get("scope", "").split()
            resolve_target(idp, client, scopes, resources=resources_of(params))
        except OAuthError as error:
            return error.response()
        kept = {
            key: value
            for key, value in params.items()
            if key not in ("client_secret", "client_assertion", "client_assertion_type")
        }
        kept["client_id"] = client.client_id
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
        idp.state.push(request_uri, kept, idp.clock() + PAR_LIFETIME)
        return json_response({"request_uri": request_uri, "expires_in": PAR_LIFETIME}, 201)

    return [Route("/par", par, methods=["POST"])]
