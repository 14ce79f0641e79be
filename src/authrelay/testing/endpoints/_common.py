"""Shared strictness for the provider's endpoints: parameters, errors, client authentication.

Defends against lenient parsing that hides client bugs: repeated parameters are refused
(RFC 6749 §3.1, §3.2), empty values count as absent, two client authentication methods at
once are refused (RFC 6749 §2.3), ``client_secret_basic`` credentials are form-urldecoded
after base64 (RFC 6749 §2.3.1), and client assertions are single use with a required
``exp`` (RFC 7523 §3). Error bodies never echo a token or secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from ..models import OAuthClient
    from ..provider import IdentityProvider
    from ..tokens import IssuedAccessToken

__all__ = ["OAuthError", "authenticate_client", "json_response", "read_form", "token_body"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        """The JSON error response, with ``WWW-Authenticate`` for ``invalid_client``."""
        headers = dict(NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="authrelay-test-idp"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


def json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON response that no cache may keep (RFC 6749 §5.1)."""
    return JSONResponse(body, status_code=status, headers=NO_STORE)


REPEATABLE = ("resource", "audience")


def token_body(issued: IssuedAccessToken, **extra: Any) -> dict[str, Any]:
    """An RFC 6749 §5.1 success body."""
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if issued.scope:
        body["scope"] = " ".join(issued.scope)
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def parse_params(raw: str) -> dict[str, str]:
    """Parameters with duplicates refused and empty values dropped (RFC 6749 §3.1).

    ``resource`` (RFC 8707 §2) and ``audience`` (RFC 8693 §2.1) may repeat; their values
    are joined with a space, which cannot occur inside a URI.
    """
    out: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name in REPEATABLE and name in out and value:
            out[name] = f"{out[name]} {value}"
            continue
        if name in out:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        if value != "":
            out[name] = value
    return out


async def read_form(request: Request) -> dict[str, str]:
    """The form body of a POST (RFC 6749 §3.2: ``application/x-www-form-urlencoded``)."""
    if request.method != "POST":
        raise OAuthError("invalid_request", "this endpoint accepts POST only", 405)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "body must be application/x-www-form-urlencoded")
    if request.url.query:
        raise OAuthError("invalid_request", "parameters must be in the body, not the query")
    body = await request.body()
    try:
        return parse_params(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "body is not UTF-8") from None


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def _basic_credentials(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client("malformed Basic credentials") from None
    if ":" not in decoded:
        raise _invalid_client("malformed Basic credentials")
    raw_id, raw_secret = decoded.split(":", 1)
    # RFC 6749 §2.3.1: both are form-urlencoded before base64.
    return unquote_plus(raw_id), unquote_plus(raw_secret)


def authenticate_client(
    idp: IdentityProvider, request: Request, params: dict[str, str], endpoint: str
) -> OAuthClient:
    """The authenticated client of a token, introspection or revocation request."""
    header = request.headers.get("authorization")
    basic = header is not None and header[:6].lower() == "basic "
    if header is not None and not basic:
        raise _invalid_client("unsupported Authorization scheme for client authentication")
    used = [
        name
        for name, present in (
            ("client_secret_basic", basic),
            ("client_secret_post", "client_secret" in params),
            ("private_key_jwt", "client_assertion" in params or "client_assertion_type" in params),
        )
        if present
    ]
    if len(used) > 1:
        raise OAuthError("invalid_request", "more than one client authentication method used")
    method = used[0] if used else "none"
    if basic:
        assert header is not None
        client_id, secret = _basic_credentials(header)
        if params.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
    elif method == "private_key_jwt":
        client_id = _assertion_subject(params)
        secret = ""
    else:
        client_id = params.get("client_id", "")
        secret = params.get("client_secret", "")
        if not client_id:
            raise _invalid_client("client authentication is required")
    client = idp.clients.get(client_id)
    if client is None:
        raise _invalid_client("unknown client")
    if client.auth_method != method:
        raise _invalid_client(f"client must authenticate with {client.auth_method}")
    if method in ("client_secret_basic", "client_secret_post"):
        expected = (client.client_secret or "").encode("utf-8")
        if not hmac.compare_digest(expected, secret.encode("utf-8")):
            raise _invalid_client("client authentication failed")
    elif method == "private_key_jwt":
        _verify_assertion(idp, client, params, endpoint)
    return client


def _assertion_subject(params: dict[str, str]) -> str:
    if params.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", "client_assertion_type must be jwt-bearer")
    assertion = params.get("client_assertion", "")
    if assertion.count(".") != 2:
        raise _invalid_client("client_assertion is not a JWS")
    try:
        segment = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        raise _invalid_client("client_assertion is malformed") from None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub:
        raise _invalid_client("client_assertion has no sub")
    if params.get("client_id", sub) != sub:
        raise OAuthError("invalid_request", "client_id differs from the assertion subject")
    return sub


def _verify_assertion(
    idp: IdentityProvider, client: OAuthClient, params: dict[str, str], endpoint: str
) -> None:
    """RFC 7523 §3: signature by the client's key, iss = sub = client_id, aud, exp, jti."""
    try:
        keys = KeySet.import_key_set(dict(client.jwks or {}))  # type: ignore[arg-type]
        token = jwt.decode(params["client_assertion"], keys, algorithms=ASSERTION_ALGS)
    except (JoseError, ValueError, TypeError, KeyError):
        raise _invalid_client("client_assertion signature is not valid") from None
    claims = token.claims
    now = idp.clock()
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise _invalid_client("client_assertion iss and sub must equal client_id")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    allowed = {idp.issuer, f"{idp.issuer}/token", f"{idp.issuer}/{endpoint}"}
    if not any(isinstance(a, str) and a in allowed for a in audiences):
        raise _invalid_client("client_assertion aud must be the issuer or this endpoint")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _invalid_client("client_assertion exp is required")
    if exp <= now:
        raise _invalid_client("client_assertion has expired")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and nbf > now:
        raise _invalid_client("client_assertion is not yet valid")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _invalid_client("client_assertion jti is required")
    if not idp.state.use_jti(client.client_id, jti, float(exp), now):
        raise _invalid_client("client_assertion jti was already used")
