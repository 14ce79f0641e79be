"""Pushed authorization requests (RFC 9126) against oidc-provider requiring them."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import RSAKey
from oidc_harness import OidcProvider

sys.path.insert(0, str(Path(__file__).parent.parent / "connectors"))
from connector_helpers import run_app

pytestmark = pytest.mark.interop


def _app(provider: OidcProvider, **connector: Any) -> Any:
    settings = {
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        **connector,
    }
    return run_app(SimpleNamespace(issuer=provider.issuer), connector=settings)  # type: ignore[arg-type]


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_par_metadata_requires_pushed_requests(oidc_par_provider: OidcProvider) -> None:
    assert oidc_par_provider.discovery["require_pushed_authorization_requests"] is True
    assert oidc_par_provider.discovery["pushed_authorization_request_endpoint"]


def test_par_false_plain_request_is_refused_by_the_provider(
    oidc_par_provider: OidcProvider,
) -> None:
    with _app(oidc_par_provider, par=False) as app:
        start = app.client.get(f"{app.base}/auth/idp/login")
        assert start.status_code == 302
        assert "code_challenge" in _query(start.headers["location"])  # a plain request
        answer = app.client.get(start.headers["location"])
        location = answer.headers["location"]  # refused, back to the callback (RFC 6749)
        assert location.startswith(f"{app.base}/auth/idp/callback?")
        assert _query(location)["error"] == ["invalid_request"]
        assert "Pushed Authorization Request" in _query(location)["error_description"][0]
        callback = app.client.get(location, headers={"accept": "application/json"})
        assert callback.status_code == 400
        assert callback.json()["error"] == "invalid_request"
        assert app.me()["authenticated"] is False


@pytest.mark.parametrize("auth", ["client_secret_basic", "private_key_jwt"])
def test_par01_pushed_login_signs_in_end_to_end(oidc_par_provider: OidcProvider, auth: str) -> None:
    client: dict[str, Any] = {}
    if auth == "private_key_jwt":
        key = RSAKey.generate_key(2048, {"kid": "interop-par", "alg": "RS256", "use": "sig"})
        client_id, _ = oidc_par_provider.register_client(
            ["http://127.0.0.1/auth/idp/callback"],
            ["http://127.0.0.1/"],
            token_endpoint_auth_method="private_key_jwt",
            token_endpoint_auth_signing_alg="RS256",
            jwks={"keys": [key.as_dict(private=False)]},
        )
        client = {
            "client_id": client_id,
            "client_secret": None,
            "token_endpoint_auth_method": "private_key_jwt",
            "private_key": key.as_pem(private=True).decode(),
            "private_key_id": "interop-par",
        }
    with _app(oidc_par_provider, **client) as app:  # par = "auto": the metadata requires it
        start = app.client.get(f"{app.base}/auth/idp/login", params={"next": "/after"})
        assert start.status_code == 302, start.text
        front = _query(start.headers["location"])
        assert set(front) == {"client_id", "request_uri"}
        assert front["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")
        callback = oidc_par_provider.login(start.headers["location"], "alice", http=app.client)
        assert "code" in _query(callback), callback
        done = app.client.get(callback)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/after"
        me = app.me()
        assert me["authenticated"] is True
        assert me["subject"].startswith("idp|")
