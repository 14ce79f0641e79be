"""Bearer JWT access tokens issued by the certified oidc-provider, over real HTTP.

A Starlette app under ``AuthRelayMiddleware`` trusts the provider as its bearer issuer
(discovery, then its JWKS); tokens the provider issues for ``api://orders`` are
accepted, tokens for another audience or signed by a key outside its JWKS are refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_harness import OidcProvider
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from authrelay import AuthRelayMiddleware, Settings
from authrelay.starlette import get_principal, requires
from authrelay.testing.servers import serve_asgi

pytestmark = pytest.mark.interop


@requires("orders.read")
async def orders(request: Request) -> JSONResponse:
    user = get_principal(request)
    return JSONResponse(
        {"sub": user.claims.get("sub"), "kind": user.kind, "scopes": sorted(request.auth.scopes)}
    )


@requires("orders.write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"written": True})


@pytest.fixture(scope="module")
def app_url(oidc_provider: OidcProvider) -> Iterator[str]:
    settings = Settings.model_validate(
        {
            "secret_keys": ["interop-secret-key-0123456789abcdef"],
            "session": {"dev_insecure_cookies": True},
            "http": {"allow_insecure_loopback": True},
            "bearer": {"issuer": oidc_provider.issuer, "audience": "api://orders"},
        }
    )
    app = Starlette(
        routes=[Route("/orders", orders), Route("/orders/write", write_orders)],
        middleware=[Middleware(AuthRelayMiddleware, settings=settings)],
    )
    with serve_asgi(app) as url:
        yield url


def _get(url: str, token: str) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"})


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def decode(part: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return data

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


def test_jw05_jw06_provider_token_for_our_audience_is_accepted(
    oidc_provider: OidcProvider, app_url: str
) -> None:
    token = oidc_provider.client_credentials_token("api://orders", "orders.read")
    response = _get(f"{app_url}/orders", token)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": oidc_provider.api_client.client_id,
        "kind": "bearer",
        "scopes": ["orders.read"],
    }
    # The second call is answered from the verified-token cache; same answer.
    assert _get(f"{app_url}/orders", token).json() == response.json()


def test_jw06_provider_token_for_another_audience_is_refused(
    oidc_provider: OidcProvider, app_url: str
) -> None:
    token = oidc_provider.client_credentials_token("https://notes.local", "notes.read")
    response = _get(f"{app_url}/orders", token)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in response.text


def test_jw01_same_claims_signed_by_another_key_are_refused(
    oidc_provider: OidcProvider, app_url: str
) -> None:
    genuine = oidc_provider.client_credentials_token("api://orders", "orders.read")
    header, claims = _segments(genuine)
    forged = jwt.encode(
        {"alg": "RS256", "kid": header["kid"], "typ": header.get("typ", "at+jwt")},
        claims,
        RSAKey.generate_key(2048),
    )
    response = _get(f"{app_url}/orders", forged)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_e_scope_provider_token_without_the_scope_gets_403(
    oidc_provider: OidcProvider, app_url: str
) -> None:
    token = oidc_provider.client_credentials_token("api://orders", "orders.read")
    response = _get(f"{app_url}/orders/write", token)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="orders.write"' in response.headers["www-authenticate"]


def test_e_missing_no_token_gets_the_bare_challenge(app_url: str) -> None:
    response = httpx.get(f"{app_url}/orders", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="authrelay"'
